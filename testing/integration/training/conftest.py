"""Session fixtures: the smoke data and model, taken from the suite's shared smoke pipeline run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ppe.run.layout import RunLayout

if TYPE_CHECKING:
    from testing.conftest import SmokeRun


@pytest.fixture(scope="session")
def smoke_data(smoke_run: SmokeRun) -> Path:
    """48 synthetic scenes (smoke profile) as Pascal VOC: the shared run's ``data`` folder."""
    return RunLayout(smoke_run.run_dir).port("data")


@pytest.fixture(scope="session")
def smoke_training(smoke_run: SmokeRun) -> Path:
    """The ``ppe train --config smoke`` (3 epochs) output folder of the shared run, not tracked."""
    return RunLayout(smoke_run.run_dir).port("train")
