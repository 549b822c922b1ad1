"""Names the pipelines use exist: variables, the variable group, service connections,
environments and the pipelines Terraform creates build definitions for."""

from __future__ import annotations

import shutil
from pathlib import Path

from .ado import (
    ENTRY_PIPELINES,
    PIPELINES,
    REPO_ROOT,
    TerraformFacts,
    environments_used,
    load,
    service_connections_used,
    variable_errors,
    variable_groups,
    walk,
)

# The variable group's keys, as agreed with infrastructure/ (Terraform's pipeline_variables).
CONTRACT_KEYS = {
    "AZURE_SUBSCRIPTION_ID", "AZURE_TENANT_ID", "AZURE_LOCATION", "AZURE_RESOURCE_GROUP",
    "AML_WORKSPACE", "AML_GPU_CLUSTER", "AML_CPU_CLUSTER", "ACR_NAME", "ACR_LOGIN_SERVER",
    "IOTHUB_NAME", "IOTHUB_HOSTNAME", "KEY_VAULT_NAME", "STORAGE_ACCOUNT_NAME",
    "ADO_SERVICE_CONNECTION", "ADO_ENVIRONMENT_STAGING", "ADO_ENVIRONMENT_PRODUCTION",
    "EDGE_REGISTRY_TOKEN_NAME", "EDGE_REGISTRY_PASSWORD_SECRET", "MODEL_NAME",
}  # fmt: skip


def test_terraform_fills_the_agreed_variable_group(terraform: TerraformFacts) -> None:
    assert terraform.variable_group_keys == CONTRACT_KEYS


def test_every_variable_is_defined(groups: dict[str, set[str]]) -> None:
    assert variable_errors(PIPELINES, groups) == []


def test_the_pipelines_link_terraforms_variable_group(terraform: TerraformFacts) -> None:
    assert variable_groups(PIPELINES) == {terraform.variable_group}


def test_an_undefined_variable_is_caught(tmp_path: Path, groups: dict[str, set[str]]) -> None:
    copy = tmp_path / "ado_pipelines"
    shutil.copytree(PIPELINES, copy)
    entry = copy / "edge_deployment_pipeline.yml"
    text = entry.read_text(encoding="utf-8")
    entry.write_text(text.replace("$(IOTHUB_NAME)", "$(IOT_HUB_NAME)"), encoding="utf-8")
    errors = variable_errors(copy, groups)
    assert any("$(IOT_HUB_NAME) is not defined" in e for e in errors), errors


def test_a_template_reading_its_callers_variable_is_caught(
    tmp_path: Path, groups: dict[str, set[str]]
) -> None:
    copy = tmp_path / "ado_pipelines"
    shutil.copytree(PIPELINES, copy)
    step = copy / "templates" / "steps" / "terraform_install.yml"
    text = step.read_text(encoding="utf-8")
    step.write_text(text.replace("'${{ parameters.version }}'", "'$(terraformVersion)'"), "utf-8")
    errors = variable_errors(copy, groups)
    assert any("terraform_install.yml" in e and "$(terraformVersion)" in e for e in errors)


def test_service_connections_are_the_one_terraform_creates(terraform: TerraformFacts) -> None:
    used = service_connections_used(PIPELINES)
    assert used, "no service connection named in ado_pipelines/"
    wrong = {where: name for where, name in used.items() if name != terraform.service_connection}
    assert not wrong, f"Terraform creates {terraform.service_connection!r}: {wrong}"


def test_templates_take_service_connections_as_parameters() -> None:
    for path in sorted((PIPELINES / "templates").rglob("*.yml")):
        for node_path, node in walk(load(path)):
            if node_path and node_path[-1] == "azureSubscription":
                assert isinstance(node, str) and node.startswith("${{ parameters."), (path, node)


def test_environments_are_the_ones_terraform_creates(terraform: TerraformFacts) -> None:
    used = environments_used(PIPELINES)
    assert set(used.values()) == {"staging", "production"}
    assert set(used.values()) <= terraform.environments, used


def test_terraform_builds_exactly_these_pipelines(terraform: TerraformFacts) -> None:
    assert sorted(terraform.pipelines.values()) == sorted(
        f"ado_pipelines/{name}" for name in ENTRY_PIPELINES
    )
    for yml_path in terraform.pipelines.values():
        assert (REPO_ROOT / yml_path).is_file(), yml_path


def test_pipeline_resources_name_terraforms_build_definitions(terraform: TerraformFacts) -> None:
    sources = [
        resource["source"]
        for name in ENTRY_PIPELINES
        for resource in (load(PIPELINES / name).get("resources") or {}).get("pipelines", [])
    ]
    assert sources == ["model-training"]
    assert set(sources) <= set(terraform.pipelines)
    # The edge pipeline triggers on the training pipeline's promote stage: it must exist.
    training = load(PIPELINES / "templates" / "stages" / "model_training.yml")
    assert "promote" in [stage["stage"] for stage in training["stages"]]
