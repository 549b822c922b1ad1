"""Helpers shared by tests, importable as ``testing.helpers`` (the repo root is on the path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_ppe(
    *args: str, cwd: Path, timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the ``ppe`` CLI as users do, in a subprocess, and capture its output.

    Raises:
        AssertionError: ``check`` is set and the command exited non-zero (its stderr tail is shown).
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "ppe", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"ppe {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}"
        )
    return result


#: Flags for Debian's Chromium in a sandbox with no network (see the machine notes in the README).
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str:
    """Debian's Chromium (``make setup-system`` installs it); fails the test when missing."""
    import shutil

    import pytest

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Chromium is missing: run `make setup-system` (Debian package chromium)")
    return found
