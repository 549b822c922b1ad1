"""The permission matrix: what each identity does in Azure, checked against what Terraform grants.

Inputs, all under `infrastructure/permissions/` (see its README.md):

- `role_definitions/*.json`: Azure built-in roles as Microsoft publishes them (actions,
  notActions, dataActions, notDataActions), one file per role, each with its source page;
- `identities.yaml`: each identity name and the Terraform expression(s) of its principal ID;
- `operations/<area>.yaml`: every Azure operation an identity performs, with the actions and data
  actions it needs, the Terraform address of its target, and the documentation it comes from.

Terraform is read with HashiCorp's parser (the `blocks` fixture). Every `azurerm_role_assignment`
of the root and of the modules it calls is expanded (`for_each` over a local map included) into
(principal, role, scope), where principal and scope are Terraform addresses written as in the
root module (`module.aml.azurerm_machine_learning_workspace.this`). A scope contains an operation's
target when it is the target or one of its parents: a key vault contains its secrets, a resource
group the resources whose `resource_group_name` names it, and the subscription everything.

Azure's rule (https://learn.microsoft.com/azure/role-based-access-control/role-definitions):
a role grants an action when one of its `actions` matches it and none of its `notActions` does
(the same for data actions), wildcards `*` match any characters, case-insensitively; a principal's
effective permissions are the union over its role assignments at the target or any parent scope.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .terraform_config import INFRASTRUCTURE, Block

PERMISSIONS = INFRASTRUCTURE / "permissions"
ROLE_DEFINITIONS = PERMISSIONS / "role_definitions"
OPERATIONS = PERMISSIONS / "operations"
IDENTITIES = PERMISSIONS / "identities.yaml"

SUBSCRIPTION = "subscription"
# The separately applied roots, by the prefix their addresses carry in the matrix.
ROOTS: dict[str, Path] = {"": INFRASTRUCTURE, "bootstrap:": INFRASTRUCTURE / "bootstrap"}

# Azure child resources: the argument that names the parent resource. Everything else sits in the
# resource group its `resource_group_name` names.
PARENT_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "azurerm_key_vault_secret": ("key_vault_id",),
    "azurerm_key_vault_key": ("key_vault_id",),
    "azurerm_key_vault_certificate": ("key_vault_id",),
    "azurerm_machine_learning_compute_cluster": ("machine_learning_workspace_id",),
    "azurerm_machine_learning_compute_instance": ("machine_learning_workspace_id",),
    "azurerm_machine_learning_datastore_blobstorage": ("workspace_id",),
    "azurerm_storage_container": ("storage_account_id", "storage_account_name"),
    "azurerm_storage_queue": ("storage_account_id", "storage_account_name"),
    "azurerm_storage_table": ("storage_account_id", "storage_account_name"),
    "azurerm_container_registry_scope_map": ("container_registry_name",),
    "azurerm_container_registry_token": ("container_registry_name",),
    "azurerm_container_registry_token_password": ("container_registry_token_id",),
    "azurerm_iothub_shared_access_policy": ("iothub_name",),
    "azurerm_iothub_consumer_group": ("iothub_name",),
    "azurerm_iothub_route": ("iothub_name",),
    "azurerm_iothub_endpoint_eventhub": ("iothub_id",),
    "azurerm_iothub_endpoint_servicebus_queue": ("iothub_id",),
    "azurerm_iothub_endpoint_storage_container": ("iothub_id",),
    "azurerm_servicebus_queue": ("namespace_id",),
    "azurerm_servicebus_topic": ("namespace_id",),
    "azurerm_eventhub": ("namespace_id", "namespace_name"),
    "azurerm_eventhub_consumer_group": ("eventhub_name",),
}

_REFERENCE = re.compile(r"^[A-Za-z_][\w-]*(?:\.[\w-]+|\[\d+\]|\[\"[^\"]+\"\])*$")
_STEP = re.compile(r"\.([\w-]+)|\[(\d+)\]|\[\"([^\"]+)\"\]")


class UnresolvedError(Exception):
    """A Terraform expression the matrix cannot reduce to an address (say how to write it)."""


# ------------------------------------------------------------------------------------------------
# Roles
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    """One role definition: its permission blocks as Azure stores them."""

    name: str
    id: str
    permissions: tuple[Mapping[str, list[str]], ...]
    source: str

    def grants(self, operation: str, *, data: bool) -> bool:
        """Whether the role allows `operation` (an action, or a data action when `data`)."""
        allow, deny = ("dataActions", "notDataActions") if data else ("actions", "notActions")
        return any(
            any(matches(p, operation) for p in block.get(allow, []))
            and not any(matches(p, operation) for p in block.get(deny, []))
            for block in self.permissions
        )


def matches(pattern: str, operation: str) -> bool:
    """Azure RBAC wildcard match: `*` is any run of characters, case does not matter."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, operation, flags=re.IGNORECASE) is not None


