from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from ppe.edge.runtime import LiteRTDetector, ModelLoadError, read_labels
from ppe.model.decode import detect
from ppe.model.preprocess import LetterboxTransform, letterbox
from ppe.model.spec import YoloSpec

REPO = Path(__file__).resolve().parents[3]


def test_float_model_matches_keras_outputs(edge_models: Path) -> None:
    detector = LiteRTDetector(edge_models / "random_fp32.tflite", edge_models / "labels.txt")
    reference = np.load(edge_models / "reference.npz")
    outputs = detector.raw_outputs(reference["input"])
    assert not detector.quantized
    # LiteRT lists the outputs in its own order; the runtime puts them back in model order.
    for index, output in enumerate(outputs):
        np.testing.assert_allclose(output, reference[f"output_{index}"], atol=1e-4)


def test_int8_model_dequantises_to_the_float_outputs(edge_models: Path) -> None:
    detector = LiteRTDetector(edge_models / "random_int8.tflite", edge_models / "labels.txt")
    reference = np.load(edge_models / "reference.npz")
    assert detector.quantized
    outputs = detector.raw_outputs(reference["input"])
    for index, output in enumerate(outputs):
        expected = reference[f"output_{index}"]
        assert output.dtype == np.float32
        # Without dequantisation the values would be integers in [-128, 127].
        span = float(expected.max() - expected.min())
        assert float(np.abs(output - expected).max()) < 0.1 * span
        assert np.corrcoef(output.ravel(), expected.ravel())[0, 1] > 0.99


@pytest.mark.parametrize("variant", ["random_fp32", "random_int8"])
@pytest.mark.parametrize("shape", [(120, 200, 3), (48, 17, 3), (64, 64, 3), (1080, 1920, 3)])
def test_network_input_equals_the_quantised_float_letterbox(
    edge_models: Path, variant: str, shape: tuple[int, int, int]
) -> None:
    # The lookup-table letterbox must give exactly what quantising the float letterbox gives
    # (padding, pixel values and rounding), so evaluation and the device see the same input.
    detector = LiteRTDetector(edge_models / f"{variant}.tflite", edge_models / "labels.txt")
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    tensor, transform = detector.network_input(image)
    floats, expected_transform = letterbox(image, detector.spec.image_size)
    assert transform == expected_transform
    expected = detector._quantize_input(floats[None])
    assert tensor.dtype == expected.dtype and tensor.shape == expected.shape
    np.testing.assert_array_equal(tensor, expected)
    if detector.quantized:
        # ... and the in-place quantisation is the textbook round(x / scale) + zero point.
        scale, zero_point = detector._input_quant
        textbook = np.clip(np.round(floats[None] / scale) + zero_point, -128, 127).astype(np.int8)
        np.testing.assert_array_equal(expected, textbook)


def test_forward_names_a_wrong_input_type(edge_models: Path) -> None:
    detector = LiteRTDetector(edge_models / "random_int8.tflite", edge_models / "labels.txt")
    size = detector.spec.image_size
    with pytest.raises(ValueError, match=rf"takes int8 \(1, {size}, {size}, 3\), got float32"):
        detector.forward(np.zeros((1, size, size, 3), np.float32))


@pytest.mark.parametrize("variant", ["rigged_fp32", "rigged_int8"])
def test_detections_are_in_original_pixels(
    edge_models: Path, tflite_models: ModuleType, variant: str
) -> None:
    detector = LiteRTDetector(
        edge_models / f"{variant}.tflite", edge_models / "labels.txt", model_version="7"
    )
    image = np.random.default_rng(0).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    result = detector.detect(image, score_threshold=0.25)
    # Expected: decode the known raw outputs directly, then undo the letterbox by hand.
    expected = detect(tflite_models.rigged_raw_outputs(), detector.spec, score_threshold=0.25)[0]
    transform = LetterboxTransform.for_image(200, 120, detector.spec.image_size)
    expected_pixels = transform.to_original(expected.boxes)
    assert len(result.detections) == len(expected) == tflite_models.RIGGED_BOXES
    got = sorted(item.box for item in result.detections)
    want = sorted(tuple(float(v) for v in box) for box in expected_pixels)
    np.testing.assert_allclose(np.array(got), np.array(want), atol=1.5)
    for item in result.detections:
        assert item.label == "head" and item.class_id == 1
        assert item.score == pytest.approx(tflite_models.RIGGED_HEAD_SCORE, abs=0.01)
        xmin, ymin, xmax, ymax = item.box
        assert 0 <= xmin < xmax <= 200 and 0 <= ymin < ymax <= 120
    assert (result.width, result.height) == (200, 120)
    assert set(result.timings_ms) == {"preprocess", "inference", "postprocess"}
    # A threshold above the rigged score leaves nothing.
    assert detector.detect(image, score_threshold=0.7).detections == []
    document = result.to_dict()
    assert document["image"] == {"width": 200, "height": 120}
    assert len(document["detections"][0]["box"]) == 4


