"""Decode raw YOLO head outputs into boxes and scores, and class-aware hard NMS. NumPy only.

Nothing here (or in what it imports) may import TensorFlow: the IoT Edge module runs it next to
a LiteRT interpreter.

Boxes are ``[xmin, ymin, xmax, ymax]`` normalised to [0, 1] of the (letterboxed) network input;
:meth:`ppe.model.preprocess.LetterboxTransform.to_original` maps them back to image pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ppe.model.spec import YoloSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detections:
    """Detections of one image, sorted by descending score.

    Attributes:
        boxes: float32 ``(K, 4)`` ``[xmin, ymin, xmax, ymax]`` normalised to [0, 1] of the
            network input.
        scores: float32 ``(K,)``, ``sigmoid(objectness) * sigmoid(class_logit)``.
        classes: int32 ``(K,)`` class indices into ``spec.class_names``.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (no overflow warnings for large ``|x|``)."""
    x = np.asarray(x, dtype=np.float32)
    exp_neg_abs = np.exp(-np.abs(x))
    result: np.ndarray = np.where(
        x >= 0, 1.0 / (1.0 + exp_neg_abs), exp_neg_abs / (1.0 + exp_neg_abs)
    ).astype(np.float32)
    return result


def decode(outputs: Sequence[np.ndarray], spec: YoloSpec) -> tuple[np.ndarray, np.ndarray]:
    """Turn raw head outputs into boxes and per-class scores for every anchor of every cell.

    For the anchor ``(pw, ph)`` (normalised) of cell ``(cx, cy)`` in a ``grid x grid`` output:
    centre ``((cx + sigmoid(tx)) / grid, (cy + sigmoid(ty)) / grid)``, size
    ``(pw * exp(tw), ph * exp(th))``.

    Args:
        outputs: one array per scale in model order (largest stride first), each
            ``(batch, grid, grid, anchors_per_scale, 5 + num_classes)`` of raw values
            ``[tx, ty, tw, th, objectness_logit, class_logits...]``.
        spec: the model spec (grids, anchors, masks, classes).

    Returns:
        ``boxes`` float32 ``(batch, N, 4)`` ``[xmin, ymin, xmax, ymax]`` normalised to [0, 1] of
        the network input (not clipped), and ``scores`` float32 ``(batch, N, num_classes)``
        ``= sigmoid(objectness) * sigmoid(class_logit)``, with
        ``N = sum(grid**2) * anchors_per_scale`` in output, row, column, anchor order.

    Raises:
        ValueError: the number or shapes of the outputs do not match ``spec``.
    """
    if len(outputs) != spec.num_scales:
        raise ValueError(
            f"{spec.architecture} has {spec.num_scales} outputs, got {len(outputs)} arrays"
        )
    all_boxes: list[np.ndarray] = []
    all_scores: list[np.ndarray] = []
    for scale, (raw, expected) in enumerate(zip(outputs, spec.output_shapes, strict=True)):
        raw = np.asarray(raw, dtype=np.float32)
        if raw.ndim != 5 or raw.shape[1:] != expected:
            raise ValueError(
                f"output {scale} must be (batch, *{expected}) for this spec, got {raw.shape}"
            )
        grid = expected[0]
        batch = raw.shape[0]
        # Cell offsets: x varies along axis 2 (columns), y along axis 1 (rows).
        cell_y, cell_x = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
        cells = np.stack([cell_x, cell_y], axis=-1).astype(np.float32)[None, :, :, None, :]
        centre = (sigmoid(raw[..., 0:2]) + cells) / np.float32(grid)
        # exp of very large logits overflows to inf; such boxes are discarded by NMS bounds.
        with np.errstate(over="ignore"):
            size = np.exp(raw[..., 2:4]) * spec.scale_anchors(scale)
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=-1)
        scores = sigmoid(raw[..., 4:5]) * sigmoid(raw[..., 5:])
        all_boxes.append(boxes.reshape(batch, -1, 4))
        all_scores.append(scores.reshape(batch, -1, spec.num_classes))
    return (
        np.concatenate(all_boxes, axis=1).astype(np.float32),
        np.concatenate(all_scores, axis=1).astype(np.float32),
    )


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two sets of ``[xmin, ymin, xmax, ymax]`` boxes (any consistent units).

    Args:
        boxes_a: ``(N, 4)``.
        boxes_b: ``(M, 4)``.

    Returns:
        float32 ``(N, M)``; 0 where the union is empty.
    """
    # float64 inside: class-shifted boxes in NMS sit far from the origin.
    a = np.asarray(boxes_a, dtype=np.float64)[:, None, :]
    b = np.asarray(boxes_b, dtype=np.float64)[None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    intersection = width * height
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - intersection
    safe = np.where(union > 0, union, 1.0)
    return np.where(union > 0, intersection / safe, 0.0).astype(np.float32)


def _hard_nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, limit: int
) -> np.ndarray:
    """Greedy hard NMS over one set of boxes; returns kept indices in descending score order.

    A box is suppressed when its IoU with an already kept box is strictly greater than
    ``iou_threshold``. Only the kept boxes' IoU rows against the still-alive candidates are
    computed, so the cost is ``O(kept * N)`` rather than the ``O(N^2)`` of a full IoU matrix
    (an untrained detector at the evaluation threshold gives thousands of candidates per image,
    and ``limit`` bounds ``kept``).
    """
    order = np.argsort(-scores, kind="stable")
    ordered = np.asarray(boxes, dtype=np.float64)[order]
    xmin, ymin, xmax, ymax = (ordered[:, k] for k in range(4))
    area = np.clip(xmax - xmin, 0, None) * np.clip(ymax - ymin, 0, None)
    alive = np.arange(order.size)
    keep: list[int] = []
    while alive.size and len(keep) < limit:
        current, rest = int(alive[0]), alive[1:]
        keep.append(current)
        width = np.clip(
            np.minimum(xmax[current], xmax[rest]) - np.maximum(xmin[current], xmin[rest]), 0, None
        )
        height = np.clip(
            np.minimum(ymax[current], ymax[rest]) - np.maximum(ymin[current], ymin[rest]), 0, None
        )
        intersection = width * height
        union = area[current] + area[rest] - intersection
        safe = np.where(union > 0, union, 1.0)
        # float32 like box_iou, so the threshold comparison is the same as with the full matrix.
        iou = np.where(union > 0, intersection / safe, 0.0).astype(np.float32)
        alive = rest[~(iou > iou_threshold)]
    return order[np.asarray(keep, dtype=np.int64)]


