from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ppe.edge.queue import DB_FILE, DurableQueue


def test_alerts_are_read_before_telemetry_in_order(tmp_path: Path) -> None:
    queue = DurableQueue(tmp_path)
    queue.put("telemetry", "t1", b"{}")
    queue.put("alert", "a1", b'{"n": 1}')
    queue.put("alert", "a2", b'{"n": 2}')
    assert [item.message_id for item in queue.peek()] == ["a1", "a2", "t1"]
    assert queue.depth() == {"alert": 2, "telemetry": 1, "total": 3, "dead": 0}
    first = queue.peek(1)[0]
    queue.ack(first.seq)
    assert [item.message_id for item in queue.peek()] == ["a2", "t1"]


def test_unacknowledged_messages_survive_a_restart(tmp_path: Path) -> None:
    queue = DurableQueue(tmp_path)
    for index in range(5):
        queue.put("alert", f"a{index}", f'{{"i": {index}}}'.encode())
    peeked = queue.peek(2)
    queue.ack(peeked[0].seq)  # acknowledged by the hub
    queue.record_failure(peeked[1].seq)  # sent, but no acknowledgement
    queue.close()
    reopened = DurableQueue(tmp_path)
    items = reopened.peek()
    assert [item.message_id for item in items] == ["a1", "a2", "a3", "a4"]
    assert items[0].attempts == 1 and items[0].body == b'{"i": 1}'


def test_a_killed_process_loses_no_committed_message(tmp_path: Path) -> None:
    # put() returns only after the commit is synced; SIGKILL right after must not lose it.
    script = textwrap.dedent(
        f"""
        import os, signal
        from ppe.edge.queue import DurableQueue
        queue = DurableQueue({str(tmp_path)!r})
        for index in range(20):
            queue.put("alert", f"a{{index}}", b"{{}}")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    completed = subprocess.run([sys.executable, "-c", script], timeout=60, check=False)
    assert completed.returncode == -9
    queue = DurableQueue(tmp_path)
    assert [item.message_id for item in queue.peek(100)] == [f"a{i}" for i in range(20)]
    assert (tmp_path / DB_FILE).is_file()


def test_full_outbox_drops_oldest_telemetry_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    queue = DurableQueue(tmp_path, max_messages=4, max_alerts=6)
    for index in range(3):
        queue.put("telemetry", f"t{index}", b"{}")
    queue.put("alert", "a0", b"{}")
    with caplog.at_level(logging.WARNING, logger="ppe.edge.queue"):
        assert queue.put("alert", "a1", b"{}")
    assert "dropped the 1 oldest telemetry" in caplog.text
    assert [item.message_id for item in queue.peek()] == ["a0", "a1", "t1", "t2"]
    queue.put("alert", "a2", b"{}")
    queue.put("alert", "a3", b"{}")
    assert queue.depth() == {"alert": 4, "telemetry": 0, "total": 4, "dead": 0}
    # Full of alerts: new telemetry is refused, alerts keep coming up to the hard cap.
    assert not queue.put("telemetry", "t3", b"{}")
    queue.put("alert", "a4", b"{}")
    queue.put("alert", "a5", b"{}")
    assert queue.depth()["alert"] == 6
    with caplog.at_level(logging.ERROR, logger="ppe.edge.queue"):
        queue.put("alert", "a6", b"{}")
    assert "hard cap reached (6 alerts" in caplog.text
    assert [item.message_id for item in queue.peek()] == ["a1", "a2", "a3", "a4", "a5", "a6"]
    assert queue.dropped == {"alert": 1, "telemetry": 4}


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_messages <= max_alerts"):
        DurableQueue(tmp_path, max_messages=10, max_alerts=5)
    queue = DurableQueue(tmp_path)
    with pytest.raises(ValueError, match="kind must be one of"):
        queue.put("event", "x", b"{}")  # type: ignore[arg-type]
