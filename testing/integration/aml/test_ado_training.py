"""The Azure DevOps training pipeline: scheduled and CI runs train on the registered data asset,
and the hours-long wait for the Azure ML job survives the 10-minute federated token.

The language-service test (testing/integration/pipelines) validates the files against Microsoft's
schema; these tests encode the rules that schema cannot see.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from .aml_helpers import REPO_ROOT

PIPELINES = REPO_ROOT / "ado_pipelines"
ENTRY = PIPELINES / "model_training_pipeline.yml"
JOB = PIPELINES / "templates" / "jobs" / "aml_training.yml"
AZURE_CLI = PIPELINES / "templates" / "steps" / "azure_cli.yml"


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _parameter(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(item for item in document["parameters"] if item["name"] == name)


def _steps_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's steps, with the `${{ if }}` blocks flattened."""
    flat: list[dict[str, Any]] = []
    for step in document["jobs"][0]["steps"]:
        key = next(iter(step))
        if key.startswith("${{ if"):
            flat.extend(step[key])
        else:
            flat.append(step)
    return flat


def test_triggered_and_scheduled_runs_use_the_registered_data_asset() -> None:
    # Runtime parameters take their defaults in CI-triggered and scheduled runs
    # (https://learn.microsoft.com/azure/devops/pipelines/process/runtime-parameters): the
    # default must not upload a folder the repository does not have.
    entry = _load(ENTRY)
    assert "schedules" in entry and "trigger" in entry
    assert _parameter(entry, "uploadData")["default"] is False
    assert _parameter(_load(JOB), "uploadData")["default"] is False
    job_text = JOB.read_text(encoding="utf-8")
    raw_steps = _load(JOB)["jobs"][0]["steps"]
    # The only upload is inside the uploadData condition.
    assert not any("data upload" in str(step) for step in raw_steps if "task" in step)
    guarded = [step for step in raw_steps if "${{ if parameters.uploadData }}" in step]
    assert len(guarded) == 1
    assert "data upload" in str(guarded[0])
    assert sum("data upload" in str(step) for step in raw_steps) == 1
    # Without an upload the job reads the consumer's data asset (a typed parameter) at its latest
    # version: every `ppe aml` call names the parameter, and none pins a version.
    data_names = re.findall(r"--(?:data-)?name '([^']*)'", job_text)
    assert data_names and set(data_names) == {"${{ parameters.dataAssetName }}"}, data_names
    assert "--data-version" not in job_text


def test_the_long_wait_keeps_the_azure_cli_session_active() -> None:
    # The workload-identity ID token lasts 10 minutes; AzureCLI@2's keepAzSessionActive
    # re-authenticates before it expires
    # (https://learn.microsoft.com/azure/devops/pipelines/tasks/reference/azure-cli-v2).
    submit = next(s for s in _steps_of(_load(JOB)) if "ppe aml submit" in str(s))
    assert submit["parameters"]["keepAzSessionActive"] is True
    template = _load(AZURE_CLI)
    assert _parameter(template, "keepAzSessionActive")["default"] is False
    task = template["steps"][0]
    assert task["task"] == "AzureCLI@2"
    assert task["inputs"]["keepAzSessionActive"] == "${{ parameters.keepAzSessionActive }}"


def test_no_caller_passes_the_champion_in() -> None:
    # The job's champion step reads the workspace's registry itself (ppe.run.graph).
    for path in PIPELINES.rglob("*.yml"):
        assert "--champion-metrics" not in path.read_text(encoding="utf-8"), path


def _promote_line() -> str:
    download = next(s for s in _steps_of(_load(JOB)) if "az ml job download" in str(s))
    script = download["parameters"]["script"]
    return next(line.strip() for line in script.splitlines() if line.strip().startswith("promote="))


def test_the_gate_decision_is_read_by_the_gate_documents_reader(tmp_path: Path) -> None:
    import subprocess
    import sys

    from testing.helpers import evaluation_metrics

    from ppe.gate import decide
    from ppe.run.documents import GateDecision

    decision = decide(evaluation_metrics(0.5), None, margin=0.0)
    assert isinstance(decision, GateDecision)
    decision.write(tmp_path / "gate.json")
    line = _promote_line().replace("$(amlOut)", str(tmp_path))
    # The templates' tooling step prepends its environment's bin folder to PATH
    # (steps/ppe_tooling.yml), so `python3` there is the interpreter that has ppe.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    script = f'{line}\necho "$promote"'
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "true"
    # A gate.json that is not the gate's document fails the step, with the reason.
    (tmp_path / "gate.json").write_text('{"promote": "yes"}')
    result = subprocess.run(
        ["bash", "-c", f"set -e\n{script}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode != 0 and "GateDecision" in result.stderr
