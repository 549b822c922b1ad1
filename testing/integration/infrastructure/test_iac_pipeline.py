"""The IaC pipeline and the names it shares with Terraform: rules a real run would enforce.

Defects 5 (plan artifact), 7 (settings that do not do what they say), 8 (a second environment) and
9 (token lifetime) of issue 13; each test cites the rule it encodes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .terraform_config import INFRASTRUCTURE, REPO_ROOT, Block

TEMPLATES = REPO_ROOT / "ado_pipelines" / "templates"
PLAN_JOB = TEMPLATES / "jobs" / "terraform_plan.yml"
APPLY_JOB = TEMPLATES / "jobs" / "terraform_apply.yml"
TERRAFORM_STEP = TEMPLATES / "steps" / "terraform_azure.yml"
STAGE = TEMPLATES / "stages" / "terraform.yml"

# Environment variables the two providers read for Entra ID sign-in, from their sources:
# azuredevops 1.x azuredevops/provider.go (schema.EnvDefaultFunc / MultiEnvDefaultFunc) and azurerm
# 4.x internal/provider/provider.go; both take the same ARM_* names.
# https://github.com/microsoft/terraform-provider-azuredevops/blob/main/azuredevops/provider.go
# https://registry.terraform.io/providers/hashicorp/azurerm/latest/docs/guides/service_principal_oidc
PROVIDER_ENVIRONMENT = frozenset(
    {
        "ARM_CLIENT_ID",
        "ARM_TENANT_ID",
        "ARM_SUBSCRIPTION_ID",
        "ARM_USE_OIDC",
        "ARM_USE_CLI",
        "ARM_OIDC_TOKEN",
        "ARM_OIDC_REQUEST_TOKEN",
        "ARM_OIDC_REQUEST_URL",
        "ARM_ADO_PIPELINE_SERVICE_CONNECTION_ID",
        "ARM_OIDC_AZURE_SERVICE_CONNECTION_ID",
        "AZDO_ORG_SERVICE_URL",
        "AZDO_PERSONAL_ACCESS_TOKEN",
    }
)


def _inline_script(path: Path) -> str:
    return str(
        yaml.safe_load(path.read_text(encoding="utf-8"))["steps"][0]["inputs"]["inlineScript"]
    )


def _job_script(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    match = re.search(r"^( +)script: \|\n((?:\1  .*\n|\n)+)", text, flags=re.MULTILINE)
    assert match, f"{path.name}: no script block"
    return match.group(2)


def _find(blocks: list[Block], kind: str, *labels: str, root: Path = INFRASTRUCTURE) -> Block:
    found = [b for b in blocks if b.kind == kind and b.labels == labels and b.file.parent == root]
    assert len(found) == 1, f"{kind} {labels} in {root}: found {len(found)}"
    return found[0]


def _locals(blocks: list[Block]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in blocks:
        if block.kind == "locals" and block.file.parent == INFRASTRUCTURE:
            merged.update(block.body)
    return merged


# ------------------------------------------------------------------------------------------------
# Defect 5: a saved plan holds the prior state, secrets included, in clear text
# ------------------------------------------------------------------------------------------------


def test_no_plan_file_leaves_the_agent() -> None:
    # "Saved plan files ... contain ... sensitive values in plaintext" (HashiCorp:
    # https://developer.hashicorp.com/terraform/cli/commands/plan#out-filename and
    # https://developer.hashicorp.com/terraform/language/state/sensitive-data): the ACR token
    # password, the Key Vault secret and the DPS keys would sit in the published artifact.
    plan = _job_script(PLAN_JOB)
    published = [line for line in plan.splitlines() if "${PLAN_OUT}" in line]
    assert published, "the plan job publishes nothing"
    for line in published:
        assert not re.search(r"\bcp\b.*\btfplan\b", line), line
        assert "show -json" not in line or "sha256sum" in line, f"plan JSON published: {line}"
    assert "rm -f tfplan" in plan
    apply = _job_script(APPLY_JOB)
    assert not re.search(r"terraform apply .*PLAN_DIR", apply), "apply of a transported plan"


def test_apply_applies_only_the_reviewed_changes() -> None:
    # The apply job plans again and compares the digest of the planned changes, computed by the
    # same command, with the reviewed one before applying.
    digest = "terraform show -json tfplan | jq -S -c '.resource_changes' | sha256sum"
    plan, apply = _job_script(PLAN_JOB), _job_script(APPLY_JOB)
    assert digest in plan and digest in apply
    assert '"$(cat "${PLAN_DIR}/plan.sha256")"' in apply
    assert apply.index("plan.sha256") < apply.index("terraform apply")


# ------------------------------------------------------------------------------------------------
# Defect 9: the task's ID token lives 10 minutes; providers must request fresh ones
# ------------------------------------------------------------------------------------------------


def test_providers_request_fresh_tokens_from_the_service_connection() -> None:
    # With a service connection ID and the job's access token, azurerm and azuredevops request an
    # ID token from Azure DevOps (SYSTEM_OIDCREQUESTURI) whenever theirs expires
    # (https://registry.terraform.io/providers/hashicorp/azurerm/latest/docs/guides/service_principal_oidc
    # "Azure DevOps"); a static ARM_OIDC_TOKEN would take precedence and expire after 10 minutes.
    script = _inline_script(TERRAFORM_STEP)
    exported = set(re.findall(r"\b(ARM_[A-Z_]+|AZDO_[A-Z_]+)=", script))
    assert "ARM_OIDC_TOKEN" not in exported
    assert {"ARM_USE_OIDC", "ARM_ADO_PIPELINE_SERVICE_CONNECTION_ID"} <= exported
    assert 'ARM_OIDC_REQUEST_TOKEN="${SYSTEM_ACCESSTOKEN}"' in script
    # Secret variables reach scripts only when mapped
    # (https://learn.microsoft.com/azure/devops/pipelines/build/variables#systemaccesstoken).
    step = yaml.safe_load(TERRAFORM_STEP.read_text(encoding="utf-8"))["steps"][0]
    assert step["env"]["SYSTEM_ACCESSTOKEN"] == "$(System.AccessToken)"


# ------------------------------------------------------------------------------------------------
# Defect 7: settings that do not do what they say
# ------------------------------------------------------------------------------------------------


def test_every_provider_variable_the_pipelines_set_is_read_by_a_provider() -> None:
    # AZDO_USE_OIDC, AZDO_CLIENT_ID, AZDO_OIDC_TOKEN... are read by no provider: the azuredevops
    # provider takes the ARM_* names (see PROVIDER_ENVIRONMENT).
    unknown: list[str] = []
    for folder in ("ado_pipelines", "infrastructure"):
        for path in sorted((REPO_ROOT / folder).rglob("*")):
            if path.suffix not in {".yml", ".tf", ".md", ".sh"} or ".terraform" in path.parts:
                continue
            text = path.read_text(encoding="utf-8")
            for name in re.findall(r"\b((?:ARM|AZDO)_[A-Z_]*[A-Z])\b", text):
                if name not in PROVIDER_ENVIRONMENT:
                    unknown.append(f"{path.relative_to(REPO_ROOT)}: {name}")
    assert unknown == []


def test_only_the_default_branch_applies_and_no_branch_is_hard_coded(blocks: list[Block]) -> None:
    stage = STAGE.read_text(encoding="utf-8")
    assert "refs/heads/" not in stage
    assert "variables['${{ parameters.applyBranchVariable }}']" in stage
    iac = yaml.safe_load((REPO_ROOT / "ado_pipelines" / "iac_pipeline.yml").read_text())
    variable = iac["extends"]["parameters"]["applyBranchVariable"]
    assert _locals(blocks)["pipeline_variables"][variable] == "${var.ado_default_branch}"


def test_allowed_ip_ranges_close_only_what_has_a_firewall(blocks: list[Block]) -> None:
    # Registry network rules need the Premium tier
    # (https://learn.microsoft.com/azure/container-registry/container-registry-access-selected-networks);
    # the variable must not promise more, and must close a Premium registry.
    description = _find(blocks, "variable", "allowed_ip_ranges").body["description"]
    assert "Premium" in description
    registry = _find(blocks, "resource", "azurerm_container_registry", "this").body
    rules = registry["dynamic"]["network_rule_set"][0]
    assert "var.allowed_ip_ranges" in rules["for_each"]
    assert 'var.container_registry_sku == "Premium"' in rules["for_each"]
    assert rules["content"][0]["default_action"] == "Deny"


# ------------------------------------------------------------------------------------------------
# Defect 8: dev and prod side by side, from the same code
# ------------------------------------------------------------------------------------------------


def test_a_second_environment_gets_its_own_project_state_and_inputs(blocks: list[Block]) -> None:
    # Azure DevOps project names are unique in an organisation, state keys in a container: both
    # carry the environment. The names the YAML spells (connection, variable group) live inside
    # the project and must not, so that one YAML serves every environment's project.
    names = _locals(blocks)["names"]
    for per_environment in ("ado_project", "resource_group", "state_key", "var_file"):
        assert "var.environment" in names[per_environment] or "local.base_name" in str(
            names[per_environment]
        ), per_environment
    for shared in ("service_connection", "variable_group"):
        assert "environment" not in names[shared] and "base_name" not in names[shared], shared
    variables = _locals(blocks)["pipeline_variables"]
    assert variables["TERRAFORM_STATE_KEY"] == "${local.names.state_key}"
    assert variables["TERRAFORM_VAR_FILE"] == "${local.names.var_file}"
    iac = yaml.safe_load((REPO_ROOT / "ado_pipelines" / "iac_pipeline.yml").read_text())
    parameters = iac["extends"]["parameters"]
    assert parameters["backend"]["key"] == "$(TERRAFORM_STATE_KEY)"
    assert parameters["varFile"] == "$(TERRAFORM_VAR_FILE)"
    literal = [
        f"{path.relative_to(REPO_ROOT)}: {match}"
        for path in sorted((REPO_ROOT / "ado_pipelines").rglob("*.yml"))
        for match in re.findall(r"[\w.-]+\.(?:tfstate|tfvars)\b", path.read_text())
    ]
    assert literal == [], "environment-specific files named in YAML"


def test_the_bootstrap_default_state_key_is_the_default_environments(blocks: list[Block]) -> None:
    key = _find(blocks, "variable", "state_key", root=INFRASTRUCTURE / "bootstrap")
    assert key.body["default"] == "ppe-dev.tfstate"
    assert _locals(blocks)["names"]["state_key"] == "${local.base_name}.tfstate"
    assert _locals(blocks)["base_name"] == "${var.workload}-${var.environment}"
