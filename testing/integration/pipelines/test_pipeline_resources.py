"""Every Azure DevOps resource a pipeline uses is authorised for it by Terraform, per pipeline.

The rows are infrastructure/permissions/pipeline_resources.yaml. A pipeline that uses a protected
resource it is not permitted (a service connection, a variable group, an environment, and under
"Protect access to repositories in YAML pipelines" a repository it checks out) waits on a
"Permit" prompt (https://learn.microsoft.com/azure/devops/pipelines/security/resources,
https://learn.microsoft.com/azure/devops/pipelines/security/secure-access-to-repos). Product
pipelines that reuse the templates check out this repository (ppe_tooling.yml), so they need the
repository authorisation as well as what the training and edge pipelines need.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from .ado import INFRASTRUCTURE, REPO_ROOT, _load_hcl

ROWS = INFRASTRUCTURE / "permissions" / "pipeline_resources.yaml"
MODULE = INFRASTRUCTURE / "modules" / "devops"
# What a file must contain to use a resource of each type.
USE_PATTERNS = {
    "endpoint": re.compile(r"\b(serviceConnection|azureSubscription):"),
    "variablegroup": re.compile(r"^\s*- group:", re.MULTILINE),
    "environment": re.compile(r"^\s*environment:", re.MULTILINE),
    "repository": re.compile(r"^\s*- (checkout|repository):\s*(?!self\b|none\b)\S", re.MULTILINE),
}


def _authorisations(module: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for tf in sorted(module.glob("*.tf")):
        for block in _load_hcl(tf).get("resource", []):
            for name, body in block.get("azuredevops_pipeline_authorization", {}).items():
                found[f"azuredevops_pipeline_authorization.{name}"] = body
    return found


def matrix_errors(rows_file: Path, module: Path, repo_root: Path) -> list[str]:
    """Rows without their authorisation, authorisations without a row, unused resources."""
    rows = yaml.safe_load(rows_file.read_text(encoding="utf-8"))["authorisations"]
    authorisations = _authorisations(module)
    errors = []
    for row in rows:
        where = f"{rows_file.name} {row['id']}"
        body = authorisations.get(row["authorisation"])
        if body is None:
            errors.append(f"{where}: {row['authorisation']} is not in {module}")
            continue
        if body.get("type") != row["type"]:
            errors.append(f"{where}: {row['authorisation']} has type {body.get('type')!r}")
        resource = str(body.get("resource_id", ""))
        if not re.fullmatch(rf"\$\{{{re.escape(row['resource'])}(\[[^\]]+\])?\.id\}}", resource):
            errors.append(f"{where}: {row['authorisation']} authorises {resource}")
        if "pipeline_id" not in body:
            errors.append(f"{where}: {row['authorisation']} authorises every pipeline")
        for file in row["used_in"]:
            text = (repo_root / file).read_text(encoding="utf-8")
            if not USE_PATTERNS[row["type"]].search(text):
                errors.append(f"{where}: {file} uses no {row['type']}")
    for name in sorted(set(authorisations) - {row["authorisation"] for row in rows}):
        errors.append(f"{name}: no row in {rows_file.name}")
    return errors


def test_every_pipeline_resource_is_authorised_per_pipeline() -> None:
    assert matrix_errors(ROWS, MODULE, REPO_ROOT) == []


def test_the_product_pipelines_get_the_templates_repository() -> None:
    rows = yaml.safe_load(ROWS.read_text(encoding="utf-8"))["authorisations"]
    repository = [row for row in rows if row["type"] == "repository"]
    assert [row["resource"] for row in repository] == ["azuredevops_git_repository.this"]
    assert "ado_pipelines/templates/steps/ppe_tooling.yml" in repository[0]["used_in"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('type        = "repository"', 'type        = "endpoint"', "has type 'endpoint'"),
        (
            "resource_id = azuredevops_git_repository.this.id",
            "resource_id = azuredevops_variable_group.this.id",
            "authorises ${azuredevops_variable_group.this.id}",
        ),
        (
            'resource "azuredevops_pipeline_authorization" "product_template_repository"',
            'resource "azuredevops_pipeline_authorization" "template_repository"',
            "product_template_repository is not in",
        ),
    ],
)
def test_the_matrix_check_catches(tmp_path: Path, old: str, new: str, expected: str) -> None:
    module = tmp_path / "devops"
    shutil.copytree(MODULE, module)
    main = module / "main.tf"
    text = main.read_text(encoding="utf-8")
    start = text.index('"product_template_repository"')
    end = text.index("\n}\n", start)
    block = text[text.rindex("\nresource", 0, start) : end]
    assert old in block, old
    main.write_text(text.replace(block, block.replace(old, new)), encoding="utf-8")
    errors = matrix_errors(ROWS, module, REPO_ROOT)
    assert any(expected in e for e in errors), errors


def test_an_authorisation_for_all_pipelines_is_caught(tmp_path: Path) -> None:
    module = tmp_path / "devops"
    shutil.copytree(MODULE, module)
    main = module / "main.tf"
    text = main.read_text(encoding="utf-8")
    line = '  type        = "repository"\n  pipeline_id = each.value.pipeline_id\n'
    assert line in text
    main.write_text(text.replace(line, '  type        = "repository"\n'), encoding="utf-8")
    errors = matrix_errors(ROWS, module, REPO_ROOT)
    assert any("authorises every pipeline" in e for e in errors), errors
