"""The no-helmet alert rule (K positive frames out of the last N, then a cool-down) and its message.

A frame is *positive* when it has at least one ``head`` detection (a head without a helmet) whose
score is at least the score threshold. For each camera the rule keeps the last N frame verdicts;
when K or more of them are positive it raises an alert and then stays quiet for the cool-down
(frames still enter the window meanwhile, so a violation that persists alerts again as soon as the
cool-down ends). All thresholds come from :class:`ppe.config.EdgeConfig` and can change at any
time (module twin); a new window length keeps the most recent verdicts.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ppe.config import EdgeConfig
from ppe.edge.runtime import DetectionResult

logger = logging.getLogger(__name__)

#: The class whose detection makes a frame positive.
HEAD_LABEL = "head"
#: The class counted as protected heads.
HELMET_LABEL = "helmet"


@dataclass(frozen=True)
class AlertDecision:
    """What the rule decided for one frame.

    Attributes:
        positive: the frame has a ``head`` at or above the threshold.
        alert: an alert is due now.
        positives: positive frames in the current window.
        window: frames in the current window (at most N).
    """

    positive: bool
    alert: bool
    positives: int
    window: int


class AlertRule:
    """K-of-N with cool-down, one window per camera. Thread-safe.

    Args:
        config: thresholds (``score_threshold``, ``alert_min_frames`` K,
            ``alert_window_frames`` N, ``alert_cooldown_s``).
        clock: monotonic seconds (tests pass a fake clock).
    """

    def __init__(self, config: EdgeConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config.model_copy()
        self._clock = clock
        self._windows: dict[str, deque[bool]] = {}
        self._quiet_until: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def config(self) -> EdgeConfig:
        """A copy of the thresholds in force."""
        with self._lock:
            return self._config.model_copy()

    def update(self, config: EdgeConfig) -> None:
        """Apply new thresholds; windows are resized keeping their most recent verdicts."""
        with self._lock:
            old_length = self._config.alert_window_frames
            self._config = config.model_copy()
            if config.alert_window_frames != old_length:
                self._windows = {
                    camera: deque(window, maxlen=config.alert_window_frames)
                    for camera, window in self._windows.items()
                }

    def observe(self, camera_id: str, result: DetectionResult) -> AlertDecision:
        """Record one frame of ``camera_id`` and say whether an alert is due.

        Args:
            camera_id: the camera the frame came from.
            result: the frame's detections.

        Returns:
            The decision; ``alert`` is True at most once per cool-down per camera.
        """
        with self._lock:
            config = self._config
            positive = result.count(HEAD_LABEL, config.score_threshold) > 0
            window = self._windows.setdefault(camera_id, deque(maxlen=config.alert_window_frames))
            window.append(positive)
            positives = sum(window)
            now = self._clock()
            due = positives >= config.alert_min_frames and now >= self._quiet_until.get(
                camera_id, float("-inf")
            )
            if due:
                self._quiet_until[camera_id] = now + config.alert_cooldown_s
            return AlertDecision(
                positive=positive, alert=due, positives=positives, window=len(window)
            )


def build_alert(
    result: DetectionResult,
    *,
    device_id: str,
    module_id: str,
    camera_id: str,
    model_version: str,
    score_threshold: float,
    decision: AlertDecision,
    frame_id: int | None = None,
    timestamp: float | None = None,
) -> dict[str, Any]:
    """The JSON body of a no-helmet alert.

    Args:
        result: the detections of the frame that triggered the alert.
        device_id: IoT Edge device id.
        module_id: IoT Edge module id.
        camera_id: the camera.
        model_version: the deployed model version.
        score_threshold: the threshold in force (detections below it are left out).
        decision: the rule's decision (window counts).
        frame_id: the frame's sequence number.
        timestamp: UNIX time of the frame (now when None).

    Returns:
        ``alertId`` (uuid4, the de-duplication key), ``type``, ``deviceId``, ``moduleId``,
        ``cameraId``, ``time`` (UTC ISO 8601), ``modelVersion``, ``frameId``,
        ``scoreThreshold``, ``window`` (``positive`` of ``frames``), ``image`` size,
        ``heads`` (each ``box`` as pixel ``[xmin, ymin, xmax, ymax]`` and ``score``) and
        ``counts`` of ``helmet`` and ``head`` detections at or above the threshold.
    """
    moment = datetime.fromtimestamp(time.time() if timestamp is None else timestamp, tz=UTC)
    heads = [
        {"box": [round(value, 2) for value in item.box], "score": round(item.score, 5)}
        for item in result.detections
        if item.label == HEAD_LABEL and item.score >= score_threshold
    ]
    return {
        "alertId": str(uuid.uuid4()),
        "type": "no_helmet",
        "deviceId": device_id,
        "moduleId": module_id,
        "cameraId": camera_id,
        "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "modelVersion": model_version,
        "frameId": frame_id,
        "scoreThreshold": score_threshold,
        "window": {"positive": decision.positives, "frames": decision.window},
        "image": {"width": result.width, "height": result.height},
        "heads": heads,
        "counts": {
            HELMET_LABEL: result.count(HELMET_LABEL, score_threshold),
            HEAD_LABEL: len(heads),
        },
    }
