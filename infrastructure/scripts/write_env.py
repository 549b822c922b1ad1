"""Write Terraform's ``pipeline_variables`` output as a dotenv file (the local ``.env``).

The same map fills the Azure DevOps variable group, so the ``ppe`` CLI, Azure ML jobs submitted
from a laptop and the pipelines all read identical names. Usage, from the repository root:

    python infrastructure/scripts/write_env.py                 # runs terraform output itself
    terraform -chdir=infrastructure output -json pipeline_variables > vars.json
    python infrastructure/scripts/write_env.py --from-json vars.json --out .env
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRASTRUCTURE = REPO_ROOT / "infrastructure"
_KEY = re.compile(r"^[A-Z][A-Z0-9_]*$")
_HEADER = (
    "# Written by infrastructure/scripts/write_env.py from `terraform output pipeline_variables`.\n"
)


def read_terraform_output(chdir: Path = INFRASTRUCTURE) -> dict[str, str]:
    """Run ``terraform output -json pipeline_variables`` and return the map.

    Args:
        chdir: The Terraform root to read the output from.

    Returns:
        The output's name/value pairs.
    """
    completed = subprocess.run(
        ["terraform", f"-chdir={chdir}", "output", "-json", "pipeline_variables"],
        check=True,
        capture_output=True,
        text=True,
    )
    return parse_variables(completed.stdout)


def parse_variables(text: str) -> dict[str, str]:
    """Parse and check the JSON of the output: a flat object of upper-case names to strings.

    Args:
        text: JSON text: the bare map, or ``{"value": map, "type": ...}`` as printed by
            ``terraform output -json``.

    Returns:
        The name/value pairs.

    Raises:
        ValueError: When a name is not an upper-case identifier or a value is not a one-line string.
    """
    data = json.loads(text)
    if isinstance(data, dict) and set(data) >= {"value", "type"}:
        data = data["value"]
    if not isinstance(data, dict):
        raise ValueError("pipeline_variables must be a JSON object of names to strings")
    for key, value in data.items():
        if not _KEY.match(key):
            raise ValueError(f"{key!r} is not an upper-case variable name")
        if not isinstance(value, str) or "\n" in value:
            raise ValueError(f"{key}: expected a one-line string, got {value!r}")
    return dict(sorted(data.items()))


def render_dotenv(variables: dict[str, str]) -> str:
    """Render name/value pairs as dotenv lines, double-quoted and escaped.

    Args:
        variables: Name/value pairs.

    Returns:
        The dotenv text.
    """
    lines = [_HEADER]
    for key, value in variables.items():
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
        lines.append(f'{key}="{escaped}"\n')
    return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-json", type=Path, help="read the output JSON from this file")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / ".env", help="dotenv file to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.from_json:
        variables = parse_variables(args.from_json.read_text(encoding="utf-8"))
    else:
        variables = read_terraform_output()
    args.out.write_text(render_dotenv(variables), encoding="utf-8")
    logger.info("wrote %d variables to %s", len(variables), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