def non_max_suppression(
    boxes: np.ndarray,
    scores: np.ndarray,
    *,
    score_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    max_detections: int = 100,
    max_candidates: int = 2000,
) -> list[Detections]:
    """Class-aware hard non-maximum suppression.

    Every (box, class) pair whose score is at least ``score_threshold`` is a candidate, so one
    box may be reported for several classes (the heads are multi-label). Within each class a
    candidate is dropped when it overlaps a higher-scoring kept box of the same class with IoU
    strictly greater than ``iou_threshold``; boxes of different classes never suppress each
    other (a ``helmet`` and a ``head`` at the same place both survive).

    Args:
        boxes: float32 ``(batch, N, 4)`` ``[xmin, ymin, xmax, ymax]`` normalised to [0, 1].
        scores: float32 ``(batch, N, num_classes)``.
        score_threshold: minimum score of a detection.
        iou_threshold: IoU above which a same-class box is suppressed, in [0, 1].
        max_detections: most detections returned per image (highest scores first).
        max_candidates: per image, only the highest-scoring candidates are considered (bounds the
            IoU matrix on images with very many candidates).

    Returns:
        One :class:`Detections` per image, sorted by descending score, at most
        ``max_detections`` long; boxes clipped to [0, 1].

    Raises:
        ValueError: shapes or thresholds are invalid.
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    if boxes.ndim != 3 or boxes.shape[-1] != 4 or scores.ndim != 3:
        raise ValueError(
            f"boxes must be (batch, N, 4) and scores (batch, N, C), got {boxes.shape} and "
            f"{scores.shape}"
        )
    if scores.shape[:2] != boxes.shape[:2]:
        raise ValueError(f"boxes {boxes.shape} and scores {scores.shape} disagree on (batch, N)")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if max_detections < 1 or max_candidates < 1:
        raise ValueError("max_detections and max_candidates must be positive")
    results: list[Detections] = []
    for image_boxes, image_scores in zip(boxes, scores, strict=True):
        box_index, class_index = np.nonzero(image_scores >= score_threshold)
        candidate_scores = image_scores[box_index, class_index]
        candidate_boxes = image_boxes[box_index]
        finite = np.all(np.isfinite(candidate_boxes), axis=1)
        candidate_boxes = candidate_boxes[finite]
        candidate_scores = candidate_scores[finite]
        class_index = class_index[finite]
        if candidate_scores.size > max_candidates:
            top = np.argsort(-candidate_scores, kind="stable")[:max_candidates]
            candidate_boxes = candidate_boxes[top]
            candidate_scores = candidate_scores[top]
            class_index = class_index[top]
        # Shift each class into its own region, farther apart than any box spans, so one greedy
        # pass is class-aware: boxes of different classes can then never overlap.
        span = float(np.ptp(candidate_boxes)) + 1.0 if candidate_boxes.size else 1.0
        shifted = candidate_boxes.astype(np.float64) + (class_index * span)[:, None]
        keep = _hard_nms(shifted, candidate_scores, iou_threshold, max_detections)
        results.append(
            Detections(
                boxes=np.clip(candidate_boxes[keep], 0.0, 1.0).astype(np.float32),
                scores=candidate_scores[keep].astype(np.float32),
                classes=class_index[keep].astype(np.int32),
            )
        )
    return results


def detect(
    outputs: Sequence[np.ndarray],
    spec: YoloSpec,
    *,
    score_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    max_detections: int = 100,
) -> list[Detections]:
    """:func:`decode` followed by :func:`non_max_suppression`.

    Args:
        outputs: raw head outputs, see :func:`decode`.
        spec: the model spec.
        score_threshold: minimum detection score.
        iou_threshold: same-class IoU above which a box is suppressed.
        max_detections: most detections per image.

    Returns:
        One :class:`Detections` per image (boxes normalised to the network input).
    """
    boxes, scores = decode(outputs, spec)
    return non_max_suppression(
        boxes,
        scores,
        score_threshold=score_threshold,
        iou_threshold=iou_threshold,
        max_detections=max_detections,
    )
