"""The ``ppe-edge`` wheel: the TensorFlow-free layer of ``src/ppe`` as its own distribution.

The module image installs this wheel and nothing else of the package, so the edge runtime cannot
import training, export or Azure ML code by structure: those files are not in the image. The
layer is the import-linter contract whose ``id`` is :data:`LAYER_CONTRACT_ID` in
``pyproject.toml`` (``make lint`` checks that it never imports TensorFlow or Keras); its
``source_modules`` are the one list of what the wheel holds:

- a listed module is its ``.py`` file; a listed package is every file under its folder
  (``page.html`` beside ``ppe.edge`` included), caches left out;
- each parent package adds its ``__init__.py`` only.

The distribution's name, version and requirements come from ``[project]`` (the core
``dependencies`` plus the ``edge`` extra), its one console script is ``ppe`` running
:func:`ppe.cli.edge_module.main` (``ppe edge run`` / ``ppe edge serve``): it replaces the full
``ppe`` distribution in an environment, never installs beside it (both own ``ppe/``).

The wheel is written here with the standard library, byte-for-byte reproducible (sorted
entries, fixed timestamps): core metadata 2.1, entry points and
https://packaging.python.org/specifications/binary-distribution-format/.

Standard library only: the image build runs it with ``src`` on ``sys.path`` before anything of
the package is installed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import tomllib
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from ppe.errors import ConfigError

logger = logging.getLogger(__name__)

DISTRIBUTION = "ppe-edge"
LAYER_CONTRACT_ID = "edge-layer"
EDGE_EXTRA = "edge"
CONSOLE_SCRIPT = "ppe = ppe.cli.edge_module:main"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_SKIPPED = {"__pycache__"}


def _pyproject(repo: Path) -> dict[str, Any]:
    path = repo / "pyproject.toml"
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: cannot be read as TOML ({error})") from None


def layer_modules(pyproject: dict[str, Any]) -> list[str]:
    """The ``source_modules`` of the edge layer's import-linter contract.

    Args:
        pyproject: The parsed ``pyproject.toml``.

    Returns:
        Module names, as listed.

    Raises:
        ConfigError: No contract with id :data:`LAYER_CONTRACT_ID`, or it lists no modules.
    """
    contracts = pyproject.get("tool", {}).get("importlinter", {}).get("contracts", [])
    for contract in contracts:
        if contract.get("id") == LAYER_CONTRACT_ID:
            modules = contract.get("source_modules")
            if not modules or not all(isinstance(name, str) for name in modules):
                break
            return list(modules)
    raise ConfigError(
        f"pyproject.toml: no [[tool.importlinter.contracts]] with id = {LAYER_CONTRACT_ID!r} "
        "and a list of source_modules; it defines the edge layer the ppe-edge wheel holds"
    )


def layer_files(repo: Path) -> list[PurePosixPath]:
    """Files of the edge layer, relative to ``src`` (e.g. ``ppe/edge/page.html``), sorted.

    Args:
        repo: The repository root (``pyproject.toml`` and ``src/ppe``).

    Returns:
        The files the ``ppe-edge`` wheel holds, besides its metadata.

    Raises:
        ConfigError: A listed module has neither a ``.py`` file nor a package folder.
    """
    src = repo / "src"
    files: set[PurePosixPath] = set()
    for name in layer_modules(_pyproject(repo)):
        parts = name.split(".")
        package_dir = src.joinpath(*parts)
        module_file = src.joinpath(*parts[:-1], parts[-1] + ".py")
        if (package_dir / "__init__.py").is_file():
            files.update(
                PurePosixPath(path.relative_to(src).as_posix())
                for path in package_dir.rglob("*")
                if path.is_file() and not _SKIPPED & set(path.relative_to(src).parts)
            )
        elif module_file.is_file():
            files.add(PurePosixPath(module_file.relative_to(src).as_posix()))
        else:
            raise ConfigError(
                f"pyproject.toml: the edge layer lists {name!r}, but neither {module_file} nor "
                f"{package_dir / '__init__.py'} exists; fix the contract's source_modules"
            )
        for depth in range(1, len(parts)):
            files.add(PurePosixPath(*parts[:depth], "__init__.py"))
    return sorted(files)


def _requirements(project: dict[str, Any]) -> list[str]:
    extras = project.get("optional-dependencies", {})
    if EDGE_EXTRA not in extras:
        raise ConfigError(f"pyproject.toml: [project.optional-dependencies] has no {EDGE_EXTRA!r}")
    return [*project.get("dependencies", []), *extras[EDGE_EXTRA]]


def _metadata(project: dict[str, Any]) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {DISTRIBUTION}",
        f"Version: {project['version']}",
        "Summary: The TensorFlow-free edge layer of ppe: the IoT Edge module's runtime",
        f"License: {project.get('license', 'UNKNOWN')}",
        f"Requires-Python: {project['requires-python']}",
        *(f"Requires-Dist: {requirement}" for requirement in _requirements(project)),
    ]
    return "\n".join(lines) + "\n"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _write_zip(entries: Iterable[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def build_edge_wheel(repo: Path | str, out_dir: Path | str) -> Path:
    """Write the ``ppe-edge`` wheel of the repository's edge layer.

    Args:
        repo: The repository root (or a build context with ``pyproject.toml`` and ``src``).
        out_dir: Folder for the wheel (created).

    Returns:
        The wheel's path, ``ppe_edge-<version>-py3-none-any.whl``.

    Raises:
        ConfigError: ``pyproject.toml`` lacks the layer contract, the edge extra or a field.
    """
    repo, out_dir = Path(repo), Path(out_dir)
    project = _pyproject(repo).get("project", {})
    for field in ("version", "requires-python"):
        if not isinstance(project.get(field), str):
            raise ConfigError(f"pyproject.toml: [project] needs {field!r} for the ppe-edge wheel")
    version = project["version"]
    dist_info = f"{DISTRIBUTION.replace('-', '_')}-{version}.dist-info"
    entries = [
        (str(path), (repo / "src" / Path(*path.parts)).read_bytes()) for path in layer_files(repo)
    ]
    entries += [
        (f"{dist_info}/METADATA", _metadata(project).encode()),
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: ppe.iotedge.package\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n",
        ),
        (f"{dist_info}/entry_points.txt", f"[console_scripts]\n{CONSOLE_SCRIPT}\n".encode()),
        (f"{dist_info}/top_level.txt", b"ppe\n"),
    ]
    record = [_record_line(name, data) for name, data in entries] + [f"{dist_info}/RECORD,,"]
    entries.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{DISTRIBUTION.replace('-', '_')}-{version}-py3-none-any.whl"
    wheel.write_bytes(_write_zip(entries))
    logger.info("wrote %s (%d files of the edge layer)", wheel, len(entries) - 5)
    return wheel
