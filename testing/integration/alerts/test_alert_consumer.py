"""Every alert reaches people exactly once: the consumer against Azurite (the real Blob storage
protocol, conditional writes included) and a real HTTP webhook receiver on 127.0.0.1.

The queue side is the Functions host's Service Bus trigger, which does not run offline; messages
are handed to the consumer as the trigger would (body, message id, sequence number, application
properties), through the real ``azure.functions.ServiceBusMessage`` in the function app test.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.storage.blob import ContainerClient

from ppe.alerts.consumer import AlertConsumer
from ppe.alerts.notify import WebhookNotifier, check_webhook_url
from ppe.alerts.records import BlobAlertStore
from ppe.errors import ConfigError, MalformedAlertError, NotificationError

from .conftest import Webhook


class Clock:
    """A settable UTC clock."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def alert_body(alert_id: str | None = None, device: str = "site1-gw", **extra: Any) -> bytes:
    """An alert as ppe.edge.alerts.build_alert writes it."""
    body = {
        "alertId": alert_id or str(uuid.uuid4()),
        "type": "no_helmet",
        "deviceId": device,
        "moduleId": "ppedetector",
        "cameraId": "site1-cam1",
        "time": "2026-12-01T11:59:58.120Z",
        "modelVersion": "7",
        "frameId": 412,
        "scoreThreshold": 0.4,
        "window": {"positive": 3, "frames": 5},
        "image": {"width": 1280, "height": 720},
        "heads": [{"box": [10.0, 20.0, 50.0, 70.0], "score": 0.91}],
        "counts": {"helmet": 1, "head": 1},
        **extra,
    }
    return json.dumps(body).encode("utf-8")


def _consumer(records: ContainerClient, webhook: Webhook, clock: Clock) -> AlertConsumer:
    return AlertConsumer(
        BlobAlertStore(records, claim_timeout_s=600), WebhookNotifier(webhook.url), clock
    )


def _deliver(consumer: AlertConsumer, body: bytes, sequence: int) -> str:
    alert_id = json.loads(body)["alertId"]
    return consumer.handle(
        body,
        message_id=alert_id,  # the module sets the message id to the alert id
        sequence_number=sequence,
        properties={"alertId": alert_id, "messageType": "alert"},
    )


def test_same_alert_three_times_and_another_once_make_two_notifications_and_two_records(
    records: ContainerClient, webhook: Webhook
) -> None:
    clock = Clock()
    consumer = _consumer(records, webhook, clock)
    first, second = alert_body(), alert_body(device="site2-gw")
    outcomes = [_deliver(consumer, first, 1), _deliver(consumer, first, 2)]
    outcomes += [_deliver(consumer, second, 3), _deliver(consumer, first, 4)]
    assert outcomes == ["notified", "duplicate", "notified", "duplicate"]
    assert len(webhook.received) == 2
    ids = [json.loads(first)["alertId"], json.loads(second)["alertId"]]
    assert [r["key"] for r in webhook.received] == ids
    assert [r["body"]["alert"]["alertId"] for r in webhook.received] == ids
    assert "No helmet" in webhook.received[0]["body"]["text"]
    store = BlobAlertStore(records)
    assert store.alert_ids() == sorted(ids)
    record = store.record(ids[0])
    assert record["state"] == "notified" and record["duplicates"] == 2
    assert record["webhookStatus"] == 200 and record["alert"] == json.loads(first)
    assert store.record(ids[1])["duplicates"] == 0


def test_concurrent_copies_of_one_alert_notify_once(
    records: ContainerClient, webhook: Webhook
) -> None:
    """Two function instances take two copies at the same moment: the conditional create
    (If-None-Match: *) lets exactly one of them own the record."""
    consumer = _consumer(records, webhook, Clock())
    body = alert_body()
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def deliver(sequence: int) -> None:
        barrier.wait()
        outcomes.append(_deliver(consumer, body, sequence))

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["duplicate", "duplicate", "duplicate", "notified"]
    assert len(webhook.received) == 1
    assert BlobAlertStore(records).record(json.loads(body)["alertId"])["duplicates"] == 3


def test_a_failed_webhook_is_retried_by_redelivery_and_still_notifies_once(
    records: ContainerClient, webhook: Webhook
) -> None:
    consumer = _consumer(records, webhook, Clock())
    body = alert_body()
    webhook.fail_next = 1
    with pytest.raises(NotificationError, match="HTTP 500"):
        _deliver(consumer, body, 7)
    # A re-send by the device arrives while the first message waits for its redelivery: the
    # record is owned by message 7, so this copy is completed without notifying.
    assert _deliver(consumer, body, 8) == "duplicate"
    assert webhook.received == []
    # Service Bus redelivers message 7 (same sequence number): it owns the record and notifies.
    assert _deliver(consumer, body, 7) == "notified"
    assert len(webhook.received) == 1
    assert BlobAlertStore(records).record(json.loads(body)["alertId"])["state"] == "notified"


