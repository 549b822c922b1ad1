"""The names the Azure ML code reads are the ones Terraform writes.

python-hcl2 parses ``infrastructure/``; the test follows each cluster name from the
``pipeline_variables`` output through the ``aml`` module to the literal in ``locals.names``,
writes a ``.env`` with ``infrastructure/scripts/write_env.py``'s own renderer, and builds the job
from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from ppe.aml.pipeline import job_yaml
from ppe.aml.settings import SETTINGS_KEYS, load_settings

from .aml_helpers import INFRASTRUCTURE, PIPELINE_VARIABLES, build, write_dotenv

pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.RemovedInMarshmallow4Warning")


def _unquote(value: Any) -> Any:
    return value[1:-1] if isinstance(value, str) and value[:1] == value[-1:] == '"' else value


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        pytest.fail(f"{path} is missing")
    with path.open() as stream:
        data: dict[str, Any] = hcl2.load(stream)
    return data


def _block(blocks: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for block in blocks:
        for key, value in block.items():
            if _unquote(key) == name:
                return dict(value)
    pytest.fail(f"no block named {name!r}")


def _locals() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in sorted(INFRASTRUCTURE.glob("*.tf")):
        for block in _load(path).get("locals", []):
            merged.update(block)
    return merged


def test_every_key_the_aml_code_reads_is_a_pipeline_variable() -> None:
    keys = set(_locals()["pipeline_variables"])
    assert set(SETTINGS_KEYS.values()) <= keys
    assert set(PIPELINE_VARIABLES) == keys, "the test's .env must mirror the Terraform output"


@pytest.mark.parametrize(("key", "role"), [("AML_GPU_CLUSTER", "gpu"), ("AML_CPU_CLUSTER", "cpu")])
def test_cluster_name_chain(key: str, role: str) -> None:
    expected = terraform_cluster_name(key, role)
    assert PIPELINE_VARIABLES[key] == expected


def terraform_cluster_name(key: str, role: str) -> str:
    """Follow pipeline_variables[key] -> module.aml output -> resource -> local.names literal."""
    variables = _locals()["pipeline_variables"]
    assert variables[key] == f"${{module.aml.{role}_cluster_name}}"
    outputs = _load(INFRASTRUCTURE / "modules" / "aml" / "outputs.tf")["output"]
    resource_ref = _block(outputs, f"{role}_cluster_name")["value"]
    assert resource_ref == f"${{azurerm_machine_learning_compute_cluster.{role}.name}}"
    resources: list[dict[str, Any]] = []
    for path in sorted((INFRASTRUCTURE / "modules" / "aml").glob("*.tf")):
        resources += _load(path).get("resource", [])
    clusters = [
        _block([block[kind]], role)
        for block in resources
        for kind in block
        if _unquote(kind) == "azurerm_machine_learning_compute_cluster"
        and any(_unquote(name) == role for name in block[kind])
    ]
    assert len(clusters) == 1
    assert clusters[0]["name"] == f"${{var.{role}_cluster.name}}"
    modules: list[dict[str, Any]] = []
    for path in sorted(INFRASTRUCTURE.glob("*.tf")):
        modules += _load(path).get("module", [])
    aml = _block(modules, "aml")
    assert aml[f"{role}_cluster"]["name"] == f"${{local.names.{role}_cluster}}"
    name = _unquote(_locals()["names"][f"{role}_cluster"])
    assert isinstance(name, str) and "${" not in name
    return name


def test_job_uses_terraform_cluster_names(tmp_path: Path) -> None:
    variables = dict(PIPELINE_VARIABLES)
    variables["AML_GPU_CLUSTER"] = terraform_cluster_name("AML_GPU_CLUSTER", "gpu")
    variables["AML_CPU_CLUSTER"] = terraform_cluster_name("AML_CPU_CLUSTER", "cpu")
    settings = load_settings({}, write_dotenv(tmp_path / ".env", variables))
    document = yaml.safe_load(job_yaml(build(settings, tmp_path / "code").job, tmp_path))
    computes = {node["compute"] for name, node in document["jobs"].items() if name != "train"}
    assert document["jobs"]["train"]["compute"] == f"azureml:{variables['AML_GPU_CLUSTER']}"
    assert computes == {f"azureml:{variables['AML_CPU_CLUSTER']}"}
