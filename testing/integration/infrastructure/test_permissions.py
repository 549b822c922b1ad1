"""The permission matrix (`infrastructure/permissions/`) against the roles Terraform assigns.

One test per matrix row: the row's identity must hold, at the row's target or a scope above it,
role assignments whose built-in (vendored) or custom definitions grant every action and data
action the row lists. The failure message names the identity, the row, each missing action and
the roles the identity holds there. Rules and sources: `permissions.py`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .permissions import (
    IDENTITIES,
    OPERATIONS,
    ROLE_DEFINITIONS,
    Grant,
    Identity,
    ModuleInstance,
    Operation,
    Role,
    build_instances,
    collect_custom_roles,
    collect_grants,
    load_builtin_roles,
    load_identities,
    load_operations,
    matches,
    missing_permissions,
    resource_parents,
    scope_chain,
)
from .terraform_config import REPO_ROOT, Block

ROWS = load_operations()
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# `az` subcommands that touch no Azure resource (local configuration, extensions, the session).
AZ_WITHOUT_PERMISSIONS = frozenset(
    {"az extension add", "az config set", "az account show", "az version", "az login"}
)
AZ_COMMAND = re.compile(r"(?<![\w-])az((?:\s+[a-z][a-z0-9-]*)+)")
# The CLI's IoT extension signs IoT Hub calls with a shared access policy key unless told to use
# the Entra ID session (`--auth-type login`); fetching the key is a control-plane action that no
# IoT Hub data role includes. https://learn.microsoft.com/cli/azure/iot/hub#az-iot-hub-query
IOT_KEY_ACTION = "Microsoft.Devices/IotHubs/listkeys/action"


@pytest.fixture(scope="module")
def instances(blocks: list[Block]) -> list[ModuleInstance]:
    return build_instances(blocks)


@pytest.fixture(scope="module")
def roles(instances: list[ModuleInstance]) -> dict[str, Role]:
    return {**load_builtin_roles(), **collect_custom_roles(instances)}


@pytest.fixture(scope="module")
def grants(instances: list[ModuleInstance], roles: dict[str, Role]) -> list[Grant]:
    found, problems = collect_grants(instances, roles)
    assert problems == [], "role assignments the matrix cannot read:\n" + "\n".join(problems)
    return found


@pytest.fixture(scope="module")
def parents(instances: list[ModuleInstance]) -> dict[str, str]:
    return resource_parents(instances)


@pytest.fixture(scope="module")
def identities() -> dict[str, Identity]:
    return load_identities()


# ------------------------------------------------------------------------------------------------
# The matrix itself
# ------------------------------------------------------------------------------------------------


def named_commands(what: str) -> list[str]:
    """The `az` commands a row's `what` names (`az a b and az c d (...)` -> two)."""
    return [
        match.group(0)
        for part in re.split(r"\s+and\s+|,", what)
        for match in [re.match(r"az(?:\s+[a-z][a-z0-9-]*)+", part.strip())]
        if match is not None
    ]


def _command_lines(operation: Operation) -> list[str]:
    """The `az` command lines (continuations joined) in the row's files that its `what` names."""
    lines: list[str] = []
    for used in operation.used_in:
        text = (REPO_ROOT / used).read_text(encoding="utf-8").replace("\\\n", " ")
        for command in named_commands(operation.what):
            lines += [line for line in text.splitlines() if command in line]
    return lines


def required(operation: Operation) -> Operation:
    """The row, plus the key-listing action when its `az iot` calls do not use Entra ID."""
    if operation.what.startswith("az iot") and any(
        "--auth-type login" not in line for line in _command_lines(operation)
    ):
        return Operation(**{**operation.__dict__, "actions": (*operation.actions, IOT_KEY_ACTION)})
    return operation


@pytest.mark.parametrize(
    "operation",
    [
        pytest.param(
            row,
            id=f"{row.identity}:{row.id}",
            marks=[
                pytest.mark.xfail(
                    strict=True,
                    reason=f"issue {row.open_issue} (fixed elsewhere): then delete open_issue",
                )
            ]
            if row.open_issue
            else [],
        )
        for row in ROWS
    ],
)
def test_identity_holds_the_permissions_of_each_operation(
    operation: Operation,
    identities: dict[str, Identity],
    grants: list[Grant],
    roles: dict[str, Role],
    parents: dict[str, str],
) -> None:
    assert operation.identity in identities, f"{operation.file}: unknown identity"
    missing, held = missing_permissions(
        required(operation), identities[operation.identity], grants, roles, parents
    )
    assert missing == [], (
        f"identity {operation.identity!r}, operation {operation.id!r} ({operation.what}) on "
        f"{operation.scope}: missing {missing}; roles it holds there: {held or 'none'} "
        f"(source: {operation.source})"
    )


