"""VOC 2010+ mAP: hand-worked cases and a property test against a loop-based reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ppe.errors import DataError
from ppe.evaluate import voc_map
from ppe.evaluate.voc_map import (
    ImageDetections,
    ImageGroundTruth,
    average_precision,
    evaluate_voc_map,
)

CLASSES = ["helmet", "head"]


def gt(*rows: tuple[list[float], int] | tuple[list[float], int, bool]) -> ImageGroundTruth:
    boxes = [r[0] for r in rows]
    labels = [r[1] for r in rows]
    difficult = [bool(r[2]) if len(r) > 2 else False for r in rows]  # type: ignore[misc]
    return ImageGroundTruth(boxes, labels, difficult)


def det(*rows: tuple[list[float], float, int]) -> ImageDetections:
    return ImageDetections([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


BOX = [0.0, 0.0, 9.0, 9.0]  # 10 x 10 pixels with the +1 convention
FAR = [100.0, 100.0, 109.0, 109.0]


# ---------------------------------------------------------------------------------------------
# hand-worked cases


def test_perfect_detection_scores_one() -> None:
    result = evaluate_voc_map(
        [gt((BOX, 0), (FAR, 1))], [det((BOX, 0.9, 0), (FAR, 0.8, 1))], CLASSES
    )
    assert result.map50 == 1.0
    assert result.ap == {"helmet": 1.0, "head": 1.0}
    assert result["helmet"].num_tp == 1 and result["helmet"].num_fp == 0


def test_average_precision_all_point_envelope_by_hand() -> None:
    # recall 0.5 @ p=1, 0.5 @ p=0.5, 1.0 @ p=2/3 -> envelope [1, 2/3, 2/3]: 0.5*1 + 0.5*2/3
    recall = np.array([0.5, 0.5, 1.0])
    precision = np.array([1.0, 0.5, 2 / 3])
    assert average_precision(recall, precision) == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-15)
    assert average_precision(np.zeros(0), np.zeros(0)) == 0.0


def test_ties_keep_image_order_then_detection_order() -> None:
    # Equal scores: image 0's false positive ranks before image 1's true positive.
    images_gt = [gt(), gt((BOX, 0))]
    images_det = [det((FAR, 0.5, 0)), det((BOX, 0.5, 0))]
    first = evaluate_voc_map(images_gt, images_det, CLASSES)
    assert first["helmet"].precision.tolist() == [0.0, 0.5]
    assert first["helmet"].recall.tolist() == [0.0, 1.0]
    assert first.ap["helmet"] == pytest.approx(0.5)
    # Swap the images: now the true positive ranks first and AP is 1.
    swapped = evaluate_voc_map(images_gt[::-1], images_det[::-1], CLASSES)
    assert swapped.ap["helmet"] == 1.0
    # Within one image, detector order breaks the tie.
    same_image = evaluate_voc_map([gt((BOX, 0))], [det((FAR, 0.5, 0), (BOX, 0.5, 0))], CLASSES)
    assert same_image.ap["helmet"] == pytest.approx(0.5)


def test_duplicate_is_false_positive_without_fallback_to_second_best_box() -> None:
    # Two overlapping boxes; both detections match box A best (IoU 1.0 and ~0.8), and the
    # second one must not fall back to box B even though IoU(det2, B) >= 0.5.
    box_a = [0.0, 0.0, 9.0, 9.0]
    box_b = [2.0, 0.0, 11.0, 9.0]
    det2 = [1.0, 0.0, 10.0, 9.0]  # IoU with A = 90/110, with B = 90/110: first max (A) wins
    result = evaluate_voc_map(
        [gt((box_a, 0), (box_b, 0))], [det((box_a, 0.9, 0), (det2, 0.8, 0))], CLASSES
    )
    helmet = result["helmet"]
    assert (helmet.num_tp, helmet.num_fp) == (1, 1)
    assert helmet.precision.tolist() == [1.0, 0.5]
    assert helmet.recall.tolist() == [0.5, 0.5]
    assert helmet.ap == pytest.approx(0.5)


def test_used_box_still_attracts_later_detection() -> None:
    # Greedy VOC matching: the max-IoU box is chosen among used ones too -> repeated match = FP.
    result = evaluate_voc_map([gt((BOX, 0))], [det((BOX, 0.9, 0), (BOX, 0.8, 0))], CLASSES)
    assert (result["helmet"].num_tp, result["helmet"].num_fp) == (1, 1)


def test_difficult_boxes_are_neither_counted_nor_penalised() -> None:
    images_gt = [gt((BOX, 0), (FAR, 0, True))]
    images_det = [det((FAR, 0.95, 0), (BOX, 0.9, 0))]
    helmet = evaluate_voc_map(images_gt, images_det, CLASSES)["helmet"]
    assert helmet.num_ground_truth == 1 and helmet.num_difficult == 1
    assert (helmet.num_tp, helmet.num_fp, helmet.num_ignored) == (1, 0, 1)
    assert helmet.num_detections == 2
    assert helmet.ap == 1.0
    assert helmet.precision.tolist() == [1.0]  # the ignored detection is not a curve point


def test_class_with_only_difficult_boxes_is_left_out_of_the_mean() -> None:
    result = evaluate_voc_map(
        [gt((BOX, 0), (FAR, 1, True))], [det((BOX, 0.9, 0), (FAR, 0.9, 1))], CLASSES
    )
    assert result.ap == {"helmet": 1.0, "head": None}
    assert result.classes_without_ground_truth == ["head"]
    assert result.map50 == 1.0


def test_class_without_detections_scores_zero_and_counts() -> None:
    result = evaluate_voc_map([gt((BOX, 0), (FAR, 1))], [det((BOX, 0.9, 0))], CLASSES)
    assert result.ap == {"helmet": 1.0, "head": 0.0}
    assert result["head"].num_detections == 0
    assert result.map50 == 0.5


def test_class_without_ground_truth_is_excluded_and_reported() -> None:
    result = evaluate_voc_map([gt((BOX, 0))], [det((BOX, 0.9, 0), (FAR, 0.8, 1))], CLASSES)
    assert result.ap["head"] is None
    assert result["head"].num_fp == 1
    assert result.classes_without_ground_truth == ["head"]
    assert result.map50 == 1.0
    assert result.to_dict()["per_class"]["head"]["ap"] is None


def test_empty_images_are_fine_and_no_ground_truth_gives_nan() -> None:
    result = evaluate_voc_map(
        [gt(), gt((BOX, 0)), gt()], [det(), det((BOX, 0.7, 0)), det()], CLASSES
    )
    assert result.num_images == 3
    assert result.map50 == 1.0
    nothing = evaluate_voc_map([gt(), gt()], [det(), det((BOX, 0.5, 1))], CLASSES)
    assert math.isnan(nothing.map50)
    assert nothing.to_dict()["map50"] is None
    assert evaluate_voc_map([], [], CLASSES).classes_without_ground_truth == CLASSES


def test_plus_one_iou_boundary_at_exactly_one_half_is_a_match() -> None:
    # +1 convention: GT area 10*10 = 100, detection 10*5 = 50, intersection 50 -> IoU exactly 0.5
    # (without +1 it would be 36/81 = 0.44 and a miss).
    half = [0.0, 0.0, 9.0, 4.0]
    assert voc_map.voc_iou(np.array([half]), np.array([BOX]))[0] == 0.5
    hit = evaluate_voc_map([gt((BOX, 0))], [det((half, 0.9, 0))], CLASSES)
    assert hit["helmet"].num_tp == 1
    # One pixel row less: 40/100 = 0.4 -> false positive.
    below = evaluate_voc_map([gt((BOX, 0))], [det(([0.0, 0.0, 9.0, 3.0], 0.9, 0))], CLASSES)
    assert below["helmet"].num_fp == 1
    # The threshold is configurable (and inclusive).
    strict = evaluate_voc_map([gt((BOX, 0))], [det((half, 0.9, 0))], CLASSES, iou_threshold=0.51)
    assert strict["helmet"].num_fp == 1


def test_touching_boxes_overlap_by_one_pixel_under_plus_one() -> None:
    # xmax of one == xmin of the other: iw = 1 with the +1 convention.
    iou = voc_map.voc_iou(np.array([[0.0, 0.0, 9.0, 9.0]]), np.array([[9.0, 0.0, 18.0, 9.0]]))
    assert iou[0] == pytest.approx(10 / 190)
    apart = voc_map.voc_iou(np.array([[0.0, 0.0, 9.0, 9.0]]), np.array([[10.0, 0.0, 19.0, 9.0]]))
    assert apart[0] == 0.0


def test_to_dict_is_json_ready_with_curves_on_request() -> None:
    result = evaluate_voc_map([gt((BOX, 0))], [det((BOX, 0.9, 0))], CLASSES)
    data = result.to_dict(include_curves=True)
    assert data["per_class"]["helmet"]["precision"] == [1.0]
    assert data["ap"] == {"helmet": 1.0, "head": None}
    assert "precision" not in result.to_dict()["per_class"]["helmet"]


@pytest.mark.parametrize(
    ("ground_truth", "detections", "match"),
    [
        ([gt((BOX, 2))], [det()], "class index out of range"),
        ([gt()], [det((BOX, 0.5, -1))], "class index out of range"),
        ([gt(([5.0, 0.0, 1.0, 9.0], 0))], [det()], "xmax < xmin"),
        ([gt()], [det((BOX, math.nan, 0))], "scores must be finite"),
        ([gt()], [det(), det()], "1 ground-truth images but 2"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(
    ground_truth: list[ImageGroundTruth], detections: list[ImageDetections], match: str
) -> None:
    with pytest.raises(DataError, match=match):
        evaluate_voc_map(ground_truth, detections, CLASSES)


def test_box_shape_is_checked() -> None:
    with pytest.raises(DataError, match=r"shape \(num_boxes, 4\)"):
        ImageGroundTruth([[1.0, 2.0, 3.0]], [0])
    with pytest.raises(DataError, match="one score and one label per box"):
        ImageDetections([BOX], [0.5, 0.4], [0])


# ---------------------------------------------------------------------------------------------
# property test: the vectorised implementation equals a straightforward loop (Cartucho/VOC rules)


def reference_map(
    images_gt: list[list[tuple[list[float], int, bool]]],
    images_det: list[list[tuple[list[float], float, int]]],
    num_classes: int,
    threshold: float,
) -> dict[int, tuple[float | None, int, int]]:
    """class -> (AP or None, tp, fp), written as plainly as possible."""
    out: dict[int, tuple[float | None, int, int]] = {}
    for c in range(num_classes):
        npos = sum(
            1 for image in images_gt for (_, label, hard) in image if label == c and not hard
        )
        ranked = [
            (score, i, box)
            for i, image in enumerate(images_det)
            for (box, score, label) in image
            if label == c
        ]
        ranked.sort(key=lambda entry: entry[0], reverse=True)  # stable
        used: set[tuple[int, int]] = set()
        tp_flags: list[int] = []
        fp_flags: list[int] = []
        for _, i, box in ranked:
            best, best_j = -1.0, -1
            for j, (gbox, label, _) in enumerate(images_gt[i]):
                if label != c:
                    continue
                iw = min(box[2], gbox[2]) - max(box[0], gbox[0]) + 1
                ih = min(box[3], gbox[3]) - max(box[1], gbox[1]) + 1
                if iw > 0 and ih > 0:
                    union = (
                        (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
                        + (gbox[2] - gbox[0] + 1) * (gbox[3] - gbox[1] + 1)
                        - iw * ih
                    )
                    overlap = iw * ih / union
                    if overlap > best:
                        best, best_j = overlap, j
            if best >= threshold:
                if images_gt[i][best_j][2]:
                    continue  # difficult: ignored
                if (i, best_j) not in used:
                    used.add((i, best_j))
                    tp_flags.append(1)
                    fp_flags.append(0)
                else:
                    tp_flags.append(0)
                    fp_flags.append(1)
            else:
                tp_flags.append(0)
                fp_flags.append(1)
        if npos == 0:
            out[c] = (None, sum(tp_flags), sum(fp_flags))
            continue
        rec, prec, ctp, cfp = [], [], 0, 0
        for t, f in zip(tp_flags, fp_flags, strict=True):
            ctp += t
            cfp += f
            rec.append(ctp / npos)
            prec.append(ctp / (ctp + cfp))
        mrec = [0.0, *rec, 1.0]
        mpre = [0.0, *prec, 0.0]
        for k in range(len(mpre) - 2, -1, -1):
            mpre[k] = max(mpre[k], mpre[k + 1])
        ap = 0.0
        for k in range(1, len(mrec)):
            if mrec[k] != mrec[k - 1]:
                ap += (mrec[k] - mrec[k - 1]) * mpre[k]
        out[c] = (ap, sum(tp_flags), sum(fp_flags))
    return out


coordinate = st.integers(min_value=0, max_value=12).map(float)


@st.composite
def boxes(draw: st.DrawFn) -> list[float]:
    x0, y0 = draw(coordinate), draw(coordinate)
    return [x0, y0, x0 + draw(coordinate), y0 + draw(coordinate)]


gt_row = st.tuples(boxes(), st.integers(0, 2), st.booleans())
det_row = st.tuples(boxes(), st.sampled_from([0.1, 0.3, 0.3, 0.5, 0.9]), st.integers(0, 2))
dataset = st.lists(
    st.tuples(st.lists(gt_row, max_size=5), st.lists(det_row, max_size=6)), max_size=6
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=dataset, threshold=st.sampled_from([0.3, 0.5, 0.75]), block=st.sampled_from([1, 7, 10**6])
)
def test_matches_loop_reference(
    data: list[tuple[list[tuple[list[float], int, bool]], list[tuple[list[float], float, int]]]],
    threshold: float,
    block: int,
) -> None:
    images_gt = [g for g, _ in data]
    images_det = [d for _, d in data]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(voc_map, "_PAIRS_PER_BLOCK", block)  # exercise the blocked pair loop
        result = evaluate_voc_map(
            [
                ImageGroundTruth([r[0] for r in g], [r[1] for r in g], [r[2] for r in g])
                for g in images_gt
            ],
            [
                ImageDetections([r[0] for r in d], [r[1] for r in d], [r[2] for r in d])
                for d in images_det
            ],
            ["a", "b", "c"],
            iou_threshold=threshold,
        )
    expected = reference_map(images_gt, images_det, 3, threshold)
    for c, name in enumerate(["a", "b", "c"]):
        ap, tp, fp = expected[c]
        got = result[name]
        assert (got.num_tp, got.num_fp) == (tp, fp)
        if ap is None:
            assert got.ap is None
        else:
            assert got.ap == pytest.approx(ap, abs=1e-12)
    counted = [ap for ap, _, _ in expected.values() if ap is not None]
    if counted:
        assert result.map50 == pytest.approx(sum(counted) / len(counted), abs=1e-12)
    else:
        assert math.isnan(result.map50)
