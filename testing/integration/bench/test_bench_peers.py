"""The peer backends of ``make bench`` (``benchmarks.peers``): real tf2onnx, ONNX Runtime, OpenVINO
and NNCF on a small Keras model built from the YOLO network's layer types (conv, batch norm, leaky
ReLU, max pool, up-sampling, concatenation, heads reshaped to ``(grid, grid, anchors, depth)``).

Each converted model must reproduce the Keras outputs on a fixed input: fp32 to float rounding,
int8 within a quantisation tolerance (calibrated on the inputs it is checked on, as the benchmark
calibrates on train images).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from benchmarks import peers
from benchmarks.inference import recommend

SIZE = 64
CLASSES = ("helmet", "head")


def _spec() -> Any:
    from ppe.model.spec import YoloSpec

    return YoloSpec.default("yolov3_tiny", CLASSES, SIZE)


SHAPES = [(2, 2, 3, 7), (4, 4, 3, 7)]  # _spec().output_shapes


def _small_yolo() -> Any:
    import keras

    keras.utils.set_random_seed(7)
    layers = keras.layers
    inputs = keras.Input((SIZE, SIZE, 3))

    def block(x: Any, filters: int) -> Any:
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.LeakyReLU(negative_slope=0.1)(x)

    x = layers.MaxPooling2D(2)(block(inputs, 8))  # 32
    x = layers.MaxPooling2D(2)(block(x, 16))  # 16
    x = layers.MaxPooling2D(2)(block(x, 16))  # 8
    x = layers.MaxPooling2D(2)(block(x, 16))  # 4
    middle = block(x, 16)
    small = layers.MaxPooling2D(2)(middle)  # 2: stride 32
    head_small = layers.Reshape(SHAPES[0])(layers.Conv2D(21, 1)(block(small, 16)))
    up = layers.UpSampling2D(2)(block(small, 8))  # 4: stride 16
    x = layers.Concatenate()([up, middle])
    head_large = layers.Reshape(SHAPES[1])(layers.Conv2D(21, 1)(block(x, 16)))
    model = keras.Model(inputs, [head_small, head_large])
    # Non-trivial batch-norm statistics, so that folding them is exercised.
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                    rng.normal(0, 0.1, beta.shape).astype(np.float32),
                    rng.normal(0, 0.1, mean.shape).astype(np.float32),
                    rng.uniform(0.5, 1.5, variance.shape).astype(np.float32),
                ]
            )
    return model


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Path], np.ndarray]:
    model = _small_yolo()
    rng = np.random.default_rng(1)
    calibration = [rng.random((1, SIZE, SIZE, 3), dtype=np.float32) for _ in range(8)]
    files = peers.convert_all(model, SIZE, calibration, tmp_path_factory.mktemp("peers"))
    return model, files, calibration[0]


def _reference(model: Any, tensor: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(output) for output in model(tensor, training=False)]


@pytest.mark.parametrize("backend", [peers.ONNX_FP32, peers.OPENVINO_FP32])
def test_fp32_models_match_keras(
    converted: tuple[Any, dict[str, Path], np.ndarray], backend: str
) -> None:
    model, files, tensor = converted
    peer = peers.PeerModel(backend, files[backend], SHAPES, threads=1)
    outputs = peer.forward(tensor)
    for got, want in zip(outputs, _reference(model, tensor), strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", [peers.ONNX_INT8, peers.OPENVINO_INT8])
def test_int8_models_match_keras_within_quantisation_error(
    converted: tuple[Any, dict[str, Path], np.ndarray], backend: str
) -> None:
    model, files, tensor = converted
    peer = peers.PeerModel(backend, files[backend], SHAPES, threads=1)
    outputs = peer.forward(tensor)
    for got, want in zip(outputs, _reference(model, tensor), strict=True):
        spread = float(want.max() - want.min())
        error = np.abs(got - want)
        # 8-bit steps through seven layers of a random network: measured 1-14% of the output's
        # range at most and about 1% on average (ONNX Runtime 7-bit weights, NNCF MIXED); NNCF's
        # symmetric default preset (26%, 4.8%) or a mis-calibrated model fails.
        assert float(error.max()) <= 0.2 * spread, (backend, float(error.max()), spread)
        assert float(error.mean()) <= 0.02 * spread, (backend, float(error.mean()), spread)
        assert not np.array_equal(got, want)  # it really is quantised


def test_int8_models_hold_integer_operations(
    converted: tuple[Any, dict[str, Path], np.ndarray],
) -> None:
    import onnx
    import openvino as ov

    _, files, _ = converted
    onnx_ops = {node.op_type for node in onnx.load(str(files[peers.ONNX_INT8])).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= onnx_ops
    ov_ops = {
        op.get_type_name() for op in ov.Core().read_model(files[peers.OPENVINO_INT8]).get_ops()
    }
    assert "FakeQuantize" in ov_ops or "FakeConvert" in ov_ops
    # Smaller on disk than the fp32 files (int8 weights).
    for fp32, int8 in (
        (peers.ONNX_FP32, peers.ONNX_INT8),
        (peers.OPENVINO_FP32, peers.OPENVINO_INT8),
    ):
        assert peers.model_bytes(files[int8]) < peers.model_bytes(files[fp32])


def test_predict_runs_a_batch_one_image_at_a_time(
    converted: tuple[Any, dict[str, Path], np.ndarray],
) -> None:
    model, files, tensor = converted
    batch = np.concatenate([tensor, tensor[:, ::-1]], axis=0)
    peer = peers.PeerModel(peers.ONNX_FP32, files[peers.ONNX_FP32], SHAPES, threads=1)
    outputs = peer.predict(batch)
    for got, want in zip(outputs, _reference(model, batch), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_a_model_with_other_heads_is_refused_with_its_shapes(
    converted: tuple[Any, dict[str, Path], np.ndarray],
) -> None:
    _, files, _ = converted
    with pytest.raises(ValueError, match=r"no output of shape \(1, 8, 8, 3, 7\)"):
        peers.PeerModel(peers.ONNX_FP32, files[peers.ONNX_FP32], [(8, 8, 3, 7)], threads=1)
    with pytest.raises(ValueError, match="unknown peer backend"):
        peers.PeerModel("tensorrt_fp16", files[peers.ONNX_FP32], SHAPES, threads=1)


def test_shapes_are_the_spec_heads() -> None:
    assert [tuple(shape) for shape in _spec().output_shapes] == SHAPES


def test_peer_server_scores_an_upload_like_the_edge_module(
    converted: tuple[Any, dict[str, Path], np.ndarray], tmp_path: Path
) -> None:
    # The edge module's HTTP server and detection path on the ONNX Runtime model: /healthz
    # names the model, POST /score answers detections in the module's format, the same as the
    # detector gives in-process, and SIGTERM stops it cleanly.
    import io
    import json
    import os
    import signal
    import subprocess
    import sys

    from benchmarks.serving import _free_port, _wait_healthy, post
    from PIL import Image

    _, files, _ = converted
    spec_file = tmp_path / "model.json"
    spec_file.write_text(json.dumps({"spec": _spec().to_dict()}))
    port = _free_port()
    repo = Path(__file__).resolve().parents[3]
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.peer_server",
            "--backend",
            peers.ONNX_FP32,
            "--model",
            str(files[peers.ONNX_FP32]),
            "--spec",
            str(spec_file),
            "--port",
            str(port),
            "--threads",
            "1",
        ],
        env={**os.environ, "PYTHONPATH": str(repo)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        health = _wait_healthy(port, process, 120.0)
        assert health["image_size"] == SIZE and health["classes"] == list(CLASSES)
        rng = np.random.default_rng(5)
        pixels = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        status, _, answer = post(port, buffer.getvalue())
        assert status == 200, answer
        assert answer["image"] == {"width": 80, "height": 48}
        assert answer["model"]["version"] == "benchmark"
        detector = peers.PeerDetector(
            peers.PeerModel(peers.ONNX_FP32, files[peers.ONNX_FP32], SHAPES, threads=1),
            _spec(),
        )
        direct = detector.detect(pixels, answer["score_threshold"]).to_dict()["detections"]
        assert answer["detections"] == direct
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
        log.close()
    assert code == 0, (tmp_path / "server.log").read_text()[-2000:]


def test_quantisation_needs_calibration_images(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one image"):
        peers.quantize_onnx(tmp_path / "in.onnx", [], tmp_path / "out.onnx", True)
    with pytest.raises(ValueError, match=r"ends in \.xml"):
        peers.export_openvino(None, SIZE, tmp_path / "model.onnx")


def test_vnni_is_read_from_the_cpu_flags() -> None:
    avx2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
    assert not peers.cpu_has_vnni(avx2)
    assert peers.cpu_has_vnni(avx2.replace("avx2", "avx2 avx512_vnni"))
    assert peers.cpu_has_vnni(avx2.replace("avx2", "avx_vnni"))
    assert not peers.cpu_has_vnni("")  # no flags line: 7-bit weights, the safe choice


def test_versions_name_every_peer_package() -> None:
    found = peers.versions()
    assert set(found) == {"onnx", "onnxruntime", "tf2onnx", "openvino", "nncf"}
    assert all(found.values())


def _entry(p50: float, delta: float, interval: list[float] | None) -> dict[str, Any]:
    return {"latency_ms_p50": p50, "map50_delta_vs_keras": delta, "map50_delta_interval": interval}


def test_recommendation_is_the_fastest_shippable_backend_at_equal_map() -> None:
    entries = {
        "keras_fp32": _entry(1.0, 0.0, [0.0, 0.0]),  # fastest, but not in the edge image
        "litert_int8": _entry(10.0, -0.011, [-0.03, -0.001]),  # within the 2-point tolerance
        "onnxruntime_int8": _entry(5.0, -0.06, [-0.09, -0.03]),  # faster but clearly worse
        "openvino_int8": _entry(8.0, -0.03, [-0.05, 0.01]),  # interval contains 0
        "openvino_fp32": _entry(9.0, 0.0, None),
    }
    chosen = recommend(entries)
    assert chosen["backend"] == "openvino_int8"
    assert chosen["qualifying"] == ["openvino_int8", "openvino_fp32", "litert_int8"]
    assert set(chosen["excluded"]) == {"keras_fp32", "onnxruntime_int8"}
    assert "-6.0 points" in chosen["excluded"]["onnxruntime_int8"]
    assert chosen["edge_backend"] == "litert_int8"
    entries["openvino_int8"] = _entry(8.0, -0.03, [-0.05, -0.01])
    assert recommend(entries)["backend"] == "openvino_fp32"