def test_a_dead_owner_is_taken_over_after_the_claim_timeout(
    records: ContainerClient, webhook: Webhook
) -> None:
    """The owner's message dead-lettered or its function died for good: a later copy of the alert
    takes the record over once the claim is older than the claim timeout."""
    clock = Clock()
    consumer = _consumer(records, webhook, clock)
    body = alert_body()
    alert_id = json.loads(body)["alertId"]
    store = BlobAlertStore(records, claim_timeout_s=600)
    from ppe.alerts.records import parse_alert

    store.claim(parse_alert(body, alert_id, {}), 1, clock())  # the owner, which then dies
    clock.now += timedelta(seconds=599)
    assert _deliver(consumer, body, 2) == "duplicate"
    clock.now += timedelta(seconds=2)
    assert _deliver(consumer, body, 3) == "notified"
    assert len(webhook.received) == 1


def test_a_crash_between_notify_and_mark_notifies_again_with_the_same_key(
    records: ContainerClient, webhook: Webhook
) -> None:
    """The documented limit: the webhook accepted, then the process died before the record was
    marked. The redelivery cannot know the webhook got it and sends it again, with the same
    Idempotency-Key, so a de-duplicating receiver can drop it."""
    clock = Clock()
    body = alert_body()
    alert_id = json.loads(body)["alertId"]
    store = BlobAlertStore(records)
    from ppe.alerts.records import parse_alert

    alert = parse_alert(body, alert_id, {})
    store.claim(alert, 5, clock())
    WebhookNotifier(webhook.url).notify(alert)  # ...and the process dies here
    assert _deliver(_consumer(records, webhook, clock), body, 5) == "notified"
    assert [r["key"] for r in webhook.received] == [alert_id, alert_id]
    assert store.record(alert_id)["state"] == "notified"


@pytest.mark.parametrize(
    ("body", "properties", "message"),
    [
        (b"\xff\xfe not json", {}, "the body is not UTF-8 JSON"),
        (b"[1, 2]", {}, "the body is JSON but not an object"),
        (json.dumps({"type": "no_helmet"}).encode(), {}, "alertId, deviceId, cameraId, time"),
        (alert_body(alert_id="42"), {}, "alertId '42' is not a UUID"),
        (alert_body(type="helmet_ok"), {}, "type 'helmet_ok' is not 'no_helmet'"),
        (alert_body(), {"alertId": str(uuid.uuid4())}, "differs from the body's"),
    ],
)
def test_a_malformed_message_is_refused_with_its_reason_and_leaves_no_record(
    records: ContainerClient, webhook: Webhook, body: bytes, properties: dict[str, str],
    message: str,
) -> None:  # fmt: skip
    consumer = _consumer(records, webhook, Clock())
    with pytest.raises(MalformedAlertError, match="alert message 'msg-1'") as error:
        consumer.handle(body, message_id="msg-1", sequence_number=1, properties=properties)
    assert message in str(error.value)
    assert BlobAlertStore(records).alert_ids() == []
    assert webhook.received == []


def test_the_webhook_must_be_https_except_on_this_machine() -> None:
    assert check_webhook_url("https://example.webhook.office.com/x")
    assert check_webhook_url("http://127.0.0.1:8080/hook")
    for bad in ("http://hooks.example.com/x", "ftp://example.com/x", "hooks.example.com"):
        with pytest.raises(ConfigError, match="https://"):
            check_webhook_url(bad)


def test_a_duplicate_during_the_owners_webhook_call_does_not_cause_a_second_notification(
    records: ContainerClient,
) -> None:
    """A re-send that arrives while the owner calls the webhook bumps the record's duplicate
    count (a new ETag). The owner must still mark the record notified; refusing would make
    Service Bus redeliver the owner's message, which owns the record and would notify again."""
    from ppe.alerts.records import parse_alert

    store = BlobAlertStore(records, claim_timeout_s=600)
    clock = Clock()
    body = alert_body()
    alert_id = json.loads(body)["alertId"]
    alert = parse_alert(body, alert_id, {})
    owner = store.claim(alert, 1, clock())
    assert owner.owner
    assert not store.claim(alert, 2, clock()).owner  # the device's re-send, mid-notification
    store.mark_notified(owner, 200, clock())
    record = store.record(alert_id)
    assert (record["state"], record["duplicates"]) == ("notified", 1)
    # The owner's message is completed now; were it redelivered, it would not own the record.
    assert not store.claim(alert, 1, clock()).owner
