"""The Azure ML model registry backend (azure-ai-ml ``MLClient.models``).

Models are registered as ``Model(type="custom_model", path=<folder>, tags=..., properties=...)``
with no version, so the workspace assigns the next integer version. The champion is a tag:
``champion=true`` plus ``champion_since=<UTC timestamp>`` on exactly one version in the steady
state.

Moving the champion, and its race: Azure ML has no transaction or compare-and-swap on model
tags, so the move is two steps. :meth:`AzureMLRegistry.set_champion` first tags the new version
(``champion=true``, ``champion_since=now``), then removes the tags from every other version whose
``champion_since`` is not newer than its own. Between the two steps two versions carry the tag
(never zero), and two concurrent moves can both leave their tag in place. Readers therefore
resolve the champion as the tagged version with the latest ``champion_since`` (then the highest
version), which makes the last move win; the next move clears the leftover tag. Clock skew
between the writers' machines decides which of two near-simultaneous moves is "last". Run
promotions from one pipeline at a time (Azure DevOps exclusive lock) to avoid the window.

azure-ai-ml is imported inside the methods: it takes about a second to import.
"""

from __future__ import annotations

import builtins
import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ppe.errors import RegistryError
from ppe.registry.base import (
    CHAMPION,
    ModelRegistry,
    ModelVersion,
    VersionRef,
    check_dest,
    check_name,
    check_strings,
)

logger = logging.getLogger(__name__)

CHAMPION_TAG = "champion"
CHAMPION_SINCE_TAG = "champion_since"
_MARKER_TAGS = (CHAMPION_TAG, CHAMPION_SINCE_TAG)


