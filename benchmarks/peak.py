"""The machine's measured ceiling and the model's operation count.

**Peak.** A square matrix product timed on ONNX Runtime's CPU kernels (MLAS, the library behind
the peer backends' convolutions) with the benchmark's thread count: fp32 ``MatMul`` (GFLOP/s)
and int8 ``MatMulInteger`` (uint8 x int8 -> int32, GOP/s), each the best over a few sizes of the
median of repeated calls. One multiply-accumulate counts as two operations. This is the rate the
machine achieves on the densest kernel it has, not a datasheet figure: a network's layers (small
channel counts, memory-bound activations) reach a fraction of it.

**Operation count.** Computed from the Keras model's layers: every ``Conv2D``,
``DepthwiseConv2D`` and ``Dense`` contributes ``2 x`` its multiply-accumulates (output positions
x output channels x kernel taps x input channels per group); batch normalisation, activations,
pooling, up-sampling and concatenation (element-wise, a few per cent at most) are not counted.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np

logger = logging.getLogger("benchmarks.peak")

#: Square sizes of the matrix product (full run; quick runs take the first two).
SIZES = (256, 512, 1024)
#: Operand ranges of the int8 product: 7-bit, so that no pair of products overflows the int16
#: sums of the AVX2 uint8 x int8 instruction (``vpmaddubsw``) on CPUs without VNNI; with full
#: 8-bit operands MLAS's results saturate there (the rate is the same, the values wrong).
UINT8_INPUT_BOUND = 128
INT8_WEIGHT_BOUND = 64


def _matmul_model(size: int, int8: bool) -> bytes:
    """An ONNX graph ``Y = A @ B`` with ``B`` a constant ``size x size`` matrix."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(size)
    if int8:
        weights = rng.integers(-INT8_WEIGHT_BOUND, INT8_WEIGHT_BOUND, (size, size), dtype=np.int8)
        node = helper.make_node("MatMulInteger", ["A", "B"], ["Y"])
        inputs = [helper.make_tensor_value_info("A", TensorProto.UINT8, [size, size])]
        output = helper.make_tensor_value_info("Y", TensorProto.INT32, [size, size])
    else:
        weights = rng.standard_normal((size, size)).astype(np.float32)
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
        inputs = [helper.make_tensor_value_info("A", TensorProto.FLOAT, [size, size])]
        output = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [size, size])
    graph = helper.make_graph(
        [node], "matmul", inputs, [output], initializer=[numpy_helper.from_array(weights, "B")]
    )
    # IR version 8 (ONNX 1.10): onnx writes its newest by default, which ONNX Runtime may not read.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def _rate(size: int, int8: bool, threads: int, repeats: int) -> float:
    """Operations per second of one product of ``size`` (median of ``repeats`` calls)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        _matmul_model(size, int8), options, providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(0)
    operand = (
        rng.integers(0, UINT8_INPUT_BOUND, (size, size), dtype=np.uint8)
        if int8
        else rng.standard_normal((size, size)).astype(np.float32)
    )
    feed = {"A": operand}
    for _ in range(2):
        session.run(None, feed)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(None, feed)
        seconds.append(time.perf_counter() - started)
    return 2.0 * size**3 / float(np.median(seconds))


def measure_peak(threads: int, quick: bool) -> dict[str, Any]:
    """Achieved fp32 GFLOP/s and int8 GOP/s of a matrix product on ``threads`` threads.

    Args:
        threads: ONNX Runtime intra-op threads (the benchmark's thread count).
        quick: fewer sizes and repeats (a code-path check).

    Returns:
        ``fp32_gflops``, ``int8_gops``, the per-size figures and the settings.
    """
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    sizes = SIZES[:2] if quick else SIZES
    repeats = 3 if quick else 15
    per_size: dict[str, dict[str, float]] = {}
    for size in sizes:
        per_size[str(size)] = {
            "fp32_gflops": round(_rate(size, False, threads, repeats) / 1e9, 2),
            "int8_gops": round(_rate(size, True, threads, repeats) / 1e9, 2),
        }
    fp32 = max(item["fp32_gflops"] for item in per_size.values())
    int8 = max(item["int8_gops"] for item in per_size.values())
    logger.info("peak on %d threads: fp32 %.1f GFLOP/s, int8 %.1f GOP/s", threads, fp32, int8)
    return {
        "fp32_gflops": fp32,
        "int8_gops": int8,
        "per_size": per_size,
        "threads": threads,
        "repeats": repeats,
        "method": "ONNX Runtime CPU MatMul (fp32) and MatMulInteger (uint8 x int8 -> int32, 7-bit "
        "operands), "
        "square sizes "
        + ", ".join(str(size) for size in sizes)
        + f", median of {repeats} calls, best size; 2 operations per multiply-accumulate",
    }


def _shape(tensor: Any) -> tuple[int, ...]:
    return tuple(int(value) for value in tuple(tensor.shape)[1:])


def _layers(model: Any) -> list[Any]:
    """Every leaf layer of a (possibly nested) Keras model."""
    found: list[Any] = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            found.extend(_layers(layer))
        else:
            found.append(layer)
    return found


def layer_macs(layer: Any) -> int:
    """Multiply-accumulates of one layer for one image (0 for layers not counted)."""
    kind = type(layer).__name__
    if kind not in ("Conv2D", "DepthwiseConv2D", "Dense"):
        return 0
    inputs, outputs = _shape(layer.input), _shape(layer.output)
    if kind == "Dense":
        return math.prod(outputs[:-1]) * inputs[-1] * outputs[-1]
    height, width, channels_out = outputs
    taps = math.prod(int(k) for k in layer.kernel_size)
    channels_in = inputs[-1]
    if kind == "DepthwiseConv2D":
        return height * width * channels_out * taps
    groups = int(getattr(layer, "groups", 1))
    return height * width * channels_out * taps * (channels_in // groups)


def operation_count(model: Any) -> dict[str, Any]:
    """Operations of one forward pass (batch 1) of a built Keras model, from its layers.

    Args:
        model: a Keras functional model (nested models are walked).

    Returns:
        ``macs``, ``operations`` (2 x MACs), ``gigaoperations`` and the counted layer types.
    """
    counted: dict[str, int] = {}
    macs = 0
    for layer in _layers(model):
        value = layer_macs(layer)
        if value:
            counted[type(layer).__name__] = counted.get(type(layer).__name__, 0) + 1
            macs += value
    return {
        "macs": macs,
        "operations": 2 * macs,
        "gigaoperations": round(2 * macs / 1e9, 4),
        "counted_layers": counted,
        "method": "2 x multiply-accumulates of Conv2D/DepthwiseConv2D/Dense layers, batch 1; "
        "element-wise layers not counted",
    }
