from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from azure.iot.device import Message

from ppe.edge.iothub import HubLink
from ppe.edge.queue import DurableQueue
from ppe.errors import OutboxWriteError


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


class FakeClient:
    """Records sends; fails the first `failures` sends like a disconnected SDK client."""

    def __init__(self, failures: int = 0, twin: dict[str, Any] | None = None) -> None:
        self.failures = failures
        self.sent: list[tuple[Message, str]] = []
        self.reported: list[dict[str, Any]] = []
        self.twin = twin or {"desired": {"$version": 1}, "reported": {}}
        self.on_twin_desired_properties_patch_received: Any = None
        self.lock = threading.Lock()
        self.attempt_times: list[float] = []
        self.closed = False

    def connect(self) -> None:
        pass

    def send_message_to_output(self, message: Message, output_name: str) -> None:
        with self.lock:
            self.attempt_times.append(time.monotonic())
            if self.failures > 0:
                self.failures -= 1
                raise ConnectionError("no connection to the hub")
            self.sent.append((message, output_name))

    def get_twin(self) -> dict[str, Any]:
        return self.twin

    def patch_twin_reported_properties(self, reported_properties_patch: dict[str, Any]) -> None:
        self.reported.append(reported_properties_patch)

    def shutdown(self) -> None:
        self.closed = True


def applied_recorder() -> tuple[
    list[dict[str, Any]], Callable[[Mapping[str, Any]], Mapping[str, Any]]
]:
    seen: list[dict[str, Any]] = []

    def on_desired(desired: Mapping[str, Any]) -> Mapping[str, Any]:
        seen.append(dict(desired))
        return {"settings": {"score_threshold": desired.get("score_threshold")}}

    return seen, on_desired


def test_messages_go_to_their_outputs_with_properties(tmp_path: Path) -> None:
    outbox = DurableQueue(tmp_path)
    outbox.put("telemetry", "t-1", b'{"frames": 3}')
    outbox.put("alert", "a-1", json.dumps({"alertId": "a-1"}).encode())
    client = FakeClient()
    _, on_desired = applied_recorder()
    link = HubLink(client, outbox, on_desired)
    link.start()
    try:
        assert wait_for(lambda: len(client.sent) == 2)
        assert wait_for(lambda: outbox.depth()["total"] == 0)
    finally:
        link.stop()
    (alert, alert_output), (telemetry, telemetry_output) = client.sent
    assert (alert_output, telemetry_output) == ("alerts", "telemetry")
    assert alert.custom_properties == {"alertId": "a-1", "messageType": "alert"}
    assert alert.message_id == "a-1"
    assert alert.content_type == "application/json" and alert.content_encoding == "utf-8"
    assert json.loads(alert.data) == {"alertId": "a-1"}
    assert telemetry.custom_properties == {"messageType": "telemetry"}
    assert link.sent == {"alert": 1, "telemetry": 1} and client.closed


def test_failed_sends_stay_queued_and_back_off(tmp_path: Path) -> None:
    outbox = DurableQueue(tmp_path)
    outbox.put("alert", "a-1", b"{}")
    client = FakeClient(failures=3)
    _, on_desired = applied_recorder()
    link = HubLink(client, outbox, on_desired, initial_backoff_s=0.05, max_backoff_s=0.2)
    link.start()
    try:
        assert wait_for(lambda: len(client.attempt_times) >= 2)
        assert outbox.depth()["alert"] == 1  # not acknowledged: still queued
        assert wait_for(lambda: len(client.sent) == 1)
        assert wait_for(lambda: outbox.depth()["total"] == 0)
    finally:
        link.stop()
    gaps = [b - a for a, b in zip(client.attempt_times, client.attempt_times[1:], strict=False)]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095 and gaps[2] >= 0.19  # doubling back-off
    assert link.send_failures == 3


