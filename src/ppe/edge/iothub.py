"""The module's link to the IoT Edge hub: drain the outbox to module outputs, and follow the twin.

Built on the synchronous ``azure.iot.device.IoTHubModuleClient`` (MQTT). Three threads:

* the *sender* reads the oldest queued messages (alerts first), sends each with
  ``send_message_to_output`` to the output named by its kind (``alerts`` or ``telemetry``), and
  deletes it from the outbox only when the call returns, which the SDK does after the broker's
  PUBACK. Any failure leaves the message queued and the sender waits with exponential back-off
  (``initial_backoff_s`` doubling up to ``max_backoff_s``) before trying again. A failure of the
  link (connection refused or dropped, time-out) costs the message nothing; any other failure
  counts one attempt, and the outbox moves a message aside after its ``max_attempts``. A message
  the SDK refuses outright (``ValueError``: over IoT Hub's 256 KB) is moved aside at once, so
  nothing blocks the messages behind it. An outbox that cannot be written (a full disk) stops
  nothing: the sender waits and tries again;
* the *twin* thread connects, registers the desired-properties patch handler, reads the full twin
  once and applies its desired properties, retrying with the same back-off until it succeeds;
* the *reporter* writes the settings in force back as reported properties after every change.

Messages carry content type ``application/json``, encoding ``utf-8``, the message id, the custom
property ``messageType`` (``alert`` or ``telemetry``: IoT Hub routes on it) and, on alerts,
``alertId``.
"""

from __future__ import annotations

import json
import logging
import queue as stdlib_queue
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ppe.edge.queue import DurableQueue, QueuedMessage
from ppe.errors import OutboxWriteError

logger = logging.getLogger(__name__)

#: Module output of each message kind.
OUTPUTS: dict[str, str] = {"alert": "alerts", "telemetry": "telemetry"}


