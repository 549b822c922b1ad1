"""The running module under faults: a full disk, a dead worker, stale frames, a hub outage, and
credentials that must never reach the log. The module runs for real (LiteRT model, image folder,
SQLite outbox); only the IoT Hub client is the recording stand-in of test_main (the SDK needs a
broker, which the integration tests provide)."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest
from testing.unit.edge.test_main import (
    RecordingClient,
    frames,
    make_module,
    rigged_options,
    wait_for,
)

from ppe.edge.main import TOKEN_FILE, EdgeModule, options_from_env
from ppe.errors import ConfigError

__all__ = ["frames"]

FAST_ALERTS = {
    "score_threshold": 0.5,
    "alert_min_frames": 1,
    "alert_window_frames": 1,
    "alert_cooldown_s": 0,
    "telemetry_interval_s": 1.0,
}


def fill_disk(module: EdgeModule) -> None:
    """Fill the outbox's storage until SQLite reports SQLITE_FULL, as a full filesystem does.

    ``PRAGMA max_page_count`` caps the database where it is; a filler table takes the free pages
    that acknowledged messages left behind (https://www.sqlite.org/pragma.html#pragma_max_page_count).
    """
    db = module.outbox._db
    with module.outbox._lock:
        db.execute("CREATE TABLE IF NOT EXISTS filler (data BLOB)")
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages + 4}")
        try:
            while True:
                db.execute("INSERT INTO filler VALUES (zeroblob(1024))")
        except sqlite3.OperationalError as error:
            assert "full" in str(error)


def free_disk(module: EdgeModule) -> None:
    with module.outbox._lock:
        module.outbox._db.execute("DROP TABLE filler")
        module.outbox._db.execute("PRAGMA max_page_count = 1073741823")


def test_a_full_disk_degrades_health_and_no_alert_is_lost(
    edge_models: Path, tmp_path: Path, frames: Path
) -> None:
    client = RecordingClient(dict(FAST_ALERTS))
    module = make_module(edge_models, tmp_path, frames, client)
    module.start()
    try:
        assert wait_for(lambda: len(client.of("alerts")) >= 2)
        client.down = True  # nothing acknowledged, so nothing frees space while the disk is full
        fill_disk(module)
        # Before: the frame loop ended, the sender and telemetry threads died and /healthz said ok.
        assert wait_for(
            lambda: any("outbox cannot write" in p for p in module.server.health()["problems"]), 20
        )
        assert module.server.health()["status"] == "degraded"
        frames_then, alerts_then = module.stats.total_frames, module.stats.total_alerts
        assert wait_for(lambda: module.stats.total_alerts >= alerts_then + 3, 20)
        assert module.stats.total_frames > frames_then  # the camera loop goes on
        assert all(thread.is_alive() for thread in module._threads)
        free_disk(module)
        client.down = False
        assert wait_for(lambda: module.server.health()["status"] == "ok", 20)
        raised = module.stats.total_alerts
        assert wait_for(lambda: len({a["alertId"] for a in client.of("alerts")}) >= raised, 20)
    finally:
        module.stop()
    assert module.exit_code == 0


def test_a_dead_worker_stops_the_module_with_exit_status_1(
    edge_models: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "camera.mp4"
    broken.write_bytes(b"\x00not a video" * 100)
    options = rigged_options(
        edge_models,
        tmp_path,
        frame_source=str(broken),
    )
    module = EdgeModule(options, client_factory=None)
    module.start()
    try:
        assert module.stop_event.wait(20)
        assert module.exit_code == 1 and module.dead_workers == ["frames"]
        assert "worker frames died" in module.server.health()["problems"]
    finally:
        module.stop()


def test_stale_frames_and_a_hub_outage_are_reported(edge_models: Path, tmp_path: Path) -> None:
    client = RecordingClient(dict(FAST_ALERTS))
    client.down = True
    options = rigged_options(
        edge_models,
        tmp_path,
        frame_source="rtsp://127.0.0.1:9/stream1",  # a camera that never answers
    )
    module = EdgeModule(options, client_factory=lambda: client, stale_frames_s=1.0)
    module.start()
    try:

        def reported(text: str) -> bool:
            return any(text in problem for problem in module.server.health()["problems"])

        assert wait_for(lambda: reported("no frame scored for"), 10)
        assert wait_for(lambda: reported("hub link down"), 10)
        client.down = False
        assert wait_for(lambda: not reported("hub link down"), 15)
    finally:
        module.stop()


def test_camera_credentials_never_reach_the_log(
    edge_models: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    options = rigged_options(
        edge_models,
        tmp_path,
        frame_source="rtsp://admin:hunter2@127.0.0.1:9/stream1",
    )
    with caplog.at_level(logging.DEBUG):
        module = EdgeModule(options, client_factory=None)
        module.start()
        time.sleep(1.5)  # connection refused at least once: the reconnect warning is logged
        module.stop()
    assert "127.0.0.1:9/stream1" in caplog.text
    assert "hunter2" not in caplog.text and "admin" not in caplog.text


def test_the_score_token_comes_from_the_environment_a_secret_or_the_queue_folder(
    edge_models: Path, tmp_path: Path
) -> None:
    base = {"MODEL_PATH": "m.tflite", "QUEUE_DIR": str(tmp_path)}
    assert options_from_env({**base, "SCORE_TOKEN": "t" * 20}).score_token == "t" * 20
    secret = tmp_path / "secret"
    secret.write_text("s" * 24 + "\n")
    assert options_from_env({**base, "SCORE_TOKEN_FILE": str(secret)}).score_token == "s" * 24
    with pytest.raises(ConfigError, match=r"SCORE_TOKEN_FILE=.*cannot be read"):
        options_from_env({**base, "SCORE_TOKEN_FILE": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="shorter than 16"):
        options_from_env({**base, "SCORE_TOKEN": "short"})
    assert options_from_env({**base, "HTTP_HOST": "127.0.0.1"}).http_host == "127.0.0.1"
    # No token configured: one is generated, kept private in QUEUE_DIR, and stays the same.
    options = rigged_options(
        edge_models,
        tmp_path,
        http_host="127.0.0.1",
    )
    first = EdgeModule(options, client_factory=None)
    token_path = tmp_path / "queue" / TOKEN_FILE
    assert first.server.token == token_path.read_text().strip() and len(first.server.token) >= 32
    assert stat.S_IMODE(os.stat(token_path).st_mode) == 0o600
    first.server.httpd.server_close()
    second = EdgeModule(options, client_factory=None)
    assert second.server.token == first.server.token
    assert second.server.httpd.server_address[0] == "127.0.0.1"
    second.server.httpd.server_close()
