"""NumPy decoding and class-aware hard NMS."""

from __future__ import annotations

import numpy as np
import pytest

from ppe.model.decode import box_iou, decode, detect, non_max_suppression
from ppe.model.spec import YoloSpec

SPEC = YoloSpec.default("yolov3_tiny", ("helmet", "head"), image_size=64)


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def test_decode_places_box_from_cell_offset_and_anchor() -> None:
    outputs = [np.full((1, *shape), -20.0, np.float32) for shape in SPEC.output_shapes]
    # Output 1 (stride 16, grid 4), row 2, column 1, slot 2: offsets 0.5, size 2x anchor.
    outputs[1][0, 2, 1, 2, :4] = [0.0, 0.0, np.log(2.0), 0.0]
    outputs[1][0, 2, 1, 2, 4] = _logit(0.8)
    outputs[1][0, 2, 1, 2, 5:] = [_logit(0.5), _logit(0.9)]
    boxes, scores = decode(outputs, SPEC)
    assert boxes.shape == (1, (4 + 16) * 3, 4)
    assert scores.shape == (1, (4 + 16) * 3, 2)
    index = 4 * 3 + (2 * 4 + 1) * 3 + 2  # after output 0, then row-major cell, then slot
    anchor_w, anchor_h = SPEC.scale_anchors(1)[2]
    centre = np.array([1.5 / 4, 2.5 / 4])
    half = np.array([anchor_w, anchor_h / 2])  # width is 2 x anchor
    expected = np.concatenate([centre - half, centre + half])
    np.testing.assert_allclose(boxes[0, index], expected, rtol=1e-5)
    np.testing.assert_allclose(scores[0, index], [0.4, 0.72], rtol=1e-5)
    assert np.count_nonzero(scores > 1e-6) == 2


def test_decode_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError, match="2 outputs"):
        decode([np.zeros((1, 2, 2, 3, 7), np.float32)], SPEC)
    with pytest.raises(ValueError, match="output 1"):
        decode([np.zeros((1, 2, 2, 3, 7)), np.zeros((1, 4, 4, 3, 8))], SPEC)


def _nms(boxes: list[list[float]], scores: list[list[float]], **kwargs: float) -> tuple:
    [result] = non_max_suppression(
        np.array([boxes], np.float32), np.array([scores], np.float32), **kwargs
    )
    return result


BASE = [0.1, 0.1, 0.5, 0.5]


def test_duplicate_above_threshold_is_suppressed_and_below_is_kept() -> None:
    above = [0.12, 0.1, 0.52, 0.5]  # IoU 0.905
    below = [0.3, 0.1, 0.7, 0.5]  # IoU 1/3
    assert box_iou(np.array([BASE]), np.array([above]))[0, 0] > 0.9
    result = _nms([BASE, above, below], [[0.9, 0], [0.8, 0], [0.7, 0]], iou_threshold=0.5)
    assert len(result) == 2
    np.testing.assert_allclose(result.boxes, [BASE, below])
    np.testing.assert_allclose(result.scores, [0.9, 0.7])
    # The IoU threshold is honoured both ways: at 0.95 the near duplicate survives too,
    # at 0.3 the one-third overlap goes as well.
    assert len(_nms([BASE, above, below], [[0.9, 0], [0.8, 0], [0.7, 0]], iou_threshold=0.95)) == 3
    assert len(_nms([BASE, above, below], [[0.9, 0], [0.8, 0], [0.7, 0]], iou_threshold=0.3)) == 1


def test_overlapping_boxes_of_different_classes_are_both_kept() -> None:
    result = _nms([BASE, BASE], [[0.9, 0.0], [0.0, 0.8]], iou_threshold=0.5)
    assert sorted(result.classes.tolist()) == [0, 1]
    # One box confident for both classes is reported once per class (multi-label).
    result = _nms([BASE], [[0.9, 0.6]], iou_threshold=0.5)
    assert result.classes.tolist() == [0, 1]
    np.testing.assert_allclose(result.scores, [0.9, 0.6])


def test_score_threshold_and_max_detections() -> None:
    boxes = [[0.1 * i, 0.0, 0.1 * i + 0.05, 0.05] for i in range(10)]
    scores = [[0.1 + 0.05 * i, 0.0] for i in range(10)]
    result = _nms(boxes, scores, score_threshold=0.3, max_detections=100)
    assert len(result) == 6
    assert np.all(np.diff(result.scores) <= 0)
    result = _nms(boxes, scores, score_threshold=0.0, max_detections=3)
    assert len(result) == 3
    np.testing.assert_allclose(result.scores, [0.55, 0.5, 0.45])
    assert result.boxes.dtype == np.float32 and result.classes.dtype == np.int32


def test_empty_and_batched() -> None:
    results = non_max_suppression(
        np.zeros((3, 5, 4), np.float32), np.zeros((3, 5, 2), np.float32), score_threshold=0.5
    )
    assert [len(r) for r in results] == [0, 0, 0]
    assert results[0].boxes.shape == (0, 4)


def test_detect_end_to_end_clips_boxes() -> None:
    outputs = [np.full((2, *shape), -20.0, np.float32) for shape in SPEC.output_shapes]
    outputs[0][1, 0, 0, 2, :] = [-3.0, -3.0, 1.0, 1.0, 5.0, 5.0, -5.0]  # large box at top left
    results = detect(outputs, SPEC, score_threshold=0.5)
    assert len(results[0]) == 0
    assert len(results[1]) == 1
    assert results[1].classes.tolist() == [0]
    assert results[1].boxes.min() >= 0.0 and results[1].boxes.max() <= 1.0


def _full_matrix_nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, limit: int
) -> np.ndarray:
    """The textbook greedy NMS over the whole IoU matrix: the reference for ``_hard_nms``."""
    order = np.argsort(-scores, kind="stable")
    iou = box_iou(boxes[order], boxes[order])
    suppressed = np.zeros(order.size, dtype=bool)
    keep: list[int] = []
    for position in range(order.size):
        if suppressed[position]:
            continue
        keep.append(position)
        if len(keep) == limit:
            break
        suppressed |= iou[position] > iou_threshold
    return order[np.asarray(keep, dtype=np.int64)]


@pytest.mark.parametrize(("count", "limit"), [(0, 5), (1, 5), (400, 100), (1500, 1500)])
def test_hard_nms_keeps_exactly_what_the_full_iou_matrix_keeps(count: int, limit: int) -> None:
    # Crowded boxes (many overlaps), ties in score and zero-area boxes: the row-by-row pass must
    # keep the same indices in the same order as the full-matrix pass it replaced.
    from ppe.model.decode import _hard_nms

    rng = np.random.default_rng(count)
    centres = rng.uniform(0.3, 0.7, size=(count, 2))
    sizes = rng.uniform(0.0, 0.2, size=(count, 2))
    sizes[::37] = 0.0
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
    scores = np.round(rng.uniform(size=count), 2).astype(np.float32)
    for threshold in (0.0, 0.45, 1.0):
        expected = _full_matrix_nms(boxes, scores, threshold, limit)
        np.testing.assert_array_equal(_hard_nms(boxes, scores, threshold, limit), expected)
