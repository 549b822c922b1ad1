"""The IoT Edge module process: frames -> detector -> alert rule -> durable outbox -> IoT Edge hub.

Threads: the frame loop (one camera), the HTTP server, the telemetry timer, and the hub link's
sender/twin/reporter (:mod:`ppe.edge.iothub`). The process stops cleanly on SIGTERM (what the
IoT Edge agent sends) or SIGINT: the frame loop ends, the sender gets a few seconds to drain the
outbox, and whatever is left stays queued on disk for the next start.

:func:`options_from_env` is the only place that reads the environment; everything below it takes
values.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from ppe.config import EdgeConfig
from ppe.edge.alerts import AlertRule, build_alert
from ppe.edge.iothub import HubLink, ModuleClient
from ppe.edge.queue import DurableQueue
from ppe.edge.runtime import Detector, LiteRTDetector
from ppe.edge.server import ScoringServer
from ppe.edge.settings import STATE_FILE, LiveSettings
from ppe.edge.sources import open_source, redact
from ppe.errors import ConfigError

logger = logging.getLogger(__name__)

#: Frames per second taken from an image folder when FRAME_RATE is not set (video files play at
#: their own rate, streams and cameras run at theirs).
DEFAULT_FOLDER_FRAME_RATE = 5.0
#: Seconds the sender gets to empty the outbox at shutdown.
SHUTDOWN_DRAIN_S = 5.0
#: The SDK's reconnect interval (its default is 10 s; an edge hub on the same host is cheap to
#: retry) and MQTT keep-alive.
CONNECTION_RETRY_INTERVAL_S = 2
KEEP_ALIVE_S = 30


@dataclass(frozen=True)
class ModuleOptions:
    """Everything the module reads from its environment.

    Attributes:
        model_path: ``MODEL_PATH``, the ``.tflite`` file.
        labels_path: ``LABELS_PATH``, one class name a line (optional with a ``model.json``).
        model_version: ``MODEL_VERSION``.
        queue_dir: ``QUEUE_DIR``, the durable outbox folder (a host volume).
        http_port: ``HTTP_PORT`` (default 8080).
        camera_id: ``CAMERA_ID`` (default ``camera-1``).
        frame_source: ``FRAME_SOURCE``; empty for HTTP only.
        frame_rate: ``FRAME_RATE``, most frames per second taken from the source (optional).
        num_threads: ``LITERT_NUM_THREADS``, interpreter threads (default: CPU count, at most 4).
        device_id: ``IOTEDGE_DEVICEID`` (or the debug connection string's ``DeviceId``).
        module_id: ``IOTEDGE_MODULEID`` (or the debug connection string's ``ModuleId``).
    """

    model_path: Path
    labels_path: Path | None
    model_version: str
    queue_dir: Path
    http_port: int = 8080
    camera_id: str = "camera-1"
    frame_source: str = ""
    frame_rate: float | None = None
    num_threads: int = 2
    device_id: str = "unknown-device"
    module_id: str = "ppedetector"


def _connection_string_fields(value: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in value.split(";"):
        key, sep, item = part.partition("=")
        if sep:
            fields[key.strip()] = item.strip()
    return fields


def options_from_env(environ: Mapping[str, str]) -> ModuleOptions:
    """Read :class:`ModuleOptions` from environment variables.

    Args:
        environ: the environment (``os.environ``).

    Returns:
        The options.

    Raises:
        ConfigError: a required variable is missing or a value is malformed, naming the variable.
    """

    def required(name: str) -> str:
        value = environ.get(name, "").strip()
        if not value:
            raise ConfigError(f"{name} is not set; the deployment manifest must set it")
        return value

    def number(name: str, default: str, kind: Callable[[str], Any]) -> Any:
        raw = environ.get(name, "").strip() or default
        try:
            value = kind(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a valid number") from None
        if value <= 0:
            raise ConfigError(f"{name}={raw!r} must be positive")
        return value

    debug = _connection_string_fields(environ.get("EdgeHubConnectionString", ""))
    port = number("HTTP_PORT", "8080", int)
    if port > 65535:
        raise ConfigError(f"HTTP_PORT={port} is not a TCP port (1-65535)")
    frame_rate_raw = environ.get("FRAME_RATE", "").strip()
    labels = environ.get("LABELS_PATH", "").strip()
    return ModuleOptions(
        model_path=Path(required("MODEL_PATH")),
        labels_path=Path(labels) if labels else None,
        model_version=environ.get("MODEL_VERSION", "").strip() or "unknown",
        queue_dir=Path(required("QUEUE_DIR")),
        http_port=port,
        camera_id=environ.get("CAMERA_ID", "").strip() or "camera-1",
        frame_source=environ.get("FRAME_SOURCE", "").strip(),
        frame_rate=number("FRAME_RATE", frame_rate_raw, float) if frame_rate_raw else None,
        num_threads=number("LITERT_NUM_THREADS", str(min(4, os.cpu_count() or 1)), int),
        device_id=environ.get("IOTEDGE_DEVICEID") or debug.get("DeviceId") or "unknown-device",
        module_id=environ.get("IOTEDGE_MODULEID") or debug.get("ModuleId") or "ppedetector",
    )


def edge_environment_client() -> ModuleClient:
    """``IoTHubModuleClient.create_from_edge_environment()`` with the module's retry settings.

    Inside IoT Edge this authenticates through the workload API (``IOTEDGE_*`` variables); for
    local debugging the SDK falls back to ``EdgeHubConnectionString`` and
    ``EdgeModuleCACertificateFile``.

    Raises:
        ConfigError: the IoT Edge environment is missing or invalid.
    """
    from azure.iot.device import IoTHubModuleClient

    try:
        client: ModuleClient = IoTHubModuleClient.create_from_edge_environment(
            connection_retry_interval=CONNECTION_RETRY_INTERVAL_S, keep_alive=KEEP_ALIVE_S
        )
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"not running in an IoT Edge environment ({error}); `ppe edge run` needs the IoT "
            "Edge runtime's variables (or EdgeHubConnectionString and "
            "EdgeModuleCACertificateFile for local debugging); use `ppe edge serve` for HTTP only"
        ) from error
    return client


class FrameStats:
    """Frames scored and their latencies since the last telemetry message. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latencies: list[float] = []
        self._since = time.monotonic()
        self.total_frames = 0
        self.total_alerts = 0

    def record(self, latency_ms: float) -> None:
        """Count one scored frame."""
        with self._lock:
            self._latencies.append(latency_ms)
            self.total_frames += 1

    def snapshot(self) -> dict[str, Any]:
        """Frames, frames per second and latency percentiles since the last snapshot (resets)."""
        with self._lock:
            latencies, self._latencies = self._latencies, []
            now = time.monotonic()
            elapsed, self._since = max(now - self._since, 1e-9), now
        values = np.asarray(latencies, dtype=np.float64)
        return {
            "frames": len(latencies),
            "framesPerSecond": round(len(latencies) / elapsed, 3),
            "latencyMs": {
                "p50": round(float(np.percentile(values, 50)), 3) if values.size else None,
                "p95": round(float(np.percentile(values, 95)), 3) if values.size else None,
            },
        }


class EdgeModule:
    """The running module.

    Args:
        options: values from the environment.
        client_factory: creates the module client (None: HTTP and frames only, no hub).
        detector: a detector to use instead of loading ``options.model_path`` (tests).
        base_config: starting settings before the twin (and saved settings) apply.
    """

    def __init__(
        self,
        options: ModuleOptions,
        *,
        client_factory: Callable[[], ModuleClient] | None = edge_environment_client,
        detector: Detector | None = None,
        base_config: EdgeConfig | None = None,
    ) -> None:
        self.options = options
        self.stop_event = threading.Event()
        self.detector: Detector = detector or LiteRTDetector(
            options.model_path,
            options.labels_path,
            model_version=options.model_version,
            num_threads=options.num_threads,
        )
        self.outbox = DurableQueue(options.queue_dir)
        config = base_config or EdgeConfig()
        self.settings = LiveSettings(config, state_file=options.queue_dir / STATE_FILE)
        self.rule = AlertRule(self.settings.config)
        self.settings.subscribe(self.rule.update)
        self.stats = FrameStats()
        frame_rate = options.frame_rate
        if frame_rate is None and options.frame_source and Path(options.frame_source).is_dir():
            frame_rate = DEFAULT_FOLDER_FRAME_RATE
        self.source = (
            open_source(options.frame_source, frame_rate=frame_rate, stop_event=self.stop_event)
            if options.frame_source
            else None
        )
        self.link = (
            HubLink(client_factory(), self.outbox, self._apply_desired) if client_factory else None
        )
        current = self.settings.config
        self.server = ScoringServer(
            self.detector,
            port=options.http_port,
            max_upload_bytes=current.max_upload_bytes,
            max_image_pixels=current.max_image_pixels,
            score_threshold=lambda: self.settings.config.score_threshold,
            health=self._health,
        )
        self._threads: list[threading.Thread] = []

    def _apply_desired(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        _applied, rejected = self.settings.apply(desired)
        reported: dict[str, Any] = {"settings": self.settings.live_values()}
        reported["rejected"] = rejected or None
        reported["modelVersion"] = self.detector.model_version
        return reported

    def _health(self) -> dict[str, Any]:
        depth = self.outbox.depth()
        return {
            "queue_depth": depth["total"],
            "queue": depth,
            "settings": self.settings.live_values(),
            "camera_id": self.options.camera_id,
            "frames_scored": self.stats.total_frames,
            "alerts_raised": self.stats.total_alerts,
            "hub": (
                {
                    "sent": dict(self.link.sent),
                    "send_failures": self.link.send_failures,
                    "twin_read": self.link.twin_ready.is_set(),
                }
                if self.link
                else None
            ),
        }

    def _enqueue(self, kind: str, message_id: str, document: Mapping[str, Any]) -> None:
        body = json.dumps(document, allow_nan=False).encode("utf-8")
        self.outbox.put("alert" if kind == "alert" else "telemetry", message_id, body)
        if self.link:
            self.link.wake()

    def _frame_loop(self) -> None:
        if self.source is None:
            return
        camera = self.options.camera_id
        try:
            for frame in self.source:
                config = self.settings.config
                start = time.perf_counter()
                result = self.detector.detect(frame.image, config.score_threshold)
                self.stats.record((time.perf_counter() - start) * 1000.0)
                decision = self.rule.observe(camera, result)
                if not decision.alert:
                    continue
                alert = build_alert(
                    result,
                    device_id=self.options.device_id,
                    module_id=self.options.module_id,
                    camera_id=camera,
                    model_version=self.detector.model_version,
                    score_threshold=config.score_threshold,
                    decision=decision,
                    frame_id=frame.frame_id,
                    timestamp=frame.timestamp,
                )
                self._enqueue("alert", alert["alertId"], alert)
                self.stats.total_alerts += 1
                logger.info(
                    "alert %s queued: camera %s, %d heads without a helmet (%d of %d frames)",
                    alert["alertId"],
                    camera,
                    alert["counts"]["head"],
                    decision.positives,
                    decision.window,
                )
        except Exception:
            logger.exception("the frame loop stopped on an error; HTTP scoring goes on")
        else:
            if not self.stop_event.is_set():
                logger.warning("frame source %s ended", redact(self.options.frame_source))

    def telemetry(self) -> dict[str, Any]:
        """One telemetry message (and reset the interval's counters)."""
        snapshot = self.stats.snapshot()
        return {
            "messageId": str(uuid.uuid4()),
            "type": "telemetry",
            "deviceId": self.options.device_id,
            "moduleId": self.options.module_id,
            "cameraId": self.options.camera_id,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "modelVersion": self.detector.model_version,
            **snapshot,
            "queueDepth": self.outbox.depth()["total"],
            "alertsRaised": self.stats.total_alerts,
        }

    def _telemetry_loop(self) -> None:
        last = time.monotonic()
        while True:
            # Re-read the interval on every tick: the twin may change it at any time.
            due = last + self.settings.config.telemetry_interval_s
            if self.stop_event.wait(min(max(due - time.monotonic(), 0.0), 0.5)):
                return
            if time.monotonic() < due:
                continue
            last = time.monotonic()
            message = self.telemetry()
            self._enqueue("telemetry", message["messageId"], message)
            logger.debug("telemetry queued: %s", message)

    def start(self) -> None:
        """Start serving HTTP, the hub link, the frame loop and telemetry."""
        self.server.start()
        if self.link:
            self.link.start()
            self._start_thread("telemetry", self._telemetry_loop)
        if self.source is not None:
            self._start_thread("frames", self._frame_loop)
        logger.info(
            "module %s/%s running: camera %s, source %s, model %s, outbox %s",
            self.options.device_id,
            self.options.module_id,
            self.options.camera_id,
            redact(self.options.frame_source) or "(HTTP only)",
            self.detector.model_version,
            self.outbox.path,
        )

    def _start_thread(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop everything; unsent messages stay in the outbox for the next start."""
        self.stop_event.set()
        for thread in self._threads:
            thread.join(10.0)
        if self.link:
            if not self.link.drain(SHUTDOWN_DRAIN_S):
                logger.warning(
                    "%d messages stay queued for the next start", self.outbox.depth()["total"]
                )
            self.link.stop()
        self.server.stop()
        self.outbox.close()
        logger.info("module stopped")


def _install_signal_handlers(stop_event: threading.Event) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        logger.info("signal %s received: stopping", signal.Signals(signum).name)
        stop_event.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_module(options: ModuleOptions) -> int:
    """Run the module until SIGTERM/SIGINT (``ppe edge run``).

    Args:
        options: from :func:`options_from_env`.

    Returns:
        The exit status (0).
    """
    module = EdgeModule(options)
    _install_signal_handlers(module.stop_event)
    module.start()
    try:
        module.stop_event.wait()
    finally:
        module.stop()
    return 0


def serve_http(
    model_path: Path,
    labels_path: Path | None,
    *,
    port: int,
    model_version: str,
    num_threads: int,
    host: str = "0.0.0.0",
) -> int:
    """Serve ``POST /score``, ``/healthz`` and the page without IoT Hub (``ppe edge serve``).

    Returns:
        The exit status (0).
    """
    detector = LiteRTDetector(
        model_path, labels_path, model_version=model_version, num_threads=num_threads
    )
    config = EdgeConfig()
    server = ScoringServer(
        detector,
        host=host,
        port=port,
        max_upload_bytes=config.max_upload_bytes,
        max_image_pixels=config.max_image_pixels,
        score_threshold=lambda: config.score_threshold,
    )
    stop_event = threading.Event()
    _install_signal_handlers(stop_event)
    server.start()
    try:
        stop_event.wait()
    finally:
        server.stop()
    return 0
