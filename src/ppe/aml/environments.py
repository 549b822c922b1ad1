"""Azure ML environments: ``environments/conda/*.yml`` on one base image, versioned by content.

An environment's version is the first 16 hex characters of the sha256 of its base image name and
conda file, so an unchanged environment keeps its version: :func:`ensure_registered` finds it in
the workspace and reuses it (and its built image) instead of registering and building it again.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ppe.errors import ConfigError

logger = logging.getLogger(__name__)

# Environment name -> conda file name under environments/conda/.
ENVIRONMENT_FILES: dict[str, str] = {
    "ppe-train-gpu": "train-gpu.yml",
    "ppe-cpu": "cpu.yml",
}
TRAIN_ENVIRONMENT = "ppe-train-gpu"
CPU_ENVIRONMENT = "ppe-cpu"
VERSION_LENGTH = 16


@dataclass(frozen=True)
class EnvironmentSpec:
    """One environment: name, content version, base image and conda file."""

    name: str
    version: str
    image: str
    conda_file: Path

    @property
    def reference(self) -> str:
        """The ``azureml:name:version`` string components use."""
        return f"azureml:{self.name}:{self.version}"

    def entity(self) -> Any:
        """The azure-ai-ml ``Environment`` entity (built offline)."""
        from azure.ai.ml.entities import Environment

        return Environment(
            name=self.name,
            version=self.version,
            image=self.image,
            conda_file=str(self.conda_file),
            description=f"ppe {self.name}: {self.conda_file.name} on {self.image}",
        )


def content_version(image: str, conda_file: Path) -> str:
    """The first :data:`VERSION_LENGTH` hex characters of sha256(image, NUL, conda file bytes)."""
    digest = hashlib.sha256(image.encode("utf-8") + b"\0" + conda_file.read_bytes())
    return digest.hexdigest()[:VERSION_LENGTH]


def environment_specs(conda_dir: Path, image: str) -> dict[str, EnvironmentSpec]:
    """The environments of :data:`ENVIRONMENT_FILES`, keyed by name.

    Args:
        conda_dir: The ``environments/conda`` folder.
        image: The base image.

    Raises:
        ConfigError: A conda file is missing.
    """
    specs = {}
    for name, file_name in ENVIRONMENT_FILES.items():
        path = conda_dir / file_name
        if not path.is_file():
            raise ConfigError(f"conda file {path} is missing; restore environments/conda/")
        specs[name] = EnvironmentSpec(name, content_version(image, path), image, path.resolve())
    return specs


def ensure_registered(ml_client: Any, spec: EnvironmentSpec) -> bool:
    """Register the environment unless that name and content version already exists.

    Args:
        ml_client: An ``MLClient`` (or anything with an ``environments`` operations object).
        spec: The environment.

    Returns:
        True when it was registered now, False when the workspace already had it.
    """
    from azure.core.exceptions import ResourceNotFoundError

    try:
        ml_client.environments.get(name=spec.name, version=spec.version)
    except ResourceNotFoundError:
        logger.info("registering environment %s:%s", spec.name, spec.version)
        ml_client.environments.create_or_update(spec.entity())
        return True
    logger.info("environment %s:%s unchanged: reused", spec.name, spec.version)
    return False
