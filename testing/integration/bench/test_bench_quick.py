"""``python -m benchmarks.run --quick`` as ``make bench`` runs it: the results JSON and RESULTS.md.

The smallest meaningful run: the evaluator, the inference benchmark on a model trained for a few
seconds at 128 px (every backend: Keras, LiteRT fp32 and int8, ONNX Runtime fp32 and int8,
OpenVINO fp32 and int8, with the machine's peak and the model's operation count), and the
real-data benchmark without data or weights (recorded as skipped, with no figures).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from benchmarks.report import QUICK_BANNER, render
from benchmarks.run import public_command

from ppe.config import load_config

#: About this many seconds on 2 cores: scheduled first (testing/conftest.py).
pytestmark = pytest.mark.heavy(70)

REPO = Path(__file__).resolve().parents[3]
SCHEMA = REPO / "benchmarks" / "results.schema.json"
#: Every backend but Keras (the edge image could run each of these).
BACKENDS = (
    "litert_fp32",
    "litert_int8",
    "onnxruntime_fp32",
    "onnxruntime_int8",
    "openvino_fp32",
    "openvino_int8",
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, Path]:
    out = tmp_path_factory.mktemp("bench-out")
    cwd = tmp_path_factory.mktemp("bench-cwd")  # no outputs/ here: the model is trained
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PPE_HARDHAT_DATA", "PPE_DARKNET_WEIGHTS")
    }
    env["PYTHONPATH"] = str(REPO)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--quick",
            "--only",
            "evaluator,inference,real_data",
            "--model",
            "train",
            "--model-train-minutes",
            "0.05",
            "--image-size",
            "128",
            "--out",
            str(out),
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "benchmarks (quick): evaluator ok, real_data skipped, inference ok" in completed.stdout
    results = sorted(out.glob("*.json"))
    assert len(results) == 1, results
    return json.loads(results[0].read_text()), results[0], out / "RESULTS.md"


def test_results_match_the_schema(quick_run: tuple[dict[str, Any], Path, Path]) -> None:
    document, path, _ = quick_run
    jsonschema.validate(document, json.loads(SCHEMA.read_text()))
    assert path.name == f"{document['date']}.json"
    assert document["mode"] == "quick"
    assert list(document["benchmarks"]) == ["evaluator", "real_data", "inference"]
    assert document["machine"]["cores"] == os.cpu_count()
    assert document["machine"]["versions"]["tensorflow"]


def test_inference_backends(quick_run: tuple[dict[str, Any], Path, Path]) -> None:
    inference = quick_run[0]["benchmarks"]["inference"]
    assert inference["status"] == "ok"
    backends = inference["backends"]
    assert set(backends) == {"keras_fp32", *BACKENDS}
    for entry in backends.values():
        assert 0 < entry["latency_ms_p50"] <= entry["latency_ms_p95"]
        assert 0.0 <= entry["map50"] <= 1.0
        assert set(entry["ap"]) == {"helmet", "head"}
        if entry["map50_interval"] is not None:
            low, high = entry["map50_interval"]
            assert low <= high
    # The same images scored the same way: Keras' paired difference with itself is exactly 0.
    assert backends["keras_fp32"]["map50_delta_interval"] == [0.0, 0.0]
    for name in ("onnxruntime_fp32", "openvino_fp32"):
        assert backends[name]["input_dtype"] == "float32"
        assert backends[name]["precision"] == "fp32"
        # fp32 conversions compute what Keras computes: the same detections, the same mAP.
        assert backends[name]["map50"] == pytest.approx(backends["keras_fp32"]["map50"], abs=0.01)
    for name in ("onnxruntime_int8", "openvino_int8", "litert_int8"):
        assert backends[name]["precision"] == "int8"
    assert settings_versions(inference) == {"onnx", "onnxruntime", "tf2onnx", "openvino", "nncf"}
    assert backends["keras_fp32"]["speedup_vs_keras"] == 1.0
    # Each backend is timed on its own input type; LiteRT also from a float32 letterbox.
    assert backends["keras_fp32"]["input_dtype"] == "float32"
    assert backends["litert_fp32"]["input_dtype"] == "float32"
    assert backends["litert_int8"]["input_dtype"] == "int8"
    for name in ("litert_fp32", "litert_int8"):
        assert backends[name]["float_input_latency_ms_p50"] > 0
    int8 = backends["litert_int8"]
    assert int8["speedup_vs_keras"] == pytest.approx(
        backends["keras_fp32"]["latency_ms_p50"] / int8["latency_ms_p50"], rel=1e-2
    )
    settings = inference["settings"]
    assert settings["image_size"] == 128 and settings["threads"] == 2
    assert settings["tensorflow_threads"] == {"intra_op": 2, "inter_op": 2}
    assert "trained here" in settings["model"]
    # The LiteRT files are what `ppe export --config demo` writes, and the table says which layout.
    assert settings["profile"] == "demo"
    assert settings["litert_output_layout"] == load_config("demo").export.output_layout


def settings_versions(inference: dict[str, Any]) -> set[str]:
    versions = inference["settings"]["peer_versions"]
    assert all(versions.values()), versions
    return set(versions)


def test_ceiling_and_fraction_of_peak(quick_run: tuple[dict[str, Any], Path, Path]) -> None:
    inference = quick_run[0]["benchmarks"]["inference"]
    ceiling = inference["ceiling"]
    peak, operations = ceiling["peak"], ceiling["model_operations"]
    assert peak["threads"] == 2 and peak["fp32_gflops"] > 0 and peak["int8_gops"] > 0
    assert operations["operations"] == 2 * operations["macs"] > 0
    for entry in inference["backends"].values():
        ceiling_rate = peak["fp32_gflops"] if entry["precision"] == "fp32" else peak["int8_gops"]
        achieved = operations["operations"] / (entry["latency_ms_p50"] / 1000.0) / 1e9
        assert entry["fraction_of_peak"] == pytest.approx(achieved / ceiling_rate, rel=1e-2)


def test_recommendation_follows_its_rule(quick_run: tuple[dict[str, Any], Path, Path]) -> None:
    inference = quick_run[0]["benchmarks"]["inference"]
    backends, chosen = inference["backends"], inference["recommendation"]
    assert "keras_fp32" in chosen["excluded"]
    assert set(chosen["qualifying"]) | set(chosen["excluded"]) == set(backends)
    if chosen["qualifying"]:
        fastest = min(chosen["qualifying"], key=lambda name: backends[name]["latency_ms_p50"])
        assert chosen["backend"] == fastest
    targets = {item["name"]: item for item in quick_run[0]["targets"]}
    assert targets["edge_backend_fastest"]["met"] == (chosen["backend"] == "litert_int8")


def test_targets_agree_with_the_figures(quick_run: tuple[dict[str, Any], Path, Path]) -> None:
    document = quick_run[0]
    targets = {item["name"]: item for item in document["targets"]}
    assert set(targets) == {
        "evaluator_images_per_second",
        "int8_speedup",
        "int8_map_delta",
        "edge_backend_fastest",
    }
    evaluator = document["benchmarks"]["evaluator"]
    assert evaluator["settings"]["images"] == 1000
    rate = targets["evaluator_images_per_second"]
    assert rate["measured"] == pytest.approx(evaluator["images_per_second"], rel=1e-3)
    assert rate["met"] == (rate["measured"] >= 5000)
    speedup = targets["int8_speedup"]
    assert speedup["met"] == (speedup["measured"] >= 4.0)
    assert all(item["status"] == "measured" for item in targets.values())


def test_missing_prerequisites_are_skipped_without_figures(
    quick_run: tuple[dict[str, Any], Path, Path],
) -> None:
    real = quick_run[0]["benchmarks"]["real_data"]
    assert real["status"] == "skipped"
    assert "PPE_HARDHAT_DATA" in real["how_to_enable"]
    assert not {"from_coco", "from_scratch", "targets"} & set(real)


def test_markdown_is_rendered_from_the_json(quick_run: tuple[dict[str, Any], Path, Path]) -> None:
    document, path, markdown = quick_run
    text = markdown.read_text()
    layout = document["benchmarks"]["inference"]["settings"]["litert_output_layout"]
    assert f"LiteRT files with `{layout}` outputs (the `demo` profile's" in text
    assert text == render(document, path.name)
    assert QUICK_BANNER in text
    for backend in ("keras_fp32", *BACKENDS):
        assert f"| {backend} |" in text
    recommended = document["benchmarks"]["inference"]["recommendation"]["backend"]
    assert f"**Edge backend: {recommended}**" in text
    assert "GFLOP/s fp32" in text
    for item in document["targets"]:
        assert item["target"] in text
    assert str(document["machine"]["cpu_model"]) in text
    assert "**skipped**: no real hard-hat data given." in text


def test_no_machine_paths_in_the_results(quick_run: tuple[dict[str, Any], Path, Path]) -> None:
    _, path, markdown = quick_run
    for text in (path.read_text(), markdown.read_text()):
        assert str(path.parent) not in text
        assert "/tmp/" not in text and "ppe-bench-" not in text


def test_public_command_keeps_only_file_names() -> None:
    command = public_command(
        ["--quick", "--data", "/srv/x/hardhat_voc", "--weights=/w/yolov3-tiny.weights"]
    )
    assert command == (
        "python -m benchmarks.run --quick --data hardhat_voc --weights=yolov3-tiny.weights"
    )
