"""Bad input is rejected: every constrained variable has a validation block, and each condition,
evaluated in Python from HashiCorp's own syntax tree, accepts good values and rejects bad ones."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .terraform_config import (
    INFRASTRUCTURE,
    Block,
    EvalError,
    UnsupportedExpressionError,
    evaluate,
    expression_asts,
    unwrap,
)

GUID = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
SUBNET = (
    "/subscriptions/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0/resourceGroups/rg-net/providers/"
    "Microsoft.Network/virtualNetworks/vnet-ml/subnets/snet-pe"
)

# (root folder, variable) -> (good values, bad values). Defaults are checked as good values too.
CASES: dict[tuple[str, str], tuple[list[Any], list[Any]]] = {
    ("", "subscription_id"): ([GUID], ["my-subscription", "", GUID + "0", "{" + GUID + "}"]),
    ("", "iac_principal_id"): ([GUID], ["id-ppe-iac", "", GUID + "0"]),
    ("", "operator_principal_ids"): ([[], [GUID]], [["someone@contoso.com"], [""]]),
    ("", "location"): (["eastus2", "swedencentral"], ["West Europe", "westeurope ", "", "2east"]),
    ("", "workload"): (["ppe", "hardhat1"], ["PPE", "p", "hard-hat", "toolongname", "1ppe"]),
    ("", "environment"): (["prod", "stage"], ["production", "Dev", "qa", ""]),
    ("", "name_suffix"): (["", "a1", "zz9999"], ["ABC", "toolong7", "a-1"]),
    ("", "tags"): (
        [{}, {"owner": "team", "cost-center": "42"}],
        [{"a/b": "x"}, {"k": "v" * 257}, {f"k{i}": "v" for i in range(46)}],
    ),
    ("", "allowed_ip_ranges"): (
        [[], ["203.0.113.0/24", "198.51.100.7/32"]],
        [["203.0.113.0"], ["2001:db8::/32"], ["300.1.1.1/32"], ["10.0.0.0/33"]],
    ),
    ("", "aml_private_endpoints"): (
        [{}, {"main": {"subnet_resource_id": SUBNET, "private_dns_zone_resource_ids": []}}],
        [{"main": {"subnet_resource_id": "snet-pe", "private_dns_zone_resource_ids": []}}],
    ),
    ("", "storage_replication_type"): (["LRS", "RAGZRS"], ["grs", "Premium_LRS"]),
    ("", "container_registry_sku"): (["Premium"], ["premium", "Free"]),
    ("", "key_vault_soft_delete_retention_days"): ([7, 90], [6, 91, 30.5]),
    ("", "log_retention_days"): ([30, 730], [7, 731, 45.5]),
    ("", "gpu_cluster_vm_size"): (
        ["Standard_NC8as_T4_v3", "Standard_NC24ads_A100_v4", "Standard_NC40ads_H100_v5"],
        ["Standard_NC6s_v3", "Standard_NC24rs_v3", "Standard_NC6", "Standard_D4s_v5", "NC4as_T4"],
    ),
    ("", "gpu_cluster_max_nodes"): ([1, 100], [0, 101, 1.5, -1]),
    ("", "cpu_cluster_vm_size"): (
        ["Standard_DS3_v2", "Standard_D4as_v5", "Standard_F8s_v2"],
        ["Standard_NC4as_T4_v3", "DS3_v2", "standard_d4s_v5"],
    ),
    ("", "cpu_cluster_max_nodes"): ([1, 20], [0, 21, 2.5]),
    ("", "cluster_idle_minutes_before_scale_down"): ([2, 1440], [1, 1441, 7.5]),
    ("", "model_name"): (["yolo.v3_tiny-2"], ["-model", "has space", "", "m" * 256]),
    ("", "iothub_sku_name"): (["F1", "S3"], ["B1", "s1", "S4"]),
    ("", "iothub_capacity"): ([1, 200], [0, 201, 1.5]),
    ("", "edge_image_repositories"): (
        [["ppedetector"], ["edge/*", "tools/camera-sim"]],
        [[], ["PPE"], ["edge/"], ["*"]],
    ),
    ("", "edge_registry_password_rotation_days"): ([1, 365], [0, 366, 2.5]),
    ("", "edge_registry_rollout_allowance_days"): ([1, 30], [0, 31, 1.5]),
    ("", "edge_registry_password_margin_days"): ([1, 90], [0, 91, 7.5]),
    ("", "ado_org_service_url"): (
        ["https://dev.azure.com/contoso", "https://dev.azure.com/contoso-ml/"],
        ["https://contoso.visualstudio.com", "http://dev.azure.com/contoso", "dev.azure.com/x"],
    ),
    ("", "ado_project_name"): (["PPE MLOps", "ppe-hardhat-mlops"], ["_hidden", "x", "a" * 65]),
    ("", "ado_repository_name"): (["ppe-hardhat", "r"], ["-repo", "has space", "a" * 65]),
    ("", "ado_repository_import_url"): (
        [None, "https://github.com/contoso/ppe-hardhat.git"],
        ["git@github.com:contoso/ppe.git", "https://", "http://example.com/x"],
    ),
    ("", "ado_default_branch"): (["refs/heads/main", "refs/heads/release/1.0"], ["main", ""]),
    ("", "ado_production_approver_ids"): ([[GUID]], [[], ["someone@contoso.com"]]),
    ("", "ado_minimum_reviewers"): ([0, 1, 10], [-1, 11, 1.5]),
    ("", "ado_product_pipelines"): (
        [{"site_a_training": {"pipeline_id": 12, "deploys": False}}],
        [{"x": {"pipeline_id": 0, "deploys": True}}, {"x": {"pipeline_id": 1.5, "deploys": False}}],
    ),
    ("", "edge_deployments_to_keep"): ([0, 3, 23], [-1, 24, 1.5]),
    ("bootstrap", "subscription_id"): ([GUID], ["sub", ""]),
    ("bootstrap", "location"): (["westeurope"], ["West Europe"]),
    ("bootstrap", "resource_group_name"): (["rg-ppe-tfstate", "rg.(state)_1"], ["rg.", ""]),
    ("bootstrap", "storage_account_name"): (["stppetfstate01"], ["st", "St-State", "s" * 25]),
    ("bootstrap", "state_key"): (["ppe-dev.tfstate", "env/prod.tfstate"], ["state.json", ""]),
    ("bootstrap", "allowed_ip_ranges"): ([["198.51.100.7/32"]], [["198.51.100.7"]]),
    ("bootstrap", "log_retention_days"): ([30, 730], [7, 731, 45.5]),
    ("bootstrap", "iac_identity_name"): (["id-ppe-iac", "id_iac-2"], ["id", "-iac", "id iac"]),
    ("bootstrap", "tags"): ([{"owner": "me"}], [{f"k{i}": "v" for i in range(49)}]),
    ("examples/dev_low_cost", "subscription_id"): ([GUID], ["sub"]),
    ("examples/dev_low_cost", "ado_org_service_url"): (
        ["https://dev.azure.com/contoso"],
        ["https://github.com/contoso"],
    ),
    ("examples/dev_low_cost", "ado_production_approver_ids"): ([[GUID]], [[]]),
    ("examples/dev_low_cost", "iac_principal_id"): ([GUID], ["id-ppe-iac"]),
}

# Bool switches need no validation; their type already admits only true and false.
UNCONSTRAINED_TYPES = {"${bool}"}


def _root_variables(blocks: list[Block]) -> dict[tuple[str, str], Block]:
    roots = {"": INFRASTRUCTURE, "bootstrap": INFRASTRUCTURE / "bootstrap"}
    roots["examples/dev_low_cost"] = INFRASTRUCTURE / "examples" / "dev_low_cost"
    return {
        (name, block.labels[0]): block
        for name, root in roots.items()
        for block in blocks
        if block.kind == "variable" and block.file.parent == root
    }


@pytest.fixture(scope="module")
def conditions(blocks: list[Block]) -> dict[tuple[str, str], list[tuple[dict[str, Any], str]]]:
    """Syntax trees of every root variable's validation conditions, with their messages."""
    variables = _root_variables(blocks)
    keys, sources, messages = [], [], []
    for key, block in variables.items():
        for validation in block.body.get("validation", []):
            keys.append(key)
            sources.append(unwrap(validation["condition"]))
            messages.append(validation["error_message"])
    trees = expression_asts(sources)
    result: dict[tuple[str, str], list[tuple[dict[str, Any], str]]] = {}
    for key, tree, message in zip(keys, trees, messages, strict=True):
        result.setdefault(key, []).append((tree, message))
    return result


