"""A durable local outbox for alerts and telemetry: SQLite in WAL mode on the module's host volume.

Why SQLite rather than append-only files: every operation the outbox needs (append, read the
oldest, delete one acknowledged message, drop the oldest telemetry when full, count) is one small
transaction, and SQLite makes each atomic and crash-safe. With ``journal_mode=WAL`` and
``synchronous=FULL`` a committed ``put`` survives a killed process and a power cut; with
append-only files we would have to write our own fsync discipline, tombstones for deletions and a
compaction pass. It is in the standard library, so the module image gains no dependency.

Delivery contract (at least once):

* the module :meth:`DurableQueue.put` s a message *before* trying to send it;
* the sender reads the oldest messages with :meth:`DurableQueue.peek` (alerts before telemetry)
  and calls :meth:`DurableQueue.ack` only after the hub acknowledged the message;
* a crash between the hub's acknowledgement and ``ack`` sends the message again after a restart,
  so receivers de-duplicate by the message id (the alert's ``alertId``).

Bounds: at ``max_messages`` queued, the oldest telemetry is dropped to make room (logged as a
warning); alerts are never dropped for telemetry's sake, and only when alerts alone reach the hard
cap ``max_alerts`` is the oldest alert dropped (logged as an error). A telemetry message that
finds the outbox full of alerts is itself dropped.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

Kind = Literal["alert", "telemetry"]
KINDS: tuple[str, ...] = ("alert", "telemetry")
DB_FILE = "outbox.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('alert', 'telemetry')),
    message_id TEXT NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_kind_seq ON outbox (kind, seq);
"""


@dataclass(frozen=True)
class QueuedMessage:
    """One message waiting in the outbox.

    Attributes:
        seq: position in the outbox (increasing).
        kind: ``alert`` or ``telemetry`` (also the module output it goes to).
        message_id: unique id (the alert's ``alertId``), sent as the message id.
        body: UTF-8 JSON.
        created: UNIX time it was queued.
        attempts: failed send attempts so far.
    """

    seq: int
    kind: Kind
    message_id: str
    body: bytes
    created: float
    attempts: int


class DurableQueue:
    """The outbox. Thread-safe within a process; one module process owns a folder at a time.

    Args:
        folder: the queue folder (``QUEUE_DIR``, a host volume); created if missing.
        max_messages: soft bound: beyond it the oldest telemetry is dropped.
        max_alerts: hard cap on queued alerts: beyond it the oldest alert is dropped.

    Raises:
        ValueError: the bounds are not positive or ``max_alerts < max_messages``.
        OSError: the folder cannot be created.
        sqlite3.DatabaseError: the database file is not a database.
    """

    def __init__(
        self, folder: str | Path, *, max_messages: int = 10_000, max_alerts: int = 100_000
    ) -> None:
        if max_messages < 1 or max_alerts < max_messages:
            raise ValueError(
                f"need 1 <= max_messages <= max_alerts, got {max_messages} and {max_alerts}"
            )
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / DB_FILE
        self.max_messages = max_messages
        self.max_alerts = max_alerts
        self.dropped = {"alert": 0, "telemetry": 0}
        self._lock = threading.Lock()
        # Autocommit mode; every write below is one explicit transaction.
        self._db = sqlite3.connect(
            self.path, timeout=10.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        counts = self.depth()
        if counts["total"]:
            logger.info(
                "outbox %s holds %d alerts and %d telemetry messages from before",
                self.path,
                counts["alert"],
                counts["telemetry"],
            )

    def _count(self, kind: str | None = None) -> int:
        if kind is None:
            row = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        else:
            row = self._db.execute("SELECT COUNT(*) FROM outbox WHERE kind = ?", (kind,)).fetchone()
        return int(row[0])

    def put(self, kind: Kind, message_id: str, body: bytes) -> bool:
        """Store a message durably (committed and synced before returning).

        Args:
            kind: ``alert`` or ``telemetry``.
            message_id: its unique id.
            body: UTF-8 JSON.

        Returns:
            True if stored; False if it was a telemetry message dropped because the outbox is full
            of alerts.

        Raises:
            ValueError: unknown ``kind``.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                total = self._count()
                if total >= self.max_messages:
                    excess = total - self.max_messages + 1
                    dropped = self._db.execute(
                        "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox "
                        "WHERE kind = 'telemetry' ORDER BY seq LIMIT ?)",
                        (excess,),
                    ).rowcount
                    if dropped:
                        self.dropped["telemetry"] += dropped
                        logger.warning(
                            "outbox full (%d messages): dropped the %d oldest telemetry messages",
                            total,
                            dropped,
                        )
                    if dropped < excess and kind == "telemetry":
                        self._db.execute("COMMIT")
                        self.dropped["telemetry"] += 1
                        logger.warning("outbox full of alerts: telemetry %s dropped", message_id)
                        return False
                if kind == "alert":
                    alerts = self._count("alert")
                    if alerts >= self.max_alerts:
                        excess = alerts - self.max_alerts + 1
                        self._db.execute(
                            "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox "
                            "WHERE kind = 'alert' ORDER BY seq LIMIT ?)",
                            (excess,),
                        )
                        self.dropped["alert"] += excess
                        logger.error(
                            "outbox hard cap reached (%d alerts): dropped the %d oldest alerts",
                            alerts,
                            excess,
                        )
                self._db.execute(
                    "INSERT INTO outbox (kind, message_id, body, created) VALUES (?, ?, ?, ?)",
                    (kind, message_id, body, time.time()),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return True

    def peek(self, limit: int = 16) -> list[QueuedMessage]:
        """The oldest messages still queued, alerts first, without removing them."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, kind, message_id, body, created, attempts FROM outbox "
                "ORDER BY kind = 'telemetry', seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            QueuedMessage(
                seq=int(seq),
                kind=kind,
                message_id=str(message_id),
                body=bytes(body),
                created=float(created),
                attempts=int(attempts),
            )
            for seq, kind, message_id, body, created, attempts in rows
        ]

    def ack(self, seq: int) -> None:
        """Delete a message the hub has acknowledged."""
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def record_failure(self, seq: int) -> None:
        """Count one failed send attempt of a message (kept queued)."""
        with self._lock:
            self._db.execute("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", (seq,))

    def depth(self) -> dict[str, int]:
        """Queued messages: ``alert``, ``telemetry`` and ``total``."""
        with self._lock:
            rows = dict(
                self._db.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind").fetchall()
            )
        alerts, telemetry = int(rows.get("alert", 0)), int(rows.get("telemetry", 0))
        return {"alert": alerts, "telemetry": telemetry, "total": alerts + telemetry}

    def close(self) -> None:
        """Close the database (the data stays on disk)."""
        with self._lock:
            self._db.close()
