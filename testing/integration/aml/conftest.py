"""Fixtures for the Azure ML tests: a .env written by Terraform's script, settings, a built job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ppe.aml.settings import AmlSettings, load_settings

from .aml_helpers import PIPELINE_VARIABLES, build, write_dotenv


@pytest.fixture(scope="session")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dotenv(tmp_path_factory.mktemp("env") / ".env", PIPELINE_VARIABLES)


@pytest.fixture(scope="session")
def settings(env_file: Path) -> AmlSettings:
    # Only the .env: the test process's own environment must not leak into the names.
    return load_settings({}, env_file)


@pytest.fixture(scope="session")
def built(settings: AmlSettings, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build(settings, tmp_path_factory.mktemp("aml") / "code")
