from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ppe.cli.edge_module import register_runtime
from ppe.config import EdgeConfig
from ppe.edge.main import EdgeModule, ModuleOptions, options_from_env
from ppe.errors import ConfigError

PHOTOS = Path(__file__).resolve().parents[2] / "fixtures" / "hardhat_sample" / "images" / "val"


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


class RecordingClient:
    def __init__(self, desired: dict[str, Any]) -> None:
        self.messages: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.reported: list[dict[str, Any]] = []
        self.desired = desired
        self.on_twin_desired_properties_patch_received: Any = None
        self.lock = threading.Lock()
        #: While True, sends fail like the SDK's with no broker.
        self.down = False

    def connect(self) -> None:
        pass

    def send_message_to_output(self, message: Any, output_name: str) -> None:
        if self.down:
            raise ConnectionError("no connection to the hub")
        with self.lock:
            self.messages.append((output_name, json.loads(message.data), message.custom_properties))

    def get_twin(self) -> dict[str, Any]:
        return {"desired": self.desired, "reported": {}}

    def patch_twin_reported_properties(self, reported_properties_patch: dict[str, Any]) -> None:
        self.reported.append(reported_properties_patch)

    def shutdown(self) -> None:
        pass

    def of(self, output: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for name, body, _ in self.messages if name == output]


@pytest.fixture
def frames(tmp_path: Path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("hard_hat_workers18.png", "hard_hat_workers22.png"):
        shutil.copy(PHOTOS / name, folder / name)
    return folder


def rigged_options(edge_models: Path, tmp_path: Path, **overrides: Any) -> ModuleOptions:
    """The module's options on the rigged int8 model, a queue under ``tmp_path``, any HTTP port."""
    base: dict[str, Any] = {
        "model_path": edge_models / "rigged_int8.tflite",
        "labels_path": edge_models / "labels.txt",
        "model_version": "5",
        "queue_dir": tmp_path / "queue",
        "http_port": 0,
        "num_threads": 1,
    }
    return ModuleOptions(**{**base, **overrides})


def make_module(
    edge_models: Path, tmp_path: Path, frames: Path, client: RecordingClient
) -> EdgeModule:
    options = rigged_options(
        edge_models,
        tmp_path,
        camera_id="gate-2",
        frame_source=str(frames),
        frame_rate=20.0,
        device_id="site-device",
        module_id="ppedetector",
    )
    return EdgeModule(options, client_factory=lambda: client)


def test_module_sends_alerts_and_telemetry(edge_models: Path, tmp_path: Path, frames: Path) -> None:
    client = RecordingClient(
        {
            "score_threshold": 0.5,
            "alert_min_frames": 2,
            "alert_window_frames": 3,
            "alert_cooldown_s": 0.3,
            "telemetry_interval_s": 1.0,
            "$version": 2,
        }
    )
    module = make_module(edge_models, tmp_path, frames, client)
    module.start()
    try:
        assert wait_for(lambda: len(client.of("alerts")) >= 3 and len(client.of("telemetry")) >= 2)
        health = module.server.health()
    finally:
        module.stop()
    alert = client.of("alerts")[0]
    assert alert["deviceId"] == "site-device" and alert["cameraId"] == "gate-2"
    assert alert["modelVersion"] == "5" and alert["counts"]["head"] == 9
    assert alert["scoreThreshold"] == 0.5 and len(alert["heads"]) == 9
    properties = [props for name, _, props in client.messages if name == "alerts"]
    assert properties[0] == {"alertId": alert["alertId"], "messageType": "alert"}
    telemetry = client.of("telemetry")[-1]
    assert telemetry["modelVersion"] == "5" and telemetry["frames"] > 0
    assert telemetry["framesPerSecond"] > 0 and telemetry["latencyMs"]["p50"] > 0
    assert "queueDepth" in telemetry
    assert health["settings"]["alert_cooldown_s"] == 0.3 and health["frames_scored"] > 0
    assert client.reported and client.reported[-1]["settings"]["score_threshold"] == 0.5


def test_twin_threshold_above_the_scores_silences_alerts(
    edge_models: Path, tmp_path: Path, frames: Path
) -> None:
    client = RecordingClient(
        {
            "score_threshold": 0.7,
            "alert_min_frames": 1,
            "alert_window_frames": 1,
            "alert_cooldown_s": 0,
        }
    )
    module = make_module(edge_models, tmp_path, frames, client)
    module.start()
    try:
        assert wait_for(lambda: module.link is not None and module.link.twin_ready.is_set())
        scored = module.stats.total_frames
        assert wait_for(lambda: module.stats.total_frames >= scored + 10)
        assert client.of("alerts") == []
        # Lower the threshold through a desired-properties patch: alerts start.
        client.on_twin_desired_properties_patch_received({"score_threshold": 0.3, "$version": 3})
        assert wait_for(lambda: len(client.of("alerts")) >= 2)
    finally:
        module.stop()
    assert client.of("alerts")[0]["scoreThreshold"] == 0.3


def test_options_from_env() -> None:
    env = {
        "MODEL_PATH": "/models/7/model.tflite",
        "LABELS_PATH": "/models/7/labels.txt",
        "MODEL_VERSION": "7",
        "QUEUE_DIR": "/data/queue",
        "HTTP_PORT": "9090",
        "CAMERA_ID": "dock",
        "FRAME_SOURCE": "rtsp://cam/1",
        "IOTEDGE_DEVICEID": "edge-1",
        "IOTEDGE_MODULEID": "ppedetector",
    }
    options = options_from_env(env)
    assert options.model_path == Path("/models/7/model.tflite")
    assert (options.http_port, options.camera_id, options.frame_source) == (
        9090,
        "dock",
        "rtsp://cam/1",
    )
    assert (options.device_id, options.module_id, options.model_version) == (
        "edge-1",
        "ppedetector",
        "7",
    )
    debug = options_from_env(
        {
            "MODEL_PATH": "m.tflite",
            "QUEUE_DIR": "q",
            "EdgeHubConnectionString": "HostName=h;DeviceId=dev;ModuleId=mod;SharedAccessKey=a2V5",
        }
    )
    assert (debug.device_id, debug.module_id, debug.http_port, debug.frame_source) == (
        "dev",
        "mod",
        8080,
        "",
    )
    with pytest.raises(ConfigError, match="MODEL_PATH is not set"):
        options_from_env({"QUEUE_DIR": "q"})
    with pytest.raises(ConfigError, match="HTTP_PORT='eighty' is not a valid number"):
        options_from_env({"MODEL_PATH": "m", "QUEUE_DIR": "q", "HTTP_PORT": "eighty"})
    with pytest.raises(ConfigError, match="not a TCP port"):
        options_from_env({"MODEL_PATH": "m", "QUEUE_DIR": "q", "HTTP_PORT": "70000"})


def test_runtime_commands_register_run_and_serve() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    register_runtime(parser.add_subparsers(dest="edge_command"))
    args = parser.parse_args(["serve", "--model", "m.tflite", "--port", "8090"])
    assert args.model == Path("m.tflite") and args.port == 8090 and args.labels is None
    assert callable(args.func)
    assert callable(parser.parse_args(["run"]).func)


def test_edge_config_defaults_match_the_twin_contract() -> None:
    defaults = EdgeConfig()
    assert (defaults.alert_min_frames, defaults.alert_window_frames) == (3, 5)
