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
