"""encode_targets: shapes, anchor choice, cell placement, graph mode."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from ppe.model.spec import YoloSpec
from ppe.model.targets import BOXES_KEY, encode_targets, target_keys

SPEC = YoloSpec.default("yolov3", ("helmet", "head"), image_size=416)


def _encode(boxes: list[list[float]], labels: list[int], **kwargs: Any) -> dict[str, np.ndarray]:
    encoded = encode_targets(
        tf.constant(boxes, tf.float32, shape=(len(boxes), 4)),
        tf.constant(labels, tf.int32, shape=(len(labels),)),
        SPEC,
        **kwargs,
    )
    return {key: value.numpy() for key, value in encoded.items()}


def test_shapes_and_keys() -> None:
    targets = _encode([[0.1, 0.1, 0.3, 0.4]], [1], max_boxes=7)
    assert target_keys(SPEC) == ("stride_32", "stride_16", "stride_8")
    assert set(targets) == {"stride_32", "stride_16", "stride_8", BOXES_KEY}
    assert targets["stride_32"].shape == (13, 13, 3, 6)
    assert targets["stride_16"].shape == (26, 26, 3, 6)
    assert targets["stride_8"].shape == (52, 52, 3, 6)
    assert targets[BOXES_KEY].shape == (7, 4)


def test_box_goes_to_best_anchor_and_centre_cell() -> None:
    # 120 x 92 px at 416: best shape match is anchor 6 (116, 90), output 0 (stride 32), slot 0.
    xmin, ymin = 90 / 416, 200 / 416  # centre (4.69, 7.69) in grid units: away from cell edges
    box = [xmin, ymin, xmin + 120 / 416, ymin + 92 / 416]
    targets = _encode([box], [1])
    centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    row, column = int(centre_y * 13), int(centre_x * 13)
    cell = targets["stride_32"][row, column, 0]
    np.testing.assert_allclose(cell, [*box, 1.0, 1.0], rtol=1e-6)
    assert targets["stride_32"][..., 4].sum() == 1
    assert targets["stride_16"][..., 4].sum() == 0
    assert targets["stride_8"][..., 4].sum() == 0
    np.testing.assert_allclose(targets[BOXES_KEY][0], box, rtol=1e-6)
    assert not targets[BOXES_KEY][1:].any()


def test_small_box_goes_to_finest_scale() -> None:
    # 10 x 13 px: exactly anchor 0, owned by output 2 (stride 8), slot 0.
    box = [0.5, 0.5, 0.5 + 10 / 416, 0.5 + 13 / 416]
    targets = _encode([box], [0])
    (row, column, slot), *_ = np.argwhere(targets["stride_8"][..., 4] == 1)
    assert (row, column, slot) == (int(0.5 * 52 + 6.5 / 8), int(0.5 * 52 + 5 / 8), 0)
    assert targets["stride_8"][row, column, slot, 5] == 0.0


def test_empty_and_degenerate_boxes() -> None:
    targets = _encode([], [])
    assert all(not value.any() for value in targets.values())
    targets = _encode([[0.2, 0.2, 0.2, 0.5], [0.1, 0.1, 0.2, 0.2]], [0, 1])
    total = sum(targets[key][..., 4].sum() for key in target_keys(SPEC))
    assert total == 1  # the zero-width box is dropped
    assert np.count_nonzero(targets[BOXES_KEY].any(axis=1)) == 1


def test_boxes_beyond_max_boxes_still_encoded() -> None:
    boxes = [[0.1 * i, 0.1 * i, 0.1 * i + 0.05, 0.1 * i + 0.05] for i in range(5)]
    targets = _encode(boxes, [0] * 5, max_boxes=2)
    assert targets[BOXES_KEY].shape == (2, 4)
    assert sum(targets[key][..., 4].sum() for key in target_keys(SPEC)) == 5


def test_invalid_label_is_rejected() -> None:
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_classes"):
        _encode([[0.1, 0.1, 0.2, 0.2]], [2])


def test_runs_in_dataset_map_and_batches() -> None:
    spec = YoloSpec.default("yolov3_tiny", ("helmet", "head"), image_size=64)
    boxes = tf.ragged.constant(
        [[[0.1, 0.1, 0.5, 0.6]], [[0.2, 0.3, 0.4, 0.5], [0.6, 0.6, 0.9, 0.95]]],
        ragged_rank=1,
        inner_shape=(4,),
    )
    labels = tf.ragged.constant([[0], [1, 0]])
    dataset = (
        tf.data.Dataset.from_tensor_slices((boxes, labels))
        .map(lambda b, c: encode_targets(b, c, spec, max_boxes=5))
        .batch(2)
    )
    batch = next(iter(dataset))
    assert batch["stride_32"].shape == (2, 2, 2, 3, 6)
    assert batch["stride_16"].shape == (2, 4, 4, 3, 6)
    assert batch[BOXES_KEY].shape == (2, 5, 4)
    objects = [
        int(tf.reduce_sum(batch[key][i, ..., 4])) for i in range(2) for key in target_keys(spec)
    ]
    # The 83 x 83 px box matches anchor 3 (81, 82), which both tiny outputs predict: 2 positives.
    assert sum(objects[:2]) == 1 and sum(objects[2:]) == 3


def test_tiny_targets_skip_the_unused_anchor_and_fill_both_outputs_of_a_shared_one() -> None:
    spec = YoloSpec.default("yolov3_tiny", ("helmet", "head"), image_size=416)
    assert spec.masks == ((3, 4, 5), (1, 2, 3))

    def encode(box: list[float]) -> dict[str, np.ndarray]:
        result = encode_targets(tf.constant([box]), tf.constant([0]), spec)
        return {key: value.numpy() for key, value in result.items()}

    # 10 x 14 px is anchor 0 exactly, which no output predicts: it must go to anchor 1, the
    # closest used one (stride 16, slot 0), not vanish.
    tiny = encode([0.5, 0.5, 0.5 + 10 / 416, 0.5 + 14 / 416])
    assert tiny["stride_32"][..., 4].sum() == 0
    assert np.argwhere(tiny["stride_16"][..., 4] == 1)[:, 2].tolist() == [0]
    # 81 x 82 px is anchor 3, in both masks: a positive at both outputs.
    shared = encode([0.3, 0.3, 0.3 + 81 / 416, 0.3 + 82 / 416])
    assert np.argwhere(shared["stride_32"][..., 4] == 1)[:, 2].tolist() == [0]
    assert np.argwhere(shared["stride_16"][..., 4] == 1)[:, 2].tolist() == [2]


def test_positive_anchor_iou_adds_every_anchor_above_it_at_the_centre_cell() -> None:
    # 120 x 92 px at 416. Shape IoU with the anchors: (116, 90) 0.946 (stride 32, slot 0),
    # (59, 119) 0.430 (stride 16, slot 2), (156, 198) 0.357 (stride 32, slot 1), the rest < 0.26.
    xmin, ymin = 90 / 416, 200 / 416
    box = [xmin, ymin, xmin + 120 / 416, ymin + 92 / 416]
    centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2

    def positives(**kwargs: float) -> list[tuple[str, int, int, int]]:
        targets = _encode([box], [1], **kwargs)
        return [
            (key, int(row), int(column), int(slot))
            for key in target_keys(SPEC)
            for row, column, slot in np.argwhere(targets[key][..., 4] == 1)
        ]

    def cell(grid: int) -> tuple[int, int]:
        return int(centre_y * grid), int(centre_x * grid)

    assert positives() == [("stride_32", *cell(13), 0)]
    assert positives(positive_anchor_iou=0.4) == [
        ("stride_32", *cell(13), 0),
        ("stride_16", *cell(26), 2),
    ]
    assert positives(positive_anchor_iou=0.3) == [
        ("stride_32", *cell(13), 0),
        ("stride_32", *cell(13), 1),
        ("stride_16", *cell(26), 2),
    ]
    # Every extra positive carries the box and its class, like the best one.
    targets = _encode([box], [1], positive_anchor_iou=0.3)
    row, column = cell(26)
    np.testing.assert_allclose(targets["stride_16"][row, column, 2], [*box, 1.0, 1.0], rtol=1e-6)
    # Above every IoU (1.0): the best anchor still trains, alone.
    assert positives(positive_anchor_iou=1.0) == [("stride_32", *cell(13), 0)]


@pytest.mark.parametrize("threshold", [0.0, -0.2, 1.5])
def test_positive_anchor_iou_outside_its_range_is_refused(threshold: float) -> None:
    with pytest.raises(ValueError, match=r"positive_anchor_iou must be in \(0, 1\]"):
        _encode([[0.1, 0.1, 0.3, 0.4]], [0], positive_anchor_iou=threshold)