def test_twin_is_read_at_start_and_patches_are_applied_and_reported(tmp_path: Path) -> None:
    client = FakeClient(twin={"desired": {"score_threshold": 0.6, "$version": 4}, "reported": {}})
    seen, on_desired = applied_recorder()
    link = HubLink(client, DurableQueue(tmp_path), on_desired)
    link.start()
    try:
        assert link.twin_ready.wait(10)
        assert seen[0]["score_threshold"] == 0.6
        handler = client.on_twin_desired_properties_patch_received
        assert callable(handler)
        handler({"score_threshold": 0.8, "$version": 5})
        assert wait_for(
            lambda: any(r["settings"]["score_threshold"] == 0.8 for r in client.reported)
        )
    finally:
        link.stop()
    assert seen[-1] == {"score_threshold": 0.8, "$version": 5}


class RefusingClient(FakeClient):
    """Refuses one message id with the SDK's own size check; a real SDK Message is built."""

    def send_message_to_output(self, message: Message, output_name: str) -> None:
        if message.get_size() > 256 * 1024:
            # What IoTHubModuleClient.send_message_to_output raises for a message over 256 KB.
            raise ValueError("Size of message can not exceed 256 KB.")
        if message.message_id == "poison":
            raise RuntimeError("the hub refused this message")
        super().send_message_to_output(message, output_name)


def test_a_message_that_can_never_be_sent_does_not_block_the_queue(tmp_path: Path) -> None:
    # Before, a message over 256 KB was retried forever and every alert behind it waited.
    outbox = DurableQueue(tmp_path, max_attempts=3)
    outbox.put("alert", "huge", json.dumps({"x": "y" * 300_000}).encode())
    outbox.put("alert", "poison", b"{}")
    outbox.put("alert", "good", b"{}")
    client = RefusingClient()
    _, on_desired = applied_recorder()
    link = HubLink(client, outbox, on_desired, initial_backoff_s=0.01, max_backoff_s=0.02)
    link.start()
    try:
        assert wait_for(lambda: [m.message_id for m, _ in client.sent] == ["good"])
        assert wait_for(lambda: outbox.depth()["dead"] == 2)
    finally:
        link.stop()
    dead = {message_id: attempts for message_id, _, attempts in outbox.dead_letters()}
    assert dead == {"huge": 0, "poison": 3}  # too big: moved at once; refused: after 3 tries


def test_an_outage_never_moves_messages_aside(tmp_path: Path) -> None:
    # Connection failures are the link's fault, not the message's: no attempts are spent.
    outbox = DurableQueue(tmp_path, max_attempts=2)
    outbox.put("alert", "a-1", b"{}")
    client = FakeClient(failures=6)
    _, on_desired = applied_recorder()
    link = HubLink(client, outbox, on_desired, initial_backoff_s=0.01, max_backoff_s=0.02)
    link.start()
    try:
        assert wait_for(lambda: len(client.attempt_times) >= 3)
        assert link.health()["error"] is not None
        assert wait_for(lambda: len(client.sent) == 1)
        assert wait_for(lambda: link.health()["error"] is None)
    finally:
        link.stop()
    assert outbox.depth()["dead"] == 0


def test_the_sender_survives_a_full_disk(tmp_path: Path) -> None:
    outbox = DurableQueue(tmp_path)
    outbox.put("alert", "a-1", b"{}")
    original_ack = outbox.ack
    failures = {"left": 2}

    def failing_ack(seq: int) -> None:
        # A stand-in: in WAL mode a DELETE fails only when the WAL cannot grow on a really full
        # filesystem (the container test fills one); here the queue's own error is raised.
        if failures["left"]:
            failures["left"] -= 1
            raise OutboxWriteError("outbox: acknowledging failed: database or disk is full")
        original_ack(seq)

    outbox.ack = failing_ack  # type: ignore[method-assign]
    client = FakeClient()
    _, on_desired = applied_recorder()
    dead: list[str] = []
    link = HubLink(
        client, outbox, on_desired, initial_backoff_s=0.01, max_backoff_s=0.02, on_fatal=dead.append
    )
    link.start()
    try:
        assert wait_for(lambda: outbox.depth()["total"] == 0)
        assert link.threads_alive() and not dead
    finally:
        link.stop()
    assert len(client.sent) >= 1  # sent again after the failed acknowledgement (at least once)