def link_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the link to the hub failed, not the message."""
    from azure.iot.device import exceptions as sdk

    return (
        sdk.ConnectionFailedError,
        sdk.ConnectionDroppedError,
        sdk.NoConnectionError,
        sdk.CredentialError,
        sdk.OperationTimeout,
        sdk.OperationCancelled,
        ConnectionError,
        TimeoutError,
    )


class ModuleClient(Protocol):
    """The part of ``IoTHubModuleClient`` the link uses."""

    on_twin_desired_properties_patch_received: Any

    def connect(self) -> None:
        """Connect to the hub."""
        ...

    def send_message_to_output(self, message: Any, output_name: str) -> None:
        """Send one message to a module output; returns once acknowledged."""
        ...

    def get_twin(self) -> dict[str, Any]:
        """The whole module twin."""
        ...

    def patch_twin_reported_properties(self, reported_properties_patch: dict[str, Any]) -> None:
        """Update reported properties."""
        ...

    def shutdown(self) -> None:
        """Disconnect and release the client for good."""
        ...


def build_message(item: QueuedMessage) -> Any:
    """An SDK ``Message`` for a queued item (JSON, UTF-8, id and custom properties set)."""
    from azure.iot.device import Message

    message = Message(  # type: ignore[no-untyped-call]
        item.body.decode("utf-8"),
        message_id=item.message_id,
        content_encoding="utf-8",
        content_type="application/json",
    )
    # IoT Hub routes on messageType (infrastructure/modules/alerts, azurerm_iothub_route).
    message.custom_properties["messageType"] = item.kind
    if item.kind == "alert":
        message.custom_properties["alertId"] = item.message_id
    return message


class HubLink:
    """Sender, twin follower and reporter around one module client.

    Args:
        client: the module client (``IoTHubModuleClient.create_from_edge_environment()``).
        outbox: the durable queue to drain.
        on_desired: called with desired properties (a patch, or the full ``desired`` document
            at start-up); returns the live settings to report back.
        initial_backoff_s: first wait after a failed send or connect.
        max_backoff_s: longest wait.
        on_fatal: called with a thread's name if one of the link's threads dies on an
            unexpected error (the module then exits so that its restart policy recovers it).
    """

    def __init__(
        self,
        client: ModuleClient,
        outbox: DurableQueue,
        on_desired: Callable[[Mapping[str, Any]], Mapping[str, Any]],
        *,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self._client = client
        self._on_fatal = on_fatal
        self._outbox = outbox
        self._on_desired = on_desired
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max_backoff_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._reports: stdlib_queue.Queue[Mapping[str, Any]] = stdlib_queue.Queue()
        self._threads: list[threading.Thread] = []
        self.sent = {"alert": 0, "telemetry": 0}
        self.send_failures = 0
        self.twin_ready = threading.Event()
        #: The last send failure while it lasts (None once a send succeeds).
        self.last_error: str | None = None
        self._link_errors = link_errors()

    def start(self) -> None:
        """Start the sender, twin and reporter threads."""
        for name, target in (
            ("hub-sender", self._send_loop),
            ("hub-twin", self._twin_loop),
            ("hub-reporter", self._report_loop),
        ):
            thread = threading.Thread(
                target=self._supervised, args=(name, target), name=name, daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _supervised(self, name: str, target: Callable[[], None]) -> None:
        try:
            target()
        except Exception:
            logger.exception("hub link thread %s died", name)
            if self._on_fatal is not None:
                self._on_fatal(name)

    def threads_alive(self) -> bool:
        """True while the sender and reporter run (the twin thread ends once the twin is read)."""
        return all(
            thread.is_alive() for thread in self._threads if thread.name != "hub-twin"
        ) and bool(self._threads)

    def health(self) -> dict[str, Any]:
        """Link state for ``/healthz``.

        ``connected`` (the SDK's view, None if unknown), ``error`` (the last send failure while
        it lasts), ``twin_read``, and the counters.
        """
        connected = getattr(self._client, "connected", None)
        return {
            "connected": connected if isinstance(connected, bool) else None,
            "error": self.last_error,
            "twin_read": self.twin_ready.is_set(),
            "sent": dict(self.sent),
            "send_failures": self.send_failures,
        }

    def wake(self) -> None:
        """Tell the sender a message was queued."""
        self._wake.set()

    def drain(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the outbox to empty; True if it did."""
        deadline = threading.Event()
        waited = 0.0
        while waited < timeout_s:
            if self._outbox.depth()["total"] == 0:
                return True
            self.wake()
            deadline.wait(0.1)
            waited += 0.1
        return self._outbox.depth()["total"] == 0

    def stop(self, join_timeout_s: float = 5.0) -> None:
        """Stop the threads and shut the client down (pending sends are cancelled)."""
        self._stop.set()
        self._wake.set()
        self._reports.put({})
        try:
            self._client.shutdown()
        except Exception as error:  # the SDK raises various errors when already disconnected
            logger.debug("client shutdown: %s", error)
        for thread in self._threads:
            thread.join(join_timeout_s)

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; False when stopping."""
        return not self._stop.wait(seconds)

    def _send_loop(self) -> None:
        backoff = self._initial_backoff_s
        while not self._stop.is_set():
            batch = self._outbox.peek()
            if not batch:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            for item in batch:
                if self._stop.is_set():
                    return
                try:
                    self._send(item)
                except OutboxWriteError as error:
                    logger.error("outbox not writable (%s); retrying in %.1f s", error, backoff)
                except Exception as error:  # SDK errors: ConnectionFailed/Dropped, timeouts...
                    if self._stop.is_set():
                        return
                    self.send_failures += 1
                    self.last_error = f"{type(error).__name__}: {error}"
                    logger.warning(
                        "sending %s %s failed (%s); retrying in %.1f s",
                        item.kind,
                        item.message_id,
                        self.last_error,
                        backoff,
                    )
                    self._count_failure(item, error)
                else:
                    backoff = self._initial_backoff_s
                    continue
                if not self._sleep(backoff):
                    return
                backoff = min(backoff * 2.0, self._max_backoff_s)
                break

    def _send(self, item: QueuedMessage) -> None:
        try:
            message = build_message(item)
            self._client.send_message_to_output(message, OUTPUTS[item.kind])
        except ValueError as error:  # the SDK's size check: this message can never be sent
            self._outbox.move_aside(item.seq, f"ValueError: {error}")
            return
        self.last_error = None
        self.sent[item.kind] += 1
        logger.info("sent %s %s to output %s", item.kind, item.message_id, OUTPUTS[item.kind])
        self._outbox.ack(item.seq)

    def _count_failure(self, item: QueuedMessage, error: Exception) -> None:
        if isinstance(error, self._link_errors):
            return  # the link's fault: the message keeps its attempts
        try:
            self._outbox.record_failure(item.seq, f"{type(error).__name__}: {error}")
        except OutboxWriteError as write_error:
            logger.error("cannot count the failed send: %s", write_error)

    def _twin_loop(self) -> None:
        backoff = self._initial_backoff_s
        while not self._stop.is_set():
            try:
                self._client.connect()
                self._client.on_twin_desired_properties_patch_received = self._on_patch
                twin = self._client.get_twin()
            except Exception as error:
                if self._stop.is_set():
                    return
                logger.warning(
                    "IoT Edge hub not reachable for the twin (%s: %s); retrying in %.1f s",
                    type(error).__name__,
                    error,
                    backoff,
                )
                if not self._sleep(backoff):
                    return
                backoff = min(backoff * 2.0, self._max_backoff_s)
                continue
            desired = twin.get("desired", {}) if isinstance(twin, dict) else {}
            logger.info("module twin read (desired $version %s)", desired.get("$version"))
            self._on_patch(desired)
            self.twin_ready.set()
            return

    def _on_patch(self, patch: Mapping[str, Any]) -> None:
        try:
            reported = self._on_desired(patch)
        except Exception:
            logger.exception("applying desired properties %s failed", json.dumps(patch)[:500])
            return
        self._reports.put(dict(reported))

    def _report_loop(self) -> None:
        while not self._stop.is_set():
            reported = self._reports.get()
            while not self._reports.empty():  # only the newest settings matter
                reported = self._reports.get_nowait()
            if self._stop.is_set():
                return
            backoff = self._initial_backoff_s
            while not self._stop.is_set():
                try:
                    self._client.patch_twin_reported_properties(dict(reported))
                    logger.info("reported settings %s", reported)
                    break
                except Exception as error:
                    logger.warning(
                        "reporting settings failed (%s); retrying in %.1f s", error, backoff
                    )
                    if not self._sleep(backoff):
                        return
                    backoff = min(backoff * 2.0, self._max_backoff_s)
