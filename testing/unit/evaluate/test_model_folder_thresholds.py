"""With a real Keras model folder: thresholds chosen on val land in it, and evaluate uses them.

The model is an untrained YOLOv3-tiny at 64 px on a dozen synthetic scenes: this proves the
wiring (files, splits, the operating point's source), not the values.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ppe.config import EvaluateConfig, SplitConfig, SynthConfig
from ppe.run.documents import ClassThresholds
from ppe.run.layout import thresholds_file

CLASSES = ["helmet", "head"]


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import keras

    from ppe.data.synthetic import synthesize
    from ppe.model.bundle import save_model_dir
    from ppe.model.spec import YoloSpec
    from ppe.model.yolov3 import build_model

    root = tmp_path_factory.mktemp("thresholds")
    synthesize(
        root / "data",
        SynthConfig(num_images=12, width=96, height=96),
        SplitConfig(train=0.5, val=0.25, test=0.25),
        CLASSES,
    )
    keras.utils.set_random_seed(0)
    spec = YoloSpec.default("yolov3_tiny", CLASSES, 64)
    save_model_dir(build_model(spec), spec, root / "model")
    return root / "model", root / "data"


def test_thresholds_chosen_on_val_are_written_into_the_model_folder_and_used(
    model_and_data: tuple[Path, Path], tmp_path: Path
) -> None:
    from ppe.cli import main
    from ppe.evaluate.detect import evaluate_model_dir

    model, data = model_and_data
    settings = EvaluateConfig(bootstrap_resamples=100)
    assert main(["thresholds", "--model", str(model), "--data", str(data)]) == 0
    chosen = ClassThresholds.read(thresholds_file(model))
    assert chosen.split == "val" and set(chosen.thresholds) <= set(CLASSES)
    metrics = evaluate_model_dir(
        model, data, tmp_path / "evaluate", settings, operating_threshold=0.4
    )
    assert metrics.operating_point is not None
    assert "thresholds.json (chosen on the val split" in metrics.operating_point.source
    for name in CLASSES:
        expected = max(0.4, chosen.thresholds.get(name, 0.4))
        assert metrics.operating_point.per_class[name].threshold == expected
