"""Names the pipelines use exist: variables, the variable group, service connections,
environments and the pipelines Terraform creates build definitions for."""

from __future__ import annotations

import shutil
from pathlib import Path

from .ado import (
    ENTRY_PIPELINES,
    IAC_SERVICE_CONNECTION,
    IAC_SERVICE_CONNECTION_DOCS,
    PIPELINES,
    REPO_ROOT,
    TerraformFacts,
    environments_used,
    load,
    service_connection_errors,
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
    "EDGE_REGISTRY_TOKEN_NAME", "EDGE_REGISTRY_PASSWORD_SECRET", "EDGE_DEPLOYMENTS_TO_KEEP",
    "MODEL_NAME", "ADO_DEFAULT_BRANCH", "TERRAFORM_STATE_KEY", "TERRAFORM_VAR_FILE",
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


def test_service_connections_are_terraforms_or_the_documented_iac_one(
    terraform: TerraformFacts,
) -> None:
    used = service_connections_used(PIPELINES)
    assert used, "no service connection named in ado_pipelines/"
    assert service_connection_errors(PIPELINES, terraform.service_connection) == []
    # Exactly one connection comes from outside Terraform, and Terraform does not also make it.
    assert set(used.values()) == {terraform.service_connection, IAC_SERVICE_CONNECTION}
    assert terraform.service_connection != IAC_SERVICE_CONNECTION


def test_the_iac_pipeline_plans_and_applies_with_the_iac_connection_only(
    terraform: TerraformFacts,
) -> None:
    used = service_connections_used(PIPELINES)
    iac = {where: name for where, name in used.items() if where.startswith("iac_pipeline.yml ")}
    assert sorted(iac.values()) == [IAC_SERVICE_CONNECTION] * 2, iac
    # Defaults of the reusable stage template: the IaC connection, as typed parameters.
    stage = load(PIPELINES / "templates" / "stages" / "terraform.yml")
    parameters = {p["name"]: p for p in stage["parameters"]}
    for name in ("planServiceConnection", "applyServiceConnection"):
        assert parameters[name]["type"] == "string"
        assert parameters[name]["default"] == IAC_SERVICE_CONNECTION
    # The training and edge pipelines keep the least-privilege workload connection.
    for entry in ("model_training_pipeline.yml", "edge_deployment_pipeline.yml"):
        names = {name for where, name in used.items() if where.startswith(f"{entry} ")}
        assert names == {terraform.service_connection}, (entry, names)


def test_the_iac_connection_is_documented_where_the_tests_point(
    terraform: TerraformFacts,
) -> None:
    readme, heading = IAC_SERVICE_CONNECTION_DOCS
    text = (REPO_ROOT / readme).read_text(encoding="utf-8")
    assert heading + "\n" in text, f"{readme} has no section {heading!r}"
    section = text.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
    for needed in (
        f"`{IAC_SERVICE_CONNECTION}`",
        "workload identity federation",
        "Owner",
        "User Access Administrator",
        "Approvals",
        "iac_pipeline.yml",
        "az identity federated-credential create",
    ):
        assert needed in section, f"{readme} {heading!r} does not cover {needed!r}"
    assert f"`{terraform.service_connection}`" in section
    # The pipelines' README sends readers there.
    pipelines_readme = (PIPELINES / "README.md").read_text(encoding="utf-8")
    assert f"`{IAC_SERVICE_CONNECTION}`" in pipelines_readme
    assert "../infrastructure/README.md#the-iac-service-connection" in pipelines_readme


def _broken_copy(tmp_path: Path, relative: str, old: str, new: str) -> Path:
    copy = tmp_path / "ado_pipelines"
    shutil.copytree(PIPELINES, copy)
    target = copy / relative
    text = target.read_text(encoding="utf-8")
    assert old in text, (relative, old)
    target.write_text(text.replace(old, new), encoding="utf-8")
    return copy


def test_a_connection_terraform_does_not_create_is_caught(
    tmp_path: Path, terraform: TerraformFacts
) -> None:
    copy = _broken_copy(
        tmp_path,
        "model_training_pipeline.yml",
        f"serviceConnection: {terraform.service_connection}",
        "serviceConnection: sc-made-by-hand",
    )
    errors = service_connection_errors(copy, terraform.service_connection)
    assert len(errors) == 1 and "'sc-made-by-hand' is neither created by Terraform" in errors[0]


def test_a_template_default_naming_another_connection_is_caught(
    tmp_path: Path, terraform: TerraformFacts
) -> None:
    copy = _broken_copy(
        tmp_path,
        "templates/stages/terraform.yml",
        f"default: {IAC_SERVICE_CONNECTION}",
        "default: sc-someone-elses",
    )
    errors = service_connection_errors(copy, terraform.service_connection)
    assert errors and all("parameter" in e and "sc-someone-elses" in e for e in errors), errors


def test_the_iac_connection_outside_the_iac_pipeline_is_caught(
    tmp_path: Path, terraform: TerraformFacts
) -> None:
    copy = _broken_copy(
        tmp_path,
        "edge_deployment_pipeline.yml",
        f"serviceConnection: {terraform.service_connection}",
        f"serviceConnection: {IAC_SERVICE_CONNECTION}",
    )
    errors = service_connection_errors(copy, terraform.service_connection)
    assert len(errors) == 1 and "is the privileged IaC connection" in errors[0], errors
    assert errors[0].startswith("edge_deployment_pipeline.yml at ")


def test_the_iac_pipeline_on_the_workload_connection_is_caught(
    tmp_path: Path, terraform: TerraformFacts
) -> None:
    copy = _broken_copy(
        tmp_path,
        "iac_pipeline.yml",
        f"applyServiceConnection: {IAC_SERVICE_CONNECTION}",
        f"applyServiceConnection: {terraform.service_connection}",
    )
    errors = service_connection_errors(copy, terraform.service_connection)
    assert len(errors) == 1 and "cannot create role assignments" in errors[0], errors


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
