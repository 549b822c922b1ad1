"""Model registry: one interface, a local embedded backend and an Azure ML backend.

:func:`get_registry` picks the backend from ``config.registry.backend``. Backends are imported
on demand (``filelock``/``azure-ai-ml``), so importing this package stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ppe.config import Config, RegistryConfig
from ppe.errors import ConfigError, RegistryError
from ppe.registry.base import (
    CHAMPION,
    RECORDED_TAGS,
    ModelRegistry,
    ModelVersion,
    VersionRef,
)

__all__ = [
    "CHAMPION",
    "RECORDED_TAGS",
    "ModelRegistry",
    "ModelVersion",
    "RegistryError",
    "VersionRef",
    "get_registry",
]


def get_registry(
    config: Config | RegistryConfig, *, ml_client: Any | None = None, root: Path | None = None
) -> ModelRegistry:
    """The registry backend the config names.

    Args:
        config: The whole config or its ``registry`` section.
        ml_client: An ``azure.ai.ml.MLClient`` for the ``azureml`` backend (required there;
            the CLI builds one from the workspace settings).
        root: Overrides ``registry.root`` for the ``local`` backend.

    Returns:
        A :class:`ModelRegistry`.

    Raises:
        ConfigError: The ``azureml`` backend without an ``ml_client``.
    """
    section = config.registry if isinstance(config, Config) else config
    if section.backend == "local":
        from ppe.registry.local import LocalRegistry

        return LocalRegistry(root if root is not None else section.root)
    if ml_client is None:
        raise ConfigError(
            "registry.backend is 'azureml' but no Azure ML client was given; pass ml_client "
            "(the CLI builds one from the workspace settings Terraform writes to the "
            "environment or .env, see ppe.aml.settings), or set registry.backend=local"
        )
    from ppe.registry.azureml import AzureMLRegistry

    return AzureMLRegistry(ml_client)