# ------------------------------------------------------------------------------------------------
# The matrix's inputs are well formed and complete
# ------------------------------------------------------------------------------------------------


def test_every_row_names_existing_files_scopes_and_sources(
    identities: dict[str, Identity], parents: dict[str, str]
) -> None:
    problems: list[str] = []
    ids: set[tuple[str, str]] = set()
    for row in ROWS:
        where = f"{row.file}:{row.id}"
        if (row.identity, row.id) in ids:
            problems.append(f"{where}: duplicate id for identity {row.identity}")
        ids.add((row.identity, row.id))
        if row.identity not in identities:
            problems.append(f"{where}: identity {row.identity!r} is not in identities.yaml")
        problems += [
            f"{where}: {used} does not exist"
            for used in row.used_in
            if not (REPO_ROOT / used).is_file()
        ]
        if row.scope != "subscription" and row.scope not in parents:
            problems.append(f"{where}: scope {row.scope!r} is no Terraform resource address")
        if not row.source.startswith("https://"):
            problems.append(f"{where}: source must be a documentation URL")
        if not row.actions and not row.data_actions:
            problems.append(f"{where}: lists no action")
    assert ROWS, "no operations found"
    assert problems == []


def test_role_definitions_are_vendored_with_their_source() -> None:
    files = sorted(ROLE_DEFINITIONS.glob("*.json"))
    assert len(files) >= 19
    for path in files:
        raw = json.loads(path.read_text(encoding="utf-8"))
        assert GUID.match(raw["id"]), path.name
        assert raw["source"].startswith(
            "https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/"
        ), path.name
        slug = re.sub(r"[^a-z0-9]+", "-", raw["roleName"].lower()).strip("-")
        assert path.stem == slug, f"{path.name}: name the file {slug}.json"
        for block in raw["permissions"]:
            assert set(block) == {"actions", "notActions", "dataActions", "notDataActions"}


def test_every_role_terraform_assigns_is_vendored(
    grants: list[Grant], roles: dict[str, Role]
) -> None:
    unknown = {g.where: g.role for g in grants if g.role not in roles}
    assert unknown == {}, "vendor these roles under infrastructure/permissions/role_definitions/"


def test_every_identity_receives_its_grants_from_terraform_or_a_document(
    identities: dict[str, Identity], grants: list[Grant]
) -> None:
    principals = {g.principal for g in grants}
    for identity in identities.values():
        assert identity.principals & principals or identity.external, identity.name
    for identity in identities.values():
        for principal in identity.principals:
            assert principal in principals, f"{identity.name}: no role assignment to {principal}"


def test_no_role_assignment_targets_whoever_runs_terraform(grants: list[Grant]) -> None:
    # `data.azurerm_client_config.current.object_id` is the laptop user on one apply and the IaC
    # identity on the next: the plan replaces the assignment, and until the apply runs, the refresh
    # runs without it. Grant a fixed principal (a variable) instead.
    moving = [
        g.where for g in grants if g.principal == "data.azurerm_client_config.current.object_id"
    ]
    assert moving == []


def test_no_terraform_assignment_repeats_one_made_outside_terraform(
    identities: dict[str, Identity], grants: list[Grant]
) -> None:
    # Azure refuses a second assignment of the same role to the same principal at the same scope
    # (RoleAssignmentExists): e.g. the Azure ML resource provider's own grants to the workspace.
    # https://learn.microsoft.com/azure/role-based-access-control/troubleshooting
    repeated = [
        g.where
        for identity in identities.values()
        for g in grants
        if g.principal in identity.principals and (g.role, g.scope) in identity.external
    ]
    assert repeated == []


def test_the_iac_identity_is_one_identity_in_both_roots(blocks: list[Block]) -> None:
    # The platform root's var.iac_principal_id is the bootstrap's identity: the variable says
    # where the value comes from, and the bootstrap outputs exactly that principal.
    output = next(
        b
        for b in blocks
        if b.kind == "output"
        and b.labels == ("iac_principal_id",)
        and b.file.parent.name == "bootstrap"
    )
    assert output.body["value"] == "${azurerm_user_assigned_identity.iac.principal_id}"
    variable = next(
        b
        for b in blocks
        if b.kind == "variable"
        and b.labels == ("iac_principal_id",)
        and b.file.parent.name == "infrastructure"
    )
    assert "output -raw iac_principal_id" in variable.body["description"]


