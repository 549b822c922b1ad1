"""``notebooks/render_html.py`` (``make notebooks-html``, the CI's notebooks artifact) runs the
notebooks and writes pages a person can read without running them."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPT = REPO_ROOT / "notebooks" / "render_html.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_html", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_render_runs_a_notebook_and_writes_its_outputs_as_html(tmp_path: Path) -> None:
    script = load_script()
    assert script.ORDER[0] == "00_setup" and script.ORDER[-1] == "05_azure"
    environ = {key: value for key, value in os.environ.items() if not key.startswith("PPE_")}
    pages = script.render(["00_setup"], tmp_path / "html", tmp_path / "outputs", "smoke", environ)
    assert pages == [tmp_path / "html" / "00_setup.html"]
    page = pages[0].read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html>")
    # Outputs of executed cells, not only the source: the config error and the CLI's help.
    assert "did you mean &#39;train.epochs&#39;?" in page or "did you mean 'train.epochs'?" in page
    assert "usage: ppe" in page
    assert "Traceback" not in page
    assert (tmp_path / "outputs" / "notebooks" / "smoke" / "config.yaml").is_file()


def test_the_make_target_and_the_ci_step_use_the_script() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert "notebooks/render_html.py --profile $(NOTEBOOK_PROFILE)" in makefile
    ci = (REPO_ROOT / "ado_pipelines" / "templates" / "jobs" / "python_quality.yml").read_text(
        encoding="utf-8"
    )
    # The tour profile (about 5 minutes for all six notebooks on 2 cores), not demo (about 20
    # minutes of training alone): this job also runs the whole suite within its 60-minute limit,
    # the Microsoft-hosted limit of a free private project
    # (https://learn.microsoft.com/azure/devops/pipelines/agents/hosted#capabilities-and-limitations).
    assert "make notebooks-html NOTEBOOK_PROFILE=tour" in ci
    assert "artifactname=notebooks-html]$(Build.SourcesDirectory)/outputs/notebooks-html" in ci
