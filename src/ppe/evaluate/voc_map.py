"""PASCAL VOC 2010+ mean average precision (the definition the Cartucho/mAP tool implements).

The rules, per class (all NumPy, vectorised over images and detections):

1. The class's detections from every image are ranked by confidence, descending, with a stable
   sort: equal scores keep image order, then detection order within the image.
2. Each detection is compared with every ground-truth box of its class in its image, already
   matched and difficult ones included, using VOC's "+1 pixel" IoU
   (``iw = min(xmax) - max(xmin) + 1``, ``ih`` likewise, ``area = (w + 1)(h + 1)``). The
   first ground-truth box with the largest IoU is its candidate.
3. If that IoU is ``>= iou_threshold``: a difficult candidate makes the detection *ignored*
   (neither true nor false positive); an unused candidate makes it a true positive and marks the
   box used; a used one makes it a false positive (a repeated match; there is no fall-back to the
   second-best box). Below the threshold the detection is a false positive.
4. ``recall = cumTP / npos`` with ``npos`` the number of non-difficult boxes, and
   ``precision = cumTP / (cumTP + cumFP)``, over the ranked, non-ignored detections.
5. AP is the area under the precision envelope (all-point interpolation): the precision is made
   non-increasing from the right and summed over the recall steps, with recall padded by 0 and 1.

The mean is taken over the classes with at least one non-difficult ground-truth box; a class with
boxes but no detections scores 0, a class without boxes is left out and reported as such.

Boxes here are **pixel** coordinates ``[xmin, ymin, xmax, ymax]`` (the +1 convention assumes
pixel units), float64.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ppe.errors import DataError

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Detection-to-ground-truth pairs handled per vectorised block (bounds peak memory).
_PAIRS_PER_BLOCK = 2_000_000


def _as_boxes(value: Any, what: str) -> FloatArray:
    boxes = np.asarray(value, dtype=np.float64)
    if boxes.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DataError(
            f"{what}: boxes must have shape (num_boxes, 4) as pixel [xmin, ymin, xmax, ymax], "
            f"got shape {boxes.shape}"
        )
    return boxes


@dataclass(frozen=True, eq=False)
class ImageGroundTruth:
    """The ground-truth boxes of one image.

    Attributes:
        boxes: ``(num_boxes, 4)`` float64, pixel ``[xmin, ymin, xmax, ymax]``.
        labels: ``(num_boxes,)`` int64 class indices into the class-name list.
        difficult: ``(num_boxes,)`` bool, VOC "difficult" flags (ignored by the metric).
    """

    boxes: FloatArray
    labels: IntArray
    difficult: BoolArray

    def __init__(self, boxes: Any, labels: Any, difficult: Any | None = None) -> None:
        """Convert array-likes to the canonical dtypes; ``difficult`` defaults to all False."""
        box_array = _as_boxes(boxes, "ground truth")
        label_array = np.asarray(labels, dtype=np.int64).reshape(-1)
        flags = (
            np.zeros(len(box_array), dtype=bool)
            if difficult is None
            else np.asarray(difficult, dtype=bool).reshape(-1)
        )
        if not len(box_array) == len(label_array) == len(flags):
            raise DataError(
                f"ground truth: {len(box_array)} boxes, {len(label_array)} labels and "
                f"{len(flags)} difficult flags; give one label and one flag per box"
            )
        object.__setattr__(self, "boxes", box_array)
        object.__setattr__(self, "labels", label_array)
        object.__setattr__(self, "difficult", flags)


@dataclass(frozen=True, eq=False)
class ImageDetections:
    """The detections of one image, in the order the detector emitted them.

    Attributes:
        boxes: ``(num_detections, 4)`` float64, pixel ``[xmin, ymin, xmax, ymax]``.
        scores: ``(num_detections,)`` float64 confidences.
        labels: ``(num_detections,)`` int64 class indices into the class-name list.
    """

    boxes: FloatArray
    scores: FloatArray
    labels: IntArray

    def __init__(self, boxes: Any, scores: Any, labels: Any) -> None:
        """Convert array-likes to the canonical dtypes."""
        box_array = _as_boxes(boxes, "detections")
        score_array = np.asarray(scores, dtype=np.float64).reshape(-1)
        label_array = np.asarray(labels, dtype=np.int64).reshape(-1)
        if not len(box_array) == len(score_array) == len(label_array):
            raise DataError(
                f"detections: {len(box_array)} boxes, {len(score_array)} scores and "
                f"{len(label_array)} labels; give one score and one label per box"
            )
        object.__setattr__(self, "boxes", box_array)
        object.__setattr__(self, "scores", score_array)
        object.__setattr__(self, "labels", label_array)


@dataclass(frozen=True, eq=False)
class ClassResult:
    """AP and counts of one class.

    Attributes:
        name: Class name.
        ap: All-point AP in [0, 1]; None when the class has no non-difficult ground truth (it is
            then left out of the mean).
        precision: Precision after each ranked detection (ignored detections left out); empty
            when the class has no ground truth or no detections.
        recall: Recall after each ranked detection, same length as ``precision``.
        num_ground_truth: Non-difficult ground-truth boxes (``npos``).
        num_difficult: Difficult ground-truth boxes.
        num_detections: All detections of the class, ignored ones included.
        num_tp: True positives.
        num_fp: False positives (misses and repeated matches).
        num_ignored: Detections matched to a difficult box (neither TP nor FP).
    """

    name: str
    ap: float | None
    precision: FloatArray
    recall: FloatArray
    num_ground_truth: int
    num_difficult: int
    num_detections: int
    num_tp: int
    num_fp: int
    num_ignored: int

    @property
    def has_ground_truth(self) -> bool:
        """Whether the class counts towards the mean (>= 1 non-difficult box)."""
        return self.num_ground_truth > 0

    def to_dict(self, include_curves: bool = False) -> dict[str, Any]:
        """JSON-compatible summary (curves only on request: they can be long)."""
        data: dict[str, Any] = {
            "ap": self.ap,
            "num_ground_truth": self.num_ground_truth,
            "num_difficult": self.num_difficult,
            "num_detections": self.num_detections,
            "tp": self.num_tp,
            "fp": self.num_fp,
            "ignored": self.num_ignored,
        }
        if include_curves:
            data["precision"] = self.precision.tolist()
            data["recall"] = self.recall.tolist()
        return data


@dataclass(frozen=True, eq=False)
class DetectionOutcomes:
    """What the metric decided for every detection, and the boxes it counted, per image.

    A detection's outcome depends only on its own image (its rank among the image's detections
    of its class), so these arrays are all that resampling images needs
    (:mod:`ppe.evaluate.bootstrap`).

    Attributes:
        num_images: Images evaluated.
        num_ground_truth: ``(num_images, num_classes)`` int64 non-difficult boxes per image.
        image: ``(num_detections,)`` int64 image index of each detection (input row order).
        label: ``(num_detections,)`` int64 class index.
        score: ``(num_detections,)`` float64 confidence.
        outcome: ``(num_detections,)`` int8: 1 true positive, 0 false positive, -1 ignored
            (matched a difficult box).
    """

    num_images: int
    num_ground_truth: IntArray
    image: IntArray
    label: IntArray
    score: FloatArray
    outcome: npt.NDArray[np.int8]


@dataclass(frozen=True, eq=False)
class VocMapResult:
    """The outcome of :func:`evaluate_voc_map`.

    Attributes:
        map50: Mean AP over the classes with ground truth, at ``iou_threshold`` (0.5 unless
            configured otherwise); NaN when no class has any non-difficult ground truth.
        iou_threshold: The IoU a detection needs (``>=``) to match.
        num_images: Images evaluated.
        classes: Per-class results, in class-index order.
        outcomes: Every detection's outcome (for resampling); None only when built by hand.
    """

    map50: float
    iou_threshold: float
    num_images: int
    classes: tuple[ClassResult, ...] = field(default_factory=tuple)
    outcomes: DetectionOutcomes | None = None

    @property
    def ap(self) -> dict[str, float | None]:
        """Class name -> AP (None for classes without ground truth)."""
        return {result.name: result.ap for result in self.classes}

    @property
    def classes_without_ground_truth(self) -> list[str]:
        """Names of the classes left out of the mean (no non-difficult ground truth)."""
        return [result.name for result in self.classes if not result.has_ground_truth]

    def __getitem__(self, name: str) -> ClassResult:
        """The result of the class called ``name``."""
        for result in self.classes:
            if result.name == name:
                return result
        raise KeyError(name)

    def to_dict(self, include_curves: bool = False) -> dict[str, Any]:
        """JSON-compatible summary; ``map50`` is None (null) when it is undefined."""
        return {
            "map50": self.map50 if math.isfinite(self.map50) else None,
            "iou_threshold": self.iou_threshold,
            "num_images": self.num_images,
            "ap": self.ap,
            "classes_without_ground_truth": self.classes_without_ground_truth,
            "per_class": {r.name: r.to_dict(include_curves) for r in self.classes},
        }


def average_precision(recall: FloatArray, precision: FloatArray) -> float:
    """All-point interpolated AP (VOC 2010+ ``VOCap``).

    Args:
        recall: ``(n,)`` non-decreasing recall after each ranked detection.
        precision: ``(n,)`` precision after each ranked detection.

    Returns:
        The area under the precision envelope; 0.0 for empty input.
    """
    if len(recall) == 0:
        return 0.0
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    envelope = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * envelope[steps]))


def voc_iou(boxes_a: FloatArray, boxes_b: FloatArray) -> FloatArray:
    """Element-wise VOC IoU with the +1 pixel convention (0 where the boxes do not overlap).

    Args:
        boxes_a: ``(n, 4)`` pixel ``[xmin, ymin, xmax, ymax]``.
        boxes_b: ``(n, 4)`` pixel ``[xmin, ymin, xmax, ymax]``, paired row by row with ``boxes_a``.

    Returns:
        ``(n,)`` IoU values.
    """
    iw = np.minimum(boxes_a[:, 2], boxes_b[:, 2]) - np.maximum(boxes_a[:, 0], boxes_b[:, 0]) + 1.0
    ih = np.minimum(boxes_a[:, 3], boxes_b[:, 3]) - np.maximum(boxes_a[:, 1], boxes_b[:, 1]) + 1.0
    overlap = (iw > 0) & (ih > 0)
    inter = np.where(overlap, iw * ih, 0.0)
    area_a = (boxes_a[:, 2] - boxes_a[:, 0] + 1.0) * (boxes_a[:, 3] - boxes_a[:, 1] + 1.0)
    area_b = (boxes_b[:, 2] - boxes_b[:, 0] + 1.0) * (boxes_b[:, 3] - boxes_b[:, 1] + 1.0)
    union = area_a + area_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(overlap, inter / union, 0.0)
    return iou


def _check_boxes(boxes: FloatArray, what: str) -> None:
    if not np.all(np.isfinite(boxes)):
        raise DataError(f"{what}: box coordinates must be finite numbers")
    bad = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if len(bad):
        raise DataError(
            f"{what}: box {boxes[bad[0]].tolist()} has xmax < xmin or ymax < ymin; boxes are "
            "pixel [xmin, ymin, xmax, ymax]"
        )


def _best_matches(
    det_image: IntArray,
    det_label: IntArray,
    det_boxes: FloatArray,
    gt_image: IntArray,
    gt_label: IntArray,
    gt_boxes: FloatArray,
    num_classes: int,
) -> tuple[IntArray, FloatArray]:
    """Per detection: the first same-image, same-class ground-truth box of maximal IoU.

    Returns:
        ``(match, best_iou)``: index into the ground-truth arrays (-1 when the image has no box
        of the class) and its IoU (-1.0 then).
    """
    num_det = len(det_image)
    match = np.full(num_det, -1, dtype=np.int64)
    best_iou = np.full(num_det, -1.0, dtype=np.float64)
    if num_det == 0 or len(gt_image) == 0:
        return match, best_iou
    # Group ground truth by (image, class), keeping file order inside a group (stable sort).
    gt_key = gt_image * num_classes + gt_label
    gt_order = np.argsort(gt_key, kind="stable")
    sorted_key = gt_key[gt_order]
    det_key = det_image * num_classes + det_label
    starts = np.searchsorted(sorted_key, det_key, side="left")
    counts = np.searchsorted(sorted_key, det_key, side="right") - starts
    # Process detections in blocks so that the pair arrays stay bounded.
    pair_ends = np.cumsum(counts)
    block_start = 0
    while block_start < num_det:
        limit = (pair_ends[block_start - 1] if block_start else 0) + _PAIRS_PER_BLOCK
        block_end = max(int(np.searchsorted(pair_ends, limit, side="right")), block_start + 1)
        block_end = min(block_end, num_det)
        block = np.arange(block_start, block_end)
        block_counts = counts[block]
        total = int(block_counts.sum())
        if total:
            pair_det = np.repeat(block, block_counts)
            offsets = np.cumsum(block_counts) - block_counts
            within = np.arange(total) - np.repeat(offsets, block_counts)
            pair_gt = gt_order[np.repeat(starts[block], block_counts) + within]
            iou = voc_iou(det_boxes[pair_det], gt_boxes[pair_gt])
            has_pairs = block_counts > 0
            segment_starts = offsets[has_pairs]
            seg_max = np.maximum.reduceat(iou, segment_starts)
            # The first pair reaching the maximum of its segment (argmax tie-break: file order).
            is_max = iou == np.repeat(seg_max, block_counts[has_pairs])
            first_rows = np.flatnonzero(is_max)
            first_of_det = np.unique(pair_det[first_rows], return_index=True)[1]
            chosen = first_rows[first_of_det]
            dets = pair_det[chosen]
            match[dets] = pair_gt[chosen]
            best_iou[dets] = iou[chosen]
        block_start = block_end
    return match, best_iou


def evaluate_voc_map(
    ground_truths: Sequence[ImageGroundTruth],
    detections: Sequence[ImageDetections],
    class_names: Sequence[str],
    iou_threshold: float = 0.5,
) -> VocMapResult:
    """Per-class VOC 2010+ AP and their mean.

    Args:
        ground_truths: One entry per image; boxes are pixel ``[xmin, ymin, xmax, ymax]``.
        detections: One entry per image, in the same image order (which is also the tie order
            of equal scores); boxes are pixel ``[xmin, ymin, xmax, ymax]``.
        class_names: Names for the class indices ``0 .. len(class_names) - 1``.
        iou_threshold: Minimum IoU (inclusive) for a match; 0.5 is the VOC value.

    Returns:
        A :class:`VocMapResult` with per-class AP, precision/recall curves and counts.

    Raises:
        DataError: Mismatched image counts, class indices out of range, non-finite scores or
            coordinates, or boxes with ``xmax < xmin`` / ``ymax < ymin``.
    """
    if len(ground_truths) != len(detections):
        raise DataError(
            f"{len(ground_truths)} ground-truth images but {len(detections)} detection images; "
            "give one entry per image to both (an image without detections gets an empty entry)"
        )
    if not 0.0 < iou_threshold <= 1.0:
        raise DataError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    num_classes = len(class_names)
    if num_classes == 0:
        raise DataError("class_names is empty; give the detector's class names")
    num_images = len(ground_truths)

    def _concat(arrays: list[Any], empty: Any) -> Any:
        return np.concatenate(arrays) if arrays else empty

    gt_boxes: FloatArray = _concat([g.boxes for g in ground_truths], np.zeros((0, 4)))
    gt_label: IntArray = _concat([g.labels for g in ground_truths], np.zeros(0, np.int64))
    gt_difficult: BoolArray = _concat([g.difficult for g in ground_truths], np.zeros(0, bool))
    gt_image: IntArray = np.repeat(
        np.arange(num_images, dtype=np.int64), [len(g.labels) for g in ground_truths]
    )
    det_boxes: FloatArray = _concat([d.boxes for d in detections], np.zeros((0, 4)))
    det_score: FloatArray = _concat([d.scores for d in detections], np.zeros(0))
    det_label: IntArray = _concat([d.labels for d in detections], np.zeros(0, np.int64))
    det_image: IntArray = np.repeat(
        np.arange(num_images, dtype=np.int64), [len(d.labels) for d in detections]
    )
    return evaluate_arrays(
        gt_image=gt_image,
        gt_boxes=gt_boxes,
        gt_labels=gt_label,
        gt_difficult=gt_difficult,
        det_image=det_image,
        det_boxes=det_boxes,
        det_scores=det_score,
        det_labels=det_label,
        class_names=class_names,
        num_images=num_images,
        iou_threshold=iou_threshold,
    )


def evaluate_arrays(
    *,
    gt_image: IntArray,
    gt_boxes: FloatArray,
    gt_labels: IntArray,
    gt_difficult: BoolArray,
    det_image: IntArray,
    det_boxes: FloatArray,
    det_scores: FloatArray,
    det_labels: IntArray,
    class_names: Sequence[str],
    num_images: int,
    iou_threshold: float = 0.5,
) -> VocMapResult:
    """:func:`evaluate_voc_map` on flat arrays (one row per box), for callers that have them.

    Args:
        gt_image: ``(num_gt,)`` image index of each ground-truth box.
        gt_boxes: ``(num_gt, 4)`` pixel ``[xmin, ymin, xmax, ymax]``.
        gt_labels: ``(num_gt,)`` class indices.
        gt_difficult: ``(num_gt,)`` difficult flags.
        det_image: ``(num_det,)`` image index of each detection. Rows must be ordered by image
            index, then by detector output order (this order breaks score ties).
        det_boxes: ``(num_det, 4)`` pixel ``[xmin, ymin, xmax, ymax]``.
        det_scores: ``(num_det,)`` confidences.
        det_labels: ``(num_det,)`` class indices.
        class_names: Names for the class indices.
        num_images: Number of images (for the summary).
        iou_threshold: Minimum IoU (inclusive) for a match.

    Returns:
        A :class:`VocMapResult`.

    Raises:
        DataError: As for :func:`evaluate_voc_map`.
    """
    num_classes = len(class_names)
    gt_boxes = _as_boxes(gt_boxes, "ground truth")
    det_boxes = _as_boxes(det_boxes, "detections")
    _check_boxes(gt_boxes, "ground truth")
    _check_boxes(det_boxes, "detections")
    for what, labels in (("ground truth", gt_labels), ("detections", det_labels)):
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise DataError(
                f"{what}: class index out of range 0..{num_classes - 1} "
                f"(found {int(labels.min())}..{int(labels.max())}); check the class-name list"
            )
    if not np.all(np.isfinite(det_scores)):
        raise DataError("detections: scores must be finite numbers")
    if len(det_image) > 1 and np.any(np.diff(det_image) < 0):
        raise DataError("detections: rows must be ordered by image index")

    match, best_iou = _best_matches(
        det_image, det_labels, det_boxes, gt_image, gt_labels, gt_boxes, num_classes
    )
    # Rank: class ascending, then score descending; lexsort is stable, so ties keep row order.
    order = np.lexsort((-det_scores, det_labels))
    ranked_label = det_labels[order]
    ranked_match = match[order]
    ranked_iou = best_iou[order]
    hit = ranked_iou >= iou_threshold
    hit_difficult = np.zeros(len(order), dtype=bool)
    if len(gt_difficult):
        hit_difficult = hit & gt_difficult[np.maximum(ranked_match, 0)]
    candidate = hit & ~hit_difficult
    # A box's first candidate in ranked order is the TP; later ones are repeated matches.
    is_tp = np.zeros(len(order), dtype=bool)
    candidate_rows = np.flatnonzero(candidate)
    if len(candidate_rows):
        first = np.unique(ranked_match[candidate_rows], return_index=True)[1]
        is_tp[candidate_rows[first]] = True
    ignored = hit_difficult
    is_fp = ~is_tp & ~ignored

    npos = np.bincount(gt_labels[~gt_difficult], minlength=num_classes)
    num_difficult = np.bincount(gt_labels[gt_difficult], minlength=num_classes)
    class_bounds = np.searchsorted(ranked_label, np.arange(num_classes + 1), side="left")

    results: list[ClassResult] = []
    for index, name in enumerate(class_names):
        lo, hi = int(class_bounds[index]), int(class_bounds[index + 1])
        keep = ~ignored[lo:hi]
        tp = is_tp[lo:hi][keep]
        fp = is_fp[lo:hi][keep]
        n_pos = int(npos[index])
        if n_pos > 0:
            cum_tp = np.cumsum(tp, dtype=np.float64)
            cum_fp = np.cumsum(fp, dtype=np.float64)
            recall = cum_tp / n_pos
            precision = cum_tp / (cum_tp + cum_fp)
            ap: float | None = average_precision(recall, precision)
        else:
            recall = np.zeros(0)
            precision = np.zeros(0)
            ap = None
        results.append(
            ClassResult(
                name=str(name),
                ap=ap,
                precision=precision,
                recall=recall,
                num_ground_truth=n_pos,
                num_difficult=int(num_difficult[index]),
                num_detections=hi - lo,
                num_tp=int(tp.sum()),
                num_fp=int(fp.sum()),
                num_ignored=int((~keep).sum()),
            )
        )
    outcome = np.zeros(len(order), dtype=np.int8)
    outcome[order[is_tp]] = 1
    outcome[order[ignored]] = -1
    per_image = np.zeros((num_images, num_classes), dtype=np.int64)
    np.add.at(per_image, (gt_image[~gt_difficult], gt_labels[~gt_difficult]), 1)
    outcomes = DetectionOutcomes(
        num_images=num_images,
        num_ground_truth=per_image,
        image=np.asarray(det_image, dtype=np.int64),
        label=np.asarray(det_labels, dtype=np.int64),
        score=np.asarray(det_scores, dtype=np.float64),
        outcome=outcome,
    )
    counted = [r.ap for r in results if r.ap is not None]
    if counted:
        map50 = float(sum(counted) / len(counted))
    else:
        map50 = math.nan
        logger.warning("no class has a non-difficult ground-truth box: mAP is undefined (NaN)")
    return VocMapResult(
        map50=map50,
        iou_threshold=float(iou_threshold),
        num_images=num_images,
        classes=tuple(results),
        outcomes=outcomes,
    )
