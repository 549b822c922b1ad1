"""Every pipeline and template validates with Microsoft's Azure Pipelines language service."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from .ado import PIPELINES, REPO_ROOT, yaml_files

VALIDATOR = REPO_ROOT / "testing" / "tools" / "validate_pipelines.js"
NODE_MODULES = REPO_ROOT / "testing" / "tools" / "node_modules"
FAILING_SEVERITY = 2


def validate(files: list[Path]) -> dict[str, object]:
    """Run the language service over ``files``; the JSON report."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "node is not installed: the pipeline validator needs Node.js 20; run make setup"
        )
    if not (NODE_MODULES / "azure-pipelines-language-service").is_dir():
        pytest.fail(
            "testing/tools/node_modules has no azure-pipelines-language-service: run make setup"
        )
    completed = subprocess.run(
        [node, str(VALIDATOR), "--json", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if completed.returncode not in (0, 1):
        pytest.fail(f"validator crashed ({completed.returncode}): {completed.stderr}")
    report: dict[str, object] = json.loads(completed.stdout)
    return report


def failing(report: dict[str, object]) -> list[str]:
    problems = report["problems"]
    assert isinstance(problems, list)
    return [
        f"{p['file']}:{p['line']}:{p['column']} [{p['kind']}] {p['message']}"
        for p in problems
        if p["severity"] <= FAILING_SEVERITY
    ]


def test_every_file_validates_against_the_official_schema() -> None:
    files = yaml_files(PIPELINES)
    assert len(files) >= 20, files
    report = validate(files)
    assert report["files"] == len(files)
    assert failing(report) == []


def test_a_step_template_with_a_jobs_section_is_rejected(tmp_path: Path) -> None:
    # Against the schema root this would pass as a pipeline; against stepsTemplate it must not.
    broken = tmp_path / "templates" / "steps" / "wrong_kind.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "jobs:\n  - job: build\n    steps:\n      - script: make lint\n        displayName: Lint\n",
        encoding="utf-8",
    )
    messages = failing(validate([broken]))
    assert any("Unexpected property jobs" in m for m in messages), messages


def test_a_misspelled_task_input_is_caught(tmp_path: Path) -> None:
    copy = tmp_path / "ado_pipelines"
    shutil.copytree(PIPELINES, copy)
    target = copy / "templates" / "steps" / "azure_cli.yml"
    text = target.read_text(encoding="utf-8")
    assert "azureSubscription:" in text
    target.write_text(text.replace("azureSubscription:", "azureSubscripton:"), encoding="utf-8")
    messages = failing(validate([target]))
    assert any("azureSubscripton" in m for m in messages), messages
    assert any('Missing property "azureSubscription"' in m for m in messages), messages


def test_a_bad_enum_value_is_caught(tmp_path: Path) -> None:
    copy = tmp_path / "ado_pipelines"
    shutil.copytree(PIPELINES, copy)
    target = copy / "templates" / "steps" / "azure_cli.yml"
    text = target.read_text(encoding="utf-8")
    target.write_text(text.replace("scriptType: bash", "scriptType: zsh"), encoding="utf-8")
    assert failing(validate([target])) != []


def test_tasks_newer_than_the_schema_have_their_inputs_checked(tmp_path: Path) -> None:
    # PublishCodeCoverageResults@1 is deprecated; the vendored schema knows @2 by name only, so
    # validate_pipelines.js adds its inputs from the vendored task.json (fixtures/.../tasks/).
    steps = tmp_path / "templates" / "steps" / "coverage.yml"
    steps.parent.mkdir(parents=True)
    good = (
        "steps:\n  - task: PublishCodeCoverageResults@2\n    displayName: Coverage\n"
        "    inputs:\n      summaryFileLocation: coverage.xml\n"
    )
    steps.write_text(good, encoding="utf-8")
    assert failing(validate([steps])) == []
    steps.write_text(good.replace("summaryFileLocation", "summaryFile"), encoding="utf-8")
    messages = failing(validate([steps]))
    assert any("summaryFile" in m for m in messages), messages


def test_no_pipeline_uses_a_deprecated_task() -> None:
    # The schema marks deprecated task versions (e.g. PublishCodeCoverageResults@1) with a
    # deprecationMessage, which the language service reports as a hint rather than an error.
    report = validate(yaml_files(PIPELINES))
    problems = report["problems"]
    assert isinstance(problems, list)
    deprecated = [
        f"{p['file']}:{p['line']}: {p['message']}"
        for p in problems
        if "deprecated" in str(p["message"]).lower()
    ]
    assert deprecated == []
