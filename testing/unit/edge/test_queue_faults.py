"""The outbox under storage faults: full disk, corrupt file, unwritable folder, poison messages.

A full disk is reproduced with SQLite's own ``PRAGMA max_page_count``: past it SQLite fails the
write with ``SQLITE_FULL`` ("database or disk is full"), the same result code and code path as a
filesystem out of space (https://www.sqlite.org/rescode.html#full, https://www.sqlite.org/pragma.html#pragma_max_page_count).
The container test fills a real size-limited tmpfs.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ppe.edge.queue import DB_FILE, DurableQueue
from ppe.errors import ConfigError, OutboxUnavailableError, OutboxWriteError


def fill_disk(queue: DurableQueue) -> None:
    """Cap the database at its current size, as a full filesystem would."""
    pages = queue._db.execute("PRAGMA page_count").fetchone()[0]
    queue._db.execute(f"PRAGMA max_page_count = {pages}")


def free_disk(queue: DurableQueue) -> None:
    queue._db.execute("PRAGMA max_page_count = 1073741823")


def test_a_full_disk_raises_the_real_error_and_recovers_when_space_returns(tmp_path: Path) -> None:
    queue = DurableQueue(tmp_path)
    queue.put("alert", "a0", b"{}")
    fill_disk(queue)
    big = b"x" * 200_000
    # Before the fix the failed COMMIT was followed by a ROLLBACK that raised "cannot rollback -
    # no transaction is active", hiding SQLITE_FULL.
    with pytest.raises(OutboxWriteError, match="disk is full"):
        queue.put("alert", "a1", big)
    assert queue.write_error is not None and "full" in queue.write_error
    assert [item.message_id for item in queue.peek()] == ["a0"]
    free_disk(queue)
    assert queue.put("alert", "a1", big)
    assert queue.write_error is None
    assert [item.message_id for item in queue.peek()] == ["a0", "a1"]


def test_the_outbox_caps_bytes_dropping_telemetry_first(tmp_path: Path) -> None:
    queue = DurableQueue(tmp_path, max_bytes=10_000)
    for index in range(4):
        queue.put("telemetry", f"t{index}", b"t" * 2_000)
    queue.put("alert", "a0", b"a" * 3_000)
    assert queue.bytes_queued() <= 10_000
    assert [item.message_id for item in queue.peek()] == ["a0", "t1", "t2", "t3"]
    # Alerts alone over the byte cap: the oldest alert goes.
    for index in range(1, 4):
        queue.put("alert", f"a{index}", b"a" * 3_000)
    assert [item.message_id for item in queue.peek()] == ["a1", "a2", "a3"]
    assert queue.bytes_queued() <= 10_000
    with pytest.raises(ValueError, match="larger than the outbox byte cap"):
        queue.put("alert", "huge", b"x" * 10_001)


def test_a_corrupt_database_is_quarantined_and_recreated(tmp_path: Path) -> None:
    (tmp_path / DB_FILE).write_bytes(b"this is not an SQLite database" * 100)
    queue = DurableQueue(tmp_path)  # raised "file is not a database" on every start before
    queue.put("alert", "a0", b"{}")
    assert [item.message_id for item in queue.peek()] == ["a0"]
    quarantined = sorted(path.name for path in tmp_path.glob(f"{DB_FILE}.corrupt-*"))
    assert len(quarantined) == 1
    assert (tmp_path / quarantined[0]).read_bytes().startswith(b"this is not")


def test_an_unwritable_queue_folder_is_a_one_line_error_naming_the_fix(tmp_path: Path) -> None:
    # A host folder Docker created as root, seen by the module's user. Root ignores permission
    # bits through CAP_DAC_OVERRIDE, so as root the check runs with every capability dropped
    # (util-linux setpriv), which makes the kernel apply the folder's mode to it as to anyone.
    folder = tmp_path / "queue"
    folder.mkdir()
    folder.chmod(0o555)
    script = (
        "import sys\n"
        "from ppe.edge.queue import DurableQueue\nfrom ppe.errors import OutboxUnavailableError\n"
        "try:\n"
        f"    DurableQueue({str(folder)!r})\n"
        "except OutboxUnavailableError as error:\n"
        "    print(error)\n"
        "    sys.exit(3)\n"
    )
    drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"] if os.geteuid() == 0 else []
    completed = subprocess.run(
        [*drop, sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    folder.chmod(0o755)
    assert completed.returncode == 3, completed.stderr
    message = completed.stdout.strip()
    assert "\n" not in message and "Traceback" not in completed.stderr
    assert str(folder) in message and "not writable" in message and "install -d -o" in message


def test_a_database_path_that_cannot_be_opened_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / DB_FILE).mkdir()  # e.g. a bind mount of a folder where the file should be
    with pytest.raises(OutboxUnavailableError, match=r"QUEUE_DIR .* cannot be opened") as caught:
        DurableQueue(tmp_path)
    assert isinstance(caught.value, ConfigError)
    assert "\n" not in str(caught.value)


def test_poison_messages_are_moved_aside_after_max_attempts(tmp_path: Path) -> None:
    queue = DurableQueue(tmp_path, max_attempts=3)
    queue.put("alert", "poison", b"{}")
    queue.put("alert", "good", b"{}")
    first = queue.peek(1)[0]
    assert not queue.record_failure(first.seq)
    assert not queue.record_failure(first.seq)
    assert queue.record_failure(first.seq)  # third failure: moved aside
    assert [item.message_id for item in queue.peek()] == ["good"]
    assert queue.dead_letters() == [("poison", "alert", 3)]
    assert queue.depth()["dead"] == 1


def test_a_message_that_can_never_be_sent_is_moved_aside_at_once(tmp_path: Path) -> None:
    queue = DurableQueue(tmp_path)
    queue.put("alert", "too-big", b"{}")
    queue.put("alert", "good", b"{}")
    queue.move_aside(queue.peek(1)[0].seq, "ValueError: over 256 KB")
    assert [item.message_id for item in queue.peek()] == ["good"]
    rows = sqlite3.connect(tmp_path / DB_FILE).execute("SELECT reason FROM dead_letter").fetchall()
    assert rows == [("ValueError: over 256 KB",)]
