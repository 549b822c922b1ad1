"""pre-commit hook: checkov over the Terraform root, failing on parse errors and failed checks.

checkov exits 0 when a file does not parse (it just skips it), so this runs it with JSON output and
fails when the report has parsing errors or failed checks. checkov comes from ``.venv-checkov``
(``make setup-tools``): its bundled HCL parser shadows python-hcl2, so it has its own environment.

Usage: ``python testing/tools/precommit_checkov.py [DIRECTORY]`` (default ``infrastructure``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"


def run_checkov(directory: Path, checkov: Path = CHECKOV) -> dict[str, Any]:
    """Run checkov's Terraform framework offline over ``directory`` and return its JSON report."""
    completed = subprocess.run(
        [
            str(checkov),
            "--directory",
            str(directory),
            "--framework",
            "terraform",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CHECKOV_PARALLELIZATION_TYPE": "none"},
    )
    if not completed.stdout.strip():
        raise RuntimeError(
            f"checkov printed nothing (exit {completed.returncode}): {completed.stderr}"
        )
    report = json.loads(completed.stdout)
    reports = report if isinstance(report, list) else [report]
    if len(reports) != 1:
        raise RuntimeError(f"expected one checkov report, got {len(reports)}")
    return dict(reports[0])


def problems(report: dict[str, Any]) -> list[str]:
    """One line per parsing error and per failed check of a checkov report."""
    results = report.get("results", {})
    lines = [f"does not parse: {path}" for path in results.get("parsing_errors", [])]
    lines += [
        f"{check['check_id']} {check['file_path']}:{check['file_line_range'][0]} "
        f"{check['resource']}: {check['check_name']}"
        for check in results.get("failed_checks", [])
    ]
    return lines


def main(argv: list[str]) -> int:
    """Run the hook; returns the exit status."""
    if not CHECKOV.is_file():
        sys.stderr.write(f"{CHECKOV.relative_to(REPO_ROOT)} is missing: run `make setup-tools`\n")
        return 2
    directory = Path(argv[0]) if argv else REPO_ROOT / "infrastructure"
    report = run_checkov(directory)
    found = problems(report)
    summary = report.get("summary", {})
    for line in found:
        sys.stderr.write(line + "\n")
    sys.stderr.write(
        f"checkov {directory}: {summary.get('passed', 0)} passed, {summary.get('failed', 0)} "
        f"failed, {summary.get('skipped', 0)} skipped, "
        f"{summary.get('parsing_errors', 0)} parsing errors\n"
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
