"""Names of the Azure resources, read from Terraform's ``pipeline_variables`` (never hard-coded).

Terraform writes them into the Azure DevOps variable group (pipelines see them as environment
variables) and, through ``infrastructure/scripts/write_env.py``, into a ``.env`` file at the
repository root. :func:`load_settings` overlays the process environment on that file, so a
pipeline variable wins over a stale ``.env``.

Standard library only: the CLI imports this module at start-up. The functions here take the
environment as an argument; only the command handlers read ``os.environ``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ppe.errors import ConfigError

logger = logging.getLogger(__name__)

ENV_FILE_NAME = ".env"
ENV_FIX = (
    "run `python infrastructure/scripts/write_env.py` after terraform apply, "
    "or set it in the environment"
)

# Settings field -> the pipeline_variables key it comes from. Every key here must be one of
# Terraform's pipeline_variables keys (a test checks this against infrastructure/locals.tf).
SETTINGS_KEYS: dict[str, str] = {
    "subscription_id": "AZURE_SUBSCRIPTION_ID",
    "resource_group": "AZURE_RESOURCE_GROUP",
    "workspace": "AML_WORKSPACE",
    "gpu_cluster": "AML_GPU_CLUSTER",
    "cpu_cluster": "AML_CPU_CLUSTER",
    "model_name": "MODEL_NAME",
}

# The base image of both environments: Ubuntu 24.04 with Open MPI and the Azure ML run-time
# pieces, no CUDA. TensorFlow's `and-cuda` extra brings the CUDA and cuDNN libraries as pip
# wheels, so the same image serves the GPU cluster (the host supplies the driver) and the CPU one.
# Pinned to a dated release (see the image's release notes in Azure/AzureML-Containers): a
# `latest` tag would change the environment under an unchanged version. Bump it deliberately.
BASE_IMAGE = "mcr.microsoft.com/azureml/openmpi5.0-ubuntu24.04:20250303.v1"

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def read_env_file(path: Path) -> dict[str, str]:
    r"""Parse a ``.env`` file: ``KEY=value`` lines, as written by ``write_env.py``.

    Blank lines and ``#`` comments are skipped, an ``export`` prefix is allowed, values may be
    single- or double-quoted (double quotes understand ``\\"`` and ``\\\\``), and an unquoted value
    ends at `` #``. No variable expansion.

    Args:
        path: The file; a missing file reads as empty.

    Returns:
        The keys and values, in file order.

    Raises:
        ConfigError: A line that is not ``KEY=value``, naming the file and line.
    """
    if not path.is_file():
        return {}
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise ConfigError(f"{path}:{number}: expected KEY=value, got {raw.strip()!r}")
        values[key] = _unquote(value.strip(), f"{path}:{number}")
    return values


def _unquote(value: str, where: str) -> str:
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = value.find(quote, 1)
        if quote == '"':
            out, index = [], 1
            while index < len(value):
                char = value[index]
                if char == "\\" and index + 1 < len(value):
                    out.append(value[index + 1])
                    index += 2
                    continue
                if char == '"':
                    return "".join(out)
                out.append(char)
                index += 1
            end = -1
        if end < 0:
            raise ConfigError(f"{where}: unterminated {quote} quote")
        return value[1:end]
    comment = value.find(" #")
    return (value[:comment] if comment >= 0 else value).strip()


def merged_environment(environ: Mapping[str, str], env_file: Path | None) -> dict[str, str]:
    """The ``.env`` values with the process environment on top (non-empty values win)."""
    merged = read_env_file(env_file) if env_file is not None else {}
    merged.update({key: value for key, value in environ.items() if value})
    return merged


@dataclass(frozen=True)
class AmlSettings:
    """The workspace and the names inside it that jobs use (all from Terraform's outputs).

    Attributes:
        subscription_id: Azure subscription (``AZURE_SUBSCRIPTION_ID``).
        resource_group: Resource group of the workspace (``AZURE_RESOURCE_GROUP``).
        workspace: Azure ML workspace name (``AML_WORKSPACE``).
        gpu_cluster: GPU compute cluster that trains (``AML_GPU_CLUSTER``).
        cpu_cluster: CPU compute cluster for the other steps (``AML_CPU_CLUSTER``).
        model_name: Registered model name (``MODEL_NAME``).
    """

    subscription_id: str
    resource_group: str
    workspace: str
    gpu_cluster: str
    cpu_cluster: str
    model_name: str

    def job_environment(self) -> dict[str, str]:
        """Variables a job needs to reach the workspace itself (the Azure ML registry backend).

        Returns the contract's keys, plus ``AZUREML_WORKSPACE_NAME``, the name
        :mod:`ppe.cli.registry` reads for the workspace.
        """
        values = {SETTINGS_KEYS[name]: getattr(self, name) for name in SETTINGS_KEYS}
        values["AZUREML_WORKSPACE_NAME"] = self.workspace
        return values


def load_settings(environ: Mapping[str, str], env_file: Path | None = None) -> AmlSettings:
    """Read the settings from the environment overlaid on ``env_file``.

    Args:
        environ: The process environment (the caller passes ``os.environ``).
        env_file: The ``.env`` written from Terraform's outputs, or None.

    Returns:
        The settings.

    Raises:
        ConfigError: A key is missing or empty; the one-line message names it and the fix.
    """
    values = merged_environment(environ, env_file)
    missing = [key for key in SETTINGS_KEYS.values() if not values.get(key, "").strip()]
    if missing:
        where = f" (looked in the environment and {env_file})" if env_file is not None else ""
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigError(f"{', '.join(missing)} {verb} not set{where}: {ENV_FIX}")
    return AmlSettings(**{name: values[key].strip() for name, key in SETTINGS_KEYS.items()})


@dataclass(frozen=True)
class JobOptions:
    """How one pipeline job is built (the knobs that are not resource names).

    Attributes:
        config: Packaged profile name or YAML path of the ppe config the steps run with.
        overrides: ``section.key=value`` overrides applied to it.
        gpu_nodes: Nodes of the GPU cluster the train step uses; more than one runs
            ``tf.distribute.MultiWorkerMirroredStrategy`` through Azure ML's TensorFlow
            distribution (one worker per node).
        experiment: Azure ML experiment name.
        data_name: Name of the ``uri_folder`` data asset the pipeline trains on.
        data_version: Its version, or ``latest``.
        tags: Tags on the pipeline job (strings).
    """

    config: str = "demo"
    overrides: tuple[str, ...] = ()
    gpu_nodes: int = 1
    experiment: str = "ppe-hardhat"
    data_name: str = "ppe-hardhat-voc"
    data_version: str = "latest"
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.gpu_nodes < 1:
            raise ConfigError(f"gpu nodes {self.gpu_nodes}: give 1 or more")
        if not self.data_name or not self.data_version:
            raise ConfigError("the data asset needs a name and a version (or 'latest')")

    def data_uri(self) -> str:
        """The data asset reference the pipeline's ``data`` input points to."""
        if self.data_version == "latest":
            return f"azureml:{self.data_name}@latest"
        return f"azureml:{self.data_name}:{self.data_version}"
