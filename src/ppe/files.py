"""Small file helpers shared by the steps: hashing, atomic JSON writes, atomic folder replacement.

Every step that writes an output promises "nothing half-written": files go to a temporary name
in the same folder (same file system) and are renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


def sha256_file(path: Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> Path:
    """Write JSON to ``path`` atomically (temporary file in the same folder, fsync, rename).

    Raises:
        ValueError: ``data`` holds NaN or infinity (not valid JSON).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, allow_nan=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def replaced_dir(out: Path) -> Iterator[Path]:
    """Yield a fresh staging folder beside ``out``; on success it replaces ``out``.

    On any error the staging folder is removed and ``out`` (if it existed) is left as it was.
    An existing empty ``out`` is kept and filled instead: an Azure ML job's output folder is a
    mount point, which can be neither removed nor renamed onto, and may be another file system
    than its parent (so the staged files are moved, not renamed, into it).
    """
    staging = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        if out.is_dir() and not any(out.iterdir()):
            for child in sorted(staging.iterdir()):
                shutil.move(str(child), str(out / child.name))
            staging.rmdir()
            return
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
