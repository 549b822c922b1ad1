"""Encode ground-truth boxes into per-scale YOLO training targets (graph-mode TensorFlow).

The target structure, for one image (``batch()`` adds a leading batch axis to every entry):

``{"stride_32": (g32, g32, A, 6), "stride_16": (g16, g16, A, 6)[, "stride_8": (g8, g8, A, 6)],
"boxes": (max_boxes, 4)}``

* ``stride_<s>`` (one per model output, :func:`target_keys` gives them in output order), float32:
  per grid cell and anchor ``[xmin, ymin, xmax, ymax, objectness, class_index]``, boxes
  normalised to [0, 1] of the network input; all zeros where no object is assigned. A grid cell
  is ``[row, column]``, i.e. ``[y, x]``.
* ``boxes``: float32 ``(max_boxes, 4)``: every valid ground-truth box of the image
  ``[xmin, ymin, xmax, ymax]`` (the first ``max_boxes``), zero rows as padding. The loss uses it
  for the ignore mask (a prediction that overlaps any ground truth well is not background).
"""

from __future__ import annotations

import logging

import tensorflow as tf

from ppe.model.spec import YoloSpec

logger = logging.getLogger(__name__)

#: Key of the padded ground-truth box list in the target dictionary.
BOXES_KEY = "boxes"
#: Depth of a per-scale target: ``[xmin, ymin, xmax, ymax, objectness, class_index]``.
TARGET_DEPTH = 6


def target_keys(spec: YoloSpec) -> tuple[str, ...]:
    """Keys of the per-scale targets in model output order, e.g. ``("stride_32", "stride_16")``."""
    return tuple(f"stride_{stride}" for stride in spec.strides)


def encode_targets(
    boxes: tf.Tensor,
    labels: tf.Tensor,
    spec: YoloSpec,
    max_boxes: int = 100,
    positive_anchor_iou: float | None = None,
) -> dict[str, tf.Tensor]:
    """Assign every ground-truth box to its best anchor (and, optionally, more) and grid cell.

    Pure graph-mode TensorFlow (no Python loop over tensor values), so it runs inside
    ``tf.data.Dataset.map``. Each box goes to the single anchor, out of the anchors that the
    masks use, whose shape (width and height, centres aligned) has the highest IoU with it; with
    ``positive_anchor_iou`` set, also to every other used anchor whose shape IoU with the box is
    above it (YOLOv4's ``iou_thresh``: more positives per box). A box is written into every output
    whose mask holds one of its anchors (two outputs for a shared anchor), at the cell containing
    the box centre. Boxes with zero
    width or height (e.g. padding) are dropped. When two boxes land on the same cell and anchor
    only one of them is kept (which one is unspecified); both still count for the ignore mask.

    Args:
        boxes: float32 ``(N, 4)`` ``[xmin, ymin, xmax, ymax]`` normalised to [0, 1] of the
            (letterboxed) network input. ``N`` may be 0. Values are clipped to [0, 1].
        labels: int32 ``(N,)`` class indices in ``[0, spec.num_classes)``.
        spec: the model spec (grids, anchors, masks, classes).
        max_boxes: length of the padded ``boxes`` entry; boxes beyond it are still encoded in
            the per-scale targets but left out of the ignore-mask list.
        positive_anchor_iou: shape IoU in (0, 1] above which an anchor other than the best is a
            positive too; ``None`` (default): the best anchor only, as in YOLOv3.

    Returns:
        The target dictionary described in the module docstring.

    Raises:
        ValueError: ``positive_anchor_iou`` is not in (0, 1].
        tf.errors.InvalidArgumentError: (when run) a label is outside ``[0, num_classes)``.
    """
    if positive_anchor_iou is not None and not 0.0 < positive_anchor_iou <= 1.0:
        raise ValueError(f"positive_anchor_iou must be in (0, 1], got {positive_anchor_iou}")
    boxes = tf.reshape(tf.cast(boxes, tf.float32), (-1, 4))
    labels = tf.reshape(tf.cast(labels, tf.int32), (-1,))
    checks = [
        tf.debugging.assert_non_negative(labels, message="class labels must be >= 0"),
        tf.debugging.assert_less(
            labels,
            tf.constant(spec.num_classes, tf.int32),
            message=f"class labels must be < num_classes ({spec.num_classes})",
        ),
    ]
    with tf.control_dependencies(checks):
        boxes = tf.clip_by_value(boxes, 0.0, 1.0)
    size = boxes[:, 2:4] - boxes[:, 0:2]  # (N, 2) width, height
    valid = tf.logical_and(size[:, 0] > 0.0, size[:, 1] > 0.0)
    boxes = tf.boolean_mask(boxes, valid)
    labels = tf.boolean_mask(labels, valid)
    size = tf.boolean_mask(size, valid)

    # Shape IoU against every anchor that an output predicts: (N, num_used). An anchor outside
    # every mask (anchor 0 of Darknet's yolov3-tiny masks) would leave its boxes untrained.
    anchors = tf.constant(spec.normalized_anchors[list(spec.used_anchors)], tf.float32)
    intersection = tf.minimum(size[:, None, 0], anchors[None, :, 0]) * tf.minimum(
        size[:, None, 1], anchors[None, :, 1]
    )
    union = (
        (size[:, 0] * size[:, 1])[:, None] + (anchors[:, 0] * anchors[:, 1])[None, :] - intersection
    )
    shape_iou = intersection / union
    # (N, num_used): the best anchor of each box, plus those above the threshold when it is set.
    positive = tf.one_hot(
        tf.argmax(shape_iou, axis=1, output_type=tf.int32),
        len(spec.used_anchors),
        on_value=True,
        off_value=False,
        dtype=tf.bool,
    )
    if positive_anchor_iou is not None:
        positive = tf.logical_or(positive, shape_iou > positive_anchor_iou)

    centre = (boxes[:, 0:2] + boxes[:, 2:4]) / 2.0  # (N, 2) x, y
    values = tf.concat(
        [boxes, tf.ones_like(boxes[:, :1]), tf.cast(labels, tf.float32)[:, None]], axis=1
    )  # (N, 6)
    targets: dict[str, tf.Tensor] = {}
    for key, mask, grid in zip(target_keys(spec), spec.masks, spec.grid_sizes, strict=True):
        # Columns of this output's anchors among the used ones: (N, A) positives, then the
        # (box, anchor slot) pairs to write.
        columns = [spec.used_anchors.index(anchor) for anchor in mask]
        pairs = tf.where(tf.gather(positive, columns, axis=1))  # (P, 2) int64
        box_index = tf.cast(pairs[:, 0], tf.int32)
        cell = tf.clip_by_value(tf.cast(tf.floor(centre * grid), tf.int32), 0, grid - 1)
        cell = tf.gather(cell, box_index)  # (P, 2) x, y
        indices = tf.stack([cell[:, 1], cell[:, 0], tf.cast(pairs[:, 1], tf.int32)], axis=1)
        targets[key] = tf.tensor_scatter_nd_update(
            tf.zeros((grid, grid, len(mask), TARGET_DEPTH), tf.float32),
            indices,
            tf.gather(values, box_index),
        )
    kept = boxes[:max_boxes]
    targets[BOXES_KEY] = tf.ensure_shape(
        tf.pad(kept, [[0, max_boxes - tf.shape(kept)[0]], [0, 0]]), (max_boxes, 4)
    )
    return targets
