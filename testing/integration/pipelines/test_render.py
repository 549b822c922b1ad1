"""The compile-time expander (render.py) follows Azure Pipelines' documented template semantics
(https://learn.microsoft.com/azure/devops/pipelines/process/templates,
https://learn.microsoft.com/azure/devops/pipelines/process/expressions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .render import Renderer, RenderError, Repositories, evaluate, expand_macros, interpolate


def test_expressions() -> None:
    context = {"parameters": {"repo": "self", "list": ["a", "b"], "flag": False, "n": 3}}
    # eq compares strings case-insensitively ("Functions", expressions page).
    assert evaluate("eq(parameters.repo, 'SELF')", context) is True
    assert evaluate("ne(parameters.repo, 'self')", context) is False
    assert evaluate("iif(eq(parameters.repo, 'self'), 'x', 'y')", context) == "x"
    assert evaluate("parameters.list[1]", context) == "b"
    assert evaluate("and(not(parameters.flag), true)", context) is True
    assert evaluate("coalesce('', 'it''s')", context) == "it's"
    # A whole expression keeps its type; an embedded one becomes text (booleans as True/False).
    assert interpolate("${{ parameters.list }}", context) == ["a", "b"]
    assert interpolate("n=${{ parameters.n }} f=${{ parameters.flag }}", context) == "n=3 f=False"
    with pytest.raises(RenderError, match="not available at compile time"):
        evaluate("variables.x", context)
    with pytest.raises(RenderError, match="no 'missing'"):
        evaluate("parameters.missing", context)


def test_macros_expand_recursively_and_unknown_ones_stay() -> None:
    values = {"out": "$(root)/out", "root": "/w"}
    assert expand_macros("cd $(out) && $(other)", values) == "cd /w/out && $(other)"
    with pytest.raises(RenderError, match="does not terminate"):
        expand_macros("$(a)", {"a": "$(a)x"})


def test_templates_directives_and_parameters(tmp_path: Path) -> None:
    (tmp_path / "steps.yml").write_text(
        "parameters:\n"
        "  - name: names\n    type: object\n"
        "  - name: extra\n    type: boolean\n    default: false\n"
        "  - name: env\n    type: object\n    default: {}\n"
        "steps:\n"
        "  - ${{ each name in parameters.names }}:\n"
        "      - script: echo ${{ name }}\n        displayName: Say ${{ name }}\n"
        "  - ${{ if parameters.extra }}:\n"
        "      - script: echo extra\n        displayName: Extra\n"
        "  - script: env\n    displayName: Env\n    env:\n"
        "      FIXED: one\n      ${{ insert }}: ${{ parameters.env }}\n",
        encoding="utf-8",
    )
    renderer = Renderer(Repositories(tmp_path))
    kind, steps = renderer.template(
        "steps.yml", tmp_path / "pipeline.yml", {"names": ["a", "b"], "env": {"MORE": "two"}}
    )
    assert kind == "steps"
    assert [s["script"] for s in steps] == ["echo a", "echo b", "env"]
    assert steps[-1]["env"] == {"FIXED": "one", "MORE": "two"}
    assert all(s["__template__"] == tmp_path / "steps.yml" for s in steps)
    with pytest.raises(RenderError, match="required parameter 'names' is not passed"):
        renderer.template("steps.yml", tmp_path / "pipeline.yml", {})
    with pytest.raises(RenderError, match="does not declare"):
        renderer.template("steps.yml", tmp_path / "pipeline.yml", {"names": [], "colour": 1})
    with pytest.raises(RenderError, match="no repository resource 'elsewhere'"):
        renderer.template("steps.yml@elsewhere", tmp_path / "pipeline.yml", {"names": []})
