"""Exactly one notification per alert id, however often the alert arrives.

IoT Hub routing delivers at least once and edgeHub re-sends after an outage, so one alert can
reach the queue several times, each time as a new queue message. For every message:

1. :func:`~ppe.alerts.records.parse_alert`; a malformed message raises
   :class:`~ppe.alerts.records.MalformedAlertError`, the function fails, and Service Bus moves the
   message to the queue's dead-letter sub-queue after ``max_delivery_count`` attempts (reason
   ``MaxDeliveryCountExceeded``), where it can be inspected; no record is written.
2. Claim the alert's record (:meth:`~ppe.alerts.records.BlobAlertStore.claim`): the first
   delivery creates it and owns it; a later copy finds it ``notified`` (done) or ``received``
   and owned by another live delivery (done: that delivery's message stays on the queue until it
   notifies, so nothing is lost by completing this copy).
3. The owner notifies, then marks the record ``notified`` (conditional on its ETag).

If the webhook fails, the function fails and the owner's message is redelivered: its redelivery
(same sequence number) owns the record again and notifies. If the process dies after the webhook
accepted the notification and before the record is marked, the redelivery notifies a second time:
the only case with two notifications, and both carry the same ``Idempotency-Key`` (the alert id).
The record keeps how many copies arrived (``duplicates``) and when it was notified.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from ppe.alerts.records import Alert, BlobAlertStore, parse_alert

logger = logging.getLogger(__name__)

Outcome = Literal["notified", "duplicate"]


class Notifier(Protocol):
    """Sends one notification; returns the HTTP status or raises NotificationError."""

    def notify(self, alert: Alert) -> int:
        """Notify people about the alert."""
        ...


class AlertConsumer:
    """Handle queued alert messages.

    Args:
        store: The alert records.
        notifier: Who tells people.
        clock: Current UTC time (tests pass a fake clock).
    """

    def __init__(
        self,
        store: BlobAlertStore,
        notifier: Notifier,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._clock = clock

    def handle(
        self,
        body: bytes,
        *,
        message_id: str,
        sequence_number: int,
        properties: Mapping[str, Any],
    ) -> Outcome:
        """Process one queue message.

        Args:
            body: Message body.
            message_id: Queue message id (for logs and errors).
            sequence_number: Queue sequence number (stable across redeliveries of this message).
            properties: Application properties (``alertId``, ``messageType``).

        Returns:
            ``notified`` when this message told people, ``duplicate`` when another copy did or will.

        Raises:
            MalformedAlertError: The message is not an alert (let it dead-letter).
            NotificationError: The webhook failed or the record moved (let it be retried).
        """
        alert = parse_alert(body, message_id, properties)
        claim = self._store.claim(alert, sequence_number, self._clock())
        if not claim.owner:
            logger.info(
                "alert %s: duplicate (record %s, %s copies so far)",
                alert.alert_id,
                claim.state,
                claim.record.get("duplicates"),
            )
            return "duplicate"
        status = self._notifier.notify(alert)
        self._store.mark_notified(claim, status, self._clock())
        return "notified"
