"""Fixtures shared by the infrastructure tests: the parsed configuration and the schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .terraform_config import (
    INFRASTRUCTURE,
    Block,
    iter_blocks,
    load_schemas,
    parse_files,
    terraform_files,
)


@pytest.fixture(scope="session")
def parsed_infrastructure() -> dict[Path, dict[str, Any]]:
    """Every .tf file under infrastructure/, parsed by HashiCorp's HCL parser."""
    return parse_files(terraform_files(INFRASTRUCTURE))


@pytest.fixture(scope="session")
def blocks(parsed_infrastructure: dict[Path, dict[str, Any]]) -> list[Block]:
    """All top-level blocks of all parsed files (fails if any file did not parse)."""
    errors = {str(f): r["error"] for f, r in parsed_infrastructure.items() if "error" in r}
    if errors:
        pytest.fail(f"HCL parse errors: {errors}")
    return list(iter_blocks(parsed_infrastructure))


@pytest.fixture(scope="session")
def schemas() -> dict[str, dict[str, Any]]:
    """Vendored provider schemas (azurerm, azuredevops, time)."""
    return load_schemas()
