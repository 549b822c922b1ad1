"""Decode YOLO head outputs into boxes and scores, and class-aware hard NMS. NumPy only.

Nothing here (or in what it imports) may import TensorFlow: the IoT Edge module runs it next to
a LiteRT interpreter.

Two output layouts exist; an exported model names its own in ``model.json`` under
:data:`OUTPUT_LAYOUT_KEY` (``ppe export`` writes it, the edge runtime reads it):

* ``raw`` (:data:`RAW_LAYOUT`): one output per scale, ``(1, grid, grid, anchors, 5 + C)`` of raw
  logits ``[tx, ty, tw, th, objectness, class...]``, what the Keras model returns. A full-integer
  model quantises all of them with one scale, set by the widest of them (the objectness and class
  logits), which costs box precision. A ``model.json`` without the key means this layout (every
  export before the key existed).
* ``split`` (:data:`SPLIT_LAYOUT`): two outputs per scale, named by :func:`layout_outputs` (the
  names are the LiteRT signature's output names): ``boxes_s<stride>`` ``(1, grid, grid, anchors,
  4)`` = ``[sigmoid(tx), sigmoid(ty), tw, th]`` (cell offsets in [0, 1] and log-size, both in a
  narrow range) and ``scores_s<stride>`` ``(1, grid, grid, anchors, C)`` =
  ``sigmoid(objectness) * sigmoid(class)`` (probabilities in [0, 1]), so an int8 model gives each
  its own quantisation scale.

``ppe export`` writes the layout ``export.output_layout`` names, ``raw`` by default: on the two
converged models measured, raw lost less to int8 (the demo: -0.2 against -2.5 mAP points; the
real photos: -0.65 against -0.75), split only on a model two epochs in
(``benchmarks/experiments/issue16_recipe.md``, sections 5 and 5b).

Boxes are ``[xmin, ymin, xmax, ymax]`` normalised to [0, 1] of the (letterboxed) network input;
:meth:`ppe.model.preprocess.LetterboxTransform.to_original` maps them back to image pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ppe.model.spec import YoloSpec

logger = logging.getLogger(__name__)

#: The ``model.json`` key naming an exported model's output layout.
OUTPUT_LAYOUT_KEY = "output_layout"
RAW_LAYOUT = "raw"
SPLIT_LAYOUT = "split"
OUTPUT_LAYOUTS: tuple[str, ...] = (RAW_LAYOUT, SPLIT_LAYOUT)

OutputKind = Literal["raw", "boxes", "scores"]


@dataclass(frozen=True)
class OutputSlot:
    """One output of a layout, in the order :func:`decode` takes them.

    Attributes:
        name: the output's name (the LiteRT signature's output name for ``split``).
        scale: index of the spec scale it belongs to (largest stride first).
        kind: ``raw`` (all channels), ``boxes`` or ``scores``.
        shape: ``(grid, grid, anchors, channels)``, without the batch axis.
    """

    name: str
    scale: int
    kind: OutputKind
    shape: tuple[int, int, int, int]


def check_layout(layout: str) -> str:
    """Return ``layout`` if it is a known output layout.

    Raises:
        ValueError: an unknown layout (the message lists the known ones).
    """
    if layout not in OUTPUT_LAYOUTS:
        raise ValueError(f"unknown output layout {layout!r}; known: {list(OUTPUT_LAYOUTS)}")
    return layout


def layout_outputs(spec: YoloSpec, layout: str) -> tuple[OutputSlot, ...]:
    """The outputs of ``layout`` for ``spec``, in the order :func:`decode` takes them.

    Raises:
        ValueError: an unknown layout.
    """
    slots: list[OutputSlot] = []
    for scale, (stride, shape) in enumerate(zip(spec.strides, spec.output_shapes, strict=True)):
        grid, _, anchors, _ = shape
        if check_layout(layout) == RAW_LAYOUT:
            slots.append(OutputSlot(f"raw_s{stride}", scale, "raw", shape))
        else:
            slots.append(OutputSlot(f"boxes_s{stride}", scale, "boxes", (grid, grid, anchors, 4)))
            slots.append(
                OutputSlot(
                    f"scores_s{stride}", scale, "scores", (grid, grid, anchors, spec.num_classes)
                )
            )
    return tuple(slots)


def split_outputs(outputs: Sequence[np.ndarray], spec: YoloSpec) -> list[np.ndarray]:
    """Raw head outputs -> the ``split`` layout (NumPy twin of the exported graph's head).

    Args:
        outputs: raw outputs in model order, each ``(batch, grid, grid, anchors, 5 + C)``.
        spec: the model spec.

    Returns:
        ``[boxes, scores]`` per scale, in :func:`layout_outputs` order.
    """
    result: list[np.ndarray] = []
    for raw in _checked_raw(outputs, spec):
        result.append(np.concatenate([sigmoid(raw[..., 0:2]), raw[..., 2:4]], axis=-1))
        result.append(sigmoid(raw[..., 4:5]) * sigmoid(raw[..., 5:]))
    return result


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


def _checked_raw(outputs: Sequence[np.ndarray], spec: YoloSpec) -> list[np.ndarray]:
    if len(outputs) != spec.num_scales:
        raise ValueError(
            f"{spec.architecture} has {spec.num_scales} outputs, got {len(outputs)} arrays"
        )
    checked: list[np.ndarray] = []
    for scale, (raw, expected) in enumerate(zip(outputs, spec.output_shapes, strict=True)):
        raw = np.asarray(raw, dtype=np.float32)
        if raw.ndim != 5 or raw.shape[1:] != expected:
            raise ValueError(
                f"output {scale} must be (batch, *{expected}) for this spec, got {raw.shape}"
            )
        checked.append(raw)
    return checked


def _decode_scale(
    offsets: np.ndarray, log_size: np.ndarray, spec: YoloSpec, scale: int
) -> np.ndarray:
    """Boxes ``(batch, grid, grid, anchors, 4)`` xyxy from cell offsets in [0, 1] and log-sizes."""
    grid = spec.grid_sizes[scale]
    # Cell offsets: x varies along axis 2 (columns), y along axis 1 (rows).
    cell_y, cell_x = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    cells = np.stack([cell_x, cell_y], axis=-1).astype(np.float32)[None, :, :, None, :]
    centre = (offsets + cells) / np.float32(grid)
    # exp of very large logits overflows to inf; such boxes are discarded by NMS bounds.
    with np.errstate(over="ignore"):
        size = np.exp(log_size) * spec.scale_anchors(scale)
    return np.concatenate([centre - size / 2, centre + size / 2], axis=-1)


def decode(
    outputs: Sequence[np.ndarray], spec: YoloSpec, layout: str = RAW_LAYOUT
) -> tuple[np.ndarray, np.ndarray]:
    """Turn head outputs into boxes and per-class scores for every anchor of every cell.

    For the anchor ``(pw, ph)`` (normalised) of cell ``(cx, cy)`` in a ``grid x grid`` output:
    centre ``((cx + sigmoid(tx)) / grid, (cy + sigmoid(ty)) / grid)``, size
    ``(pw * exp(tw), ph * exp(th))``.

    Args:
        outputs: for ``raw``, one array per scale in model order (largest stride first), each
            ``(batch, grid, grid, anchors_per_scale, 5 + num_classes)`` of raw values
            ``[tx, ty, tw, th, objectness_logit, class_logits...]``; for ``split``, the arrays
            of :func:`layout_outputs` in its order.
        spec: the model spec (grids, anchors, masks, classes).
        layout: :data:`RAW_LAYOUT` or :data:`SPLIT_LAYOUT`.

    Returns:
        ``boxes`` float32 ``(batch, N, 4)`` ``[xmin, ymin, xmax, ymax]`` normalised to [0, 1] of
        the network input (not clipped), and ``scores`` float32 ``(batch, N, num_classes)``
        ``= sigmoid(objectness) * sigmoid(class_logit)``, with
        ``N = sum(grid**2) * anchors_per_scale`` in output, row, column, anchor order.

    Raises:
        ValueError: the layout is unknown, or the number or shapes of the outputs do not match
            ``spec`` and ``layout``.
    """
    all_boxes: list[np.ndarray] = []
    all_scores: list[np.ndarray] = []
    if check_layout(layout) == RAW_LAYOUT:
        for scale, raw in enumerate(_checked_raw(outputs, spec)):
            boxes = _decode_scale(sigmoid(raw[..., 0:2]), raw[..., 2:4], spec, scale)
            scores = sigmoid(raw[..., 4:5]) * sigmoid(raw[..., 5:])
            all_boxes.append(boxes.reshape(raw.shape[0], -1, 4))
            all_scores.append(scores.reshape(raw.shape[0], -1, spec.num_classes))
    else:
        slots = layout_outputs(spec, layout)
        if len(outputs) != len(slots):
            raise ValueError(
                f"the {layout} layout of this spec has {len(slots)} outputs "
                f"({[slot.name for slot in slots]}), got {len(outputs)} arrays"
            )
        arrays = [np.asarray(value, dtype=np.float32) for value in outputs]
        for slot, array in zip(slots, arrays, strict=True):
            if array.ndim != 5 or array.shape[1:] != slot.shape:
                raise ValueError(
                    f"output {slot.name} must be (batch, *{slot.shape}), got {array.shape}"
                )
        for scale in range(spec.num_scales):
            box_values, scores = arrays[2 * scale], arrays[2 * scale + 1]
            boxes = _decode_scale(box_values[..., 0:2], box_values[..., 2:4], spec, scale)
            all_boxes.append(boxes.reshape(box_values.shape[0], -1, 4))
            all_scores.append(scores.reshape(scores.shape[0], -1, spec.num_classes))
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
    layout: str = RAW_LAYOUT,
    score_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    max_detections: int = 100,
) -> list[Detections]:
    """:func:`decode` followed by :func:`non_max_suppression`.

    Args:
        outputs: head outputs in ``layout``, see :func:`decode`.
        spec: the model spec.
        layout: the outputs' layout (:data:`OUTPUT_LAYOUTS`).
        score_threshold: minimum detection score.
        iou_threshold: same-class IoU above which a box is suppressed.
        max_detections: most detections per image.

    Returns:
        One :class:`Detections` per image (boxes normalised to the network input).
    """
    boxes, scores = decode(outputs, spec, layout)
    return non_max_suppression(
        boxes,
        scores,
        score_threshold=score_threshold,
        iou_threshold=iou_threshold,
        max_detections=max_detections,
    )
