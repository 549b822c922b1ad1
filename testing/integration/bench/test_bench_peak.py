"""The ceiling of ``make bench`` (``benchmarks.peak``): the matrix-product microbenchmark on ONNX
Runtime, and the operation count of a Keras model against counts worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from benchmarks import peak


def test_peak_is_a_positive_measured_rate_per_precision() -> None:
    measured = peak.measure_peak(threads=1, quick=True)
    assert measured["fp32_gflops"] > 0 and measured["int8_gops"] > 0
    assert measured["threads"] == 1
    assert set(measured["per_size"]) == {str(size) for size in peak.SIZES[:2]}
    assert measured["fp32_gflops"] == max(
        item["fp32_gflops"] for item in measured["per_size"].values()
    )
    # A 2-core container does not multiply 10^13 numbers a second: a timing bug would.
    assert measured["fp32_gflops"] < 10_000 and measured["int8_gops"] < 10_000


def test_peak_refuses_zero_threads() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        peak.measure_peak(threads=0, quick=True)


def test_matmul_graphs_compute_the_product() -> None:
    # The timed graphs really multiply: same result as NumPy on the same operands.
    import onnxruntime

    for int8 in (False, True):
        session = onnxruntime.InferenceSession(
            peak._matmul_model(16, int8), providers=["CPUExecutionProvider"]
        )
        rng = np.random.default_rng(3)
        operand = (
            rng.integers(0, peak.UINT8_INPUT_BOUND, (16, 16), dtype=np.uint8)
            if int8
            else rng.standard_normal((16, 16)).astype(np.float32)
        )
        weights = np.random.default_rng(16)
        expected_b = (
            weights.integers(
                -peak.INT8_WEIGHT_BOUND, peak.INT8_WEIGHT_BOUND, (16, 16), dtype=np.int8
            )
            if int8
            else weights.standard_normal((16, 16)).astype(np.float32)
        )
        (result,) = session.run(None, {"A": operand})
        if int8:
            np.testing.assert_array_equal(
                result, operand.astype(np.int32) @ expected_b.astype(np.int32)
            )
        else:
            np.testing.assert_allclose(result, operand @ expected_b, rtol=1e-4, atol=1e-4)


def test_operation_count_of_a_small_graph_equals_the_hand_count() -> None:
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8*8 positions * 4 out * 3*3*3
    x = keras.layers.BatchNormalization()(x)  # not counted
    x = keras.layers.MaxPooling2D(2)(x)  # not counted
    x = keras.layers.Conv2D(6, 3, strides=2, padding="valid")(x)  # 1*1 * 6 * 3*3*4
    x = keras.layers.DepthwiseConv2D(1)(x)  # 1*1 * 6 * 1
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(5)(x)  # 6 * 5
    counted = peak.operation_count(keras.Model(inputs, outputs))
    macs = 8 * 8 * 4 * 27 + 1 * 1 * 6 * 36 + 6 + 6 * 5
    assert counted["macs"] == macs == 7164
    assert counted["operations"] == 2 * macs
    assert counted["counted_layers"] == {"Conv2D": 2, "DepthwiseConv2D": 1, "Dense": 1}


def test_operation_count_walks_nested_models_and_grouped_convolutions() -> None:
    import keras

    inner_in = keras.Input((4, 4, 8))
    inner = keras.Model(inner_in, keras.layers.Conv2D(8, 1, groups=4)(inner_in))
    inputs = keras.Input((4, 4, 8))
    counted = peak.operation_count(keras.Model(inputs, inner(inputs)))
    assert counted["macs"] == 4 * 4 * 8 * 1 * (8 // 4)


def test_operation_count_of_yolov3_tiny_at_416_matches_the_published_figure() -> None:
    # Darknet reports 5.56 BFLOPs for yolov3-tiny at 416 with 80 classes (its cfg's detection
    # heads have 255 filters); our two-class heads have 21, so a little less.
    from ppe.model.spec import YoloSpec
    from ppe.model.yolov3 import build_model

    coco = YoloSpec.default("yolov3_tiny", tuple(f"c{i}" for i in range(80)), 416)
    counted = peak.operation_count(build_model(coco))
    assert counted["gigaoperations"] == pytest.approx(5.56, abs=0.02)
    ours = peak.operation_count(build_model(YoloSpec.default("yolov3_tiny", ("a", "b"), 416)))
    assert ours["operations"] < counted["operations"]
