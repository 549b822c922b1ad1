"""infrastructure/README.md "First apply" agrees with the code it walks a new user through."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from .terraform_config import INFRASTRUCTURE, Block

README = INFRASTRUCTURE / "README.md"
BOOTSTRAP = INFRASTRUCTURE / "bootstrap"


@pytest.fixture(scope="module")
def section() -> str:
    text = README.read_text(encoding="utf-8")
    assert "\n## First apply\n" in text
    return text.split("\n## First apply\n", 1)[1].split("\n## ", 1)[0]


def _variables(blocks: list[Block], root: Path) -> dict[str, dict[str, Any]]:
    return {b.labels[0]: b.body for b in blocks if b.kind == "variable" and b.file.parent == root}


def _name(blocks: list[Block], key: str, **values: str) -> str:
    """A `local.names` entry with the root variables' defaults, overridden by `values`."""
    variables = {k: v.get("default") for k, v in _variables(blocks, INFRASTRUCTURE).items()}
    variables.update(values)
    local_values: dict[str, Any] = {}
    for block in blocks:
        if block.kind == "locals" and block.file.parent == INFRASTRUCTURE:
            local_values.update(block.body)
    template = str(local_values["names"][key])
    template = template.replace("${local.base_name}", str(local_values["base_name"]))

    def substitute(match: re.Match[str]) -> str:
        return str(variables[match.group(1)])

    result = re.sub(r"\$\{var\.(\w+)\}", substitute, template)
    assert "${" not in result, result
    return result


def test_every_required_input_is_named(section: str, blocks: list[Block]) -> None:
    required = [n for n, v in _variables(blocks, INFRASTRUCTURE).items() if "default" not in v]
    assert set(required) >= {"subscription_id", "iac_principal_id"}
    for name in required:
        assert f"`{name}`" in section, name
    bootstrap_required = [n for n, v in _variables(blocks, BOOTSTRAP).items() if "default" not in v]
    bootstrap_call = section.split("terraform apply", 1)[1].split("\n```", 1)[0]
    for name in bootstrap_required:
        assert f"-var {name}=" in bootstrap_call, name


def test_the_paths_and_names_are_the_ones_terraform_computes(
    section: str, blocks: list[Block]
) -> None:
    # What the IaC pipeline later reads from the variable group must be where the user put it.
    assert f"-var-file={_name(blocks, 'var_file')}" in section
    assert f"cp terraform.tfvars.example {_name(blocks, 'var_file')}" in section
    assert f"-var-file={_name(blocks, 'var_file', environment='prod')}" in section
    assert f"key={_name(blocks, 'state_key', environment='prod')}" in section
    assert f"`{_name(blocks, 'ado_project', environment='prod')}`" in section
    bootstrap_key = _variables(blocks, BOOTSTRAP)["state_key"]["default"]
    assert bootstrap_key == _name(blocks, "state_key"), "backend.hcl's key is the dev state"


def test_the_first_push_comes_before_branch_protection(section: str, blocks: list[Block]) -> None:
    assert _variables(blocks, INFRASTRUCTURE)["ado_branch_policies_enabled"]["default"] is False
    assert "`ado_branch_policies_enabled = false`" in section
    push = section.index("git push azure main")
    assert push < section.index("`ado_branch_policies_enabled = true`")


def test_the_operator_and_iac_identity_are_set_up_before_the_apply(section: str) -> None:
    # The first apply writes a key vault secret as the operator (defect 1's grant).
    apply = section.index("terraform apply -var-file=")
    assert section.index("terraform output -raw iac_principal_id") < apply
    assert section.index("az ad signed-in-user show --query id -o tsv") < apply
    assert "`operator_principal_ids`" in section[:apply]
