"""Parse an alert message, and keep one record per alert id in Blob Storage.

The record is the de-duplication key and the audit trail at once: a blob named after the alert
id, created with ``If-None-Match: *`` so that exactly one delivery creates it
(https://learn.microsoft.com/azure/storage/blobs/concurrency-manage), then moved from
``received`` to ``notified`` with ``If-Match: <etag>`` so that two consumers never both move it.
Service Bus duplicate detection cannot do this job: queues used as IoT Hub routing endpoints
must not enable it (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-messages-d2c),
and its window is at most 7 days, shorter than a device's store-and-forward re-sends can be.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ppe.errors import MalformedAlertError, NotificationError

logger = logging.getLogger(__name__)

#: The alert type the module sends (``ppe.edge.alerts.build_alert``).
ALERT_TYPE = "no_helmet"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_REQUIRED = ("alertId", "type", "deviceId", "cameraId", "time")
#: Conditional writes one delivery tries before it gives up and lets Service Bus redeliver. Every
#: round of a race lets at least one writer through, so this bounds the concurrent copies of one
#: alert that are handled without a redelivery.
RECORD_WRITE_ATTEMPTS = 20

State = Literal["received", "notified"]


@dataclass(frozen=True)
class Alert:
    """One alert, as the module sent it.

    Attributes:
        alert_id: The module's ``alertId`` (a UUID), the de-duplication key.
        device_id: IoT Edge device that raised it.
        camera_id: Camera of the frame.
        time: UTC time of the frame, ISO 8601.
        body: The whole JSON body.
    """

    alert_id: str
    device_id: str
    camera_id: str
    time: str
    body: dict[str, Any]


def parse_alert(body: bytes, message_id: str, properties: Mapping[str, Any]) -> Alert:
    """Check and parse one queued alert message.

    Args:
        body: The message body (the module sends UTF-8 JSON).
        message_id: The queue message's id (for error messages).
        properties: Its application properties; ``alertId`` there must match the body's.

    Returns:
        The alert.

    Raises:
        MalformedAlertError: Not UTF-8 JSON, a field missing or of the wrong type, an alert id
            that is not a UUID, or a property ``alertId`` that differs from the body's.
    """
    where = f"alert message {message_id!r}"
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedAlertError(
            f"{where}: the body is not UTF-8 JSON ({error}); the ppedetector module sends "
            "content type application/json, encoding utf-8 (src/ppe/edge/iothub.py)"
        ) from None
    if not isinstance(data, dict):
        raise MalformedAlertError(f"{where}: the body is JSON but not an object")
    missing = [key for key in _REQUIRED if not isinstance(data.get(key), str) or not data[key]]
    if missing:
        raise MalformedAlertError(
            f"{where}: field(s) {', '.join(missing)} missing or not a non-empty string; "
            "see ppe.edge.alerts.build_alert for the alert body"
        )
    if data["type"] != ALERT_TYPE:
        raise MalformedAlertError(f"{where}: type {data['type']!r} is not {ALERT_TYPE!r}")
    if not _UUID.match(data["alertId"]):
        raise MalformedAlertError(f"{where}: alertId {data['alertId']!r} is not a UUID")
    stated = properties.get("alertId")
    if stated is not None and stated != data["alertId"]:
        raise MalformedAlertError(
            f"{where}: application property alertId {stated!r} differs from the body's "
            f"{data['alertId']!r}"
        )
    return Alert(
        alert_id=data["alertId"],
        device_id=data["deviceId"],
        camera_id=data["cameraId"],
        time=data["time"],
        body=data,
    )


@dataclass(frozen=True)
class Claim:
    """What :meth:`BlobAlertStore.claim` found or made.

    Attributes:
        owner: This delivery must notify (it created the record, or took over one whose owner is
            gone, or it is the owner's own redelivery).
        state: The record's state after the claim.
        etag: The record's ETag, for the conditional update that marks it notified.
        record: The record's content.
    """

    owner: bool
    state: State
    etag: str
    record: dict[str, Any]


class BlobAlertStore:
    """Alert records as JSON blobs ``<prefix><alert id>.json`` in one container.

    Args:
        container: An ``azure.storage.blob.ContainerClient`` (the container must exist).
        claim_timeout_s: After this long a ``received`` record whose owner has not marked it
            notified may be taken over by another delivery of the same alert (the owner is
            presumed dead). Keep it above the function timeout plus the queue's lock duration.
        prefix: Folder of the records in the container.
    """

    def __init__(self, container: Any, *, claim_timeout_s: float = 600.0, prefix: str = "alerts/"):
        self._container = container
        self._claim_timeout_s = claim_timeout_s
        self._prefix = prefix

    def _blob(self, alert_id: str) -> Any:
        return self._container.get_blob_client(f"{self._prefix}{alert_id}.json")

    def claim(self, alert: Alert, sequence_number: int, now: datetime) -> Claim:
        """Create the alert's record, or tell who owns the existing one.

        Args:
            alert: The parsed alert.
            sequence_number: The queue's sequence number of this message (the same on every
                redelivery of one message, different for each re-send by the device).
            now: Current UTC time.

        Returns:
            The claim; ``owner`` says whether this delivery must notify.
        """
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

        blob = self._blob(alert.alert_id)
        stamp = now.isoformat()
        record = {
            "alertId": alert.alert_id,
            "state": "received",
            "receivedAt": stamp,
            "claimedAt": stamp,
            "claimSequenceNumber": sequence_number,
            "duplicates": 0,
            "alert": alert.body,
        }
        try:
            result = blob.upload_blob(
                json.dumps(record).encode("utf-8"),
                overwrite=False,
                metadata={"state": "received"},
            )
            logger.info("alert %s: record created (received)", alert.alert_id)
            return Claim(owner=True, state="received", etag=result["etag"], record=record)
        except ResourceExistsError:
            pass
        for _ in range(RECORD_WRITE_ATTEMPTS):  # copies race on the ETag; each retry re-reads
            download = blob.download_blob()
            existing = json.loads(download.readall())
            etag = download.properties.etag
            existing["duplicates"] = int(existing.get("duplicates", 0)) + 1
            owner = False
            if existing["state"] == "received":
                claimed = datetime.fromisoformat(existing["claimedAt"])
                redelivery = existing.get("claimSequenceNumber") == sequence_number
                stale = (now - claimed).total_seconds() >= self._claim_timeout_s
                if redelivery or stale:
                    owner = True
                    existing["claimedAt"] = stamp
                    existing["claimSequenceNumber"] = sequence_number
                    existing["duplicates"] -= 1 if redelivery else 0
            try:
                result = blob.upload_blob(
                    json.dumps(existing).encode("utf-8"),
                    overwrite=True,
                    metadata={"state": existing["state"]},
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceModifiedError:
                continue
            return Claim(owner=owner, state=existing["state"], etag=result["etag"], record=existing)
        raise NotificationError(
            f"alert {alert.alert_id}: its record kept changing under {RECORD_WRITE_ATTEMPTS} "
            "attempts; retrying"
        )

    def mark_notified(self, claim: Claim, status: int, now: datetime) -> None:
        """Move an owned record to ``notified``, unless another delivery took it over.

        Copies of the alert that arrive meanwhile only count themselves in ``duplicates`` (which
        changes the ETag); the record is re-read and marked as long as it still carries this
        claim (same ``claimedAt`` and ``claimSequenceNumber``, state ``received``).

        Args:
            claim: The owner's claim.
            status: HTTP status the webhook answered.
            now: Current UTC time.

        Raises:
            NotificationError: Another owner took the record over since the claim.
        """
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError

        alert_id = claim.record["alertId"]
        blob = self._blob(alert_id)
        record, etag = dict(claim.record), claim.etag
        for _ in range(RECORD_WRITE_ATTEMPTS):
            record.update(state="notified", notifiedAt=now.isoformat(), webhookStatus=status)
            try:
                blob.upload_blob(
                    json.dumps(record).encode("utf-8"),
                    overwrite=True,
                    metadata={"state": "notified"},
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceModifiedError:
                download = blob.download_blob()
                record, etag = json.loads(download.readall()), download.properties.etag
                still_ours = record.get("state") == "received" and all(
                    record.get(key) == claim.record[key]
                    for key in ("claimedAt", "claimSequenceNumber")
                )
                if not still_ours:
                    raise NotificationError(
                        f"alert {alert_id}: another delivery took the record over after this "
                        "claim; not marking it"
                    ) from None
                continue
            logger.info("alert %s: record marked notified", alert_id)
            return
        raise NotificationError(
            f"alert {alert_id}: its record kept changing under {RECORD_WRITE_ATTEMPTS} attempts; "
            "retrying"
        )

    def record(self, alert_id: str) -> dict[str, Any]:
        """The stored record of an alert (for audits and tests)."""
        return dict(json.loads(self._blob(alert_id).download_blob().readall()))

    def alert_ids(self) -> list[str]:
        """Ids of every recorded alert."""
        names = self._container.list_blobs(name_starts_with=self._prefix)
        return sorted(b.name[len(self._prefix) : -len(".json")] for b in names)
