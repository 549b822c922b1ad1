"""The detector at its operating thresholds: counts, a confusion matrix and per-class thresholds.

mAP is measured at a low score threshold (0.01) so that the whole precision-recall curve counts;
the edge module keeps only detections at or above its live ``score_threshold`` (and, when the
model folder has a ``thresholds.json``, at or above each class's own threshold). What a site sees
is the detector at those thresholds, so the report shows that:

- per class, true and false positives and misses at the class's threshold, from the same-class
  VOC outcomes (a detection's outcome depends only on higher-scored detections of its image, so
  filtering the 0.01 outcomes by score gives exactly the outcomes at the higher threshold);
- a confusion matrix: detections at their thresholds matched greedily, by descending score, to
  the unmatched box of *any* class with the largest VOC IoU (>= 0.5); a match to a difficult box
  is left out, an unmatched detection counts as ``background`` and an unmatched box as ``missed``.

:func:`choose_thresholds` picks per-class thresholds on a split (the score that maximises F1).
Boxes are VOC pixel ``[xmin, ymin, xmax, ymax]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ppe.evaluate.voc_map import DetectionOutcomes, ImageDetections, ImageGroundTruth, voc_iou
from ppe.run.documents import ConfusionMatrix, OperatingClass, OperatingPoint

BACKGROUND = "background"
MISSED = "missed"
#: How :func:`choose_thresholds` chooses, in words.
CRITERION = "max F1 per class (same-class VOC matching at IoU 0.5)"


def class_counts(
    outcomes: DetectionOutcomes, class_names: Sequence[str], thresholds: Sequence[float]
) -> dict[str, OperatingClass]:
    """True/false positives and misses per class at each class's threshold.

    Args:
        outcomes: The evaluation's per-detection outcomes (at the low evaluation threshold).
        class_names: Names for the class indices.
        thresholds: One score threshold per class, in class order.

    Returns:
        Class name -> its counts, precision and recall (None when undefined).
    """
    keep = outcomes.score >= np.asarray(thresholds, dtype=np.float64)[outcomes.label]
    npos = outcomes.num_ground_truth.sum(axis=0)
    result: dict[str, OperatingClass] = {}
    for index, name in enumerate(class_names):
        mine = keep & (outcomes.label == index)
        tp = int(np.sum(mine & (outcomes.outcome == 1)))
        fp = int(np.sum(mine & (outcomes.outcome == 0)))
        positives = int(npos[index])
        result[name] = OperatingClass(
            threshold=float(thresholds[index]),
            tp=tp,
            fp=fp,
            fn=positives - tp,
            precision=tp / (tp + fp) if tp + fp else None,
            recall=tp / positives if positives else None,
        )
    return result


def confusion_matrix(
    ground_truths: Sequence[ImageGroundTruth],
    detections: Sequence[ImageDetections],
    class_names: Sequence[str],
    thresholds: Sequence[float],
    iou_threshold: float = 0.5,
) -> ConfusionMatrix:
    """Class confusion of the detections at their thresholds (see the module docstring).

    Args:
        ground_truths: Per image, VOC pixel boxes, labels and difficult flags.
        detections: Per image, VOC pixel boxes, scores and labels.
        class_names: Names for the class indices.
        thresholds: One score threshold per class.
        iou_threshold: Minimum VOC IoU of a match.

    Returns:
        The :class:`ConfusionMatrix` (rows: true classes + background; columns: predicted
        classes + missed).
    """
    num_classes = len(class_names)
    counts = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    limits = np.asarray(thresholds, dtype=np.float64)
    for truth, found in zip(ground_truths, detections, strict=True):
        keep = found.scores >= limits[found.labels] if len(found.labels) else np.zeros(0, bool)
        boxes, labels = found.boxes[keep], found.labels[keep]
        order = np.argsort(-found.scores[keep], kind="stable")
        used = np.zeros(len(truth.labels), dtype=bool)
        for row in order:
            best, best_iou = -1, iou_threshold
            if len(truth.labels):
                iou = voc_iou(np.repeat(boxes[row : row + 1], len(truth.labels), 0), truth.boxes)
                iou[used] = -1.0
                candidate = int(np.argmax(iou))
                if iou[candidate] >= best_iou:
                    best = candidate
            if best < 0:
                counts[num_classes, labels[row]] += 1
                continue
            used[best] = True
            if not truth.difficult[best]:
                counts[truth.labels[best], labels[row]] += 1
        for index in np.flatnonzero(~used & ~truth.difficult):
            counts[truth.labels[index], num_classes] += 1
    return ConfusionMatrix(
        rows=[*class_names, BACKGROUND],
        columns=[*class_names, MISSED],
        counts=counts.tolist(),
    )


def operating_point(
    outcomes: DetectionOutcomes,
    ground_truths: Sequence[ImageGroundTruth],
    detections: Sequence[ImageDetections],
    class_names: Sequence[str],
    thresholds: Sequence[float],
    source: str,
    iou_threshold: float = 0.5,
) -> OperatingPoint:
    """Per-class counts and the confusion matrix at the operating thresholds.

    Args:
        outcomes: The evaluation's per-detection outcomes.
        ground_truths: Per image, as for :func:`confusion_matrix`.
        detections: Per image, as for :func:`confusion_matrix`.
        class_names: Names for the class indices.
        thresholds: One score threshold per class (the edge's, see
            :meth:`ppe.run.documents.ClassThresholds.in_force`).
        source: Where the thresholds come from, in words.
        iou_threshold: Minimum IoU of a match.

    Returns:
        The :class:`OperatingPoint`.
    """
    return OperatingPoint(
        source=source,
        per_class=class_counts(outcomes, class_names, thresholds),
        confusion=confusion_matrix(
            ground_truths, detections, class_names, thresholds, iou_threshold
        ),
    )


def choose_thresholds(outcomes: DetectionOutcomes, class_names: Sequence[str]) -> dict[str, float]:
    """Per class, the score threshold with the highest F1 on the evaluated split.

    F1 at threshold ``t`` is ``2 TP / (TP + FP + npos)`` over the class's detections scoring at
    least ``t``; only scores that some detection has are candidates, and the highest F1 wins
    (the higher threshold among equals). A class without ground truth or without a true
    positive gets no threshold (the edge's live threshold applies to it).

    Args:
        outcomes: Outcomes on the split the thresholds are chosen on (validation).
        class_names: Names for the class indices.

    Returns:
        Class name -> threshold, for the classes that have one.
    """
    npos = outcomes.num_ground_truth.sum(axis=0)
    chosen: dict[str, float] = {}
    for index, name in enumerate(class_names):
        mine = (outcomes.label == index) & (outcomes.outcome >= 0)
        if npos[index] == 0 or not np.any(mine & (outcomes.outcome == 1)):
            continue
        scores = outcomes.score[mine]
        tp = (outcomes.outcome[mine] == 1).astype(np.float64)
        order = np.argsort(-scores, kind="stable")
        scores, tp = scores[order], tp[order]
        cum_tp = np.cumsum(tp)
        kept = np.arange(1, len(scores) + 1, dtype=np.float64)
        f1 = 2.0 * cum_tp / (kept + float(npos[index]))
        # A threshold keeps every detection with an equal score: only the last of a run counts.
        last_of_run = np.append(scores[1:] != scores[:-1], True)
        candidates = np.flatnonzero(last_of_run)
        best = candidates[np.argmax(f1[candidates])]
        chosen[name] = float(scores[best])
    return chosen
