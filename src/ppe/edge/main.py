"""The IoT Edge module process: frames -> detector -> alert rule -> durable outbox -> IoT Edge hub.

Threads: the frame loop (one camera), the HTTP server, the housekeeping timer (telemetry, and
alerts waiting for the outbox), and the hub link's sender/twin/reporter (:mod:`ppe.edge.iothub`).
The process stops cleanly on SIGTERM (what the IoT Edge agent sends) or SIGINT: the frame loop
ends, the sender gets a few seconds to drain the outbox, and whatever is left stays queued on disk
for the next start.

Faults: an alert the outbox cannot store (a full disk) waits in memory (at most
:data:`MAX_PENDING_ALERTS`) and is stored, in order, as soon as a write succeeds again; telemetry
is dropped meanwhile. ``/healthz`` answers 503 ``degraded`` with the reasons while a worker thread
is dead, frames are stale, the outbox cannot write, or the hub link is down. A worker thread that
dies on an unexpected error stops the module with exit status 1, so that the IoT Edge agent's
restart policy starts it again.

``/score`` needs a bearer token: ``SCORE_TOKEN``, or the file ``SCORE_TOKEN_FILE`` names (a
mounted secret), or else one generated at the first start and kept in ``QUEUE_DIR/score-token``
(mode 0600) for the operator to read on the device.

:func:`options_from_env` is the only place that reads the environment; everything below it takes
values.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import threading
import time
import uuid
from collections import deque
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
from ppe.errors import ConfigError, OutboxWriteError

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
#: Alerts kept in memory while the outbox cannot write; beyond, the oldest is dropped (logged).
MAX_PENDING_ALERTS = 1000
#: Seconds without a scored frame after which ``/healthz`` reports stale frames (at least three
#: frame intervals when FRAME_RATE is lower).
STALE_FRAMES_S = 30.0
#: Where a generated ``/score`` token is kept, in QUEUE_DIR.
TOKEN_FILE = "score-token"
#: Seconds between housekeeping ticks (pending alerts, telemetry due).
TICK_S = 0.5


@dataclass(frozen=True)
class ModuleOptions:
    """Everything the module reads from its environment.

    Attributes:
        model_path: ``MODEL_PATH``, the ``.tflite`` file.
        labels_path: ``LABELS_PATH``, one class name a line (optional with a ``model.json``).
        model_version: ``MODEL_VERSION``.
        queue_dir: ``QUEUE_DIR``, the durable outbox folder (a host volume).
        http_port: ``HTTP_PORT`` (default 8080).
        http_host: ``HTTP_HOST``, the address to bind (default ``0.0.0.0``: in a container with
            its own network, its loopback is unreachable; the manifest's port binding decides
            which host address publishes it).
        score_token: ``SCORE_TOKEN``, or the content of the file ``SCORE_TOKEN_FILE`` names;
            None: one is generated and kept in ``QUEUE_DIR/score-token``.
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
    http_host: str = "0.0.0.0"
    score_token: str | None = None
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
    token = environ.get("SCORE_TOKEN", "").strip() or None
    token_file = environ.get("SCORE_TOKEN_FILE", "").strip()
    if token is None and token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(
                f"SCORE_TOKEN_FILE={token_file}: cannot be read ({error}); mount the secret there "
                "(the deployment manifest binds the device's PPE_HOST_SECRETS_DIR read-only at "
                "its folder: put the token there, readable by uid 10001)"
            ) from error
    if token is not None and len(token) < 16:
        raise ConfigError("SCORE_TOKEN is shorter than 16 characters; use a long random token")
    return ModuleOptions(
        model_path=Path(required("MODEL_PATH")),
        labels_path=Path(labels) if labels else None,
        model_version=environ.get("MODEL_VERSION", "").strip() or "unknown",
        queue_dir=Path(required("QUEUE_DIR")),
        http_port=port,
        http_host=environ.get("HTTP_HOST", "").strip() or "0.0.0.0",
        score_token=token,
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
        self.latency_sum_s = 0.0
        #: ``time.monotonic()`` of the last scored frame (None before the first).
        self.last_frame: float | None = None
        self._recent: deque[float] = deque(maxlen=1000)

    def record(self, latency_ms: float) -> None:
        """Count one scored frame."""
        with self._lock:
            self._latencies.append(latency_ms)
            self.total_frames += 1
            self.latency_sum_s += latency_ms / 1000.0
            self.last_frame = time.monotonic()
            self._recent.append(self.last_frame)

    def recent_fps(self, window_s: float = 10.0) -> float:
        """Frames per second over the last ``window_s`` seconds."""
        with self._lock:
            now = time.monotonic()
            return sum(1 for stamp in self._recent if now - stamp <= window_s) / window_s

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
        stale_frames_s: seconds without a frame before ``/healthz`` reports stale frames.
    """

    def __init__(
        self,
        options: ModuleOptions,
        *,
        client_factory: Callable[[], ModuleClient] | None = edge_environment_client,
        detector: Detector | None = None,
        base_config: EdgeConfig | None = None,
        stale_frames_s: float = STALE_FRAMES_S,
    ) -> None:
        self.options = options
        self.stop_event = threading.Event()
        #: The process exit status: 1 once a worker thread died.
        self.exit_code = 0
        self.dead_workers: list[str] = []
        self._pending: deque[tuple[str, bytes]] = deque()
        self._pending_lock = threading.Lock()
        self._started = time.monotonic()
        self._stale_frames_s = max(
            stale_frames_s, 3.0 / options.frame_rate if options.frame_rate else 0.0
        )
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
            HubLink(client_factory(), self.outbox, self._apply_desired, on_fatal=self._fatal)
            if client_factory
            else None
        )
        current = self.settings.config
        self.server = ScoringServer(
            self.detector,
            host=options.http_host,
            port=options.http_port,
            max_upload_bytes=current.max_upload_bytes,
            max_image_pixels=current.max_image_pixels,
            score_threshold=lambda: self.settings.config.score_threshold,
            health=self._health,
            token=options.score_token or self._generated_token(),
            metrics=self._metrics,
        )
        self._threads: list[threading.Thread] = []

    def _generated_token(self) -> str:
        """The token kept in ``QUEUE_DIR/score-token``, made at the first start."""
        path = self.options.queue_dir / TOKEN_FILE
        try:
            token = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            token = ""
        if len(token) < 16:
            token = secrets.token_urlsafe(32)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(token + "\n")
            logger.info("POST /score token generated and kept in %s (set SCORE_TOKEN)", path)
        return token

    def _fatal(self, name: str) -> None:
        """A worker thread died: stop with exit status 1 (the restart policy recovers)."""
        self.dead_workers.append(name)
        self.exit_code = 1
        logger.error("worker %s died: stopping the module with exit status 1", name)
        self.stop_event.set()

    def _apply_desired(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        _applied, rejected = self.settings.apply(desired)
        reported: dict[str, Any] = {"settings": self.settings.live_values()}
        reported["rejected"] = rejected or None
        reported["modelVersion"] = self.detector.model_version
        return reported

    def problems(self) -> list[str]:
        """What makes the module degraded now (empty when healthy)."""
        found = [f"worker {name} died" for name in self.dead_workers]
        for thread in self._threads:
            if not thread.is_alive() and not self.stop_event.is_set():
                found.append(f"worker {thread.name} stopped")
        if self.link is not None and self._threads and not self.link.threads_alive():
            found.append("hub link threads stopped")
        last = self.stats.last_frame
        if self.source is not None and self._threads:
            since = time.monotonic() - (last if last is not None else self._started)
            if since > self._stale_frames_s:
                found.append(f"no frame scored for {since:.0f} s")
        with self._pending_lock:
            pending = len(self._pending)
        if self.outbox.write_error is not None or pending:
            found.append(
                f"outbox cannot write ({self.outbox.write_error}); {pending} alerts wait in memory"
            )
        if self.link is not None:
            link = self.link.health()
            if link["error"] is not None or link["connected"] is False:
                found.append(f"hub link down ({link['error'] or 'disconnected'})")
        return found

    def _health(self) -> dict[str, Any]:
        depth = self.outbox.depth()
        problems = self.problems()
        with self._pending_lock:
            pending = len(self._pending)
        return {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "queue_depth": depth["total"],
            "queue": depth,
            "pending_alerts": pending,
            "settings": self.settings.live_values(),
            "camera_id": self.options.camera_id,
            "frames_scored": self.stats.total_frames,
            "alerts_raised": self.stats.total_alerts,
            "hub": self.link.health() if self.link else None,
        }

    def _metrics(self) -> str:
        """Module gauges and counters in the Prometheus text format."""
        depth = self.outbox.depth()
        sent = self.link.sent if self.link else {"alert": 0, "telemetry": 0}
        labels = {"camera": self.options.camera_id}
        camera = ",".join(f'{key}="{value}"' for key, value in labels.items())
        lines = [
            "# HELP ppe_frames_total Frames scored from the camera.",
            "# TYPE ppe_frames_total counter",
            f"ppe_frames_total{{{camera}}} {self.stats.total_frames}",
            "# HELP ppe_frames_per_second Frames scored per second over the last 10 s.",
            "# TYPE ppe_frames_per_second gauge",
            f"ppe_frames_per_second{{{camera}}} {self.stats.recent_fps():.3f}",
            "# HELP ppe_frame_latency_seconds Time to score a camera frame.",
            "# TYPE ppe_frame_latency_seconds summary",
            f"ppe_frame_latency_seconds_sum{{{camera}}} {self.stats.latency_sum_s:.6f}",
            f"ppe_frame_latency_seconds_count{{{camera}}} {self.stats.total_frames}",
            "# HELP ppe_alerts_total No-helmet alerts raised.",
            "# TYPE ppe_alerts_total counter",
            f"ppe_alerts_total{{{camera}}} {self.stats.total_alerts}",
            "# HELP ppe_queue_messages Messages waiting in the outbox.",
            "# TYPE ppe_queue_messages gauge",
            *(
                f'ppe_queue_messages{{kind="{kind}"}} {depth[kind]}'
                for kind in ("alert", "telemetry")
            ),
            "# HELP ppe_queue_dead_messages Messages moved to the dead-letter table.",
            "# TYPE ppe_queue_dead_messages gauge",
            f"ppe_queue_dead_messages {depth['dead']}",
            "# HELP ppe_messages_sent_total Messages the hub acknowledged.",
            "# TYPE ppe_messages_sent_total counter",
            *(f'ppe_messages_sent_total{{kind="{kind}"}} {count}' for kind, count in sent.items()),
            "# HELP ppe_healthy 1 when /healthz reports ok.",
            "# TYPE ppe_healthy gauge",
            f"ppe_healthy {0 if self.problems() else 1}",
        ]
        return "\n".join(lines) + "\n"

    def _enqueue(self, kind: str, message_id: str, document: Mapping[str, Any]) -> None:
        body = json.dumps(document, allow_nan=False).encode("utf-8")
        if kind == "alert":
            with self._pending_lock:
                if len(self._pending) >= MAX_PENDING_ALERTS:
                    dropped, _ = self._pending.popleft()
                    logger.error("outbox unwritable too long: alert %s dropped", dropped)
                self._pending.append((message_id, body))
            self._flush_pending()
        else:
            try:
                self.outbox.put("telemetry", message_id, body)
            except OutboxWriteError as error:
                logger.warning("telemetry %s dropped: %s", message_id, error)
        if self.link:
            self.link.wake()

    def _flush_pending(self) -> None:
        """Store waiting alerts in order; stop at the first refused write (tried again later)."""
        with self._pending_lock:
            while self._pending:
                message_id, body = self._pending[0]
                try:
                    self.outbox.put("alert", message_id, body)
                except OutboxWriteError as error:
                    if len(self._pending) == 1:  # log once per outage, not per alert
                        logger.error("alert %s waits in memory: %s", message_id, error)
                    return
                self._pending.popleft()

    def _frame_loop(self) -> None:
        if self.source is None:
            return
        camera = self.options.camera_id
        # Errors end the loop: the supervisor stops the module (see _start_thread).
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

    def _housekeeping_loop(self) -> None:
        last = time.monotonic()
        while not self.stop_event.wait(TICK_S):
            self._flush_pending()
            if self.link is None:
                continue
            # Re-read the interval on every tick: the twin may change it at any time.
            if time.monotonic() < last + self.settings.config.telemetry_interval_s:
                continue
            last = time.monotonic()
            message = self.telemetry()
            self._enqueue("telemetry", message["messageId"], message)
            logger.debug("telemetry queued: %s", message)

    def start(self) -> None:
        """Start serving HTTP, the hub link, the frame loop and housekeeping."""
        self._started = time.monotonic()
        self.server.start()
        if self.link:
            self.link.start()
        self._start_thread("housekeeping", self._housekeeping_loop)
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
        def supervised() -> None:
            try:
                target()
            except Exception:
                logger.exception("worker %s failed", name)
                self._fatal(name)

        thread = threading.Thread(target=supervised, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop everything; unsent messages stay in the outbox for the next start."""
        self.stop_event.set()
        for thread in self._threads:
            thread.join(10.0)
        self._flush_pending()
        with self._pending_lock:
            if self._pending:
                logger.error("%d alerts could not be stored and are lost", len(self._pending))
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
        The exit status: 0 after a signal, 1 when a worker thread died.
    """
    module = EdgeModule(options)
    _install_signal_handlers(module.stop_event)
    module.start()
    try:
        module.stop_event.wait()
    finally:
        module.stop()
    return module.exit_code


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
        token=None,  # a local tool on the developer's machine (loopback by default)
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
