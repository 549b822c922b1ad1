"""HCL syntax with HashiCorp's parser, and `terraform fmt` canonical formatting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .terraform_config import INFRASTRUCTURE, REPO_ROOT, parse_files, run_node_tool, terraform_files


def test_every_terraform_file_parses(parsed_infrastructure: dict[Path, dict[str, Any]]) -> None:
    assert len(parsed_infrastructure) >= 20
    errors = {str(f): r["error"] for f, r in parsed_infrastructure.items() if "error" in r}
    assert errors == {}


def test_example_hcl_files_parse() -> None:
    files = [INFRASTRUCTURE / "backend.hcl.example", INFRASTRUCTURE / "terraform.tfvars.example"]
    result = parse_files(files)
    assert {str(f): r.get("error") for f, r in result.items()} == {str(f): None for f in files}
    backend = result[files[0]]["json"]
    assert backend["use_azuread_auth"] is True
    assert {"resource_group_name", "storage_account_name", "container_name", "key"} <= set(backend)


def test_parser_reports_broken_hcl(tmp_path: Path) -> None:
    broken = tmp_path / "broken.tf"
    broken.write_text('resource "azurerm_resource_group" "x" {\n  name = "a"\n')
    result = parse_files([broken])
    assert "Unclosed configuration block" in result[broken]["error"]


def test_files_are_in_terraform_fmt_canonical_form() -> None:
    files = [str(f.relative_to(REPO_ROOT)) for f in terraform_files(INFRASTRUCTURE)]
    files += ["infrastructure/backend.hcl.example", "infrastructure/terraform.tfvars.example"]
    status, result = run_node_tool("hclfmt.mjs", *files)
    unformatted = {name: r for name, r in result.items() if not r.get("formatted")}
    assert unformatted == {}, (
        f"run `terraform fmt -recursive infrastructure`: {sorted(unformatted)}"
    )
    assert status == 0


def test_formatter_flags_misaligned_arguments(tmp_path: Path) -> None:
    sloppy = tmp_path / "sloppy.tf"
    sloppy.write_text("locals {\n  a = 1\n  long_name = 2\n}\n")
    status, result = run_node_tool("hclfmt.mjs", str(sloppy))
    assert status == 1
    assert result[str(sloppy)]["expected"] == "locals {\n  a         = 1\n  long_name = 2\n}\n"


def test_layout_follows_the_style_guide() -> None:
    for name in [
        "terraform.tf",
        "providers.tf",
        "variables.tf",
        "locals.tf",
        "outputs.tf",
        "README.md",
        "backend.hcl.example",
        "terraform.tfvars.example",
    ]:
        assert (INFRASTRUCTURE / name).is_file(), name
    for module in ["aml", "edge", "devops"]:
        for name in ["terraform.tf", "main.tf", "variables.tf", "outputs.tf"]:
            assert (INFRASTRUCTURE / "modules" / module / name).is_file(), f"{module}/{name}"
    for root in ["bootstrap", "examples/dev_low_cost"]:
        assert (INFRASTRUCTURE / root / "terraform.tf").is_file(), root
    assert (INFRASTRUCTURE / "examples" / "dev_low_cost" / "README.md").is_file()
