"""YOLOv3 loss: box regression, objectness with an ignore mask, multi-label classification.

Per image, summed over every grid cell and anchor of every scale (as Darknet does):

* **box** (cells with an object): squared error of the centre offsets in the cell
  (``sigmoid(tx), sigmoid(ty)`` against the true offset) plus squared error of the log-space size
  (``tw, th`` against ``log(true_size / anchor)``), both weighted by ``2 - w * h`` (w, h normalised)
  to up-weight small boxes. This is Darknet's YOLOv3 parametrisation; we keep it (rather than a
  GIoU/CIoU loss) so that results stay comparable with Darknet-trained and yolov3-tf2 models and
  the pretrained COCO heads start from the regression they were trained with.
* **obj**: sigmoid binary cross-entropy on the objectness logit: target 1 where an object is
  assigned; target 0 elsewhere, except that predictions whose decoded box has IoU >= the ignore
  threshold with ANY ground-truth box of the image are not penalised.
* **cls** (cells with an object): sigmoid binary cross-entropy of every class logit against the
  one-hot class (multi-label, as Darknet; never softmax cross-entropy on sigmoid outputs).

Everything is computed from logits in float32 (outputs are cast, so mixed precision is safe).
Non-finite predictions propagate to the loss: nothing here masks a NaN away.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import tensorflow as tf

from ppe.model.spec import YoloSpec
from ppe.model.targets import BOXES_KEY, target_keys

logger = logging.getLogger(__name__)

#: Darknet's yolov3.cfg uses 0.7; yolov3-tf2 uses 0.5.
DEFAULT_IGNORE_THRESHOLD = 0.5
# Clamp for exp(tw) when decoding boxes for the ignore mask only (no gradient flows there).
_MAX_LOG_SIZE = 10.0


def _cell_grid(grid: int) -> tf.Tensor:
    """float32 ``(grid, grid, 1, 2)`` holding ``[column, row]`` (x, y) of each cell."""
    rows, columns = tf.meshgrid(tf.range(grid), tf.range(grid), indexing="ij")
    return tf.cast(tf.stack([columns, rows], axis=-1), tf.float32)[:, :, None, :]


def pairwise_iou(boxes_a: tf.Tensor, boxes_b: tf.Tensor) -> tf.Tensor:
    """IoU of every box in ``boxes_a`` with every box of the same image in ``boxes_b``.

    Args:
        boxes_a: float32 ``(batch, ..., 4)`` ``[xmin, ymin, xmax, ymax]``.
        boxes_b: float32 ``(batch, M, 4)`` in the same units; zero boxes (padding) give IoU 0.

    Returns:
        float32 ``(batch, ..., M)``.
    """
    rank = boxes_a.shape.rank
    if rank is None:
        raise ValueError("boxes_a must have a known rank")
    # Broadcast b to (batch, 1, ..., 1, M, 4) and a to (batch, ..., 1, 4).
    b = tf.reshape(boxes_b, tf.concat([tf.shape(boxes_b)[:1], [1] * (rank - 2), [-1, 4]], 0))
    a = boxes_a[..., None, :]
    width = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    height = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    intersection = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return tf.math.divide_no_nan(intersection, area_a + area_b - intersection)


def scale_loss(
    output: tf.Tensor,
    target: tf.Tensor,
    gt_boxes: tf.Tensor,
    anchors: tf.Tensor,
    ignore_threshold: float = DEFAULT_IGNORE_THRESHOLD,
) -> dict[str, tf.Tensor]:
    """Loss parts of one output scale, per image.

    Args:
        output: raw head ``(batch, grid, grid, A, 5 + C)`` (any float dtype; cast to float32).
        target: ``(batch, grid, grid, A, 6)`` ``[xmin, ymin, xmax, ymax, objectness,
            class_index]`` from :func:`ppe.model.targets.encode_targets`.
        gt_boxes: ``(batch, max_boxes, 4)`` ``[xmin, ymin, xmax, ymax]`` normalised, zero rows
            as padding.
        anchors: float32 ``(A, 2)`` normalised ``(width, height)`` of this scale.
        ignore_threshold: IoU with any ground truth at or above which a prediction is not
            penalised as background.

    Returns:
        ``{"box", "obj", "cls"}``, each float32 ``(batch,)``.
    """
    output = tf.cast(output, tf.float32)
    target = tf.cast(target, tf.float32)
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    grid = output.shape[1]
    if grid is None:
        raise ValueError("the output grid size must be static")
    num_classes = output.shape[-1] - 5
    cells = _cell_grid(grid)

    pred_offset = tf.sigmoid(output[..., 0:2])
    pred_log_size = output[..., 2:4]
    obj_logit = output[..., 4]
    class_logits = output[..., 5:]

    true_box = target[..., 0:4]
    has_object = target[..., 4]
    true_class = tf.cast(target[..., 5], tf.int32)
    true_centre = (true_box[..., 0:2] + true_box[..., 2:4]) / 2.0
    true_size = true_box[..., 2:4] - true_box[..., 0:2]
    true_offset = true_centre * grid - cells
    object_cells = has_object[..., None] > 0.0
    true_log_size = tf.math.log(tf.where(object_cells, true_size / anchors, 1.0))
    box_weight = has_object * (2.0 - true_size[..., 0] * true_size[..., 1])

    xy_error = tf.reduce_sum(tf.square(true_offset - pred_offset), axis=-1)
    wh_error = tf.reduce_sum(tf.square(true_log_size - pred_log_size), axis=-1)
    box = tf.reduce_sum(box_weight * (xy_error + wh_error), axis=[1, 2, 3])

    # Ignore mask: decoded predicted boxes against every ground truth of the image.
    pred_centre = (pred_offset + cells) / grid
    pred_size = tf.exp(tf.minimum(pred_log_size, _MAX_LOG_SIZE)) * anchors
    pred_box = tf.concat([pred_centre - pred_size / 2.0, pred_centre + pred_size / 2.0], axis=-1)
    best_iou = tf.reduce_max(pairwise_iou(pred_box, gt_boxes), axis=-1)
    background_weight = tf.stop_gradient(
        (1.0 - has_object) * tf.cast(best_iou < ignore_threshold, tf.float32)
    )
    obj_bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=has_object, logits=obj_logit)
    obj = tf.reduce_sum((has_object + background_weight) * obj_bce, axis=[1, 2, 3])

    one_hot = tf.one_hot(true_class, num_classes, dtype=tf.float32)
    class_bce = tf.reduce_sum(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=one_hot, logits=class_logits), axis=-1
    )
    cls = tf.reduce_sum(has_object * class_bce, axis=[1, 2, 3])
    return {"box": box, "obj": obj, "cls": cls}


def yolo_loss(
    outputs: Sequence[tf.Tensor],
    targets: Mapping[str, tf.Tensor],
    spec: YoloSpec,
    ignore_threshold: float = DEFAULT_IGNORE_THRESHOLD,
) -> dict[str, tf.Tensor]:
    """Per-image YOLOv3 loss summed over scales.

    Args:
        outputs: model outputs, largest stride first, each
            ``(batch, grid, grid, A, 5 + num_classes)``.
        targets: batched :func:`ppe.model.targets.encode_targets` dictionary.
        spec: the model spec.
        ignore_threshold: see :func:`scale_loss`.

    Returns:
        ``{"total", "box", "obj", "cls"}``, each float32 ``(batch,)`` (not yet averaged, so that
        the caller can divide by the global batch size under ``tf.distribute``).
    """
    if len(outputs) != spec.num_scales:
        raise ValueError(f"expected {spec.num_scales} outputs, got {len(outputs)}")
    parts: dict[str, tf.Tensor] = {}
    for scale, (output, key) in enumerate(zip(outputs, target_keys(spec), strict=True)):
        anchors = tf.constant(spec.scale_anchors(scale), tf.float32)
        scale_parts = scale_loss(
            output, targets[key], targets[BOXES_KEY], anchors, ignore_threshold
        )
        for name, value in scale_parts.items():
            parts[name] = parts[name] + value if name in parts else value
    parts["total"] = parts["box"] + parts["obj"] + parts["cls"]
    return parts
