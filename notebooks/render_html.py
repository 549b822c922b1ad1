"""Run the walkthrough notebooks in order and write each executed one as a standalone HTML page.

``make notebooks-html`` runs it (the CI pipeline publishes the result as the ``notebooks-html``
build artifact), so people can read the walkthrough with its pictures without running it:

    .venv/bin/python notebooks/render_html.py --profile demo --out outputs/notebooks-html

The notebooks run on this interpreter's ``python3`` kernel with cwd ``notebooks/`` and write their
run folder under ``--outputs`` (default ``outputs``, as when you run them yourself, so earlier
steps are reused when their inputs match); they never submit to Azure
(``PPE_NOTEBOOK_SUBMIT=never``). A notebook that fails stops the run with its error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

NOTEBOOKS = Path(__file__).resolve().parent
ORDER = tuple(sorted(path.stem for path in NOTEBOOKS.glob("*.ipynb")))  # 00_setup ... 05_azure
CELL_TIMEOUT_S = 1800

logger = logging.getLogger("render_html")


def render(
    names: Sequence[str],
    html_dir: Path,
    outputs: Path,
    profile: str,
    environ: Mapping[str, str],
) -> list[Path]:
    """Execute ``names`` in order and write ``html_dir/<name>.html``; returns the pages written."""
    html_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **environ,
        "PPE_NOTEBOOK_PROFILE": profile,
        "PPE_NOTEBOOK_OUTPUTS": str(outputs.resolve()),
        "PPE_NOTEBOOK_SUBMIT": "never",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    exporter = HTMLExporter()
    pages = []
    for name in names:
        notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        client = NotebookClient(
            notebook,
            kernel_name="python3",
            timeout=CELL_TIMEOUT_S,
            resources={"metadata": {"path": str(NOTEBOOKS)}},
        )
        client.execute(env=env)
        body, _ = exporter.from_notebook_node(notebook)
        page = html_dir / f"{name}.html"
        page.write_text(body, encoding="utf-8")
        logger.info("wrote %s", page)
        pages.append(page)
    return pages


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and render."""
    parser = argparse.ArgumentParser(description="Run the notebooks and write them as HTML.")
    parser.add_argument("--profile", default="tour", help="config profile (default: tour)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the HTML pages")
    parser.add_argument(
        "--outputs", type=Path, default=Path("outputs"), help="notebook outputs (default: outputs)"
    )
    parser.add_argument(
        "--only", nargs="+", choices=ORDER, default=ORDER, help="notebooks to run (in order)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    render(args.only, args.out, args.outputs, args.profile, os.environ)
    return 0


if __name__ == "__main__":
    sys.exit(main())
