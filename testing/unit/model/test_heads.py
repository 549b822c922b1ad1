"""init_head: score priors on the output biases, small output kernels, reused box rows."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
import pytest

from ppe.model.bundle import save_model_dir
from ppe.model.decode import decode
from ppe.model.heads import INITIAL_KERNEL_STD, init_head, prior_logit, reanchor_box_rows
from ppe.model.spec import YoloSpec
from ppe.model.yolov3 import build_model
from ppe.train.fit import initial_model

SPEC = YoloSpec.default("yolov3_tiny", ("helmet", "head"), image_size=64)


def _rows(model: keras.Model, spec: YoloSpec, stride: int) -> tuple[np.ndarray, np.ndarray]:
    kernel, bias = model.get_layer(f"head_s{stride}_output_conv").get_weights()
    depth = 5 + spec.num_classes
    return kernel.reshape(*kernel.shape[:-1], 3, depth), bias.reshape(3, depth)


def test_prior_logit_is_the_inverse_sigmoid() -> None:
    assert 1 / (1 + math.exp(-prior_logit(0.01))) == pytest.approx(0.01)
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        prior_logit(1.0)


def test_biases_start_at_the_priors_and_kernels_are_small() -> None:
    keras.utils.set_random_seed(0)
    model = build_model(SPEC)
    result = init_head(model, SPEC, objects_per_image=8)
    for stride, grid in zip(SPEC.strides, SPEC.grid_sizes, strict=True):
        kernel, bias = _rows(model, SPEC, stride)
        # grid 2 (stride 32 at 64 px): 8 / 4 > 0.5, capped; grid 4: 8 / 16 = 0.5.
        np.testing.assert_allclose(bias[:, 4], prior_logit(min(8 / grid**2, 0.5)), atol=1e-6)
        np.testing.assert_allclose(bias[:, 5:], prior_logit(1 / 3), rtol=1e-6)
        np.testing.assert_allclose(bias[:, :4], 0.0)
        assert float(kernel.std()) == pytest.approx(INITIAL_KERNEL_STD, rel=1e-3)
    assert result.box_rows_from == []
    spec = YoloSpec.default("yolov3_tiny", ("a",), image_size=416)
    init_head(build_model(spec), spec)  # one class: prior 1/2, logit 0


def test_box_rows_are_copied_only_where_the_anchors_match() -> None:
    keras.utils.set_random_seed(1)
    source_spec = YoloSpec.default("yolov3_tiny", ("a", "b", "c", "d"), image_size=64)
    source = build_model(source_spec)
    source_kernel, source_bias = _rows(source, source_spec, 32)
    target = build_model(SPEC)
    result = init_head(target, SPEC, source=source, source_spec=source_spec)
    assert result.box_rows_from == [32, 16]
    kernel, bias = _rows(target, SPEC, 32)
    np.testing.assert_array_equal(kernel[..., :4], source_kernel[..., :4])
    np.testing.assert_array_equal(bias[:, :4], source_bias[:, :4])
    # Other anchors at stride 16 only: stride 32 (same anchors 3, 4, 5) is still copied.
    other = YoloSpec.default(
        "yolov3_tiny",
        ("helmet", "head"),
        64,
        anchors=[[9, 9]] * 3 + [[81, 82], [135, 169], [344, 319]],
    )
    target = build_model(other)
    assert init_head(target, other, source=source, source_spec=source_spec).box_rows_from == [32]
    # Only the outputs asked for are touched.
    target = build_model(SPEC)
    before = _rows(target, SPEC, 16)
    assert list(init_head(target, SPEC, strides=[32]).objectness_bias) == [32]
    np.testing.assert_array_equal(_rows(target, SPEC, 16)[1], before[1])


def test_a_head_copied_from_other_anchors_keeps_predicting_the_same_boxes(tmp_path: Path) -> None:
    # `train.init_from` a helmet/head model with Darknet's anchors, and `model.anchors` from
    # `ppe data anchors`: the output convolutions are copied whole (same shape), so without the
    # shift their size rows would stretch every box by (our anchor / its anchor).
    keras.utils.set_random_seed(0)
    source = build_model(SPEC)
    rng = np.random.default_rng(0)
    for stride in SPEC.strides:
        layer = source.get_layer(f"head_s{stride}_output_conv")
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel, rng.normal(0.0, 0.5, size=bias.shape).astype(bias.dtype)])
    save_model_dir(source, SPEC, tmp_path / "source", {"source": "test"})
    kmeans = YoloSpec.default(
        "yolov3_tiny",
        SPEC.class_names,
        64,
        anchors=[[3, 3], [4, 5], [6, 7], [10, 9], [13, 14], [19, 22]],
    )
    model = initial_model(kmeans, tmp_path / "source")
    batch = rng.uniform(0.0, 1.0, size=(1, 64, 64, 3)).astype(np.float32)
    theirs = decode([np.asarray(o) for o in source(batch)], SPEC)
    ours = decode([np.asarray(o) for o in model(batch)], kmeans)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-5, atol=1e-6)
    # The control: the same raw outputs read with our anchors are other boxes.
    unshifted = decode([np.asarray(o) for o in source(batch)], kmeans)
    assert not np.allclose(unshifted[0], theirs[0], atol=1e-3)
    assert reanchor_box_rows(build_model(SPEC), SPEC, SPEC, SPEC.strides) == []
