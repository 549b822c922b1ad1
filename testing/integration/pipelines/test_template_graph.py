"""Template references: files exist, parameters are typed, declared and satisfied."""

from __future__ import annotations

import shutil
from pathlib import Path

from .ado import ENTRY_PIPELINES, PIPELINES, load, template_graph_errors, yaml_files


def copy_pipelines(tmp_path: Path) -> Path:
    copy = tmp_path / "ado_pipelines"
    shutil.copytree(PIPELINES, copy)
    return copy


def test_the_template_graph_is_consistent() -> None:
    assert template_graph_errors(PIPELINES) == []


def test_entry_pipelines_are_thin() -> None:
    for name in ENTRY_PIPELINES:
        document = load(PIPELINES / name)
        assert set(document) <= {
            "trigger",
            "pr",
            "schedules",
            "resources",
            "parameters",
            "variables",
            "extends",
        }, name
        assert document["extends"]["template"].startswith("templates/stages/"), name


def test_templates_are_grouped_by_kind() -> None:
    for path in yaml_files(PIPELINES / "templates"):
        kind = path.parent.name
        assert kind in {"steps", "jobs", "stages"}, path
        assert kind in load(path), f"{path} has no top-level {kind}:"


def test_an_undeclared_parameter_is_caught(tmp_path: Path) -> None:
    copy = copy_pipelines(tmp_path)
    entry = copy / "ci_pipeline.yml"
    text = entry.read_text(encoding="utf-8")
    entry.write_text(text + "    colour: blue\n", encoding="utf-8")
    errors = template_graph_errors(copy)
    assert any("passes 'colour'" in e for e in errors), errors


def test_a_missing_required_parameter_is_caught(tmp_path: Path) -> None:
    copy = copy_pipelines(tmp_path)
    entry = copy / "ci_pipeline.yml"
    text = entry.read_text(encoding="utf-8")
    line = "    terraformSha256: $(terraformSha256)\n"
    assert line in text
    entry.write_text(text.replace(line, ""), encoding="utf-8")
    errors = template_graph_errors(copy)
    assert any("does not pass 'terraformSha256'" in e for e in errors), errors


def test_a_missing_template_and_an_untyped_parameter_are_caught(tmp_path: Path) -> None:
    copy = copy_pipelines(tmp_path)
    (copy / "templates" / "steps" / "terraform_install.yml").unlink()
    python_setup = copy / "templates" / "steps" / "python_setup.yml"
    text = python_setup.read_text(encoding="utf-8")
    python_setup.write_text(text.replace("    type: string\n", "", 1), encoding="utf-8")
    errors = template_graph_errors(copy)
    assert any("terraform_install.yml does not exist" in e for e in errors), errors
    assert any("parameter 'pythonVersion' has no type" in e for e in errors), errors


def test_a_bad_literal_argument_is_caught(tmp_path: Path) -> None:
    copy = copy_pipelines(tmp_path)
    stage = copy / "templates" / "stages" / "edge_rollout.yml"
    text = stage.read_text(encoding="utf-8")
    stage.write_text(text.replace("environment: staging", "environment: stagin"), encoding="utf-8")
    errors = template_graph_errors(copy)
    assert any("'stagin' is not one of" in e for e in errors), errors


def test_a_template_reading_an_undeclared_parameter_is_caught(tmp_path: Path) -> None:
    copy = copy_pipelines(tmp_path)
    step = copy / "templates" / "steps" / "python_setup.yml"
    text = step.read_text(encoding="utf-8")
    step.write_text(
        text.replace("make ${{ parameters.makeTarget }}\n", "make ${{ parameters.target }}\n", 1),
        encoding="utf-8",
    )
    errors = template_graph_errors(copy)
    assert any("uses parameters.target" in e for e in errors), errors