def test_the_only_broad_grant_is_the_iac_identity_in_the_bootstrap(grants: list[Grant]) -> None:
    broad = {"Owner", "Contributor", "User Access Administrator"}
    broad |= {"Role Based Access Control Administrator"}
    assert sorted((g.where, g.principal, g.scope) for g in grants if g.role in broad) == [
        (
            "bootstrap:azurerm_role_assignment.iac['subscription_owner']",
            "bootstrap:azurerm_user_assigned_identity.iac.principal_id",
            "subscription",
        )
    ]


def test_wildcards_and_exclusions_follow_azure(roles: dict[str, Role]) -> None:
    # The rule the matrix rests on, on real definitions: Owner and Contributor have no data actions
    # (a vault secret read needs a data role), Contributor may not write role assignments,
    # AzureML Data Scientist may not change the workspace, AcrPush cannot run ACR Tasks.
    secret_read = "Microsoft.KeyVault/vaults/secrets/getSecret/action"
    assert not roles["Owner"].grants(secret_read, data=True)
    assert roles["Owner"].grants("Microsoft.Authorization/roleAssignments/write", data=False)
    assert not roles["Contributor"].grants(
        "Microsoft.Authorization/roleAssignments/write", data=False
    )
    assert roles["Key Vault Secrets User"].grants(secret_read, data=True)
    assert not roles["Key Vault Secrets User"].grants(
        "Microsoft.KeyVault/vaults/secrets/setSecret/action", data=True
    )
    data_scientist = roles["AzureML Data Scientist"]
    assert data_scientist.grants(
        "Microsoft.MachineLearningServices/workspaces/jobs/write", data=False
    )
    assert not data_scientist.grants(
        "Microsoft.MachineLearningServices/workspaces/write", data=False
    )
    assert not data_scientist.grants(
        "Microsoft.MachineLearningServices/workspaces/computes/cpu-cluster/write", data=False
    )
    assert not roles["AcrPush"].grants(
        "Microsoft.ContainerRegistry/registries/scheduleRun/action", data=False
    )
    assert roles["Reader"].grants("Microsoft.Storage/storageAccounts/read", data=False)
    assert matches("Microsoft.Devices/IotHubs/*", "microsoft.devices/iothubs/twins/read")


def test_scopes_contain_their_children(parents: dict[str, str]) -> None:
    chain = scope_chain("module.edge.azurerm_key_vault_secret.edge_pull_password", parents)
    assert chain == [
        "module.edge.azurerm_key_vault_secret.edge_pull_password",
        "azurerm_key_vault.this",
        "azurerm_resource_group.this",
        "subscription",
    ]
    assert scope_chain("bootstrap:azurerm_storage_account.state", parents)[1] == (
        "bootstrap:azurerm_resource_group.state"
    )


def test_every_az_command_of_the_pipelines_has_a_matrix_row() -> None:
    # The converse: a new `az` call in a pipeline needs a row (what it needs, and the proof that
    # the identity has it). Scripts an operator runs by hand are not pipeline-identity calls.
    covered = {
        (used, name) for row in ROWS for used in row.used_in for name in named_commands(row.what)
    }
    uncovered: list[str] = []
    for path in sorted((REPO_ROOT / "ado_pipelines" / "templates").rglob("*.yml")):
        relative = str(path.relative_to(REPO_ROOT))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.lstrip().startswith("#"):
                continue
            for match in AZ_COMMAND.finditer(line):
                words = ["az", *match.group(1).split()]
                command = " ".join(words)
                if any(command.startswith(free) for free in AZ_WITHOUT_PERMISSIONS):
                    continue
                if not any(used == relative and command.startswith(name) for used, name in covered):
                    uncovered.append(f"{relative}:{number}: {command}")
    assert uncovered == [], "add a row under infrastructure/permissions/operations/"


def test_the_matrix_files_are_where_the_readme_says() -> None:
    readme = (IDENTITIES.parent / "README.md").read_text(encoding="utf-8")
    for name in ("identities.yaml", "role_definitions/", "operations/", "open_issue"):
        assert name in readme
    assert OPERATIONS.is_dir()
    assert Path(__file__).name in readme
