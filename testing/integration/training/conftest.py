"""Session fixtures: a small synthetic VOC dataset and a model trained on it with the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from testing.helpers import run_ppe

from ppe.config import load_config


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 synthetic scenes (smoke profile) as Pascal VOC."""
    from ppe.data.synthetic import synthesize

    config = load_config("smoke")
    out = tmp_path_factory.mktemp("smoke") / "data"
    synthesize(out, config.data.synth, config.data.split, config.model.classes)
    return out


@pytest.fixture(scope="session")
def smoke_training(smoke_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ppe train --config smoke`` (3 epochs) output folder, trained once per session."""
    out = tmp_path_factory.mktemp("smoke-train") / "train"
    run_ppe(
        "train",
        "--config",
        "smoke",
        "--set",
        "train.epochs=3",
        "--data",
        str(smoke_data),
        "--out",
        str(out),
        "--no-tracking",
        cwd=out.parent,
    )
    return out
