"""The operating point (counts, confusion matrix at the edge's thresholds) and threshold choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from testing.unit.evaluate.evaluation_cases import (
    BOX,
    CLASSES,
    FAR,
    random_split,
    score,
    write_eval,
)

from ppe.errors import DocumentError
from ppe.evaluate.detect import operating_thresholds
from ppe.evaluate.operating import (
    BACKGROUND,
    MISSED,
    choose_thresholds,
    class_counts,
    confusion_matrix,
)
from ppe.evaluate.voc_map import ImageDetections, ImageGroundTruth, evaluate_voc_map
from ppe.run.documents import ClassThresholds
from ppe.run.layout import thresholds_file

HEAD_BOX = [100.0, 100.0, 140.0, 140.0]


def test_confusion_matrix_by_hand() -> None:
    truth = ImageGroundTruth([BOX, HEAD_BOX, FAR], [0, 1, 1])
    found = ImageDetections(
        [BOX, HEAD_BOX, [300.0, 300.0, 330.0, 330.0], FAR],
        [0.9, 0.8, 0.6, 0.3],
        [0, 0, 1, 1],
    )
    # Thresholds helmet 0.5, head 0.7: the head detections (0.6, 0.3) are not kept.
    matrix = confusion_matrix([truth], [found], CLASSES, [0.5, 0.7])
    assert matrix.rows == [*CLASSES, BACKGROUND] and matrix.columns == [*CLASSES, MISSED]
    assert matrix.counts == [
        [1, 0, 0],  # the helmet box: found as helmet
        [1, 0, 1],  # head boxes: one called helmet, one missed
        [0, 0, 0],
    ]
    # At 0.01 the stray head detection is a background false positive, FAR is found.
    assert confusion_matrix([truth], [found], CLASSES, [0.01, 0.01]).counts == [
        [1, 0, 0],
        [1, 1, 0],
        [0, 1, 0],
    ]


def test_confusion_matrix_ignores_difficult_boxes() -> None:
    truth = ImageGroundTruth([BOX, FAR], [0, 0], [False, True])
    found = ImageDetections([FAR], [0.9], [0])
    # The detection on the difficult box is neither right nor wrong; the helmet box is missed.
    assert confusion_matrix([truth], [found], CLASSES, [0.5, 0.5]).counts == [
        [0, 0, 1],
        [0, 0, 0],
        [0, 0, 0],
    ]


@pytest.mark.parametrize("thresholds", [[0.3, 0.3], [0.5, 0.8], [0.9, 0.1]])
def test_counts_at_a_threshold_equal_evaluating_only_detections_above_it(
    thresholds: list[float],
) -> None:
    split = random_split(40, seed=5)
    outcomes = score(split).outcomes
    assert outcomes is not None
    counts = class_counts(outcomes, CLASSES, thresholds)
    kept = []
    for found in split.detections:
        keep = found.scores >= np.asarray(thresholds)[found.labels]
        kept.append(ImageDetections(found.boxes[keep], found.scores[keep], found.labels[keep]))
    oracle = evaluate_voc_map(split.ground_truths, kept, CLASSES)
    for name in CLASSES:
        assert (counts[name].tp, counts[name].fp) == (oracle[name].num_tp, oracle[name].num_fp)
        assert counts[name].fn == oracle[name].num_ground_truth - oracle[name].num_tp
        assert counts[name].threshold == thresholds[CLASSES.index(name)]


def test_choose_thresholds_maximises_f1_by_hand() -> None:
    # helmet, 3 boxes: TP .9, FP .8, TP .6, FP .5, TP .2. F1 = 2TP/(kept + 3):
    # at .9: 2/4 = .5; .8: 2/5 = .4; .6: 4/6 = .667; .5: 4/7 = .571; .2: 6/8 = .75.
    boxes = [[10.0 * i, 0.0, 10.0 * i + 8, 8.0] for i in range(3)]
    truth = ImageGroundTruth(boxes, [0, 0, 0])
    found = ImageDetections(
        [boxes[0], FAR, boxes[1], FAR, boxes[2]], [0.9, 0.8, 0.6, 0.5, 0.2], [0, 0, 0, 0, 0]
    )
    outcomes = evaluate_voc_map([truth], [found], CLASSES).outcomes
    assert outcomes is not None
    # No head box and no head detection: head gets no threshold (the live one applies).
    assert choose_thresholds(outcomes, CLASSES) == {"helmet": 0.2}
    # Without the last TP the best is .6 (F1 .667).
    found = ImageDetections([boxes[0], FAR, boxes[1], FAR], [0.9, 0.8, 0.6, 0.5], [0, 0, 0, 0])
    outcomes = evaluate_voc_map([truth], [found], CLASSES).outcomes
    assert outcomes is not None
    assert choose_thresholds(outcomes, CLASSES) == {"helmet": 0.6}


def test_operating_thresholds_are_the_larger_of_the_edge_and_the_model_folder(
    tmp_path: Path,
) -> None:
    thresholds, source = operating_thresholds(tmp_path, CLASSES, 0.4)
    assert thresholds == [0.4, 0.4] and "edge.score_threshold 0.4" in source
    ClassThresholds(
        split="val", criterion="max F1", thresholds={"helmet": 0.2, "head": 0.65}
    ).write(thresholds_file(tmp_path))
    thresholds, source = operating_thresholds(tmp_path, CLASSES, 0.4)
    assert thresholds == [0.4, 0.65] and "chosen on the val split" in source
    thresholds_file(tmp_path).write_text('{"split": "val"}')
    with pytest.raises(DocumentError, match=r"thresholds\.json"):
        operating_thresholds(tmp_path, CLASSES, 0.4)


def test_metrics_json_holds_the_operating_point(tmp_path: Path) -> None:
    split = random_split(30, seed=2)
    metrics = write_eval(tmp_path / "evaluate", split, operating=([0.5, 0.6], "by hand"))
    point = metrics.operating_point
    assert point is not None and point.source == "by hand"
    assert point.per_class["head"].threshold == 0.6
    total_boxes = sum(metrics.counts.ground_truth.values())
    matrix = np.asarray(point.confusion.counts)
    # Every non-difficult box is either matched (a class column) or missed.
    assert matrix[:-1].sum() == total_boxes
    # Fewer detections at the operating point than at 0.01.
    kept = sum(c.tp + c.fp for c in point.per_class.values())
    assert kept < sum(metrics.counts.detections.values())
