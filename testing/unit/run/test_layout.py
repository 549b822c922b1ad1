"""The run layout is written once: no artifact file name appears as a literal outside it."""

from __future__ import annotations

import ast
from pathlib import Path

import ppe
from ppe.run import layout

PACKAGE = Path(ppe.__file__).resolve().parent
LAYOUT = PACKAGE / "run" / "layout.py"
#: The artifact names that cross step boundaries (documents and folders other steps read).
ARTIFACTS = {
    layout.METRICS_FILE,
    layout.CURVES_FILE,
    layout.TRAIN_SUMMARY_FILE,
    layout.DATASET_FILE,
    layout.CHAMPION_FILE,
    layout.GATE_FILE,
    layout.REGISTER_FILE,
    layout.REPORT_ZIP,
    layout.PIPELINE_FILE,
    layout.DATA_CHECK_FILE,
    layout.CONFIG_FILE,
    layout.OUTCOMES_FILE,
    layout.THRESHOLDS_FILE,
    layout.LABELS_FILE,
    layout.MODEL_JSON,
    layout.MODEL_KERAS,
}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def artifact_literals(path: Path, root: Path = PACKAGE) -> list[str]:
    """``file:line: 'literal'`` for each string constant that names an artifact as a path.

    Prose (docstrings, help texts: anything with a space) is not a path and is skipped.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
            continue
        text = node.value
        if id(node) in docstrings or any(c.isspace() for c in text):
            continue
        if ARTIFACTS & set(text.replace("\\\\", "/").split("/")):
            found.append(f"{path.relative_to(root)}:{node.lineno}: {text!r}")
    return found


def test_no_artifact_file_name_outside_the_layout_module() -> None:
    offenders = [
        item
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != LAYOUT
        for item in artifact_literals(path)
    ]
    assert offenders == [], "use ppe.run.layout instead:\n" + "\n".join(offenders)


def test_the_check_finds_a_literal(tmp_path: Path) -> None:
    sample = tmp_path / "probe.py"
    sample.write_text('"""Probe."""\n\nPATH = "evaluate/metrics.json"\nHELP = "see gate.json"\n')
    assert artifact_literals(sample, tmp_path) == ["probe.py:3: 'evaluate/metrics.json'"]
