"""The module process against a real MQTT broker, through the real azure-iot-device SDK over TLS.

A Debian mosquitto on loopback stands in for the IoT Edge hub: the module (``python -m ppe edge
run``, a separate process) authenticates with a module connection string through the SDK's own
local-debug path of ``create_from_edge_environment()`` (``EdgeHubConnectionString`` +
``EdgeModuleCACertificateFile``), verifies the broker's certificate (a test CA made with
``cryptography``, server certificate for ``localhost``), and publishes on the IoT Hub topics.
The SDK always connects to port 8883, so the broker listens there (a file lock serialises test
sessions on one machine).

The observer is a plain paho client subscribed to ``devices/#``. It also answers the SDK's twin
requests (``$iothub/twin/GET`` and reported-property PATCHes) and publishes desired-property
patches on ``$iothub/twin/PATCH/properties/desired/``: that is a stand-in for IoT Hub's twin
service, which mosquitto does not have.

The frames come from an image folder of real photos scored by the "rigged" tiny model (see
testing/unit/edge/tflite_models.py): nine ``head`` detections at score 0.588 on every frame.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from filelock import FileLock
from testing.edge_fixtures import PHOTOS

MOSQUITTO = Path("/usr/sbin/mosquitto")
PORT = 8883  # hard-coded by azure-iot-device for MQTT over TCP
REPO = Path(__file__).resolve().parents[3]
DEVICE, MODULE = "site-device-1", "ppedetector"
logger = logging.getLogger(__name__)
ALERT_LOG = re.compile(r"alert ([0-9a-f-]{36}) queued")


def wait_for(condition: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def make_certificates(folder: Path) -> None:
    """A CA and a ``localhost`` server certificate it signed (EC P-256, valid one day)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ppe test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


