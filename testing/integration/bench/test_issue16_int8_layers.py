"""``benchmarks.issue16_int8_layers``: TensorFlow Lite's quantisation debugger on a real (tiny)
export, the worst layers kept in float, and the selective model scored by the edge runtime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks.common import CLASSES
from benchmarks.issue16_int8_layers import ROUNDING_ONLY, main

from ppe.config import SplitConfig, load_config
from ppe.data.synthetic import synthesize
from ppe.model.bundle import save_model_dir
from ppe.model.spec import YoloSpec
from ppe.model.yolov3 import build_model


# The debugger runs TensorFlow's own (deprecated) tf.lite.Interpreter; there is no other one.
@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_it_ranks_layers_and_scores_the_selective_model(tmp_path: Path) -> None:
    spec = YoloSpec.default("yolov3_tiny", CLASSES, 64)
    save_model_dir(build_model(spec), spec, tmp_path / "model", {"source": "test"})
    synth = load_config("smoke").data.synth.model_copy(update={"num_images": 6, "seed": 5})
    synthesize(
        tmp_path / "voc", synth, SplitConfig(train=0.5, val=0.5, test=0.0, seed=5), list(CLASSES)
    )
    out = tmp_path / "layers.json"
    code = main(
        [
            *("--model", str(tmp_path / "model"), "--data", str(tmp_path / "voc")),
            *("--out", str(out), "--config", "hardhat", "--keep-float", "1"),
            *("--set", "evaluate.split=val", "--set", "export.representative_images=3"),
            *("--set", "model.image_size=64"),
        ]
    )

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
