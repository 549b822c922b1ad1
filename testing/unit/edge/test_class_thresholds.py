"""Per-class score thresholds from the model folder: the detector and ``/score`` apply them.

The rigged LiteRT model (see ``tflite_models.py``) yields 9 ``head`` boxes scoring ~0.588 on
every frame through the real interpreter, so a head threshold of 0.6 must remove all of them and
one of 0.5 must keep them, whatever the live threshold below it.
"""

from __future__ import annotations

import http.client
import io
import json
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from ppe.edge.runtime import LiteRTDetector, ModelLoadError
from ppe.edge.server import ScoringServer
from ppe.run.documents import ClassThresholds
from ppe.run.layout import thresholds_file


def _model(edge_models: Path, folder: Path, thresholds: dict[str, float] | None) -> Path:
    folder.mkdir()
    shutil.copy(edge_models / "rigged_int8.tflite", folder / "model.tflite")
    shutil.copy(edge_models / "labels.txt", folder / "labels.txt")
    shutil.copy(edge_models / "model.json", folder / "model.json")
    if thresholds is not None:
        ClassThresholds(split="val", criterion="max F1", thresholds=thresholds).write(
            thresholds_file(folder)
        )
    return folder / "model.tflite"


def _score(detector: LiteRTDetector, live: float, query: str = "") -> dict[str, object]:
    server = ScoringServer(
        detector,
        host="127.0.0.1",
        port=0,
        max_upload_bytes=1 << 20,
        max_image_pixels=1 << 22,
        score_threshold=lambda: live,
    )
    buffer = io.BytesIO()
    Image.new("RGB", (160, 120), (90, 90, 90)).save(buffer, "PNG")
    body = buffer.getvalue()
    server.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request(
            "POST",
            f"/score{query}",
            body,
            {"Content-Type": "image/png", "Content-Length": str(len(body))},
        )
        response = connection.getresponse()
        assert response.status == 200
        document: dict[str, object] = json.loads(response.read())
        connection.close()
        return document
    finally:
        server.stop()


def test_detector_applies_the_model_folders_class_thresholds(
    edge_models: Path, tflite_models: ModuleType, tmp_path: Path
) -> None:
    frame = np.zeros((120, 160, 3), dtype=np.uint8)
    plain = LiteRTDetector(_model(edge_models, tmp_path / "plain", None))
    assert plain.class_thresholds is None
    assert len(plain.detect(frame, 0.25).detections) == tflite_models.RIGGED_BOXES
    strict = LiteRTDetector(_model(edge_models, tmp_path / "strict", {"head": 0.6}))
    assert strict.detect(frame, 0.25).detections == []  # 0.588 < head's 0.6
    loose = LiteRTDetector(_model(edge_models, tmp_path / "loose", {"head": 0.5, "helmet": 0.9}))
    assert len(loose.detect(frame, 0.25).detections) == tflite_models.RIGGED_BOXES
    # The live threshold stays a floor: above the score it removes them all.
    assert loose.detect(frame, 0.7).detections == []


def test_score_endpoint_applies_them(
    edge_models: Path, tflite_models: ModuleType, tmp_path: Path
) -> None:
    strict = LiteRTDetector(_model(edge_models, tmp_path / "strict", {"head": 0.6}))
    assert _score(strict, live=0.25)["detections"] == []
    # A query threshold below the class's does not bring them back.
    assert _score(strict, live=0.25, query="?score_threshold=0.3")["detections"] == []
    loose = LiteRTDetector(_model(edge_models, tmp_path / "loose", {"head": 0.5}))
    assert len(_score(loose, live=0.25)["detections"]) == tflite_models.RIGGED_BOXES  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"split": "val"}', "not the ClassThresholds document"),
        (
            json.dumps({"split": "val", "criterion": "x", "thresholds": {"hat": 0.3}}),
            r"classes the model lacks \(\['hat'\]\)",
        ),
        (
            json.dumps({"split": "val", "criterion": "x", "thresholds": {"head": 1.5}}),
            r"outside \[0, 1\)",
        ),
    ],
)
def test_a_bad_thresholds_file_refuses_to_load(
    edge_models: Path, tmp_path: Path, content: str, match: str
) -> None:
    model = _model(edge_models, tmp_path / "bad", None)
    thresholds_file(model.parent).write_text(content)
    with pytest.raises(ModelLoadError, match=match):
        LiteRTDetector(model)
