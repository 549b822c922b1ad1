"""pre-commit hook: HashiCorp's canonical HCL format on every machine, terraform installed or not.

Runs ``node testing/tools/hclfmt.mjs FILE...`` (hclwrite's formatter from ``@cdktf/hcl-tools``,
installed by ``make setup-node``) and prints a unified diff for each file that is not formatted.

Usage: ``python testing/tools/precommit_hclfmt.py FILE...``
"""

from __future__ import annotations

import difflib
import json
import shutil
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
HCLFMT = TOOLS / "hclfmt.mjs"


def check(files: list[str]) -> tuple[int, str]:
    """Format-check ``files``; returns the exit status and the report to print."""
    node = shutil.which("node")
    if node is None:
        return 2, "node is not installed: install Node.js 20+ and run `make setup-node`\n"
    if not (TOOLS / "node_modules" / "@cdktf" / "hcl-tools").is_dir():
        return 2, "testing/tools/node_modules is missing @cdktf/hcl-tools: run `make setup-node`\n"
    completed = subprocess.run(
        [node, str(HCLFMT), *files], capture_output=True, text=True, check=False
    )
    if not completed.stdout.strip():
        return 2, f"hclfmt.mjs printed nothing (exit {completed.returncode}): {completed.stderr}"
    report = json.loads(completed.stdout)
    lines: list[str] = []
    for name, result in report.items():
        if "error" in result:
            lines.append(f"{name}: does not parse: {result['error']}\n")
        elif not result["formatted"]:
            current = Path(name).read_text(encoding="utf-8").splitlines(keepends=True)
            expected = result["expected"].splitlines(keepends=True)
            lines.extend(difflib.unified_diff(current, expected, name, f"{name} (formatted)"))
    status = 1 if lines else 0
    return status, "".join(lines)


def main(argv: list[str]) -> int:
    """Run the hook; returns the exit status."""
    if not argv:
        return 0
    status, text = check(argv)
    sys.stderr.write(text)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
