"""Every resource, data source and provider block against the vendored provider schemas."""

from __future__ import annotations

from typing import Any

import pytest

from .terraform_config import Block, check_body


def _provider_of(type_name: str) -> str:
    return type_name.split("_", 1)[0]


def test_every_resource_and_data_block_matches_its_provider_schema(
    blocks: list[Block], schemas: dict[str, dict[str, Any]]
) -> None:
    problems: list[str] = []
    checked = 0
    for block in blocks:
        if block.kind not in ("resource", "data"):
            continue
        type_name, _ = block.labels
        provider = _provider_of(type_name)
        assert provider in schemas, f"{block.address}: no vendored schema for provider {provider}"
        schema = schemas[provider][block.kind].get(type_name)
        if schema is None:
            problems.append(f"{block.file.name}: {block.kind} type {type_name} does not exist")
            continue
        problems += check_body(block.body, schema, f"{block.file.name}: {block.address}")
        checked += 1
    assert problems == []
    assert checked >= 40


def test_provider_blocks_match_their_schemas(
    blocks: list[Block], schemas: dict[str, dict[str, Any]]
) -> None:
    providers = [b for b in blocks if b.kind == "provider"]
    assert {b.labels[0] for b in providers} == {"azurerm", "azuredevops"}
    for block in providers:
        schema = schemas[block.labels[0]]["provider"]
        assert check_body(block.body, schema, block.address) == []


def test_provider_blocks_only_in_root_stacks(blocks: list[Block]) -> None:
    for block in blocks:
        if block.kind == "provider":
            assert "modules" not in block.file.parts, f"{block.file}: provider block in a module"


def test_required_providers_have_lower_and_upper_bounds(blocks: list[Block]) -> None:
    terraform_blocks = [b for b in blocks if b.kind == "terraform"]
    assert len(terraform_blocks) >= 6  # root, 3 modules, bootstrap, example
    for block in terraform_blocks:
        where = block.file
        assert ">=" in block.body["required_version"] and "<" in block.body["required_version"]
        for requirements in block.body["required_providers"]:
            for name, requirement in requirements.items():
                version = requirement["version"]
                assert ">=" in version and "< " in version, f"{where}: {name} {version}"


def test_root_uses_a_partial_azurerm_backend(blocks: list[Block]) -> None:
    root = [b for b in blocks if b.kind == "terraform" and b.file.name == "terraform.tf"]
    backends = [b.body["backend"] for b in root if "backend" in b.body]
    assert len(backends) == 1
    assert backends[0] == {"azurerm": [{}]}, "keep the backend partial: values go in backend.hcl"
    assert [b.file.parent.name for b in root if "backend" in b.body] == ["infrastructure"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {
                "name": "x",
                "location": "y",
                "machine_learning_workspace_id": "z",
                "vm_size": "a",
                "vm_priority": "Dedicated",
            },
            'missing required argument "scale_settings"',
        ),
        (
            {
                "name": "x",
                "location": "y",
                "machine_learning_workspace_id": "z",
                "vm_size": "a",
                "vm_priority": "Dedicated",
                "scale_settings": [{"min_node_count": 0}],
            },
            'missing required argument "max_node_count"',
        ),
        (
            {
                "name": "x",
                "location": "y",
                "machine_learning_workspace_id": "z",
                "vm_size": "a",
                "vm_priority": "Dedicated",
                "sku": "Basic",
                "scale_settings": [
                    {
                        "min_node_count": 0,
                        "max_node_count": 1,
                        "scale_down_nodes_after_idle_duration": "PT15M",
                    }
                ],
            },
            'unsupported argument "sku"',
        ),
        (
            {
                "name": "x",
                "location": "y",
                "machine_learning_workspace_id": "z",
                "vm_size": "a",
                "vm_priority": "Dedicated",
                "identity": {"type": "SystemAssigned"},
                "scale_settings": [
                    {
                        "min_node_count": 0,
                        "max_node_count": 1,
                        "scale_down_nodes_after_idle_duration": "PT15M",
                    }
                ],
            },
            '"identity" is a block, written as an attribute',
        ),
        (
            {
                "name": "x",
                "location": "y",
                "machine_learning_workspace_id": "z",
                "vm_size": "a",
                "vm_priority": "Dedicated",
                "dynamic": {"ssh": [{"content": [{"admin_usr": "a"}]}]},
                "scale_settings": [
                    {
                        "min_node_count": 0,
                        "max_node_count": 1,
                        "scale_down_nodes_after_idle_duration": "PT15M",
                    }
                ],
            },
            'unsupported argument "admin_usr"',
        ),
    ],
)
def test_checker_catches_schema_mistakes(
    schemas: dict[str, dict[str, Any]], body: dict[str, Any], expected: str
) -> None:
    schema = schemas["azurerm"]["resource"]["azurerm_machine_learning_compute_cluster"]
    problems = check_body(body, schema, "gpu")
    assert any(expected in p for p in problems), problems


def test_checker_catches_azuredevops_mistakes(schemas: dict[str, dict[str, Any]]) -> None:
    schema = schemas["azuredevops"]["resource"]["azuredevops_variable_group"]
    body = {"project_id": "p", "name": "n", "variable": [{"name": "A", "valeu": "b"}]}
    assert check_body(body, schema, "vg") == ['vg.variable: unsupported argument "valeu"']
