"""Every ``ppe`` command the pipelines run exists with the options they pass."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from .ado import PIPELINES, cli_error, cli_errors, ppe_invocations

# Commands the pipelines must run (so the extraction cannot silently find nothing).
EXPECTED_COMMANDS = {
    ("aml", "build"),
    ("aml", "submit"),
    ("aml", "data"),
    ("aml", "models"),
    ("data", "import"),
    ("export",),
    ("edge", "manifest"),
    ("edge", "stage-model"),
}


def test_the_pipelines_run_the_expected_ppe_commands() -> None:
    found = {
        invocation.argv[: len(command)]
        for invocation in ppe_invocations(PIPELINES)
        for command in EXPECTED_COMMANDS
    }
    missing = EXPECTED_COMMANDS - found
    assert not missing, f"no invocation of {missing} found in ado_pipelines/"


def test_every_ppe_invocation_parses(ppe_parser: argparse.ArgumentParser) -> None:
    assert cli_errors(PIPELINES, ppe_parser) == []


def test_an_unknown_option_or_subcommand_is_caught(
    tmp_path: Path, ppe_parser: argparse.ArgumentParser
) -> None:
    copy = tmp_path / "ado_pipelines"
    shutil.copytree(PIPELINES, copy)
    job = copy / "templates" / "jobs" / "edge_package.yml"
    text = job.read_text(encoding="utf-8")
    text = text.replace("ppe export\n", "ppe export --quantise\n").replace(
        "ppe data import", "ppe data imprt"
    )
    job.write_text(text, encoding="utf-8")
    errors = cli_errors(copy, ppe_parser)
    assert any("--quantise" in e for e in errors), errors
    assert any("imprt" in e for e in errors), errors


def test_a_missing_required_option_is_caught(ppe_parser: argparse.ArgumentParser) -> None:
    problem = cli_error(ppe_parser, ("edge", "manifest", "--platform", "amd64", "--tag", "1"))
    assert problem is not None
    assert "required" in problem


def test_the_training_pipeline_passes_the_cli_defaults(ppe_parser: argparse.ArgumentParser) -> None:
    # The reusable stage template requires the experiment and the data asset (a product names its
    # own); this repository's pipeline passes the command line's defaults, written twice, so held
    # equal here.
    from .ado import load

    arguments = load(PIPELINES / "model_training_pipeline.yml")["extends"]["parameters"]
    defaults = ppe_parser.parse_args(["aml", "build"])
    assert arguments["experiment"] == defaults.experiment
    assert arguments["dataAssetName"] == defaults.data_name