def test_every_constrained_root_variable_has_validation(blocks: list[Block]) -> None:
    variables = _root_variables(blocks)
    constrained = {k for k, b in variables.items() if b.body["type"] not in UNCONSTRAINED_TYPES}
    without = sorted(
        f"{root or '.'}:{name}"
        for (root, name) in constrained
        if not variables[(root, name)].body.get("validation")
    )
    assert without == []
    assert set(CASES) == constrained, "keep CASES in step with the variables"


def test_error_messages_say_what_to_fix(blocks: list[Block]) -> None:
    for block in blocks:
        for validation in block.body.get("validation", []) if block.kind == "variable" else []:
            message = validation["error_message"]
            # Terraform's own rule: a sentence, not starting with a lower-case letter.
            assert message.endswith((".", "?")), message
            assert not message[0].islower(), message
            assert re.search(r"\b(must|needs|use|set)\b", message, re.IGNORECASE), message


def _accepts(trees: list[tuple[dict[str, Any], str]], name: str, value: Any) -> bool:
    for tree, _ in trees:
        try:
            result = evaluate(tree, {"var": {name: value}})
        except EvalError:
            return False
        assert isinstance(result, bool), f"condition returned {result!r}"
        if not result:
            return False
    return True


@pytest.mark.parametrize(("root", "name"), sorted(CASES), ids=lambda v: v or "root")
def test_validation_accepts_good_and_rejects_bad_values(
    blocks: list[Block],
    conditions: dict[tuple[str, str], list[tuple[dict[str, Any], str]]],
    root: str,
    name: str,
) -> None:
    good, bad = CASES[(root, name)]
    trees = conditions[(root, name)]
    default = _root_variables(blocks)[(root, name)].body.get("default", "<none>")
    if default != "<none>":
        good = [default, *good]
    try:
        for value in good:
            assert _accepts(trees, name, value), f"{name} rejects good value {value!r}"
        for value in bad:
            assert not _accepts(trees, name, value), f"{name} accepts bad value {value!r}"
    except UnsupportedExpressionError as error:
        pytest.fail(f"{name}: extend the evaluator in terraform_config.py: {error}")


