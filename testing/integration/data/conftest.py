"""Copies of the real hard-hat sample ("xml folder + image folder") to corrupt one way per test."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "hardhat_sample"


@pytest.fixture
def sample_source(tmp_path: Path) -> Callable[[int], Path]:
    """Return ``make(count)``: the first ``count`` sample pairs under ``tmp/src`` (same layout)."""

    def make(count: int = 4) -> Path:
        source = tmp_path / "src"
        names = sorted(path.stem for path in (SAMPLE / "annotations").glob("*.xml"))[:count]
        (source / "annotations").mkdir(parents=True)
        (source / "images" / "val").mkdir(parents=True)
        for name in names:
            shutil.copyfile(
                SAMPLE / "annotations" / f"{name}.xml", source / "annotations" / f"{name}.xml"
            )
            shutil.copyfile(
                SAMPLE / "images" / "val" / f"{name}.png", source / "images" / "val" / f"{name}.png"
            )
        return source

    return make
