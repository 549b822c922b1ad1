"""Failures stay loud and images stay pinned: the style rules ADO-YAML-001/002 and friends."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .ado import PIPELINES, forbidden_pattern_errors


def test_no_forbidden_pattern() -> None:
    assert forbidden_pattern_errors(PIPELINES) == []


@pytest.mark.parametrize(
    ("original", "broken", "expected"),
    [
        ("        displayName: make lint\n", "", "script step has no displayName"),
        (
            "        displayName: make lint\n",
            "        displayName: make lint\n        continueOnError: true\n",
            "continueOnError: true",
        ),
        ("make lint\n", "make lint || true\n", "|| true"),
        ("make lint\n", "ruff check --exit-zero src\n", "--exit-zero"),
        ("vmImage: ${{ parameters.vmImage }}", "vmImage: ubuntu-latest", "latest"),
    ],
)
def test_the_checker_catches(tmp_path: Path, original: str, broken: str, expected: str) -> None:
    copy = tmp_path / "ado_pipelines"
    shutil.copytree(PIPELINES, copy)
    job = copy / "templates" / "jobs" / "python_quality.yml"
    text = job.read_text(encoding="utf-8")
    assert original in text
    job.write_text(text.replace(original, broken, 1), encoding="utf-8")
    errors = forbidden_pattern_errors(copy)
    assert any(expected in e for e in errors), errors
