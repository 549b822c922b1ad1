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

Bounds: at ``max_messages`` queued, or ``max_bytes`` of message bodies, the oldest telemetry is
dropped to make room (logged as a warning); alerts are never dropped for telemetry's sake, and only
when alerts alone reach the hard cap ``max_alerts`` (or the byte cap) is the oldest alert dropped
(logged as an error). A telemetry message that finds the outbox full of alerts is itself dropped.

Faults: a write the storage refuses (disk full, I/O error) raises :class:`OutboxWriteError` with
SQLite's own reason, leaves the outbox as it was, and is remembered in
:attr:`DurableQueue.write_error` until a later write succeeds, so health checks can report it. A
database file SQLite does not recognise (``file is not a database``, a damaged image) is renamed
aside as ``outbox.sqlite3.corrupt-<time>`` and a fresh outbox is created; a folder or file the
module's user cannot write is a one-line :class:`OutboxUnavailableError` naming the fix. A message
whose send failed ``max_attempts`` times (the link being up) is moved to the ``dead_letter`` table.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from ppe.errors import OutboxUnavailableError, OutboxWriteError

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
CREATE TABLE IF NOT EXISTS dead_letter (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL,
    reason TEXT NOT NULL,
    moved REAL NOT NULL
);
"""
#: The uid/gid the module image runs as (environments/docker/Dockerfile.*), named in the fix.
MODULE_UID = 10001
#: Messages kept in the dead-letter table; older ones are deleted.
MAX_DEAD_LETTERS = 1000


def _unavailable(folder: Path, error: BaseException) -> OutboxUnavailableError:
    return OutboxUnavailableError(
        f"QUEUE_DIR {folder} cannot be opened or is not writable by uid {os.getuid()} ({error}); "
        f"on the device run `sudo install -d -o {MODULE_UID} -g {MODULE_UID} -m 0750 <folder>` "
        "for the host folder bound to QUEUE_DIR (or delete a root-owned outbox.sqlite3 in it)"
    )


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
        max_bytes: cap on the bodies' total size, enforced like ``max_messages``.
        max_attempts: failed sends after which a message is moved to the dead-letter table.

    Raises:
        ValueError: a bound is not positive or ``max_alerts < max_messages``.
        OutboxUnavailableError: the folder or database cannot be created or written.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        max_messages: int = 10_000,
        max_alerts: int = 100_000,
        max_bytes: int = 256 * 1024 * 1024,
        max_attempts: int = 10,
    ) -> None:
        if max_messages < 1 or max_alerts < max_messages:
            raise ValueError(
                f"need 1 <= max_messages <= max_alerts, got {max_messages} and {max_alerts}"
            )
        if max_bytes < 1 or max_attempts < 1:
            raise ValueError(
                f"max_bytes ({max_bytes}) and max_attempts ({max_attempts}) must be >= 1"
            )
        self.folder = Path(folder)
        self.path = self.folder / DB_FILE
        self.max_messages = max_messages
        self.max_alerts = max_alerts
        self.max_bytes = max_bytes
        self.max_attempts = max_attempts
        self.dropped = {"alert": 0, "telemetry": 0}
        #: SQLite's reason for the last refused write; None once a write succeeds again.
        self.write_error: str | None = None
        self._lock = threading.Lock()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            try:
                self._db = self._open()
            except sqlite3.OperationalError:
                raise
            except sqlite3.DatabaseError as error:
                self._quarantine(error)
                self._db = self._open()
        except (OSError, sqlite3.OperationalError) as error:
            raise _unavailable(self.folder, error) from error
        self._bytes = self._sum_bytes()
        counts = self.depth()
        if counts["total"]:
            logger.info(
                "outbox %s holds %d alerts and %d telemetry messages from before",
                self.path,
                counts["alert"],
                counts["telemetry"],
            )

    def _open(self) -> sqlite3.Connection:
        # Autocommit mode; every write below is one explicit transaction.
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            row = db.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no result'}")
            # Probe that the file is writable now rather than at the first alert.
            db.execute("BEGIN IMMEDIATE")
            db.execute("COMMIT")
        except BaseException:
            db.close()
            raise
        return db

    def _quarantine(self, error: sqlite3.DatabaseError) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        for suffix in ("", "-wal", "-shm"):
            source = self.path.with_name(DB_FILE + suffix)
            if source.exists():
                source.replace(self.path.with_name(f"{DB_FILE}.corrupt-{stamp}{suffix}"))
        logger.error(
            "outbox %s is damaged (%s): moved aside as %s.corrupt-%s and started a new one; "
            "messages in it are not sent",
            self.path,
            error,
            DB_FILE,
            stamp,
        )

    @contextmanager
    def _transaction(self, what: str) -> Iterator[None]:
        """One write transaction; a refused write raises :class:`OutboxWriteError`.

        SQLite may already have rolled the transaction back itself after ``SQLITE_FULL`` or an I/O
        error, so ROLLBACK runs only while a transaction is open and its own failure never hides
        the original error.
        """
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield
            self._db.execute("COMMIT")
        except BaseException as error:
            if self._db.in_transaction:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error as rollback_error:
                    logger.error("outbox rollback after %s failed: %s", what, rollback_error)
            if isinstance(error, sqlite3.OperationalError):
                self.write_error = f"{what}: {error}"
                raise OutboxWriteError(f"outbox {self.path}: {what} failed: {error}") from error
            raise
        if self.write_error is not None:
            logger.warning("outbox %s writes again (after: %s)", self.path, self.write_error)
            self.write_error = None

    def _sum_bytes(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COALESCE(SUM(length(body)), 0) FROM outbox").fetchone()
        return int(row[0])

    def bytes_queued(self) -> int:
        """Total size of the queued bodies."""
        with self._lock:
            return self._bytes

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
        if len(body) > self.max_bytes:
            raise ValueError(
                f"message {message_id} is {len(body)} bytes, larger than the outbox byte cap "
                f"({self.max_bytes})"
            )
        with self._lock, self._transaction(f"storing {kind} {message_id}"):
            freed = self._make_room(kind, message_id, len(body))
            if freed is None:
                return False
            self._db.execute(
                "INSERT INTO outbox (kind, message_id, body, created) VALUES (?, ?, ?, ?)",
                (kind, message_id, body, time.time()),
            )
            # Counted when the transaction commits (an exception above leaves _bytes as it was).
            self._bytes += len(body) - freed
        return True

    def _oldest(self, kind: str) -> tuple[int, int] | None:
        row = self._db.execute(
            "SELECT seq, length(body) FROM outbox WHERE kind = ? ORDER BY seq LIMIT 1", (kind,)
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else None

    def _make_room(self, kind: str, message_id: str, size: int) -> int | None:
        """Drop the oldest telemetry (then alerts) until ``size`` more bytes fit.

        Returns:
            Bytes freed, or None when a telemetry message finds the outbox full of alerts.
        """
        total, used = self._count(), self._bytes
        freed = 0
        dropped = {"alert": 0, "telemetry": 0}
        alerts = self._count("alert")
        while total >= self.max_messages or used - freed + size > self.max_bytes:
            oldest = self._oldest("telemetry")
            if oldest is None:
                break
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (oldest[0],))
            total, freed, dropped["telemetry"] = (
                total - 1,
                freed + oldest[1],
                dropped["telemetry"] + 1,
            )
        full = total >= self.max_messages or used - freed + size > self.max_bytes
        if full and kind == "telemetry":
            dropped["telemetry"] += 1
            self._log_drops(dropped, total, message_id)
            return None
        if kind == "alert":
            while alerts >= self.max_alerts or used - freed + size > self.max_bytes:
                oldest = self._oldest("alert")
                if oldest is None:
                    break
                self._db.execute("DELETE FROM outbox WHERE seq = ?", (oldest[0],))
                alerts, freed, dropped["alert"] = (
                    alerts - 1,
                    freed + oldest[1],
                    dropped["alert"] + 1,
                )
        self._log_drops(dropped, total, None)
        return freed

    def _log_drops(self, dropped: dict[str, int], total: int, refused: str | None) -> None:
        for kind, count in dropped.items():
            self.dropped[kind] += count
        telemetry = dropped["telemetry"] - (1 if refused else 0)
        if telemetry:
            logger.warning(
                "outbox full (%d messages, %d bytes): dropped the %d oldest telemetry messages",
                total + telemetry,
                self._bytes,
                telemetry,
            )
        if refused:
            logger.warning("outbox full of alerts: telemetry %s dropped", refused)
        if dropped["alert"]:
            logger.error(
                "outbox hard cap reached (%d alerts or %d bytes): dropped the %d oldest alerts",
                self.max_alerts,
                self.max_bytes,
                dropped["alert"],
            )

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
        """Delete a message the hub has acknowledged.

        Raises:
            OutboxWriteError: the storage refused the delete (the message stays queued).
        """
        with self._lock, self._transaction(f"acknowledging message {seq}"):
            row = self._db.execute(
                "SELECT length(body) FROM outbox WHERE seq = ?", (seq,)
            ).fetchone()
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            if row:
                self._bytes -= int(row[0])

    def record_failure(self, seq: int, reason: str = "send failed") -> bool:
        """Count one failed send attempt; at ``max_attempts`` move the message aside.

        Returns:
            True if the message was moved to the dead-letter table.

        Raises:
            OutboxWriteError: the storage refused the update.
        """
        with self._lock:
            with self._transaction(f"counting a failed send of message {seq}"):
                self._db.execute("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", (seq,))
                row = self._db.execute(
                    "SELECT attempts FROM outbox WHERE seq = ?", (seq,)
                ).fetchone()
            if row is None or int(row[0]) < self.max_attempts:
                return False
            self._move_aside(seq, f"{row[0]} failed attempts, the last: {reason}")
        return True

    def move_aside(self, seq: int, reason: str) -> None:
        """Move a message that can never be sent to the dead-letter table (kept for inspection).

        Raises:
            OutboxWriteError: the storage refused the move.
        """
        with self._lock:
            self._move_aside(seq, reason)

    def _move_aside(self, seq: int, reason: str) -> None:
        with self._transaction(f"moving message {seq} aside"):
            row = self._db.execute(
                "SELECT kind, message_id, length(body) FROM outbox WHERE seq = ?", (seq,)
            ).fetchone()
            if row is None:
                return
            self._db.execute(
                "INSERT INTO dead_letter (seq, kind, message_id, body, created, attempts, reason, "
                "moved) SELECT seq, kind, message_id, body, created, attempts, ?, ? FROM outbox "
                "WHERE seq = ?",
                (reason, time.time(), seq),
            )
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._db.execute(
                "DELETE FROM dead_letter WHERE seq NOT IN "
                "(SELECT seq FROM dead_letter ORDER BY seq DESC LIMIT ?)",
                (MAX_DEAD_LETTERS,),
            )
            self._bytes -= int(row[2])
        logger.error(
            "%s %s moved to the outbox's dead_letter table (%s); it will not be sent",
            row[0],
            row[1],
            reason,
        )

    def dead_letters(self) -> list[tuple[str, str, int]]:
        """``(message_id, kind, attempts)`` of the messages moved aside, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT message_id, kind, attempts FROM dead_letter ORDER BY seq"
            ).fetchall()
        return [(str(message_id), str(kind), int(attempts)) for message_id, kind, attempts in rows]

    def depth(self) -> dict[str, int]:
        """Queued messages: ``alert``, ``telemetry``, ``total``, and ``dead`` (moved aside)."""
        with self._lock:
            rows = dict(
                self._db.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind").fetchall()
            )
            dead = int(self._db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0])
        alerts, telemetry = int(rows.get("alert", 0)), int(rows.get("telemetry", 0))
        return {"alert": alerts, "telemetry": telemetry, "total": alerts + telemetry, "dead": dead}

    def close(self) -> None:
        """Close the database (the data stays on disk)."""
        with self._lock:
            self._db.close()
