from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from ppe.config import EdgeConfig
from ppe.edge.alerts import AlertRule, build_alert
from ppe.edge.runtime import Detection, DetectionResult


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def frame(*items: tuple[str, float]) -> DetectionResult:
    detections = [
        Detection(label, 1 if label == "head" else 0, score, (10.0, 20.0, 30.0, 40.0))
        for label, score in items
    ]
    return DetectionResult(detections=detections, width=640, height=480)


HEAD = frame(("head", 0.9))
WEAK_HEAD = frame(("head", 0.3))
HELMET = frame(("helmet", 0.95))


def config(**values: float) -> EdgeConfig:
    base = {"score_threshold": 0.5, "alert_min_frames": 3, "alert_window_frames": 5}
    return EdgeConfig.model_validate({**base, "alert_cooldown_s": 60.0, **values})


def test_k_of_n_raises_on_the_kth_positive_frame() -> None:
    rule = AlertRule(config(), FakeClock())
    decisions = [rule.observe("cam", result) for result in (HEAD, HELMET, HEAD, WEAK_HEAD)]
    assert [d.positive for d in decisions] == [True, False, True, False]
    assert not any(d.alert for d in decisions)
    decision = rule.observe("cam", HEAD)  # 3 of the last 5
    assert decision.alert and decision.positives == 3 and decision.window == 5


def test_positives_leaving_the_window_do_not_count() -> None:
    rule = AlertRule(config(alert_min_frames=2, alert_window_frames=3), FakeClock())
    sequence = [HEAD, HELMET, HELMET, HEAD, HELMET, HELMET, HEAD]
    assert not any(rule.observe("cam", result).alert for result in sequence)


def test_cooldown_keeps_quiet_then_alerts_again() -> None:
    clock = FakeClock()
    rule = AlertRule(config(alert_min_frames=1, alert_window_frames=1, alert_cooldown_s=30), clock)
    assert rule.observe("cam", HEAD).alert
    clock.now += 29.9
    assert not rule.observe("cam", HEAD).alert
    clock.now += 0.1
    assert rule.observe("cam", HEAD).alert
    clock.now += 100
    assert not rule.observe("cam", HELMET).alert  # cool-down over, but no violation


def test_cameras_have_their_own_window_and_cooldown() -> None:
    rule = AlertRule(config(alert_min_frames=2, alert_window_frames=2), FakeClock())
    assert not rule.observe("a", HEAD).alert
    assert not rule.observe("b", HEAD).alert
    assert rule.observe("a", HEAD).alert
    assert rule.observe("b", HEAD).alert
    assert not rule.observe("a", HEAD).alert


def test_threshold_and_window_update_live() -> None:
    rule = AlertRule(config(alert_min_frames=2, alert_window_frames=4), FakeClock())
    rule.observe("cam", WEAK_HEAD)
    assert not rule.observe("cam", WEAK_HEAD).alert  # 0.3 < 0.5
    rule.update(config(score_threshold=0.25, alert_min_frames=2, alert_window_frames=4))
    assert rule.observe("cam", WEAK_HEAD).positive
    rule.update(config(score_threshold=0.25, alert_min_frames=1, alert_window_frames=1))
    decision = rule.observe("cam", HEAD)
    assert decision.alert and decision.window == 1


def test_alert_message_fields() -> None:
    result = frame(("head", 0.91), ("head", 0.2), ("helmet", 0.8), ("helmet", 0.1))
    rule = AlertRule(config(alert_min_frames=1, alert_window_frames=1), FakeClock())
    decision = rule.observe("cam-7", result)
    alert = build_alert(
        result,
        device_id="dev",
        module_id="ppedetector",
        camera_id="cam-7",
        model_version="12",
        score_threshold=0.5,
        decision=decision,
        frame_id=42,
        timestamp=1_700_000_000.25,
    )
    assert uuid.UUID(alert["alertId"]).version == 4
    assert alert["time"] == "2023-11-14T22:13:20.250Z"
    assert datetime.fromisoformat(alert["time"]).utcoffset() is not None
    assert (alert["deviceId"], alert["moduleId"], alert["cameraId"]) == (
        "dev",
        "ppedetector",
        "cam-7",
    )
    assert alert["modelVersion"] == "12" and alert["frameId"] == 42
    assert alert["heads"] == [{"box": [10.0, 20.0, 30.0, 40.0], "score": 0.91}]
    assert alert["counts"] == {"helmet": 1, "head": 1}
    assert alert["window"] == {"positive": 1, "frames": 1}
    second = build_alert(
        result,
        device_id="dev",
        module_id="m",
        camera_id="c",
        model_version="1",
        score_threshold=0.5,
        decision=decision,
    )
    assert second["alertId"] != alert["alertId"]


def test_config_rejects_k_above_n() -> None:
    with pytest.raises(ValueError, match="must not exceed"):
        config(alert_min_frames=6, alert_window_frames=5)