def test_spec_comes_from_model_json_when_present(edge_models: Path, tmp_path: Path) -> None:
    shutil.copy(edge_models / "rigged_fp32.tflite", tmp_path / "model.tflite")
    spec = YoloSpec.default("yolov3_tiny", ("hardhat", "bare_head"), image_size=96)
    # The model-folder manifest form (ppe.model.bundle): the spec sits under "spec".
    (tmp_path / "model.json").write_text(json.dumps({"format": "x", "spec": spec.to_dict()}))
    detector = LiteRTDetector(tmp_path / "model.tflite")
    assert detector.spec.class_names == ("hardhat", "bare_head")
    (tmp_path / "labels.txt").write_text("helmet\nhead\n")
    with pytest.raises(ModelLoadError, match="disagree"):
        LiteRTDetector(tmp_path / "model.tflite", tmp_path / "labels.txt")


def test_a_model_without_model_json_is_refused(edge_models: Path, tmp_path: Path) -> None:
    """No fallback to Darknet's anchors: a model trained with others would decode wrongly."""
    assert LiteRTDetector(edge_models / "rigged_int8.tflite").spec == YoloSpec.default(
        "yolov3_tiny", ("helmet", "head"), image_size=96
    )
    shutil.copy(edge_models / "rigged_int8.tflite", tmp_path / "model.tflite")
    shutil.copy(edge_models / "labels.txt", tmp_path / "labels.txt")
    with pytest.raises(ModelLoadError, match=r"no model.json next to .*model.tflite.* anchors"):
        LiteRTDetector(tmp_path / "model.tflite", tmp_path / "labels.txt")


def test_load_errors_name_the_file(edge_models: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist; set MODEL_PATH"):
        LiteRTDetector(tmp_path / "missing.tflite")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer" * 10)
    with pytest.raises(ModelLoadError, match="not a loadable LiteRT model"):
        LiteRTDetector(junk)
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    with pytest.raises(ModelLoadError, match=r"labels \[.a., .b., .c.\] disagree"):
        LiteRTDetector(edge_models / "rigged_fp32.tflite", tmp_path / "three.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ModelLoadError, match="is empty"):
        read_labels(tmp_path / "empty.txt")
    (tmp_path / "twice.txt").write_text("head\nhead\n")
    with pytest.raises(ModelLoadError, match="repeats"):
        read_labels(tmp_path / "twice.txt")


def test_edge_runtime_imports_and_runs_without_tensorflow(edge_models: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["tensorflow"] = None  # any `import tensorflow` now raises ImportError
        sys.modules["keras"] = None
        import numpy as np
        import ppe.edge.alerts, ppe.edge.iothub, ppe.edge.main, ppe.edge.queue
        import ppe.cli.edge_module, ppe.edge.server, ppe.edge.settings, ppe.edge.sources
        from ppe.edge.runtime import LiteRTDetector
        detector = LiteRTDetector({str(edge_models / "rigged_int8.tflite")!r},
                                  {str(edge_models / "labels.txt")!r})
        result = detector.detect(np.zeros((50, 80, 3), np.uint8), 0.25)
        assert len(result.detections) == 9, result
        # The container's entry point, `ppe edge run`, parses through the whole CLI.
        from ppe.cli import get_args_parser
        args = get_args_parser().parse_args(["edge", "run"])
        assert args.func.__module__ == "ppe.cli.edge_module"
        loaded = [name for name in sys.modules if name.split(".")[0] in ("tensorflow", "keras")]
        assert all(sys.modules[name] is None for name in loaded), loaded
        print("ok", len(result.detections))
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip() == "ok 9"
