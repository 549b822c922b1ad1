"""Anchors fitted to a dataset (k-means, 1 - IoU distance) and ``ppe data anchors``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from testing.unit.data.conftest import VocFactory

from ppe.cli import main
from ppe.config import config_from_mapping, load_config
from ppe.data.anchors import kmeans_anchors, letterboxed_sizes, mean_best_iou, shape_iou
from ppe.data.voc import load_split
from ppe.errors import DataError
from ppe.model.spec import YOLOV3_TINY_ANCHORS, YoloSpec


def test_shape_iou_aligns_centres() -> None:
    table = shape_iou([[10, 20], [20, 20]], [[10, 20], [20, 10]])
    np.testing.assert_allclose(table, [[1.0, 100 / 300], [0.5, 0.5]])


def test_kmeans_finds_the_clusters_and_beats_darknets_anchors() -> None:
    rng = np.random.default_rng(3)
    centres = np.array([[12, 16], [24, 30], [40, 52], [70, 60], [110, 150], [200, 180]])
    sizes = np.concatenate([c * rng.uniform(0.93, 1.07, (50, 2)) for c in centres])
    fit = kmeans_anchors(sizes, 6, seed=0)
    assert fit.boxes == 300
    np.testing.assert_allclose(np.array(fit.anchors), centres, rtol=0.05)
    assert fit.mean_iou > 0.85
    assert fit.mean_iou > mean_best_iou(sizes, YOLOV3_TINY_ANCHORS) + 0.1
    assert kmeans_anchors(sizes, 6, seed=0) == fit  # deterministic
    with pytest.raises(DataError, match="6 anchors need at least 6 distinct box shapes"):
        kmeans_anchors(sizes[:3], 6)


def test_sizes_are_measured_in_the_letterboxed_416_input(make_voc: VocFactory) -> None:
    # 64 x 48 image: the longer side (64) becomes 416, so a 16 x 12 px box is 104 x 78.
    root = make_voc({"a": [("helmet", 1, 1, 16, 12)]})
    sizes = letterboxed_sizes(load_split(root, "train", ["helmet", "head"]))
    np.testing.assert_allclose(sizes, [[16 * 6.5, 12 * 6.5]], rtol=1e-5)


def test_anchors_command_prints_config_yaml_that_trains(
    make_voc: VocFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    shapes = [(4, 4), (6, 9), (10, 8), (14, 16), (20, 28), (30, 24), (40, 40), (5, 7)]
    items = {
        f"img{i}": [("head" if i % 2 else "helmet", 2, 2, 2 + w, 2 + h)]
        for i, (w, h) in enumerate(shapes * 3)
    }
    root = make_voc(items)
    out = tmp_path / "anchors.yaml"
    assert main(["data", "anchors", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mean best-anchor IoU" in printed and "with Darknet's anchors" in printed
    snippet = yaml.safe_load(out.read_text())
    assert out.read_text() in printed
    config = config_from_mapping(snippet)
    assert config.model.anchors is not None and len(config.model.anchors) == 6
    spec = YoloSpec.default("yolov3_tiny", anchors=config.model.anchors)
    assert spec.masks == ((3, 4, 5), (0, 1, 2))
    # yolov3 needs 9 anchors, more than the 8 distinct shapes here.
    assert main(["data", "anchors", str(root), "--set", "model.architecture=yolov3"]) != 0
    assert "9 anchors need at least 9 distinct box shapes" in caplog.text
    assert load_config(None, [f"model.anchors={snippet['model']['anchors']}"]).model.anchors
