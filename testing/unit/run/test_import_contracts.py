"""The package's layers (pyproject.toml [tool.importlinter]) hold, and the checker sees a breach.

``make lint`` runs the same ``lint-imports``; the suite runs it too so a layer breach fails here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import ppe

PACKAGE = Path(ppe.__file__).resolve().parent
REPO = PACKAGE.parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(pythonpath: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", "--config", str(REPO / "pyproject.toml")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_import_contracts_are_kept(tmp_path: Path) -> None:
    result = _lint_imports(PACKAGE.parent, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_breach_of_each_contract_is_caught(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(PACKAGE, source / "ppe", ignore=shutil.ignore_patterns("__pycache__"))
    # TensorFlow in the TF-free core; a domain module importing the local runner; argparse in
    # a step module; a cycle.
    for relative, line in (
        ("model/decode.py", "import tensorflow"),
        ("registry/base.py", "import ppe.pipeline.local"),
        ("gate.py", "import argparse"),
        ("run/layout.py", "import ppe.registry"),
    ):
        path = source / "ppe" / relative
        path.write_text(path.read_text() + f"\n{line}  # injected by the test\n")
    result = _lint_imports(source, tmp_path)
    assert result.returncode == 1, result.stdout
    assert "Contracts: 0 kept, 4 broken." in result.stdout, result.stdout


def test_the_tf_free_run_modules_import_without_tensorflow() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["tensorflow"] = None  # any import of it now raises ImportError
        sys.modules["keras"] = None
        import ppe.config, ppe.errors, ppe.files
        import ppe.model.decode, ppe.model.preprocess, ppe.model.spec
        import ppe.run.documents, ppe.run.graph, ppe.run.layout
        ppe.run.graph.check_graph()
        print("ok")
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "ok"
