"""YoloSpec and the Keras YOLOv3 / YOLOv3-tiny builders."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ppe.model.spec import COCO_CLASS_NAMES, YoloSpec
from ppe.model.yolov3 import build_model, darknet_conv_units

# Darknet reference parameter counts (yolov3.cfg / yolov3-tiny.cfg; the .weights files hold
# exactly these many float32 values after the header).
PARAMETER_COUNTS = [
    ("yolov3", 2, 61_581_727),
    ("yolov3", 80, 62_001_757),
    ("yolov3_tiny", 2, 8_678_554),
    ("yolov3_tiny", 80, 8_858_734),
]


@pytest.mark.parametrize(("architecture", "num_classes", "expected"), PARAMETER_COUNTS)
def test_parameter_counts_equal_darknet(architecture: str, num_classes: int, expected: int) -> None:
    names = COCO_CLASS_NAMES if num_classes == 80 else ("helmet", "head")
    # Parameter counts do not depend on the input size; 32 px keeps the graph small.
    model = build_model(YoloSpec.default(architecture, names, image_size=32))
    assert model.count_params() == expected


@pytest.mark.parametrize("architecture", ["yolov3", "yolov3_tiny"])
def test_darknet_units_cover_every_convolution_once(architecture: str) -> None:
    spec = YoloSpec.default(architecture, ("helmet", "head"), image_size=32)
    model = build_model(spec)
    units = darknet_conv_units(spec)
    conv_layers = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert sorted(f"{unit}_conv" for unit, _ in units) == sorted(conv_layers)
    assert len(units) == (75 if architecture == "yolov3" else 13)
    for unit, batch_normalized in units:
        conv = model.get_layer(f"{unit}_conv")
        assert conv.use_bias is not batch_normalized
        if batch_normalized:
            assert isinstance(model.get_layer(f"{unit}_bn"), keras.layers.BatchNormalization)
    # Darknet order: each output conv follows its head conv, before the next lateral conv.
    order = [unit for unit, _ in units]
    assert order.index("head_s32_output") < order.index("neck_s16_lateral")


def test_tiny_outputs_largest_stride_first_and_forward_pass_shapes() -> None:
    spec = YoloSpec.default("yolov3_tiny", ("helmet", "head"), image_size=64)
    model = build_model(spec)
    assert spec.strides == (32, 16)
    assert spec.grid_sizes == (2, 4)
    outputs = model(np.zeros((2, 64, 64, 3), np.float32))
    assert [tuple(o.shape) for o in outputs] == [(2, 2, 2, 3, 7), (2, 4, 4, 3, 7)]
    assert model.input_shape == (None, 64, 64, 3)


def test_yolov3_output_shapes_at_416() -> None:
    spec = YoloSpec.default("yolov3", COCO_CLASS_NAMES)
    assert spec.output_shapes == ((13, 13, 3, 85), (26, 26, 3, 85), (52, 52, 3, 85))
    assert spec.image_size == 416


def test_spec_derived_properties() -> None:
    spec = YoloSpec.default("yolov3", ("helmet", "head"), image_size=416)
    assert spec.num_classes == 2
    assert spec.anchors_per_scale == 3
    assert spec.normalized_anchors.shape == (9, 2)
    assert spec.normalized_anchors.dtype == np.float32
    np.testing.assert_allclose(spec.normalized_anchors[0], [10 / 416, 13 / 416])
    # Output 0 (stride 32) owns the three largest anchors.
    np.testing.assert_allclose(spec.scale_anchors(0) * 416, [[116, 90], [156, 198], [373, 326]])
    assert YoloSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_size": 100}, "multiple of 32"),
        ({"architecture": "yolov5"}, "architecture must be one of"),
        ({"class_names": ()}, "at least one class"),
        ({"class_names": ("helmet", "helmet")}, "unique"),
        ({"masks": ((0, 1, 2), (3, 4, 5), (6, 7, 7))}, "must not repeat"),
        ({"masks": ((0, 1, 2), (3, 4, 5), (6, 7, 9))}, "must lie in 0..8"),
        ({"masks": ((0, 1, 2), (3, 4, 5))}, "3 outputs"),
    ],
)
def test_spec_rejects_invalid_values(changes: dict[str, object], message: str) -> None:
    values = YoloSpec.default("yolov3", ("helmet", "head")).to_dict()
    values.update(changes)
    with pytest.raises(ValueError, match=message):
        YoloSpec(**values)  # type: ignore[arg-type]


def test_spec_from_dict_rejects_unknown_keys() -> None:
    values = YoloSpec.default("yolov3_tiny").to_dict()
    values["colour"] = "red"
    with pytest.raises(ValueError, match="unknown"):
        YoloSpec.from_dict(values)


def test_tiny_uses_the_masks_the_official_weights_were_trained_with() -> None:
    # pjreddie/darknet cfg/yolov3-tiny.cfg at its first commit (f6d8617): mask = 3,4,5 and
    # mask = 1,2,3; the released COCO weights were trained that way (pjreddie/darknet#851).
    spec = YoloSpec.default("yolov3_tiny", ("helmet", "head"))
    assert spec.masks == ((3, 4, 5), (1, 2, 3))
    assert spec.used_anchors == (1, 2, 3, 4, 5)
    np.testing.assert_allclose(spec.scale_anchors(1) * 416, [[23, 27], [37, 58], [81, 82]])
    assert YoloSpec.from_dict(spec.to_dict()) == spec


def test_custom_anchors_are_sorted_by_area_and_split_per_output() -> None:
    anchors = [[40, 40], [8, 10], [100, 120], [20, 22], [14, 30], [60, 50]]
    spec = YoloSpec.default("yolov3_tiny", ("helmet", "head"), 320, anchors=anchors)
    assert spec.anchors == ((8, 10), (14, 30), (20, 22), (40, 40), (60, 50), (100, 120))
    assert spec.masks == ((3, 4, 5), (0, 1, 2))
    with pytest.raises(ValueError, match="needs 9 anchors, got 6"):
        YoloSpec.default("yolov3", ("helmet", "head"), anchors=anchors)
    with pytest.raises(ValueError, match="positive"):
        YoloSpec.default("yolov3_tiny", ("a",), anchors=[[0, 1]] * 6)