class Broker:
    """mosquitto on 127.0.0.1:8883 with TLS, anonymous, persistent (sessions survive restarts)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        make_certificates(folder)
        (folder / "data").mkdir()
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            "\n".join(
                [
                    "user root" if os.geteuid() == 0 else "",
                    f"listener {PORT} 127.0.0.1",
                    f"cafile {folder / 'ca.pem'}",
                    f"certfile {folder / 'server.pem'}",
                    f"keyfile {folder / 'server.key'}",
                    "allow_anonymous true",
                    "persistence true",
                    f"persistence_location {folder / 'data'}/",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                ]
            )
            + "\n"
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.log = folder / "mosquitto.log"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(MOSQUITTO), "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        if not wait_for(lambda: port_in_use(PORT), 10):
            self.stop()
            pytest.fail(f"mosquitto did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # saves the persistence database
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None
        assert wait_for(lambda: not port_in_use(PORT), 10), "port 8883 still busy"


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    if not MOSQUITTO.exists():
        pytest.fail("mosquitto is missing: run `make setup-system` (Debian package mosquitto)")
    lock = FileLock(str(Path(tempfile.gettempdir()) / "ppe-edge-mqtt-8883.lock"), timeout=300)
    with lock, tempfile.TemporaryDirectory(prefix="ppe-mqtt-") as folder:
        if port_in_use(PORT):
            pytest.fail(f"port {PORT} is taken by another program; the SDK can only use {PORT}")
        instance = Broker(Path(folder))
        instance.start()
        try:
            yield instance
        finally:
            instance.stop()


@dataclass
class Observer:
    """paho client: records module messages, answers twin requests, publishes desired patches."""

    ca_file: Path
    client_id: str
    desired: dict[str, Any]
    events: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    reported: list[dict[str, Any]] = field(default_factory=list)
    twin_gets: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # clean_session=False + QoS 1: the broker keeps the subscription and queues messages
        # across a broker restart, so nothing is missed while this client reconnects.
        self.client = mqtt.Client(client_id=self.client_id, clean_session=False)
        self.client.tls_set_context(ssl.create_default_context(cafile=str(self.ca_file)))
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.connected = threading.Event()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: int) -> None:
        client.subscribe(
            [
                ("devices/#", 1),
                ("$iothub/twin/GET/#", 1),
                ("$iothub/twin/PATCH/properties/reported/#", 1),
            ]
        )
        self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        topic = message.topic
        rid = dict(parse_qsl(topic.rsplit("?", 1)[-1])).get("$rid", "")
        if topic.startswith("$iothub/twin/GET/"):
            with self.lock:
                self.twin_gets += 1
                document = {"desired": {**self.desired, "$version": 1}, "reported": {"$version": 1}}
            client.publish(f"$iothub/twin/res/200/?$rid={rid}", json.dumps(document), qos=0)
        elif topic.startswith("$iothub/twin/PATCH/properties/reported/"):
            with self.lock:
                self.reported.append(json.loads(message.payload))
                version = len(self.reported) + 1
            client.publish(f"$iothub/twin/res/204/?$rid={rid}&$version={version}", b"", qos=0)
        elif topic.startswith("devices/"):
            base, _, bag = topic.partition("/messages/events/")
            properties = {unquote(k): unquote(v) for k, v in parse_qsl(bag, keep_blank_values=True)}
            with self.lock:
                self.events.append((base, properties, json.loads(message.payload)))

    def start(self) -> None:
        self.client.connect("localhost", PORT, keepalive=10)
        self.client.loop_start()
        assert self.connected.wait(10), "observer could not connect to mosquitto"

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def patch_desired(self, patch: dict[str, Any], version: int) -> None:
        info = self.client.publish(
            f"$iothub/twin/PATCH/properties/desired/?$version={version}",
            json.dumps({**patch, "$version": version}),
            qos=1,
        )
        info.wait_for_publish(5)

    def alerts(self) -> list[tuple[dict[str, str], dict[str, Any]]]:
        with self.lock:
            return [
                (props, body) for _, props, body in self.events if props.get("$.on") == "alerts"
            ]

    def telemetry(self) -> list[dict[str, Any]]:
        with self.lock:
            return [body for _, props, body in self.events if props.get("$.on") == "telemetry"]


class ModuleProcess:
    """``python -m ppe edge run`` with the environment a deployment gives it."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.port = int(env["HTTP_PORT"])
        with log.open("ab") as handle:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ppe", "edge", "run"],
                env=env,
                cwd=REPO,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )

    def health(self) -> dict[str, Any] | None:
        """The /healthz document, also when degraded (503); None while nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                document: dict[str, Any] = json.load(r)
                return document
        except urllib.error.HTTPError as error:
            with error:
                degraded: dict[str, Any] = json.load(error)
            return degraded
        except OSError:
            return None

    def wait_healthy(self, timeout: float = 60) -> dict[str, Any]:
        ok = wait_for(
            lambda: self.process.poll() is None and self.health() is not None, timeout, 0.3
        )
        assert ok, f"module did not start:\n{self.log.read_text()[-3000:]}"
        document = self.health()
        assert document is not None
        return document

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def ensure_dead(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def module_env(edge_models: Path, broker: Broker, tmp_path: Path) -> dict[str, str]:
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in ("hard_hat_workers5.png", "hard_hat_workers25.png", "hard_hat_workers26.png"):
        shutil.copy(PHOTOS / name, frames / name)
    env = {key: value for key, value in os.environ.items() if not key.startswith("IOTEDGE_")}
    env.update(
        {
            "MODEL_PATH": str(edge_models / "rigged_int8.tflite"),
            "LABELS_PATH": str(edge_models / "labels.txt"),
            "MODEL_VERSION": "4",
            "QUEUE_DIR": str(tmp_path / "queue"),
            "HTTP_PORT": str(free_port()),
            "CAMERA_ID": "gate-3",
            "FRAME_SOURCE": str(frames),
            "FRAME_RATE": "5",
            "LITERT_NUM_THREADS": "1",
            "EdgeHubConnectionString": (
                f"HostName=test-hub.azure-devices.net;DeviceId={DEVICE};ModuleId={MODULE};"
                "SharedAccessKey=dGVzdC1rZXktbm90LWEtc2VjcmV0;GatewayHostName=localhost"
            ),
            "EdgeModuleCACertificateFile": str(broker.folder / "ca.pem"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def logged_alert_ids(*logs: Path) -> list[str]:
    return [match for log in logs for match in ALERT_LOG.findall(log.read_text(errors="replace"))]


def test_alerts_survive_a_broker_outage_and_a_module_restart(
    broker: Broker, module_env: dict[str, str], tmp_path: Path
) -> None:
    desired = {
        "score_threshold": 0.4,
        "alert_min_frames": 2,
        "alert_window_frames": 3,
        "alert_cooldown_s": 1.0,
        "telemetry_interval_s": 2.0,
    }
    observer = Observer(broker.folder / "ca.pem", "observer-outage", desired)
    observer.start()
    logs = [tmp_path / "module-1.log", tmp_path / "module-2.log"]
    first = ModuleProcess(module_env, logs[0])
    second: ModuleProcess | None = None
    try:
        first.wait_healthy()
        # 1. Connected: alerts arrive on the IoT Hub topic of output `alerts`.
        assert wait_for(lambda: len(observer.alerts()) >= 3, 60), logs[0].read_text()[-3000:]
        properties, body = observer.alerts()[0]
        assert properties["$.on"] == "alerts"
        assert properties["$.ct"] == "application/json" and properties["$.ce"] == "utf-8"
        assert properties["alertId"] == body["alertId"] == properties["$.mid"]
        assert properties["messageType"] == "alert"  # what the IoT Hub alert route selects
        assert body["deviceId"] == DEVICE and body["moduleId"] == MODULE
        assert body["cameraId"] == "gate-3" and body["modelVersion"] == "4"
        assert len(body["heads"]) == 9 and body["counts"] == {"helmet": 0, "head": 9}
        base = next(base for base, props, _ in observer.events if props.get("$.on") == "alerts")
        assert base == f"devices/{DEVICE}/modules/{MODULE}"
        assert wait_for(lambda: len(observer.telemetry()) >= 1, 20)
        telemetry = observer.telemetry()[-1]
        assert telemetry["modelVersion"] == "4" and telemetry["framesPerSecond"] > 0
        assert telemetry["latencyMs"]["p50"] is not None and "queueDepth" in telemetry

        # 2. Broker down: alerts keep being raised and wait in the outbox.
        broker.stop()
        down_at = time.time()
        assert wait_for(lambda: (first.health() or {}).get("queue", {}).get("alert", 0) >= 2, 20)
        # 3. The module restarts (a crash: SIGKILL) while the broker is still down.
        first.kill()
        second = ModuleProcess(module_env, logs[1])
        health = second.wait_healthy()
        assert health["settings"]["alert_cooldown_s"] == 1.0  # restored without the twin
        assert health["queue"]["alert"] >= 2  # the first process's unsent alerts
        assert wait_for(lambda: len(logged_alert_ids(logs[1])) >= 2, 30)
        time.sleep(max(0.0, 10.5 - (time.time() - down_at)))
        outage_s = time.time() - down_at
        # 4. Broker back: everything queued is delivered.
        broker.start()
        up_at = time.time()
        raised = logged_alert_ids(*logs)
        assert wait_for(
            lambda: set(raised) <= {body["alertId"] for _, body in observer.alerts()}, 90
        ), f"missing after restart; module log:\n{logs[1].read_text()[-3000:]}"
        assert wait_for(lambda: (second.health() or {}).get("queue", {}).get("alert", 1) == 0, 30)
        assert second.terminate() == 0
        second_exit = logs[1].read_text()
        assert "module stopped" in second_exit
    finally:
        first.ensure_dead()
        if second is not None:
            second.ensure_dead()
        observer_alerts = observer.alerts()
        observer.stop()

    raised = logged_alert_ids(*logs)
    received = [body["alertId"] for _, body in observer_alerts]
    missing = set(raised) - set(received)
    assert not missing, f"{len(missing)} alerts lost"
    during_outage = [
        body
        for _, body in observer_alerts
        if down_at <= dt.datetime.fromisoformat(body["time"]).timestamp() <= up_at
    ]
    duplicates = len(received) - len(set(received))
    summary = {
        "raised": len(set(raised)),
        "received": len(received),
        "unique_received": len(set(received)),
        "duplicates": duplicates,
        "raised_during_outage": len({body["alertId"] for body in during_outage}),
        "outage_s": round(outage_s, 1),
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    logger.warning("MQTT outage summary: %s", json.dumps(summary))  # shown with pytest -rA
    assert summary["raised_during_outage"] >= 3
    assert outage_s >= 10
    # A duplicate (sent again after a crash before its acknowledgement was recorded) is the same
    # message: same alertId, same body, so a consumer can drop it by id.
    bodies: dict[str, dict[str, Any]] = {}
    for _, body in observer_alerts:
        assert bodies.setdefault(body["alertId"], body) == body


def test_twin_desired_patch_changes_the_threshold_live(
    broker: Broker, module_env: dict[str, str], tmp_path: Path
) -> None:
    # Publishing on the twin topics through the broker stands in for IoT Hub's twin service.
    desired = {
        "score_threshold": 0.4,
        "alert_min_frames": 1,
        "alert_window_frames": 1,
        "alert_cooldown_s": 0.5,
        "telemetry_interval_s": 30.0,
    }
    observer = Observer(broker.folder / "ca.pem", "observer-twin", desired)
    observer.start()
    module = ModuleProcess(module_env, tmp_path / "module.log")
    try:
        module.wait_healthy()
        assert wait_for(lambda: observer.twin_gets >= 1, 30)
        assert wait_for(lambda: len(observer.alerts()) >= 2, 30)
        assert wait_for(lambda: any(r.get("settings") == desired for r in observer.reported), 20)

        observer.patch_desired({"score_threshold": 0.9}, version=2)

        def threshold() -> float | None:
            health = module.health() or {}
            return health.get("settings", {}).get("score_threshold")

        assert wait_for(lambda: threshold() == 0.9, 20)
        assert wait_for(
            lambda: any(r["settings"]["score_threshold"] == 0.9 for r in observer.reported), 20
        )
        # The rigged model scores heads at 0.588 < 0.9: no alert is raised any more.
        time.sleep(1.5)  # frames in flight when the patch landed
        count = len(observer.alerts())
        frames = (module.health() or {})["frames_scored"]
        assert wait_for(lambda: (module.health() or {})["frames_scored"] >= frames + 10, 20)
        assert len(observer.alerts()) == count
        assert all(body["scoreThreshold"] == 0.4 for _, body in observer.alerts())

        # A bad value is rejected with a log line; the old one stays and the rejection is reported.
        observer.patch_desired({"alert_min_frames": 0}, version=3)
        assert wait_for(lambda: any(r.get("rejected") for r in observer.reported), 20)
        assert (module.health() or {})["settings"]["alert_min_frames"] == 1
        assert "alert_min_frames=0 rejected" in (tmp_path / "module.log").read_text()
        assert module.terminate() == 0
    finally:
        module.ensure_dead()
        observer.stop()
