"""The embedded model registry: a folder with Azure ML model semantics, safe across processes.

Layout under the registry root::

    <root>/<name>/index.json            {"schema_version", "name", "versions": [1, 2, ...],
                                         "champion": 2 | null, "updated_at"}
    <root>/<name>/<version>/meta.json   {"schema_version", "name", "version", "tags",
                                         "properties", "created_at", "files": {path: sha256}}
    <root>/<name>/<version>/model/...   the registered model files
    <root>/<name>/.lock                 the inter-process lock (filelock)

Every operation on a model name holds ``.lock``. A register copies the files into a hidden
staging folder, writes its ``meta.json``, renames it to ``<version>/`` and then replaces
``index.json`` (write to a temporary file, then rename): ``index.json`` is the commit point. So
two processes registering at once get distinct versions, and the champion always names a listed
version. Before changing anything each operation checks the whole model folder; a registry
damaged by hand (unreadable or inconsistent ``index.json``/``meta.json``, a missing or unlisted
version folder) raises :class:`~ppe.registry.base.RegistryError` naming the file and the fix, and
nothing is written.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import logging
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ppe.errors import RegistryError
from ppe.files import sha256_file, write_json_atomic
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

SCHEMA_VERSION = 1
INDEX_FILE = "index.json"
META_FILE = "meta.json"
MODEL_SUBDIR = "model"
LOCK_FILE = ".lock"
STAGING_PREFIX = ".staging-"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _file_hashes(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@dataclass(frozen=True)
class _State:
    """A validated snapshot of one model folder."""

    versions: tuple[ModelVersion, ...]
    champion: int | None


class LocalRegistry(ModelRegistry):
    """The folder-backed registry (the local default; the same semantics as Azure ML models).

    Args:
        root: Registry root folder (created on first register).
        lock_timeout_s: How long to wait for another process's lock before giving up.
    """

    def __init__(self, root: Path, lock_timeout_s: float = 120.0) -> None:
        self.root = Path(root)
        self.lock_timeout_s = lock_timeout_s

    def __repr__(self) -> str:
        return f"LocalRegistry(root={str(self.root)!r})"

    # -- locking and validation -------------------------------------------------------------

    def _model_dir(self, name: str) -> Path:
        return self.root / check_name(name)

    @contextmanager
    def _locked(self, name: str, create: bool) -> Iterator[Path | None]:
        """Hold the model's lock; yields the model folder, or None if it does not exist."""
        model_dir = self._model_dir(name)
        if not model_dir.is_dir():
            if not create:
                yield None
                return
            model_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(model_dir / LOCK_FILE), timeout=self.lock_timeout_s)
        try:
            lock.acquire()
        except Timeout:
            raise RegistryError(
                f"{model_dir / LOCK_FILE}: another process has held the registry lock for "
                f"{self.lock_timeout_s:g} s; wait for it to finish (the lock is released "
                "automatically when that process exits)"
            ) from None
        try:
            yield model_dir
        finally:
            lock.release()

    def _damaged(self, path: Path, problem: str, fix: str) -> RegistryError:
        return RegistryError(
            f"model registry damaged: {path}: {problem}. Nothing was changed. Fix: {fix}"
        )

    def _read_json(self, path: Path, fix: str) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise self._damaged(path, "the file is missing", fix) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise self._damaged(path, f"not valid JSON ({error})", fix) from None
        if not isinstance(data, dict):
            raise self._damaged(path, f"expected a JSON object, got {type(data).__name__}", fix)
        return data

    def _read_state(self, name: str, model_dir: Path | None) -> _State:
        """Read and cross-check index.json, every meta.json and the version folders."""
        if model_dir is None:
            return _State((), None)
        index_path = model_dir / INDEX_FILE
        numeric = sorted(
            int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()
        )
        rebuild = (
            f"restore {index_path} from a backup; or rebuild it by hand as "
            '{"schema_version": 1, "name": "' + name + '", "versions": [<every version folder '
            'number, ascending>], "champion": <a listed version or null>}'
        )
        if not index_path.exists():
            if numeric:
                raise self._damaged(
                    index_path, f"missing, but version folders {numeric} exist", rebuild
                )
            return _State((), None)
        index = self._read_json(index_path, rebuild)
        versions = index.get("versions")
        champion = index.get("champion")
        if (
            index.get("schema_version") != SCHEMA_VERSION
            or index.get("name") != name
            or not isinstance(versions, list)
            or not all(type(v) is int and v >= 1 for v in versions)
            or versions != sorted(set(versions))
            or not (champion is None or (type(champion) is int and champion in versions))
        ):
            raise self._damaged(
                index_path,
                f"inconsistent content (schema_version {index.get('schema_version')!r}, name "
                f"{index.get('name')!r}, versions {versions!r}, champion {champion!r}); expected "
                f"schema_version {SCHEMA_VERSION}, name {name!r}, ascending unique versions >= 1 "
                "and a champion that is one of them or null",
                rebuild,
            )
        unlisted = sorted(set(numeric) - set(versions))
        if unlisted:
            raise self._damaged(
                model_dir / str(unlisted[0]),
                f"version folder(s) {unlisted} are not listed in {index_path}",
                "if the folder is a complete registered model, add its number to 'versions' in "
                f"{index_path}; otherwise move the folder out of the registry",
            )
        out = []
        for version in versions:
            version_dir = model_dir / str(version)
            forget = (
                f"restore {version_dir} from a backup, or remove {version} from 'versions' in "
                f"{index_path} (and set 'champion' to another version or null if it is "
                f"{version})"
            )
            if not version_dir.is_dir():
                raise self._damaged(version_dir, "listed in index.json but missing", forget)
            meta_path = version_dir / META_FILE
            meta = self._read_json(meta_path, forget)
            try:
                tags = check_strings(meta.get("tags"), "tag")
                properties = check_strings(meta.get("properties"), "property")
            except RegistryError as error:
                raise self._damaged(meta_path, str(error), forget) from None
            if (
                meta.get("name") != name
                or meta.get("version") != version
                or not isinstance(meta.get("files"), dict)
            ):
                raise self._damaged(
                    meta_path,
                    f"says name {meta.get('name')!r}, version {meta.get('version')!r} (expected "
                    f"{name!r}, {version}) or has no 'files' mapping",
                    forget,
                )
            if not (version_dir / MODEL_SUBDIR).is_dir():
                raise self._damaged(
                    version_dir / MODEL_SUBDIR, "the model folder is missing", forget
                )
            out.append(
                ModelVersion(
                    name=name,
                    version=version,
                    tags=tags,
                    properties=properties,
                    champion=version == champion,
                    created_at=meta.get("created_at"),
                    source=str(version_dir / MODEL_SUBDIR),
                )
            )
        return _State(tuple(out), champion)

    @staticmethod
    def _find(state: _State, name: str, version: VersionRef) -> ModelVersion:
        if version == CHAMPION:
            for item in state.versions:
                if item.champion:
                    return item
            raise RegistryError(
                f"model {name!r} has no champion yet; promote one with `ppe register` (after a "
                "gate that promotes) or pass --version"
            )
        for item in state.versions:
            if item.version == version:
                return item
        known = [v.version for v in state.versions]
        raise RegistryError(
            f"model {name!r} has no version {version}"
            + (f"; known versions: {known}" if known else " (the model is not registered)")
        )

    def _write_index(
        self, model_dir: Path, name: str, versions: list[int], champion: int | None
    ) -> None:
        write_json_atomic(
            model_dir / INDEX_FILE,
            {
                "schema_version": SCHEMA_VERSION,
                "name": name,
                "versions": versions,
                "champion": champion,
                "updated_at": _now(),
            },
        )

    # -- the interface ----------------------------------------------------------------------

    def register(
        self,
        model_dir: Path,
        name: str,
        tags: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> ModelVersion:
        """Copy ``model_dir`` into the registry as the next version of ``name``.

        Args:
            model_dir: Folder with the model files (must hold at least one file).
            name: Model name.
            tags: String tags.
            properties: String properties.

        Returns:
            The new :class:`ModelVersion` (champion only if set later).

        Raises:
            RegistryError: Bad name, tags or model folder, or a damaged registry.
        """
        source = Path(model_dir)
        clean_tags = check_strings(tags, "tag")
        clean_properties = check_strings(properties, "property")
        if not source.is_dir() or not any(p.is_file() for p in source.rglob("*")):
            raise RegistryError(f"model folder {source}: missing or holds no files")
        with self._locked(name, create=True) as folder:
            assert folder is not None
            state = self._read_state(name, folder)
            numbers = [v.version for v in state.versions]
            version = (numbers[-1] if numbers else 0) + 1
            staging = folder / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
            try:
                shutil.copytree(source, staging / MODEL_SUBDIR)
                meta = {
                    "schema_version": SCHEMA_VERSION,
                    "name": name,
                    "version": version,
                    "tags": clean_tags,
                    "properties": clean_properties,
                    "created_at": _now(),
                    "files": _file_hashes(staging / MODEL_SUBDIR),
                }
                write_json_atomic(staging / META_FILE, meta)
                target = folder / str(version)
                staging.rename(target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            try:
                self._write_index(folder, name, [*numbers, version], state.champion)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
        logger.info("registered %s version %d in %s", name, version, self.root)
        return ModelVersion(
            name=name,
            version=version,
            tags=clean_tags,
            properties=clean_properties,
            champion=False,
            created_at=str(meta["created_at"]),
            source=str(target / MODEL_SUBDIR),
        )

    def list(self, name: str) -> builtins.list[ModelVersion]:
        """All versions of ``name``, oldest first."""
        with self._locked(name, create=False) as folder:
            return list(self._read_state(name, folder).versions)

    def get(self, name: str, version: VersionRef) -> ModelVersion:
        """One version, or the champion with ``version="champion"``."""
        with self._locked(name, create=False) as folder:
            return self._find(self._read_state(name, folder), name, version)

    def champion(self, name: str) -> ModelVersion | None:
        """The champion of ``name``, or None."""
        with self._locked(name, create=False) as folder:
            state = self._read_state(name, folder)
        return next((v for v in state.versions if v.champion), None)

    def set_champion(self, name: str, version: int) -> ModelVersion:
        """Mark ``version`` as the champion (index.json is replaced atomically)."""
        with self._locked(name, create=False) as folder:
            state = self._read_state(name, folder)
            chosen = self._find(state, name, version)
            if folder is not None and state.champion != chosen.version:
                self._write_index(folder, name, [v.version for v in state.versions], chosen.version)
        logger.info("champion of %s is now version %d", name, chosen.version)
        return dataclasses.replace(chosen, champion=True)

    def download(self, name: str, version: VersionRef, dest: Path) -> Path:
        """Copy one version's model files into ``dest`` and verify their sha256 against meta.json.

        Raises:
            RegistryError: Unknown version, ``dest`` not empty, or files changed since registration.
        """
        dest = Path(dest)
        check_dest(dest)
        with self._locked(name, create=False) as folder:
            chosen = self._find(self._read_state(name, folder), name, version)
            assert folder is not None and chosen.source is not None
            meta_path = folder / str(chosen.version) / META_FILE
            expected = self._read_json(meta_path, "restore the version from a backup")["files"]
        source = Path(chosen.source)
        actual = _file_hashes(source)
        if actual != expected:
            changed = sorted(
                set(actual) ^ set(expected)
                | {key for key in set(actual) & set(expected) if actual[key] != expected[key]}
            )
            raise self._damaged(
                source,
                f"model files differ from those registered ({changed[:5]})",
                f"restore {source} from a backup, or register the model again as a new version",
            )
        shutil.copytree(source, dest, dirs_exist_ok=True)
        logger.info("downloaded %s version %d to %s", name, chosen.version, dest)
        return dest
