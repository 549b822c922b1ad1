"""The int8 experiments on a real (tiny) export: ``benchmarks.issue16_int8`` (both output layouts
side by side) and ``benchmarks.issue16_int8_layers`` (TensorFlow Lite's quantisation debugger, the
worst layers kept in float, the selective model scored by the edge runtime)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks.common import CLASSES
from benchmarks.issue16_int8 import main as compare_layouts
from benchmarks.issue16_int8_layers import ROUNDING_ONLY, main

from ppe.config import SplitConfig, load_config
from ppe.data.synthetic import synthesize
from ppe.model.bundle import save_model_dir
from ppe.model.spec import YoloSpec
from ppe.model.yolov3 import build_model

TINY = [
    *("--config", "hardhat", "--set", "evaluate.split=val"),
    *("--set", "export.representative_images=3", "--set", "model.image_size=64"),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """``--model`` and ``--data``: an untrained 64 px YOLOv3-tiny and 6 synthetic scenes."""
    root = tmp_path_factory.mktemp("int8")
    spec = YoloSpec.default("yolov3_tiny", CLASSES, 64)
    save_model_dir(build_model(spec), spec, root / "model", {"source": "test"})
    synth = load_config("smoke").data.synth.model_copy(update={"num_images": 6, "seed": 5})
    split = SplitConfig(train=0.5, val=0.5, test=0.0, seed=5)
    synthesize(root / "voc", synth, split, list(CLASSES))
    return ["--model", str(root / "model"), "--data", str(root / "voc"), *TINY]


def test_both_layouts_are_exported_and_compared(tiny: list[str], tmp_path: Path) -> None:
    out = tmp_path / "deep" / "layouts.json"
    assert compare_layouts([*tiny, "--out", str(out)]) == 0

    record = json.loads(out.read_text())
    assert set(record["layouts"]) == {"raw", "split"}
    for layout in record["layouts"].values():
        assert set(layout["backends"]) == {"keras", "litert_fp32", "litert_int8"}
        assert all(output["scale"] > 0 for output in layout["int8_outputs"])
    # split has a box and a score output per scale, raw one output per scale.
    raw, split = (len(record["layouts"][name]["int8_outputs"]) for name in ("raw", "split"))
    assert split == 2 * raw


# The debugger runs TensorFlow's own (deprecated) tf.lite.Interpreter; there is no other one.
@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_it_ranks_layers_and_scores_the_selective_model(tiny: list[str], tmp_path: Path) -> None:
    out = tmp_path / "layers.json"
    code = main([*tiny, "--out", str(out), "--keep-float", "1"])

    assert code == 0
    record = json.loads(out.read_text())
    assert record["output_layout"] == load_config("hardhat").export.output_layout
    errors = [row["rmse_over_scale"] for row in record["worst_layers"] if row["rmse_over_scale"]]
    assert errors == sorted(errors, reverse=True) and record["layers"] >= len(errors) > 0
    assert record["rounding_only_rmse_over_scale"] == round(ROUNDING_ONLY, 4)
    kept = record["selective"]["1"]
    assert kept["float_layers"] == [record["worst_layers"][0]["tensor"]]
    assert 0.0 <= kept["map50"] <= 1.0 and kept["size_bytes"] > 0
    # Scored like the export's own backends: the same split, against the same Keras figure.
    keras = record["export"]["keras"]["map50"]
    assert kept["map50_delta_vs_keras"] == pytest.approx(kept["map50"] - keras, abs=1e-6)


@pytest.mark.parametrize("given", ["a,b", "0", ""])
def test_a_bad_keep_float_is_refused_with_the_fix(
    given: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--model", "m", "--data", "d", "--out", str(tmp_path / "o"), "--keep-float", given])
    assert stopped.value.code == 2
    assert "--keep-float" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
