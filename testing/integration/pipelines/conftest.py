"""Fixtures for the Azure DevOps pipeline tests: Terraform's names and the real ``ppe`` parser."""

from __future__ import annotations

import argparse

import pytest

from .ado import TerraformFacts, terraform_facts


@pytest.fixture(scope="session")
def terraform() -> TerraformFacts:
    """What infrastructure/ creates for Azure DevOps, evaluated with its default variables."""
    return terraform_facts()


@pytest.fixture(scope="session")
def ppe_parser() -> argparse.ArgumentParser:
    """The real ``ppe`` argument parser (every subcommand registered)."""
    from ppe.cli import get_args_parser

    return get_args_parser()


@pytest.fixture(scope="session")
def groups(terraform: TerraformFacts) -> dict[str, set[str]]:
    """Variable groups the pipelines may link: Terraform's, with its keys."""
    return {terraform.variable_group: terraform.variable_group_keys}
