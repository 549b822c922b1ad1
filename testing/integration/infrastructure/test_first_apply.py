"""Azure and Terraform rules that the first real apply (and the IaC pipeline's first plan) meets.

Each test encodes one documented rule that the HCL parser, the provider schema and checkov cannot
see, and cites where the rule comes from.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .terraform_config import INFRASTRUCTURE, Block

AML = INFRASTRUCTURE / "modules" / "aml"


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


def _seconds(duration: str) -> int:
    """A Go duration as Terraform's time provider and `timeouts` take it ("90m", "600s", "1h")."""
    units = {"s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+)([smh])", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


def _local_value(blocks: list[Block], expression: str, root: Path = INFRASTRUCTURE) -> Any:
    match = re.fullmatch(r"\$\{local\.(\w+)\}", expression)
    assert match, f"{expression}: expected a local value"
    return _locals(blocks, root)[match.group(1)]


# ------------------------------------------------------------------------------------------------
# Defect 2: role assignments propagate with a delay; managed network provisioning is slow
# ------------------------------------------------------------------------------------------------


def test_the_secret_is_written_after_its_role_assignments_have_propagated(
    blocks: list[Block],
) -> None:
    # "Role assignment changes can take up to 10 minutes to take effect"
    # (https://learn.microsoft.com/azure/role-based-access-control/troubleshooting). Terraform
    # writes the edge registry password into the vault (module edge) with the role it has just
    # assigned: it must wait, not race.
    edge = _find(blocks, "module", "edge")
    assert "${time_sleep.key_vault_rbac}" in edge.body.get("depends_on", [])
    wait = _find(blocks, "resource", "time_sleep", "key_vault_rbac")
    vault_grants = {
        f"${{azurerm_role_assignment.{b.labels[1]}}}"
        for b in blocks
        if b.kind == "resource"
        and b.labels[0] == "azurerm_role_assignment"
        and b.file.parent == INFRASTRUCTURE
        and b.body["scope"] == "${azurerm_key_vault.this.id}"
    }
    assert vault_grants, "no data role on the vault for the identities running Terraform"
    assert vault_grants <= set(wait.body["depends_on"])
    assert _seconds(_local_value(blocks, wait.body["create_duration"])) >= 600
    # A new principal gets a new wait: the sleep is replaced when the principal list changes.
    assert "var.iac_principal_id" in wait.body["triggers"]["principals"]
    assert "var.operator_principal_ids" in wait.body["triggers"]["principals"]


def test_the_managed_network_is_provisioned_with_the_workspace(blocks: list[Block]) -> None:
    # A workspace managed network is provisioned lazily with the first compute unless asked for at
    # creation, and provisioning takes about 30 minutes
    # (https://learn.microsoft.com/azure/machine-learning/how-to-managed-network#manually-provision-a-managed-vnet),
    # as long as azurerm's default create timeout (30 minutes) of the cluster that would wait
    # (https://registry.terraform.io/providers/hashicorp/azurerm/latest/docs/resources/machine_learning_workspace#timeouts).
    workspace = _find(blocks, "resource", "azurerm_machine_learning_workspace", "this", root=AML)
    network = workspace.body["managed_network"][0]
    assert network["isolation_mode"] != "Disabled"
    assert network["provision_on_creation_enabled"] is True
    timeouts = workspace.body["timeouts"][0]
    assert _seconds(_local_value(blocks, timeouts["create"], AML)) > 30 * 60


# ------------------------------------------------------------------------------------------------
# Defect 6: every argument of a compute cluster forces replacement, tags included
# ------------------------------------------------------------------------------------------------


def test_a_tag_edit_does_not_replace_a_compute_cluster(blocks: list[Block]) -> None:
    # azurerm_machine_learning_compute_cluster: "tags - ... Changing this forces a new Machine
    # Learning Compute Cluster to be created" (as for every other argument;
    # https://registry.terraform.io/providers/hashicorp/azurerm/latest/docs/resources/machine_learning_compute_cluster).
    # The template's tags follow the global `tags` input, so they must be ignored after creation.
    clusters = [
        b
        for b in blocks
        if b.kind == "resource" and b.labels[0] == "azurerm_machine_learning_compute_cluster"
    ]
    assert len(clusters) == 2
    for cluster in clusters:
        if "tags" not in cluster.body:
            continue
        ignored = cluster.body.get("lifecycle", [{}])[0].get("ignore_changes", [])
        assert "${tags}" in ignored or "tags" in ignored, cluster.address


# ------------------------------------------------------------------------------------------------
# Defects 3 and 4: pull requests are validated; the first push works; one person can merge
# ------------------------------------------------------------------------------------------------

DEVOPS = INFRASTRUCTURE / "modules" / "devops"


def _pipeline_yaml(relative: str) -> dict[str, Any]:
    import yaml

    loaded = yaml.safe_load((INFRASTRUCTURE.parent / relative).read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_pull_requests_run_the_pipelines_through_build_validation(blocks: list[Block]) -> None:
    # "YAML PR triggers are supported only in GitHub and Bitbucket Cloud"; for Azure Repos Git,
    # "configure a build validation branch policy"
    # (https://learn.microsoft.com/azure/devops/pipelines/repos/azure-repos-git#pr-triggers).
    pipelines = _locals(blocks)["pipelines"]
    validated = {key for key, p in pipelines.items() if p.get("pull_request_paths")}
    assert validated == {"ci", "iac"}
    for pipeline in pipelines.values():
        assert _pipeline_yaml(pipeline["yml_path"]).get("pr", "none") == "none", (
            f"{pipeline['yml_path']}: Azure Repos ignores `pr:`; use pull_request_paths"
        )
    # The IaC plan validates exactly the changes that trigger the IaC pipeline on main.
    trigger_paths = _pipeline_yaml(pipelines["iac"]["yml_path"])["trigger"]["paths"]["include"]
    assert [f"/{p.removesuffix('**')}*" for p in trigger_paths] == (
        pipelines["iac"]["pull_request_paths"]
    )
    policy = _find(
        blocks,
        "resource",
        "azuredevops_branch_policy_build_validation",
        "default_branch",
        root=DEVOPS,
    )
    assert policy.body["for_each"] == "${local.validation_pipelines}"
    settings = policy.body["settings"][0]
    assert settings["build_definition_id"] == "${azuredevops_build_definition.this[each.key].id}"
    assert settings["filename_patterns"] == "${each.value.pull_request_paths}"
    assert settings["scope"][0]["repository_ref"] == "${var.default_branch}"


def test_the_first_push_reaches_an_empty_unprotected_repository(blocks: list[Block]) -> None:
    # A `Clean` repository starts with a commit (a README), so pushing an existing history is
    # rejected; a protected branch refuses direct pushes, the creating push included
    # (https://learn.microsoft.com/azure/devops/repos/git/branch-policies#require-a-minimum-number-of-reviewers).
    repository = _find(blocks, "resource", "azuredevops_git_repository", "this", root=DEVOPS)
    init_type = repository.body["initialization"][0]["init_type"]
    assert "Uninitialized" in init_type and "Clean" not in init_type
    assert _find(blocks, "variable", "ado_branch_policies_enabled").body["default"] is False
    reviewers = _find(
        blocks,
        "resource",
        "azuredevops_branch_policy_min_reviewers",
        "default_branch",
        root=DEVOPS,
    )
    assert reviewers.body["count"] == (
        "${var.branch_policy.enabled && var.branch_policy.minimum_reviewers > 0 ? 1 : 0}"
    )
    validation = _locals(blocks, DEVOPS)["validation_pipelines"]
    assert "var.branch_policy.enabled" in validation


def test_a_one_person_team_can_merge(blocks: list[Block]) -> None:
    # The author cannot approve their own pull request unless submitter_can_vote is set, and the
    # last pusher cannot when last_pusher_cannot_approve is set: with both fixed, one person
    # could never complete a pull request. Both follow ado_allow_self_approval.
    settings = _find(
        blocks,
        "resource",
        "azuredevops_branch_policy_min_reviewers",
        "default_branch",
        root=DEVOPS,
    ).body["settings"][0]
    assert settings["submitter_can_vote"] == "${var.branch_policy.allow_self_approval}"
    assert settings["last_pusher_cannot_approve"] == "${!var.branch_policy.allow_self_approval}"
    devops = _find(blocks, "module", "devops").body["branch_policy"]
    assert devops == {
        "enabled": "${var.ado_branch_policies_enabled}",
        "minimum_reviewers": "${var.ado_minimum_reviewers}",
        "allow_self_approval": "${var.ado_allow_self_approval}",
    }


# ------------------------------------------------------------------------------------------------
# Defect 10: resource logs exist only where a diagnostic setting sends them
# ------------------------------------------------------------------------------------------------

# Data services and the Terraform expression that names their log source.
DIAGNOSED = {
    "azurerm_key_vault.this": "${azurerm_key_vault.this.id}",
    "azurerm_storage_account.this": "${azurerm_storage_account.this.id}/blobServices/default",
    "azurerm_container_registry.this": "${azurerm_container_registry.this.id}",
    "module.aml.azurerm_machine_learning_workspace.this": "${module.aml.workspace_id}",
    "module.edge.azurerm_iothub.this": "${module.edge.iothub_id}",
}


def test_every_data_service_sends_its_logs_to_log_analytics(blocks: list[Block]) -> None:
    # "Resource logs aren't collected by default": a diagnostic setting routes them
    # (https://learn.microsoft.com/azure/azure-monitor/essentials/diagnostic-settings); storage
    # logs belong to the blob service (https://learn.microsoft.com/azure/storage/blobs/monitor-blob-storage).
    setting = _find(blocks, "resource", "azurerm_monitor_diagnostic_setting", "this")
    assert setting.body["for_each"] == "${local.diagnostic_targets}"
    assert setting.body["target_resource_id"] == "${each.value}"
    assert setting.body["log_analytics_workspace_id"] == (
        "${azurerm_log_analytics_workspace.this.id}"
    )
    assert setting.body["enabled_log"] == [{"category_group": "allLogs"}]
    assert setting.body["enabled_metric"] == [{"category": "AllMetrics"}]
    targets = set(_locals(blocks)["diagnostic_targets"].values())
    assert targets == set(DIAGNOSED.values())
    kinds = {
        b.labels[0]
        for b in blocks
        if b.kind == "resource"
        and b.labels[0]
        in {
            "azurerm_key_vault",
            "azurerm_storage_account",
            "azurerm_container_registry",
            "azurerm_machine_learning_workspace",
            "azurerm_iothub",
        }
        and b.file.parent.name not in {"bootstrap", "dev_low_cost"}
    }
    assert {address.split(".")[-2] for address in DIAGNOSED} == kinds


def test_reads_of_the_state_are_logged(blocks: list[Block]) -> None:
    # The state holds secrets in clear text: its blob reads must leave a trace.
    setting = _find(
        blocks,
        "resource",
        "azurerm_monitor_diagnostic_setting",
        "state_blob",
        root=INFRASTRUCTURE / "bootstrap",
    )
    assert setting.body["target_resource_id"] == (
        "${azurerm_storage_account.state.id}/blobServices/default"
    )
    categories = {log["category"] for log in setting.body["enabled_log"]}
    assert {"StorageRead", "StorageWrite", "StorageDelete"} <= categories