def build_model_entity(
    model_dir: Path,
    name: str,
    tags: Mapping[str, str] | None = None,
    properties: Mapping[str, str] | None = None,
    description: str | None = None,
) -> Any:
    """The azure-ai-ml ``Model`` entity for a model folder (built offline, no workspace needed).

    Args:
        model_dir: Local folder with the model files (uploaded as a whole on create).
        name: Model name.
        tags: String tags; ``champion``/``champion_since`` are reserved for the marker.
        properties: String properties.
        description: Optional description.

    Returns:
        An ``azure.ai.ml.entities.Model`` of type ``custom_model`` with no version (the
        workspace assigns the next one).

    Raises:
        RegistryError: Bad name, non-string tags, or a reserved tag.
    """
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Model

    clean_tags = check_strings(tags, "tag")
    reserved = sorted(set(clean_tags) & set(_MARKER_TAGS))
    if reserved:
        raise RegistryError(
            f"tags {reserved} are reserved for the champion marker; use set_champion instead"
        )
    return Model(
        name=check_name(name),
        path=str(model_dir),
        type=AssetTypes.CUSTOM_MODEL,
        tags=clean_tags,
        properties=check_strings(properties, "property"),
        description=description,
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AzureMLRegistry(ModelRegistry):
    """Model registry on an Azure ML workspace.

    Args:
        ml_client: An ``azure.ai.ml.MLClient`` for the workspace (anything with a compatible
            ``models`` attribute: ``create_or_update``, ``list``, ``get``, ``download``).
        clock: Returns the current UTC time (for ``champion_since``).
    """

    def __init__(self, ml_client: Any, clock: Callable[[], datetime] = _utc_now) -> None:
        self.ml_client = ml_client
        self.clock = clock

    def __repr__(self) -> str:
        return f"AzureMLRegistry(workspace={getattr(self.ml_client, 'workspace_name', None)!r})"

    @property
    def _models(self) -> Any:
        return self.ml_client.models

    @staticmethod
    def _not_found() -> type[Exception]:
        from azure.core.exceptions import ResourceNotFoundError

        return ResourceNotFoundError

    @staticmethod
    def _since(model: Any) -> str:
        return str((model.tags or {}).get(CHAMPION_SINCE_TAG, ""))

    @staticmethod
    def _is_tagged(model: Any) -> bool:
        return str((model.tags or {}).get(CHAMPION_TAG, "")).lower() == "true"

    def _raw_list(self, name: str) -> builtins.list[Any]:
        try:
            models = builtins.list(self._models.list(name=check_name(name)))
        except self._not_found():
            return []
        return sorted(models, key=lambda m: int(m.version))

    def _resolve_champion(self, models: builtins.list[Any]) -> Any | None:
        tagged = [m for m in models if self._is_tagged(m)]
        if not tagged:
            return None
        return max(tagged, key=lambda m: (self._since(m), int(m.version)))

    def _to_version(self, model: Any, champion: bool) -> ModelVersion:
        tags = {k: str(v) for k, v in (model.tags or {}).items() if k not in _MARKER_TAGS}
        context = getattr(model, "creation_context", None)
        created = getattr(context, "created_at", None)
        return ModelVersion(
            name=str(model.name),
            version=int(model.version),
            tags=tags,
            properties={k: str(v) for k, v in (model.properties or {}).items()},
            champion=champion,
            created_at=created.isoformat() if isinstance(created, datetime) else created,
            source=str(model.path) if model.path is not None else None,
        )

    def register(
        self,
        model_dir: Path,
        name: str,
        tags: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> ModelVersion:
        """Upload ``model_dir`` as the next version of ``name`` (``create_or_update``)."""
        source = Path(model_dir)
        if not source.is_dir() or not any(p.is_file() for p in source.rglob("*")):
            raise RegistryError(f"model folder {source}: missing or holds no files")
        entity = build_model_entity(source, name, tags, properties)
        created = self._models.create_or_update(entity)
        logger.info("registered %s version %s in Azure ML", name, created.version)
        return self._to_version(created, champion=False)

    def list(self, name: str) -> builtins.list[ModelVersion]:
        """All versions of ``name``, oldest first."""
        models = self._raw_list(name)
        champion = self._resolve_champion(models)
        return [self._to_version(m, champion is not None and m is champion) for m in models]

    def champion(self, name: str) -> ModelVersion | None:
        """The champion (the tagged version with the latest ``champion_since``), or None."""
        model = self._resolve_champion(self._raw_list(name))
        return None if model is None else self._to_version(model, champion=True)

    def get(self, name: str, version: VersionRef) -> ModelVersion:
        """One version, or the champion with ``version="champion"``."""
        if version == CHAMPION:
            found = self.champion(name)
            if found is None:
                raise RegistryError(f"model {name!r} has no champion in the workspace yet")
            return found
        try:
            model = self._models.get(name=check_name(name), version=str(version))
        except self._not_found():
            raise RegistryError(
                f"model {name!r} has no version {version} in the workspace"
            ) from None
        current = self._resolve_champion(self._raw_list(name))
        is_champion = current is not None and int(current.version) == int(model.version)
        return self._to_version(model, champion=is_champion)

    def set_champion(self, name: str, version: int) -> ModelVersion:
        """Tag ``version`` as champion, then untag older champions (see the module docstring)."""
        try:
            target = self._models.get(name=check_name(name), version=str(version))
        except self._not_found():
            raise RegistryError(
                f"model {name!r} has no version {version} in the workspace"
            ) from None
        stamp = self.clock().astimezone(UTC).isoformat(timespec="microseconds")
        target.tags = {**(target.tags or {}), CHAMPION_TAG: "true", CHAMPION_SINCE_TAG: stamp}
        updated = self._models.create_or_update(target)
        for other in self._raw_list(name):
            if int(other.version) == int(version) or not self._is_tagged(other):
                continue
            if self._since(other) > stamp:
                logger.warning(
                    "version %s of %s was made champion after us (%s > %s): leaving it",
                    other.version,
                    name,
                    self._since(other),
                    stamp,
                )
                continue
            other.tags = {k: v for k, v in (other.tags or {}).items() if k not in _MARKER_TAGS}
            self._models.create_or_update(other)
        logger.info("champion of %s is now version %s", name, version)
        return self._to_version(updated, champion=True)

    def download(self, name: str, version: VersionRef, dest: Path) -> Path:
        """Download one version's files into ``dest`` (flattening the SDK's ``<name>/`` layout)."""
        dest = Path(dest)
        check_dest(dest)
        chosen = self.get(name, version)
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            self._models.download(
                name=name, version=str(chosen.version), download_path=str(staging)
            )
            # The SDK writes <download_path>/<name>/<artifact folder name>/... for folders.
            root = staging / name
            if not root.is_dir():
                raise RegistryError(
                    f"Azure ML download of {name}:{chosen.version} produced no {root} folder"
                )
            entries = builtins.list(root.iterdir())
            if len(entries) == 1 and entries[0].is_dir():
                root = entries[0]
            dest.mkdir(parents=True, exist_ok=True)
            for entry in root.iterdir():
                shutil.move(str(entry), str(dest / entry.name))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        logger.info("downloaded %s version %d to %s", name, chosen.version, dest)
        return dest
