from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from ppe.config import EdgeConfig
from ppe.edge.settings import STATE_FILE, LiveSettings


def test_valid_patch_applies_and_notifies(tmp_path: Path) -> None:
    settings = LiveSettings(state_file=tmp_path / STATE_FILE)
    seen: list[EdgeConfig] = []
    settings.subscribe(seen.append)
    applied, rejected = settings.apply({"score_threshold": 0.7, "$version": 3})
    assert applied == {"score_threshold": 0.7} and rejected == {}
    assert settings.config.score_threshold == 0.7
    assert seen[-1].score_threshold == 0.7


def test_bad_values_are_rejected_and_the_old_kept(caplog: pytest.LogCaptureFixture) -> None:
    settings = LiveSettings()
    with caplog.at_level(logging.ERROR, logger="ppe.edge.settings"):
        applied, rejected = settings.apply(
            {"score_threshold": 1.5, "alert_cooldown_s": 5, "telemetry_interval_s": "soon"}
        )
    assert applied == {"alert_cooldown_s": 5.0}
    assert set(rejected) == {"score_threshold", "telemetry_interval_s"}
    assert settings.config.score_threshold == 0.4
    assert settings.config.telemetry_interval_s == 60.0
    assert "score_threshold=1.5 rejected" in caplog.text


def test_k_above_n_is_rejected_but_a_joint_change_passes() -> None:
    settings = LiveSettings()  # K=3, N=5
    applied, rejected = settings.apply({"alert_min_frames": 8})
    assert applied == {} and "alert_min_frames" in rejected
    applied, rejected = settings.apply({"alert_min_frames": 8, "alert_window_frames": 10})
    assert applied == {"alert_min_frames": 8, "alert_window_frames": 10} and rejected == {}


def test_null_restores_the_default_and_unknown_keys_are_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = LiveSettings()
    settings.apply({"alert_cooldown_s": 5})
    with caplog.at_level(logging.WARNING, logger="ppe.edge.settings"):
        applied, _ = settings.apply({"alert_cooldown_s": None, "http_port": 1, "colour": "red"})
    assert applied == {"alert_cooldown_s": 60.0}
    assert settings.config.http_port == 8080  # not live-updatable
    assert "'colour' ignored" in caplog.text


def test_applied_settings_survive_a_restart(tmp_path: Path) -> None:
    LiveSettings(state_file=tmp_path / STATE_FILE).apply({"alert_cooldown_s": 2.5})
    restored = LiveSettings(state_file=tmp_path / STATE_FILE)
    assert restored.config.alert_cooldown_s == 2.5
    (tmp_path / STATE_FILE).write_text("{broken")
    assert LiveSettings(state_file=tmp_path / STATE_FILE).config.alert_cooldown_s == 60.0


@pytest.mark.parametrize(
    ("key", "value"),
    [
        # 0.001 s sent about 425 messages a second: an S1 hub's daily quota (400,000 messages,
        # https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-quotas-throttling) in 16 min.
        ("telemetry_interval_s", 0.001),
        ("telemetry_interval_s", 0.5),
        ("telemetry_interval_s", float("inf")),
        ("telemetry_interval_s", "inf"),
        ("telemetry_interval_s", "60"),
        ("alert_window_frames", 2**63),  # killed the frame loop (deque maxlen) and was saved
        ("alert_window_frames", True),  # True became 1
        ("alert_window_frames", 5.0),
        ("alert_min_frames", False),
        ("alert_cooldown_s", float("nan")),
        ("alert_cooldown_s", float("inf")),
        ("alert_cooldown_s", 10 * 86400.0),
        ("score_threshold", True),
        ("score_threshold", "0.5"),
    ],
)
def test_the_twin_schema_is_strict_and_bounded(tmp_path: Path, key: str, value: object) -> None:
    settings = LiveSettings(state_file=tmp_path / STATE_FILE)
    before = settings.live_values()
    applied, rejected = settings.apply({key: value})
    assert applied == {} and key in rejected, rejected
    assert settings.live_values() == before
    assert not (tmp_path / STATE_FILE).exists()  # nothing invalid saved


def test_integers_are_accepted_for_seconds_and_saved_as_json(tmp_path: Path) -> None:
    settings = LiveSettings(state_file=tmp_path / STATE_FILE)
    applied, rejected = settings.apply({"alert_cooldown_s": 5, "telemetry_interval_s": 1})
    assert rejected == {} and applied == {"alert_cooldown_s": 5.0, "telemetry_interval_s": 1.0}
    saved = json.loads((tmp_path / STATE_FILE).read_text(encoding="utf-8"))
    assert saved["telemetry_interval_s"] == 1.0


def test_an_invalid_saved_state_is_ignored_at_start(tmp_path: Path) -> None:
    # A state file written by the old code with a value the bounds now refuse.
    (tmp_path / STATE_FILE).write_text(json.dumps({"alert_window_frames": 2**63}))
    assert LiveSettings(state_file=tmp_path / STATE_FILE).config.alert_window_frames == 5
    (tmp_path / STATE_FILE).write_text('{"alert_cooldown_s": Infinity}')
    assert LiveSettings(state_file=tmp_path / STATE_FILE).config.alert_cooldown_s == 60.0
