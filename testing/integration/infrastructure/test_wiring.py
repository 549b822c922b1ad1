"""Wiring: names, outputs, pipelines, compute, identities and roles fit together."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from .contract import (
    ADO_ENVIRONMENT_PRODUCTION,
    ADO_ENVIRONMENT_STAGING,
    AML_CPU_CLUSTER_NAME,
    AML_GPU_CLUSTER_NAME,
    DEFAULT_MODEL_NAME,
    PIPELINE_FILES,
    PIPELINE_VARIABLE_KEYS,
    ROOT_OUTPUTS,
)
from .terraform_config import INFRASTRUCTURE, REPO_ROOT, Block

GPU_FAMILY = re.compile(r"^Standard_N(C|D|G|V)[0-9]+[a-z]*(_[A-Z][A-Z0-9]*)?(_v[0-9]+)?$")
RETIRED_GPU_SIZES = {"Standard_NC6s_v3", "Standard_NC12s_v3", "Standard_NC24s_v3", "Standard_NC6"}
BROAD_ROLES = {
    "Owner",
    "Contributor",
    "User Access Administrator",
    "Role Based Access Control Administrator",
}


def _find(blocks: list[Block], kind: str, *labels: str, root: Path = INFRASTRUCTURE) -> Block:
    found = [b for b in blocks if b.kind == kind and b.labels == labels and b.file.parent == root]
    assert len(found) == 1, f"{kind} {labels} in {root}: found {len(found)}"
    return found[0]


def _locals(blocks: list[Block], root: Path = INFRASTRUCTURE) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in blocks:
        if block.kind == "locals" and block.file.parent == root:
            merged.update(block.body)
    return merged


def _variables(blocks: list[Block], root: Path) -> dict[str, dict[str, Any]]:
    return {b.labels[0]: b.body for b in blocks if b.kind == "variable" and b.file.parent == root}


def _resources(blocks: list[Block], type_name: str) -> list[Block]:
    return [b for b in blocks if b.kind == "resource" and b.labels[0] == type_name]


# ------------------------------------------------------------------------------------------------
# Contract with the rest of the repository
# ------------------------------------------------------------------------------------------------


def test_pipeline_variables_output_has_exactly_the_contract_keys(blocks: list[Block]) -> None:
    output = _find(blocks, "output", "pipeline_variables")
    assert output.body["value"] == "${local.pipeline_variables}"
    assert "sensitive" not in output.body
    assert set(_locals(blocks)["pipeline_variables"]) == PIPELINE_VARIABLE_KEYS


def test_pipeline_variables_fill_the_variable_group(blocks: list[Block]) -> None:
    call = _find(blocks, "module", "devops")
    assert call.body["pipeline_variables"] == "${local.pipeline_variables}"
    group = _find(
        blocks,
        "resource",
        "azuredevops_variable_group",
        "this",
        root=INFRASTRUCTURE / "modules" / "devops",
    )
    dynamic = group.body["dynamic"]["variable"][0]
    assert dynamic["for_each"] == "${var.pipeline_variables}"
    assert dynamic["content"] == [{"name": "${variable.key}", "value": "${variable.value}"}]
    assert "variable" not in group.body, "no hand-written (possibly secret) variables"


def test_pipeline_variables_defaults_match_the_contract(blocks: list[Block]) -> None:
    variables = _variables(blocks, INFRASTRUCTURE)
    local_values = _locals(blocks)
    assert variables["model_name"]["default"] == DEFAULT_MODEL_NAME
    names = local_values["names"]
    assert (names["gpu_cluster"], names["cpu_cluster"]) == (
        AML_GPU_CLUSTER_NAME,
        AML_CPU_CLUSTER_NAME,
    )
    assert local_values["ado_environments"] == {
        "staging": ADO_ENVIRONMENT_STAGING,
        "production": ADO_ENVIRONMENT_PRODUCTION,
    }


def test_every_output_the_repo_reads_exists(blocks: list[Block]) -> None:
    outputs = {
        b.labels[0] for b in blocks if b.kind == "output" and b.file.parent == INFRASTRUCTURE
    }
    assert outputs >= ROOT_OUTPUTS, sorted(ROOT_OUTPUTS - outputs)
    # And every `terraform output NAME` written anywhere else in the repository.
    pattern = re.compile(
        r"terraform\s+(?:-chdir=\S+\s+)?output\s+-(?:raw|json)\s+([a-z_][a-z0-9_]*)"
    )
    used: dict[str, str] = {}
    for folder in [
        "ado_pipelines",
        "src",
        "notebooks",
        "environments",
        "infrastructure",
        "README.md",
    ]:
        root = REPO_ROOT / folder
        paths = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in paths:
            if (
                path.suffix in {".png", ".jpg", ".gz", ".tflite", ".pyc"}
                or ".terraform" in path.parts
            ):
                continue
            for name in pattern.findall(path.read_text(encoding="utf-8", errors="ignore")):
                used[name] = str(path.relative_to(REPO_ROOT))
    # The bootstrap root's outputs are read from its own folder (backend_config).
    bootstrap = {
        b.labels[0]
        for b in blocks
        if b.kind == "output" and b.file.parent == INFRASTRUCTURE / "bootstrap"
    }
    missing = {name: where for name, where in used.items() if name not in outputs | bootstrap}
    assert "ado_repository_url" in used, "the pattern no longer finds the README's commands"
    assert missing == {}


def test_every_pipeline_variable_a_pipeline_references_exists() -> None:
    pipelines = REPO_ROOT / "ado_pipelines"
    prefixes = (
        "AZURE_",
        "AML_",
        "ACR_",
        "IOTHUB_",
        "KEY_VAULT",
        "STORAGE_",
        "ADO_",
        "EDGE_",
        "MODEL_",
    )
    referenced = {
        name
        for path in pipelines.rglob("*.yml")
        for name in re.findall(r"\$\(([A-Z][A-Z0-9_]*)\)", path.read_text(encoding="utf-8"))
        if name.startswith(prefixes)
    }
    assert referenced, "the pipelines reference none of the Terraform names"
    assert referenced <= PIPELINE_VARIABLE_KEYS, sorted(referenced - PIPELINE_VARIABLE_KEYS)


# ------------------------------------------------------------------------------------------------
# Azure DevOps
# ------------------------------------------------------------------------------------------------


def test_build_definitions_point_at_the_pipeline_files_that_exist(blocks: list[Block]) -> None:
    pipelines = _locals(blocks)["pipelines"]
    paths = {p["yml_path"] for p in pipelines.values()}
    assert paths == PIPELINE_FILES
    missing = sorted(p for p in paths if not (REPO_ROOT / p).is_file())
    assert missing == [], f"build definitions point at missing files: {missing}"
    definition = _find(
        blocks,
        "resource",
        "azuredevops_build_definition",
        "this",
        root=INFRASTRUCTURE / "modules" / "devops",
    )
    assert definition.body["for_each"] == "${var.pipelines}"
    assert definition.body["repository"][0]["yml_path"] == "${each.value.yml_path}"
    assert _find(blocks, "module", "devops").body["pipelines"] == "${local.pipelines}"


def test_service_connection_is_workload_identity_federation_without_secret(
    blocks: list[Block],
) -> None:
    devops = INFRASTRUCTURE / "modules" / "devops"
    endpoint = _find(blocks, "resource", "azuredevops_serviceendpoint_azurerm", "this", root=devops)
    assert endpoint.body["service_endpoint_authentication_scheme"] == "WorkloadIdentityFederation"
    assert endpoint.body["credentials"] == [
        {"serviceprincipalid": "${var.service_connection.client_id}"}
    ]
    assert _find(blocks, "module", "devops").body["service_connection"]["client_id"] == (
        "${azurerm_user_assigned_identity.pipeline.client_id}"
    )
    credential = _find(blocks, "resource", "azurerm_federated_identity_credential", "pipeline")
    assert credential.body["parent_id"] == "${azurerm_user_assigned_identity.pipeline.id}"
    assert credential.body["issuer"] == "${module.devops.workload_identity_federation_issuer}"
    assert credential.body["subject"] == "${module.devops.workload_identity_federation_subject}"
    assert credential.body["audience"] == ["api://AzureADTokenExchange"]


def test_production_environment_needs_an_approval(blocks: list[Block]) -> None:
    devops = INFRASTRUCTURE / "modules" / "devops"
    check = _find(blocks, "resource", "azuredevops_check_approval", "production", root=devops)
    assert check.body["target_resource_id"] == '${azuredevops_environment.this["production"].id}'
    assert check.body["target_resource_type"] == "environment"
    assert check.body["requester_can_approve"] is False
    assert check.body["approvers"] == "${var.production_approver_ids}"


def test_pipelines_are_authorised_for_what_they_use_only(blocks: list[Block]) -> None:
    devops = INFRASTRUCTURE / "modules" / "devops"
    authorisations = {
        b.labels[1]: b.body for b in _resources(blocks, "azuredevops_pipeline_authorization")
    }
    assert set(authorisations) == {
        "service_connection",
        "variable_group",
        "environment",
        # Product pipelines that reuse the templates (test_product_pipeline_authorisations).
        "product_template_repository",
        "product_service_connection",
        "product_variable_group",
        "product_environment",
    }
    for body in authorisations.values():
        assert "pipeline_id" in body, "authorise per pipeline, never all pipelines"
    assert (
        authorisations["service_connection"]["for_each"] == "${local.workload_connection_pipelines}"
    )
    pipelines = _locals(blocks)["pipelines"]
    assert pipelines["ci"]["uses_workload_connection"] is False
    assert pipelines["ci"]["deploys"] is False
    # The IaC pipeline applies with the administrator-made privileged connection (README.md, "The
    # IaC service connection"), so it is not authorised for the least-privilege workload one;
    # the training and edge pipelines are.
    assert pipelines["iac"]["uses_workload_connection"] is False
    assert pipelines["iac"]["deploys"] is True
    for key in ("model_training", "edge_deployment"):
        assert pipelines[key]["uses_workload_connection"] is True, key
    assert _locals(blocks, devops)["workload_connection_pipelines"] == (
        "${{ for key, pipeline in var.pipelines : key => pipeline if "
        "pipeline.uses_workload_connection }}"
    )
    # Terraform creates exactly one connection, the workload one; the IaC connection is made by
    # an administrator outside this configuration.
    endpoints = [b for b in blocks if b.kind == "resource" and "serviceendpoint" in b.labels[0]]
    assert [(b.labels, b.file.parent) for b in endpoints] == [
        (("azuredevops_serviceendpoint_azurerm", "this"), devops)
    ]
    assert (
        _find(blocks, "resource", "azuredevops_variable_group", "this", root=devops).body[
            "allow_access"
        ]
        is False
    )


# ------------------------------------------------------------------------------------------------
# Azure ML compute
# ------------------------------------------------------------------------------------------------


def test_gpu_cluster_defaults_to_a_current_gpu_size(blocks: list[Block]) -> None:
    default = _variables(blocks, INFRASTRUCTURE)["gpu_cluster_vm_size"]["default"]
    assert default == "Standard_NC4as_T4_v3"
    assert GPU_FAMILY.match(default) and default not in RETIRED_GPU_SIZES
    aml = INFRASTRUCTURE / "modules" / "aml"
    gpu = _find(blocks, "resource", "azurerm_machine_learning_compute_cluster", "gpu", root=aml)
    assert gpu.body["vm_size"] == "${var.gpu_cluster.vm_size}"
    assert (
        _find(blocks, "module", "aml").body["gpu_cluster"]["vm_size"]
        == "${var.gpu_cluster_vm_size}"
    )
    precondition = gpu.body["lifecycle"][0]["precondition"][0]
    assert "gpu_family_pattern" in precondition["condition"]
    pattern = _locals(blocks, aml)["gpu_family_pattern"]
    assert pattern == GPU_FAMILY.pattern, "module precondition and test disagree on GPU families"


@pytest.mark.parametrize("cluster", ["gpu", "cpu"])
def test_clusters_scale_to_zero_with_managed_identity(blocks: list[Block], cluster: str) -> None:
    aml = INFRASTRUCTURE / "modules" / "aml"
    body = _find(
        blocks, "resource", "azurerm_machine_learning_compute_cluster", cluster, root=aml
    ).body
    scale = body["scale_settings"][0]
    assert scale["min_node_count"] == 0
    assert scale["max_node_count"] == f"${{var.{cluster}_cluster.max_nodes}}"
    assert scale["scale_down_nodes_after_idle_duration"] == "${local.idle_duration}"
    assert _locals(blocks, aml)["idle_duration"] == "PT${var.idle_minutes_before_scale_down}M"
    assert body["identity"] == [
        {"type": "UserAssigned", "identity_ids": ["${azurerm_user_assigned_identity.compute.id}"]}
    ]
    assert body["local_auth_enabled"] is False
    assert body["ssh_public_access_enabled"] is False


def test_gpu_cluster_offers_low_priority(blocks: list[Block]) -> None:
    aml = INFRASTRUCTURE / "modules" / "aml"
    gpu = _find(blocks, "resource", "azurerm_machine_learning_compute_cluster", "gpu", root=aml)
    assert gpu.body["vm_priority"] == (
        '${var.gpu_cluster.low_priority_enabled ? "LowPriority" : "Dedicated"}'
    )


# ------------------------------------------------------------------------------------------------
# Security posture that checkov does not cover
# ------------------------------------------------------------------------------------------------


def test_role_assignments_are_least_privilege(blocks: list[Block]) -> None:
    # The bootstrap root's IaC identity is the one broad grant (Owner on the subscription, to
    # create the platform and its role assignments); test_permissions.py pins it.
    assignments = [
        b
        for b in _resources(blocks, "azurerm_role_assignment")
        if b.file.parent != INFRASTRUCTURE / "bootstrap"
    ]
    assert len(assignments) >= 7
    roles = {b.body.get("role_definition_name") for b in assignments}
    assert not roles & BROAD_ROLES
    for block in assignments:
        # A built-in role by name, or a custom role this configuration defines (its actions are
        # checked where it is defined: testing/integration/pipelines/test_edge_rollout_rules.py).
        role_id = block.body.get("role_definition_id", "${azurerm_role_definition.")
        assert role_id.startswith("${azurerm_role_definition."), f"{block.address}: name the role"
        assert "subscription" not in str(block.body["scope"]), (
            f"{block.address}: subscription scope"
        )
    pipeline_roles = {
        item["role"]: item["scope"]
        for item in _locals(blocks)["pipeline_role_assignments"].values()
    }
    assert pipeline_roles == {
        "Reader": "${azurerm_resource_group.this.id}",
        "AzureML Data Scientist": "${module.aml.workspace_id}",
        "Storage Blob Data Contributor": "${azurerm_storage_account.this.id}",
        "AcrPush": "${azurerm_container_registry.this.id}",
        "IoT Hub Data Contributor": "${module.edge.iothub_id}",
        "Key Vault Secrets User": "${module.edge.registry_password_secret_id}",
    }
    aml_roles = {
        (b.body["principal_id"].split(".")[1], b.body["role_definition_name"])
        for b in assignments
        if b.file.parent.name == "aml"
    }
    assert aml_roles == {
        ("this", "AcrPush"),
        ("this", "Key Vault Secrets Officer"),
        ("compute", "AcrPull"),
        ("compute", "Storage Blob Data Contributor"),
    }


def test_data_services_are_hardened(blocks: list[Block]) -> None:
    vault = _find(blocks, "resource", "azurerm_key_vault", "this").body
    assert vault["rbac_authorization_enabled"] is True and vault["purge_protection_enabled"] is True
    for storage in _resources(blocks, "azurerm_storage_account"):
        assert storage.body["min_tls_version"] == "TLS1_2"
        assert storage.body["allow_nested_items_to_be_public"] is False
        assert storage.body["https_traffic_only_enabled"] is True
    hub = _find(
        blocks, "resource", "azurerm_iothub", "this", root=INFRASTRUCTURE / "modules" / "edge"
    )
    assert hub.body["min_tls_version"] == "1.2"
    assert _variables(blocks, INFRASTRUCTURE)["iothub_sku_name"]["default"] == "S1"


def test_edge_token_is_pull_only_and_covers_the_edge_images(blocks: list[Block]) -> None:
    edge = INFRASTRUCTURE / "modules" / "edge"
    scope_map = _find(
        blocks, "resource", "azurerm_container_registry_scope_map", "edge_pull", root=edge
    )
    actions = scope_map.body["actions"]
    assert "/content/read" in actions and "/metadata/read" in actions
    assert "write" not in actions and "delete" not in actions
    repositories = _variables(blocks, INFRASTRUCTURE)["edge_image_repositories"]["default"]
    module_files = sorted(
        (REPO_ROOT / "environments" / "iotedge" / "modules").glob("*/module.json")
    )
    assert module_files, "no IoT Edge module.json to check the token against"
    for path in module_files:
        image = json.loads(path.read_text())["image"]["repository"].split("/", 1)[1]
        allowed = any(
            image == r or (r.endswith("/*") and image.startswith(r[:-1])) for r in repositories
        )
        assert allowed, (
            f"{image} ({path.relative_to(REPO_ROOT)}) is not pullable with the edge token"
        )


def test_every_taggable_azure_resource_gets_the_tags(
    blocks: list[Block], schemas: dict[str, dict[str, Any]]
) -> None:
    untagged = []
    for block in blocks:
        if block.kind != "resource" or not block.labels[0].startswith("azurerm_"):
            continue
        taggable = "tags" in schemas["azurerm"]["resource"][block.labels[0]]
        tags = str(block.body.get("tags"))
        # The common tags, alone or merged with tags of the resource's own.
        common = tags in ("${local.tags}", "${var.tags}") or tags.startswith(
            ("${merge(local.tags, {", "${merge(var.tags, {")
        )
        if taggable and not common:
            untagged.append(f"{block.file.name}: {block.address}")
    assert untagged == []


# ------------------------------------------------------------------------------------------------
# Module interfaces
# ------------------------------------------------------------------------------------------------


def test_module_calls_match_module_variables(blocks: list[Block]) -> None:
    calls = [b for b in blocks if b.kind == "module"]
    assert {c.labels[0] for c in calls} >= {"aml", "edge", "devops", "platform"}
    meta = {"source", "depends_on", "providers", "count", "for_each", "version"}
    for call in calls:
        module_root = (call.file.parent / call.body["source"]).resolve()
        declared = _variables(blocks, module_root)
        passed = set(call.body) - meta
        assert passed <= set(declared), f"{call.address}: unknown inputs {passed - set(declared)}"
        required = {name for name, body in declared.items() if "default" not in body}
        assert required <= passed, f"{call.address}: missing inputs {required - passed}"


def test_every_variable_has_a_type_and_a_description(blocks: list[Block]) -> None:
    for block in blocks:
        if block.kind == "variable":
            assert "type" in block.body, f"{block.file}: {block.address} has no type"
            assert len(block.body.get("description", "")) >= 20, f"{block.file}: {block.address}"
            assert "map(any)" not in str(block.body["type"]), f"{block.address}: precise types"


def test_every_output_has_a_description(blocks: list[Block]) -> None:
    for block in blocks:
        if block.kind == "output":
            assert len(block.body.get("description", "")) >= 10, f"{block.file}: {block.address}"
