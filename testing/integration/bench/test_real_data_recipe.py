"""``make bench``'s real-data section trains the packaged ``hardhat`` recipe, not its own."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from benchmarks.budget import BudgetRun, fit_for_budget
from benchmarks.common import CLASSES
from benchmarks.real_data import PROFILE, recipe, target_note

from ppe.config import SplitConfig, load_config
from ppe.data.synthetic import synthesize
from ppe.data.voc import load_split
from ppe.errors import ConfigError
from ppe.model.spec import YoloSpec
from ppe.model.yolov3 import build_model


def test_the_recipe_is_the_packaged_hardhat_profile() -> None:
    config = recipe()
    assert PROFILE == "hardhat"
    assert config == load_config("hardhat")
    assert tuple(config.model.classes) == CLASSES


def test_a_budgeted_run_follows_the_recipe(tmp_path: Path) -> None:
    """Batch, peak rate, warm-up epochs and a frozen backbone all come from the ``train`` section.

    A budget of a millisecond stops after the first step (checked after every step).
    """
    synth = load_config("smoke").data.synth.model_copy(update={"num_images": 8, "seed": 3})
    synthesize(tmp_path / "voc", synth, SplitConfig(train=1.0, val=0.0, test=0.0), list(CLASSES))
    samples = load_split(tmp_path / "voc", "train", list(CLASSES))
    assert len(samples) == 8
    train = recipe().train.model_copy(
        update={"batch_size": 4, "warmup_epochs": 2, "freeze_backbone_epochs": 1}
    )
    spec = YoloSpec.default("yolov3_tiny", CLASSES, 64)
    keras.utils.set_random_seed(0)
    model = build_model(spec)
    before = {w.path: np.array(w.numpy()) for w in model.weights}
    run = fit_for_budget(model, spec, samples, budget_s=1e-3, recipe=train, seed=0)
    assert (run.steps, run.batch_size, run.images) == (1, 4, 4)
    assert run.peak_learning_rate == load_config("hardhat").train.learning_rate
    assert run.warmup_steps == 2 * 2  # warm-up epochs x steps per epoch (8 images / batch 4)
    changed = {w.path for w in model.weights if not np.array_equal(before[w.path], w.numpy())}
    assert changed and not any(path.startswith("backbone_") for path in changed), changed
    assert any(path.startswith("head_") for path in changed)


def test_a_profile_with_other_classes_is_refused(tmp_path: Path) -> None:
    profile = tmp_path / "other.yaml"
    profile.write_text("model:\n  classes: [helmet, head, vest]\n")
    with pytest.raises(ValueError, match=r"other.yaml: the profile's model.classes .* update"):
        recipe(profile)


def test_experiment_overrides_change_the_recipe() -> None:
    """``issue16_recipe --variant-minutes`` trains ``recipe(overrides=...)``: the settings land."""
    config = recipe(overrides=["train.mixed_precision=bfloat16", "model.image_size=320"])
    assert config.train.mixed_precision == "bfloat16"
    assert config.model.image_size == 320
    assert config.train.learning_rate == load_config("hardhat").train.learning_rate


def test_an_unknown_override_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"train\.mixed_precisoin"):
        recipe(overrides=["train.mixed_precisoin=bfloat16"])


def test_the_map_target_note_says_what_the_budget_bought() -> None:
    """The 30 minutes are wall-clock time: the note carries the steps they bought here."""
    run = BudgetRun(budget_s=1800.0, steps=935, epochs=37.4, images_per_second=8.31)
    assert target_note(run.to_dict()) == "935 steps (37.4 epochs, 8.31 images/s)"
    assert target_note(run.to_dict(), "budget 1 min, not the target's 30") == (
        "935 steps (37.4 epochs, 8.31 images/s); budget 1 min, not the target's 30"
    )
