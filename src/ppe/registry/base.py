"""The model-registry interface shared by the local and the Azure ML backends.

Semantics follow Azure ML models: a model has a ``name`` and integer ``version`` numbers starting
at 1 (assigned by the registry), string ``tags`` and ``properties``, and the registry marks at
most one version per name as the **champion** (on Azure ML a ``champion=true`` tag). Versions are
immutable once registered; only the champion marker moves.

Standard library only: the CLI imports this at start-up.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ppe.errors import RegistryError

CHAMPION: Literal["champion"] = "champion"
# The tags `ppe register` records (callers pass the values).
TAG_MAP50 = "map50"
TAG_DATA_HASH = "data_hash"
TAG_CONFIG_HASH = "config_hash"
TAG_GIT_COMMIT = "git_commit"
TAG_RUN_ID = "run_id"
RECORDED_TAGS = (TAG_MAP50, TAG_DATA_HASH, TAG_CONFIG_HASH, TAG_GIT_COMMIT, TAG_RUN_ID)

MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")

VersionRef = int | Literal["champion"]


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version.

    Attributes:
        name: Model name.
        version: Integer version, from 1.
        tags: String tags (map50, data_hash, config_hash, git_commit, run_id, ...); the champion
            marker is not among them, see ``champion``.
        properties: String properties (immutable metadata).
        champion: Whether this version is the current champion.
        created_at: ISO-8601 UTC creation time, when the backend knows it.
        source: Where the files live (a folder for the local backend, an ``azureml://`` URI).
    """

    name: str
    version: int
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    champion: bool = False
    created_at: str | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-compatible form."""
        return {
            "name": self.name,
            "version": self.version,
            "champion": self.champion,
            "tags": dict(self.tags),
            "properties": dict(self.properties),
            "created_at": self.created_at,
            "source": self.source,
        }


def check_name(name: str) -> str:
    """Validate a model name (Azure ML's rules: letters, digits, ``.``, ``_``, ``-``)."""
    if not MODEL_NAME_PATTERN.match(name):
        raise RegistryError(
            f"model name {name!r}: use 1-255 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return name


def check_strings(mapping: Mapping[str, object] | None, what: str) -> dict[str, str]:
    """Tags and properties must be str -> str (as on Azure ML)."""
    out: dict[str, str] = {}
    for key, value in (mapping or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise RegistryError(
                f"{what} {key!r}: keys and values must be strings (got {type(value).__name__}); "
                "format numbers with str() before registering"
            )
        out[key] = value
    return out


def parse_version_ref(value: str | int) -> VersionRef:
    """``"champion"`` or a positive integer version."""
    if value == CHAMPION:
        return CHAMPION
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise RegistryError(f"version {value!r}: give a positive integer or 'champion'") from None
    if number < 1:
        raise RegistryError(f"version {value!r}: versions start at 1")
    return number


_VersionList = list[ModelVersion]


class ModelRegistry(abc.ABC):
    """A model registry with Azure ML model semantics."""

    @abc.abstractmethod
    def register(
        self,
        model_dir: Path,
        name: str,
        tags: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> ModelVersion:
        """Register the files of ``model_dir`` as the next version of ``name``.

        Args:
            model_dir: Folder holding the model files (copied or uploaded as a whole).
            name: Model name.
            tags: String tags (mutable metadata).
            properties: String properties (immutable metadata).

        Returns:
            The new version (not champion; see :meth:`set_champion`).
        """

    @abc.abstractmethod
    def list(self, name: str) -> _VersionList:
        """All versions of ``name``, oldest first (empty if the model is unknown)."""

    @abc.abstractmethod
    def get(self, name: str, version: VersionRef) -> ModelVersion:
        """One version, or the champion with ``version="champion"``.

        Raises:
            RegistryError: No such version, or no champion.
        """

    @abc.abstractmethod
    def champion(self, name: str) -> ModelVersion | None:
        """The champion version of ``name``, or None when none is marked."""

    @abc.abstractmethod
    def set_champion(self, name: str, version: int) -> ModelVersion:
        """Mark ``version`` as the champion (unmarking the previous one).

        Raises:
            RegistryError: No such version.
        """

    @abc.abstractmethod
    def download(self, name: str, version: VersionRef, dest: Path) -> Path:
        """Copy the model files of one version (or the champion) into ``dest``.

        Args:
            name: Model name.
            version: Integer version or ``"champion"``.
            dest: Target folder; created, and must be empty if it exists.

        Returns:
            ``dest``, holding the model files.
        """


def check_dest(dest: Path) -> None:
    """A download target must be absent or an empty folder (nothing is overwritten)."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise RegistryError(f"download destination {dest} exists and is not an empty folder")