def load_builtin_roles(folder: Path = ROLE_DEFINITIONS) -> dict[str, Role]:
    """The vendored built-in roles, keyed by role name."""
    roles: dict[str, Role] = {}
    for path in sorted(folder.glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        roles[raw["roleName"]] = Role(
            raw["roleName"], raw["id"], tuple(raw["permissions"]), raw["source"]
        )
    return roles


# ------------------------------------------------------------------------------------------------
# Terraform model: module instances, reference resolution
# ------------------------------------------------------------------------------------------------


@dataclass
class ModuleInstance:
    """One module instance: the root, or a `module` call (recursively)."""

    prefix: str
    folder: Path
    arguments: Mapping[str, Any] = field(default_factory=dict)
    parent: ModuleInstance | None = None
    resources: list[Block] = field(default_factory=list)
    data: list[Block] = field(default_factory=list)
    locals: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    children: dict[str, ModuleInstance] = field(default_factory=dict)


def build_instances(blocks: list[Block]) -> list[ModuleInstance]:
    """Every module instance of every root, the roots first."""
    by_folder: dict[Path, list[Block]] = {}
    for block in blocks:
        by_folder.setdefault(block.file.parent, []).append(block)

    def make(
        prefix: str, folder: Path, arguments: Mapping[str, Any], parent: ModuleInstance | None
    ) -> list[ModuleInstance]:
        instance = ModuleInstance(prefix, folder, arguments, parent)
        made = [instance]
        for block in by_folder.get(folder, []):
            if block.kind == "resource":
                instance.resources.append(block)
            elif block.kind == "data":
                instance.data.append(block)
            elif block.kind == "locals":
                instance.locals.update(block.body)
            elif block.kind == "output":
                instance.outputs[block.labels[0]] = block.body.get("value")
            elif block.kind == "module":
                source = block.body.get("source", "")
                if not source.startswith("./") and not source.startswith("../"):
                    continue
                child_folder = (folder / source).resolve()
                name = block.labels[0]
                children = make(f"{prefix}module.{name}.", child_folder, block.body, instance)
                instance.children[name] = children[0]
                made += children
        return made

    instances: list[ModuleInstance] = []
    for root_prefix, folder in ROOTS.items():
        instances += make(root_prefix, folder.resolve(), {}, None)
    return instances


def _steps(reference: str) -> list[str]:
    head = re.match(r"^[A-Za-z_][\w-]*", reference)
    assert head is not None
    steps = [head.group(0)]
    for match in _STEP.finditer(reference, head.end()):
        steps.append(match.group(1) or match.group(2) or match.group(3))
    return steps


def _join(steps: list[str]) -> str:
    text = steps[0]
    for step in steps[1:]:
        text += f"[{step}]" if step.isdigit() else f".{step}"
    return text


def resolve(value: Any, instance: ModuleInstance, each: tuple[Any, Any] | None = None) -> Any:
    """Reduce a Terraform value to a literal or to an address as written in its root.

    Args:
        value: A literal, or an hcl2json expression string (``"${...}"``).
        instance: The module instance the value is written in.
        each: ``(each.key, each.value)`` inside a `for_each` resource.

    Returns:
        The literal (str, dict, list...), or ``"@<address>"`` for a reference to a resource or
        data source attribute, e.g.
        ``"@module.aml.azurerm_user_assigned_identity.compute.principal_id"``.

    Raises:
        UnresolvedError: For expressions that are not a plain reference (conditionals, functions).
    """
    if not isinstance(value, str) or not (value.startswith("${") and value.endswith("}")):
        if isinstance(value, str) and "${" in value:
            raise UnresolvedError(f"string template {value!r} (write a plain reference)")
        return value
    expression = value[2:-1].strip()
    if not _REFERENCE.match(expression):
        raise UnresolvedError(f"expression {expression!r} (write a plain reference)")
    steps = _steps(expression)
    head = steps[0]
    if head == "var":
        if instance.parent is None:
            return "@" + instance.prefix + _join(steps)
        if steps[1] not in instance.arguments:
            raise UnresolvedError(f"{instance.prefix}var.{steps[1]} is not passed by the caller")
        resolved = resolve(instance.arguments[steps[1]], instance.parent, None)
        return _follow(resolved, steps[2:], instance)
    if head == "local":
        if steps[1] not in instance.locals:
            raise UnresolvedError(f"{instance.prefix}local.{steps[1]} does not exist")
        return _follow(resolve(instance.locals[steps[1]], instance, each), steps[2:], instance)
    if head == "each":
        if each is None:
            raise UnresolvedError("each.* outside a for_each resource")
        base = each[0] if steps[1] == "key" else each[1]
        return _follow(resolve(base, instance, None), steps[2:], instance)
    if head == "module":
        child = instance.children.get(steps[1])
        if child is None or steps[2] not in child.outputs:
            raise UnresolvedError(f"{instance.prefix}module.{steps[1]}.{steps[2]} does not exist")
        return _follow(resolve(child.outputs[steps[2]], child, None), steps[3:], instance)
    return "@" + instance.prefix + _join(steps)


def _follow(value: Any, rest: list[str], instance: ModuleInstance) -> Any:
    """Continue a traversal (`.key`, `[0]`) into a resolved value."""
    for step in rest:
        if isinstance(value, str) and value.startswith("@"):
            return value + "".join(f"[{s}]" if s.isdigit() else f".{s}" for s in rest)
        if isinstance(value, Mapping) and step in value:
            value = resolve(value[step], instance, None)
        elif isinstance(value, list) and step.isdigit():
            value = resolve(value[int(step)], instance, None)
        else:
            raise UnresolvedError(f"cannot read {step!r} of {value!r}")
    return value


def address_of(reference: str) -> str:
    """The resource (or data source) address of an attribute reference.

    ``@module.edge.azurerm_key_vault_secret.edge_pull_password.resource_versionless_id`` ->
    ``module.edge.azurerm_key_vault_secret.edge_pull_password``; ``@var.x`` stays ``var.x``.
    """
    text = reference.removeprefix("@")
    root, _, text = text.rpartition(":")
    root = f"{root}:" if root else ""
    steps = _steps(text)
    out: list[str] = []
    while steps and steps[0] == "module":
        out += steps[:2]
        steps = steps[2:]
    take = 3 if steps[0] == "data" else 2
    if steps[0] == "var":
        take = 2
    named = [s for s in steps if not s.isdigit()][:take]
    return root + ".".join(out + named)


# ------------------------------------------------------------------------------------------------
# Role assignments and the resource tree
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """One role assignment instance, with addresses as written in its root."""

    where: str
    principal: str
    role: str
    scope: str


def _instances_of(block: Block, instance: ModuleInstance) -> list[tuple[Any, Any] | None]:
    for_each = block.body.get("for_each")
    if for_each is None:
        return [None]
    collection = resolve(for_each, instance)
    if isinstance(collection, Mapping):
        return list(collection.items())
    if isinstance(collection, list):
        return [(item, item) for item in collection]
    if isinstance(collection, str) and collection.startswith("@var."):
        # A set variable of the root: one symbolic instance stands for all its elements.
        return [(collection + "[*]", collection + "[*]")]
    raise UnresolvedError(f"for_each of {block.address} is not a literal map or set")


def collect_grants(
    instances: Iterable[ModuleInstance], custom_roles: Mapping[str, Role]
) -> tuple[list[Grant], list[str]]:
    """Every role assignment instance, and one message per assignment that cannot be read."""
    grants: list[Grant] = []
    problems: list[str] = []
    for instance in instances:
        for block in instance.resources:
            if block.labels[0] != "azurerm_role_assignment":
                continue
            where = f"{instance.prefix}{block.address}"
            try:
                for each in _instances_of(block, instance):
                    key = f"[{each[0]!r}]" if each is not None else ""
                    role = _role_name(block.body, instance, each, custom_roles)
                    principal = resolve(block.body["principal_id"], instance, each)
                    scope = resolve(block.body["scope"], instance, each)
                    if not isinstance(scope, str) or not scope.startswith("@"):
                        raise UnresolvedError(f"scope {scope!r} is not a reference")
                    grants.append(
                        Grant(
                            where + key,
                            str(principal).removeprefix("@"),
                            role,
                            _scope_address(scope),
                        )
                    )
            except UnresolvedError as error:
                problems.append(f"{where}: {error}")
    return grants, problems


def _scope_address(reference: str) -> str:
    address = address_of(reference)
    if address.split(":")[-1] == "data.azurerm_subscription.current":
        return SUBSCRIPTION
    return address


def _role_name(
    body: Mapping[str, Any],
    instance: ModuleInstance,
    each: tuple[Any, Any] | None,
    custom_roles: Mapping[str, Role],
) -> str:
    if "role_definition_name" in body:
        name = resolve(body["role_definition_name"], instance, each)
        if not isinstance(name, str) or name.startswith("@"):
            raise UnresolvedError(f"role_definition_name {name!r} is not a literal")
        return name
    reference = resolve(body["role_definition_id"], instance, each)
    address = address_of(reference) if isinstance(reference, str) else ""
    if address in custom_roles:
        return address
    raise UnresolvedError(f"role_definition_id {reference!r}: use a role name or a custom role")


def collect_custom_roles(instances: Iterable[ModuleInstance]) -> dict[str, Role]:
    """Custom roles from `azurerm_role_definition` resources, keyed by address."""
    roles: dict[str, Role] = {}
    for instance in instances:
        for block in instance.resources:
            if block.labels[0] != "azurerm_role_definition":
                continue
            permissions = tuple(
                {
                    "actions": p.get("actions", []),
                    "notActions": p.get("not_actions", []),
                    "dataActions": p.get("data_actions", []),
                    "notDataActions": p.get("not_data_actions", []),
                }
                for p in block.body.get("permissions", [])
            )
            address = f"{instance.prefix}{block.address}"
            roles[address] = Role(address, address, permissions, block.file.name)
    return roles


def resource_parents(instances: Iterable[ModuleInstance]) -> dict[str, str]:
    """Each resource address -> the address of the Azure scope directly above it."""
    parents: dict[str, str] = {}
    for instance in instances:
        for block in instance.resources + instance.data:
            address = f"{instance.prefix}{block.address}"
            kind = block.labels[0]
            if kind == "azurerm_resource_group" or (
                block.kind == "data" and kind in ("azurerm_subscription", "azurerm_resource_group")
            ):
                parents[address] = SUBSCRIPTION
                continue
            for argument in (*PARENT_ARGUMENTS.get(kind, ()), "resource_group_name"):
                if argument not in block.body:
                    continue
                try:
                    parent = resolve(block.body[argument], instance)
                except UnresolvedError:
                    continue
                if isinstance(parent, str) and parent.startswith("@"):
                    parents[address] = address_of(parent)
                break
    return parents


def scope_chain(address: str, parents: Mapping[str, str]) -> list[str]:
    """The address and every scope above it, ending with the subscription."""
    chain = [address]
    while chain[-1] in parents and parents[chain[-1]] not in chain:
        chain.append(parents[chain[-1]])
    if chain[-1] != SUBSCRIPTION:
        chain.append(SUBSCRIPTION)
    return chain


# ------------------------------------------------------------------------------------------------
# Identities and operations
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """An identity of the matrix: its principal expressions and its grants outside Terraform."""

    name: str
    principals: frozenset[str]
    # (role, scope address) pairs granted outside Terraform, each documented.
    external: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Operation:
    """One row of an operations file."""

    file: str
    identity: str
    id: str
    what: str
    used_in: tuple[str, ...]
    scope: str
    actions: tuple[str, ...]
    data_actions: tuple[str, ...]
    source: str
    open_issue: str | None


def load_identities(path: Path = IDENTITIES) -> dict[str, Identity]:
    """identities.yaml as Identity objects."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))["identities"]
    return {
        name: Identity(
            name,
            frozenset(spec.get("principals", [])),
            tuple((g["role"], g["scope"]) for g in spec.get("granted_outside_terraform", [])),
        )
        for name, spec in raw.items()
    }


def load_operations(folder: Path = OPERATIONS) -> list[Operation]:
    """Every row of every operations file, in file order."""
    rows: list[Operation] = []
    for path in sorted(folder.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        for row in raw["operations"]:
            rows.append(
                Operation(
                    file=path.name,
                    identity=raw["identity"],
                    id=row["id"],
                    what=row["what"],
                    used_in=tuple(row["used_in"]),
                    scope=row["scope"],
                    actions=tuple(row.get("actions", [])),
                    data_actions=tuple(row.get("data_actions", [])),
                    source=row["source"],
                    open_issue=row.get("open_issue"),
                )
            )
    return rows


def missing_permissions(
    operation: Operation,
    identity: Identity,
    grants: Iterable[Grant],
    roles: Mapping[str, Role],
    parents: Mapping[str, str],
) -> tuple[list[str], list[str]]:
    """What the identity lacks for the operation, and the roles it holds at or above the target.

    Returns:
        ``(missing, held)``: each missing action as ``"action X"`` / ``"data action X"``; the held
        roles as ``"<role> at <scope>"``.
    """
    chain = set(scope_chain(operation.scope, parents))
    held: list[tuple[str, str]] = [
        (g.role, g.scope) for g in grants if g.principal in identity.principals and g.scope in chain
    ]
    held += [(role, scope) for role, scope in identity.external if scope in chain]
    missing = [
        f"action {action}"
        for action in operation.actions
        if not any(roles[role].grants(action, data=False) for role, _ in held if role in roles)
    ] + [
        f"data action {action}"
        for action in operation.data_actions
        if not any(roles[role].grants(action, data=True) for role, _ in held if role in roles)
    ]
    return missing, [f"{role} at {scope}" for role, scope in held]
