"""The YOLOv3 loss: perfect vs wrong predictions, the ignore mask, gradients, NaN propagation."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ppe.model.loss import scale_loss, yolo_loss
from ppe.model.spec import YoloSpec
from ppe.model.targets import encode_targets, target_keys

SPEC = YoloSpec.default("yolov3_tiny", ("helmet", "head"), image_size=64)
BOXES = np.array([[0.10, 0.15, 0.45, 0.60], [0.55, 0.50, 0.95, 0.98]], np.float32)
LABELS = np.array([1, 0], np.int32)
BIG = 30.0


def _targets(boxes: np.ndarray = BOXES, labels: np.ndarray = LABELS) -> dict[str, tf.Tensor]:
    encoded = encode_targets(tf.constant(boxes), tf.constant(labels), SPEC, max_boxes=8)
    return {key: value[None] for key, value in encoded.items()}  # batch of 1


def _perfect_outputs(targets: dict[str, tf.Tensor]) -> list[np.ndarray]:
    """Raw head values that decode exactly to the targets, with saturated logits."""
    outputs = []
    for scale, key in enumerate(target_keys(SPEC)):
        target = targets[key].numpy()[0]
        grid = target.shape[0]
        anchors = SPEC.scale_anchors(scale)
        raw = np.zeros((*target.shape[:3], 5 + SPEC.num_classes), np.float32)
        raw[..., 4] = -BIG
        raw[..., 5:] = -BIG
        for row, column, slot in np.argwhere(target[..., 4] > 0):
            xmin, ymin, xmax, ymax, _, label = target[row, column, slot]
            offset = np.array([(xmin + xmax) / 2 * grid - column, (ymin + ymax) / 2 * grid - row])
            raw[row, column, slot, 0:2] = np.log(offset / (1 - offset))
            raw[row, column, slot, 2:4] = np.log(
                np.array([xmax - xmin, ymax - ymin]) / anchors[slot]
            )
            raw[row, column, slot, 4] = BIG
            raw[row, column, slot, 5 + int(label)] = BIG
        outputs.append(raw[None])
    return outputs


def test_loss_is_near_zero_for_perfect_predictions() -> None:
    targets = _targets()
    parts = yolo_loss([tf.constant(o) for o in _perfect_outputs(targets)], targets, SPEC)
    assert set(parts) == {"total", "box", "obj", "cls"}
    assert parts["total"].shape == (1,)
    assert float(parts["total"][0]) < 1e-4


def test_loss_is_large_for_wrong_predictions() -> None:
    targets = _targets()
    perfect = _perfect_outputs(targets)
    wrong_class = [o.copy() for o in perfect]
    for raw in wrong_class:
        objects = raw[..., 4] > 0
        raw[..., 5:][objects] = -raw[..., 5:][objects]  # swap which class is confident
    parts = yolo_loss([tf.constant(o) for o in wrong_class], targets, SPEC)
    assert float(parts["cls"][0]) > 2 * BIG - 1  # two objects, each with two wrong classes
    assert float(parts["box"][0]) < 1e-6

    no_objects = [o.copy() for o in perfect]
    for raw in no_objects:
        raw[..., 4] = -BIG
    parts = yolo_loss([tf.constant(o) for o in no_objects], targets, SPEC)
    assert float(parts["obj"][0]) > 2 * BIG - 1

    shifted = [o.copy() for o in perfect]
    for raw in shifted:
        raw[..., 2:4] += 1.0  # every box e times too large
    parts = yolo_loss([tf.constant(o) for o in shifted], targets, SPEC)
    assert float(parts["box"][0]) > 2 * 2 * 1.0  # two boxes, two sizes, weight >= 1


def test_ignore_mask_spares_good_unassigned_predictions() -> None:
    """A confident prediction in a cell with no assigned object that overlaps a ground truth.

    With IoU >= threshold it is not penalised as background; below the threshold it is.
    """
    grid = 4
    anchors = tf.constant(SPEC.scale_anchors(1))
    target = tf.zeros((1, grid, grid, 3, 6))
    # Predicted box in cell (row 1, column 1), slot 0: centre (0.375, 0.375), size = anchor.
    anchor_w, anchor_h = SPEC.scale_anchors(1)[0]
    centre = 0.375
    raw = np.zeros((1, grid, grid, 3, 5 + SPEC.num_classes), np.float32)
    raw[..., 4] = -BIG
    raw[0, 1, 1, 0, 4] = 5.0  # confident objectness
    same_box = [
        centre - anchor_w / 2,
        centre - anchor_h / 2,
        centre + anchor_w / 2,
        centre + anchor_h / 2,
    ]
    far_box = [0.9, 0.9, 0.95, 0.95]
    penalty = float(tf.nn.sigmoid_cross_entropy_with_logits(labels=0.0, logits=5.0))

    def obj_loss(gt: list[float], threshold: float) -> float:
        gt_boxes = tf.constant([[gt, [0.0] * 4]], tf.float32)
        parts = scale_loss(tf.constant(raw), target, gt_boxes, anchors, threshold)
        return float(parts["obj"][0])

    baseline = obj_loss(far_box, 0.5)
    assert baseline > penalty * 0.99  # not overlapping: penalised as background
    assert obj_loss(same_box, 0.5) < baseline - penalty * 0.99  # IoU 1: ignored
    assert obj_loss(same_box, 1.01) == baseline  # threshold above any IoU: penalised again


def test_gradients_are_finite_and_nan_propagates() -> None:
    targets = _targets()
    rng = np.random.default_rng(0)
    outputs = [
        tf.Variable(rng.normal(size=o.shape).astype(np.float32)) for o in _perfect_outputs(targets)
    ]
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(yolo_loss(outputs, targets, SPEC)["total"])
    gradients = tape.gradient(total, outputs)
    assert np.isfinite(float(total))
    for gradient in gradients:
        assert np.all(np.isfinite(gradient.numpy()))
        assert np.abs(gradient.numpy()).sum() > 0

    poisoned = [o.numpy() for o in outputs]
    poisoned[1][0, 0, 0, 0, 0] = np.nan  # a background cell
    parts = yolo_loss([tf.constant(o) for o in poisoned], targets, SPEC)
    assert np.isnan(float(parts["total"][0]))


def test_float16_outputs_are_cast_to_float32() -> None:
    targets = _targets()
    outputs = [tf.constant(o, tf.float16) for o in _perfect_outputs(targets)]
    parts = yolo_loss(outputs, targets, SPEC)
    assert parts["total"].dtype == tf.float32
    assert np.isfinite(float(parts["total"][0]))