def test_evaluator_matches_terraform_semantics_on_edge_cases() -> None:
    sources = [
        'can(regex("^a+$", var.x))',
        "var.x == null ? true : length(var.x) > 2",
        'alltrue([for k, v in var.x : length(k) < 3 && v != ""])',
        "floor(var.x) == var.x && var.x >= -1",
        'contains(["a", "b"], var.x) || !startswith(var.x, "z")',
    ]
    regex, null_check, map_for, whole, logic = expression_asts(sources)
    assert evaluate(regex, {"var": {"x": "aaa"}}) is True
    assert evaluate(regex, {"var": {"x": "ab"}}) is False
    with pytest.raises(EvalError):
        evaluate(regex["children"][0], {"var": {"x": "b"}})
    assert evaluate(null_check, {"var": {"x": None}}) is True
    assert evaluate(null_check, {"var": {"x": "ab"}}) is False
    assert evaluate(map_for, {"var": {"x": {"ab": "1", "c": "2"}}}) is True
    assert evaluate(map_for, {"var": {"x": {"abc": "1"}}}) is False
    assert evaluate(whole, {"var": {"x": 4.0}}) is True
    assert evaluate(whole, {"var": {"x": 4.5}}) is False
    assert evaluate(logic, {"var": {"x": "zebra"}}) is False
    with pytest.raises(UnsupportedExpressionError):
        evaluate(expression_asts(["upper(var.x)"])[0], {"var": {"x": "a"}})
