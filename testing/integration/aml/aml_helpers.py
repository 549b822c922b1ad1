"""Shared values and builders for the Azure ML tests (imported by conftest and the tests)."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # azure-ai-ml's marshmallow schemas warn (RemovedInMarshmallow4Warning) while their classes
    # are defined; not ours, and the suite turns warnings into errors. Nothing warns once loaded.
    warnings.simplefilter("ignore")
    import azure.ai.ml
    import azure.ai.ml.entities  # noqa: F401

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ppe.aml.settings import AmlSettings

REPO_ROOT = Path(__file__).resolve().parents[3]
INFRASTRUCTURE = REPO_ROOT / "infrastructure"
CONDA_DIR = REPO_ROOT / "environments" / "conda"

# Values for the pipeline_variables keys that Terraform computes from a subscription; the cluster
# and model names are Terraform's own defaults (checked against infrastructure/ in
# test_terraform_names.py).
PIPELINE_VARIABLES = {
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
    "AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000002",
    "AZURE_LOCATION": "westeurope",
    "AZURE_RESOURCE_GROUP": "rg-ppe-dev-westeurope",
    "AML_WORKSPACE": "mlw-ppe-dev-ab12",
    "AML_GPU_CLUSTER": "gpu-cluster",
    "AML_CPU_CLUSTER": "cpu-cluster",
    "ACR_NAME": "crppedevab12",
    "ACR_LOGIN_SERVER": "crppedevab12.azurecr.io",
    "IOTHUB_NAME": "iot-ppe-dev-ab12",
    "IOTHUB_HOSTNAME": "iot-ppe-dev-ab12.azure-devices.net",
    "KEY_VAULT_NAME": "kv-ppe-dev-ab12",
    "STORAGE_ACCOUNT_NAME": "stppedevab12",
    "ADO_SERVICE_CONNECTION": "sc-ppe-azure",
    "ADO_ENVIRONMENT_STAGING": "staging",
    "ADO_ENVIRONMENT_PRODUCTION": "production",
    "EDGE_REGISTRY_TOKEN_NAME": "edge-pull",
    "EDGE_REGISTRY_PASSWORD_SECRET": "edge-registry-token-password",
    "EDGE_DEPLOYMENTS_TO_KEEP": "3",
    "MODEL_NAME": "ppe-hardhat-yolov3",
    "ADO_DEFAULT_BRANCH": "refs/heads/main",
    "TERRAFORM_STATE_KEY": "ppe-dev.tfstate",
    "TERRAFORM_VAR_FILE": "environments/dev.tfvars",
}


def load_write_env() -> ModuleType:
    """infrastructure/scripts/write_env.py, the script that writes .env from Terraform."""
    path = INFRASTRUCTURE / "scripts" / "write_env.py"
    if not path.is_file():
        pytest.fail(f"{path} is missing: the .env contract has no writer")
    spec = importlib.util.spec_from_file_location("write_env", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_dotenv(path: Path, variables: dict[str, str]) -> Path:
    """A .env exactly as write_env.py renders it."""
    path.write_text(load_write_env().render_dotenv(dict(sorted(variables.items()))))
    return path


def build(settings: AmlSettings, code_dir: Path, **options: Any) -> Any:
    import ppe
    from ppe.aml.pipeline import build_pipeline
    from ppe.aml.settings import JobOptions
    from ppe.config import load_config

    return build_pipeline(
        settings,
        JobOptions(config="smoke", **options),
        load_config("smoke"),
        package_dir=Path(ppe.__file__).resolve().parent,
        pyproject=REPO_ROOT / "pyproject.toml",
        conda_dir=CONDA_DIR,
        code_dir=code_dir,
    )
