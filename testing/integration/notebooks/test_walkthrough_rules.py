"""The walkthrough's promises that can be checked without running it: reuse only on matching input
hashes, 05 submits nothing by default, every `ppe` command shown to a reader parses with the real
parser, and the README's Terraform variable names exist.
"""

from __future__ import annotations

import ast
import logging
import re
import shlex
from pathlib import Path

import hcl2
import nbformat
import pytest

from ppe.cli import get_args_parser
from ppe.config import load_config
from ppe.notebook import (
    QUIET_LOGGERS,
    SHOWCASE_PHOTOS,
    StepOutcome,
    find_root,
    quiet,
    reuse_or_run,
    section_hash,
)
from ppe.run import graph

REPO_ROOT = Path(__file__).resolve().parents[3]
NOTEBOOKS = REPO_ROOT / "notebooks"
README = REPO_ROOT / "README.md"
FENCE = re.compile(r"```(?:bash|sh|shell)?\n(.*?)```", re.DOTALL)


def make_step(folder: Path, calls: list[str], content: str) -> StepOutcome:
    return reuse_or_run(
        "train",
        folder,
        {"data": "d" * 64, "config": content},
        lambda: (folder.mkdir(parents=True), calls.append(content)),
        folder.parent / "reuse",
    )


def test_reuse_needs_the_same_input_hashes(tmp_path: Path) -> None:
    folder, calls = tmp_path / "train", []
    first = make_step(folder, calls, "c1")
    assert not first.reused and first.reason == "no earlier output" and calls == ["c1"]
    again = make_step(folder, calls, "c1")
    assert again.reused and calls == ["c1"]
    assert again.line().startswith("train: reused (same inputs: config c1, data dddddddddddd")
    (folder / "stale.txt").write_text("from the first run")
    changed = make_step(folder, calls, "c2")
    assert not changed.reused and calls == ["c1", "c2"]
    assert changed.reason == "changed config c1 -> c2"
    assert not (folder / "stale.txt").exists(), "the old output is deleted before the step runs"


def test_an_output_without_a_record_is_not_reused(tmp_path: Path) -> None:
    folder, calls = tmp_path / "train", []
    folder.mkdir()
    (folder / "model.json").write_text("{}")  # e.g. made by an older notebook or by hand
    outcome = make_step(folder, calls, "c1")
    assert not outcome.reused and calls == ["c1"]
    assert outcome.reason == "the earlier output has no record of its inputs"


def test_a_failed_step_leaves_no_record(tmp_path: Path) -> None:
    folder = tmp_path / "export"

    def fail() -> None:
        folder.mkdir()
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError):
        reuse_or_run("export", folder, {"model": "m1"}, fail, tmp_path / "reuse")
    assert not (tmp_path / "reuse" / "export.json").exists()
    calls: list[str] = []
    outcome = reuse_or_run(
        "export", folder, {"model": "m1"}, lambda: calls.append("again"), tmp_path / "reuse"
    )
    assert not outcome.reused and calls == ["again"]


def test_the_data_record_follows_the_data_and_model_sections() -> None:
    tour = load_config("tour")
    assert section_hash(tour, "data", "model") == section_hash(
        load_config("tour", ["train.epochs=3"]), "data", "model"
    )
    assert section_hash(tour, "data", "model") != section_hash(
        load_config("tour", ["data.synth.seed=4"]), "data", "model"
    )


def test_quiet_sets_the_switches_and_levels() -> None:
    names = ("", "ppe", *QUIET_LOGGERS)
    before = {name: logging.getLogger(name).level for name in names}
    environ = {"TF_CPP_MIN_LOG_LEVEL": "1"}
    try:
        quiet(environ)
        assert environ == {
            "TF_CPP_MIN_LOG_LEVEL": "1",  # the user's own choice is kept
            "TQDM_DISABLE": "1",
            "MLFLOW_LOGGING_LEVEL": "WARNING",
        }
        assert not logging.getLogger("ppe.train").isEnabledFor(logging.INFO)
        assert logging.getLogger("ppe.train").isEnabledFor(logging.WARNING)
        # azure.ai.ml resets its own logger to INFO when imported; the child's level must hold.
        logging.getLogger("azure.ai.ml").setLevel(logging.INFO)
        experimental = logging.getLogger("azure.ai.ml._utils._experimental")
        assert not experimental.isEnabledFor(logging.WARNING)
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)


def test_find_root_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="start Jupyter inside the repository clone"):
        find_root(tmp_path)
    assert find_root(NOTEBOOKS) == REPO_ROOT


def parameter_defaults(name: str) -> dict[str, str]:
    """NAME -> default of every ``NAME = os.environ.get("VAR", "default")`` in the first cell."""
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    source = next(cell.source for cell in notebook.cells if cell.cell_type == "code")
    defaults = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            arguments = node.value.args
            if len(arguments) == 2 and isinstance(arguments[1], ast.Constant):
                defaults[ast.unparse(node.targets[0])] = arguments[1].value
    return defaults


def test_05_submits_nothing_by_default_and_names_a_sandbox_model() -> None:
    defaults = parameter_defaults("05_azure")
    assert defaults["SUBMIT"] == "never"
    assert defaults["MODEL_NAME"] == "ppe-hardhat-notebook-sandbox"
    production = load_config("tour").registry.model_name
    assert defaults["MODEL_NAME"] != production
    notebook = nbformat.read(NOTEBOOKS / "05_azure.ipynb", as_version=4)
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert 'if SUBMIT != "yes":' in code, "only an explicit 'yes' may submit"


def shown_commands() -> list[tuple[str, str]]:
    """(where, command line) for every `ppe` command in the README's and notebooks' code blocks."""
    texts = [("README.md", README.read_text(encoding="utf-8"))]
    texts.append(("notebooks/README.md", (NOTEBOOKS / "README.md").read_text(encoding="utf-8")))
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        texts += [
            (path.name, cell.source) for cell in notebook.cells if cell.cell_type == "markdown"
        ]
    commands = []
    for where, text in texts:
        for block in FENCE.findall(text):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line.split(" #")[0])
                while words and "=" in words[0] and not words[0].startswith("-"):
                    words = words[1:]  # VAR=value prefixes
                if words and words[0] in ("ppe", ".venv/bin/ppe"):
                    commands.append((where, " ".join(words[1:])))
    return commands


def test_the_shown_commands_include_the_ones_readers_copy() -> None:
    shown = [command for _, command in shown_commands()]
    assert any(command.startswith("edge manifest") for command in shown)
    assert any(command.startswith("aml data upload") for command in shown)
    assert any(command.startswith("aml submit") for command in shown)


@pytest.mark.parametrize(("where", "command"), shown_commands())
def test_every_shown_ppe_command_parses(where: str, command: str) -> None:
    parser = get_args_parser()
    try:
        parser.parse_args(shlex.split(command))
    except SystemExit as error:
        assert error.code == 0, f"{where}: `ppe {command}` is refused by the ppe parser"


def test_readme_terraform_variable_names_exist() -> None:
    """An undeclared name in terraform.tfvars only warns, so a wrong name silently does nothing.

    https://developer.hashicorp.com/terraform/language/values/variables#variable-definitions-tfvars-files
    """
    with (REPO_ROOT / "infrastructure" / "variables.tf").open(encoding="utf-8") as handle:
        declared = {name.strip('"') for block in hcl2.load(handle)["variable"] for name in block}
    named = re.findall(r"`([a-z][a-z0-9_]*) = [^`]+`", README.read_text(encoding="utf-8"))
    assert named, "the README names no Terraform variable any more: update this test"
    unknown = sorted(set(named) - declared)
    assert unknown == [], f"README.md names Terraform variables that do not exist: {unknown}"


def test_readme_paths_exist() -> None:
    """Every repository path the README names in backticks exists (run-folder paths aside)."""
    text = README.read_text(encoding="utf-8")
    run_folders = {"data", *graph.step_names()}
    paths = {
        token.rstrip("/")
        for token in re.findall(r"`([A-Za-z0-9_.-]+/[A-Za-z0-9_.-][A-Za-z0-9_./-]*)`", text)
        if token.split("/")[0] not in {"outputs", ".venv", ".tools", *run_folders}
    }
    paths |= {
        target.split("#")[0]
        for target in re.findall(r"\]\(([^)\s]+)\)", text)
        if not target.startswith(("http://", "https://", "#"))
    }
    assert "infrastructure/examples/dev_low_cost" in paths
    missing = sorted(path for path in paths if not (REPO_ROOT / path).exists())
    assert missing == [], f"README.md points at paths that do not exist: {missing}"


def test_showcase_photos_are_in_the_fixture() -> None:
    annotations = REPO_ROOT / "testing" / "fixtures" / "hardhat_sample" / "annotations"
    for name in SHOWCASE_PHOTOS:
        assert (annotations / f"{name}.xml").is_file(), name
    assert len(set(SHOWCASE_PHOTOS)) == len(SHOWCASE_PHOTOS) == 8


def test_notebooks_readme_documents_the_parameters() -> None:
    text = (NOTEBOOKS / "README.md").read_text(encoding="utf-8")
    for name in ("00_setup", "05_azure"):
        for value in parameter_defaults(name).values():
            assert f"`{value}`" in text, f"notebooks/README.md does not mention the default {value}"


def terraform_defaults() -> dict[str, object]:
    with (REPO_ROOT / "infrastructure" / "variables.tf").open(encoding="utf-8") as handle:
        blocks = hcl2.load(handle)["variable"]
    # python-hcl2 keeps a string's quotes.
    return {
        name.strip('"'): body["default"].strip('"')
        if isinstance(body.get("default"), str)
        else body.get("default")
        for block in blocks
        for name, body in block.items()
    }


def test_05_costs_name_the_terraform_defaults_and_cite_their_sources() -> None:
    """05 states no price of its own: each billing rule cites a Microsoft page, and the SKUs,
    region and price queries it shows are the ones `terraform apply` creates by default (a query
    for another SKU would price something else). The Retail Prices API and its filter fields:
    https://learn.microsoft.com/rest/api/cost-management/retail-prices/azure-retail-prices
    """
    notebook = nbformat.read(NOTEBOOKS / "05_azure.ipynb", as_version=4)
    text = notebook.cells[0].source
    section = text.split("## What `terraform apply` creates, and what it costs", 1)[1]
    defaults = terraform_defaults()
    pairs = re.findall(r"\(`([a-z_]+)`: `([^`]+)`\)", section)
    assert {name for name, _ in pairs} >= {
        "gpu_cluster_vm_size",
        "cpu_cluster_vm_size",
        "iothub_sku_name",
        "container_registry_sku",
    }
    for name, value in pairs:
        assert defaults[name] == value, (
            f"05 says {name} defaults to {value}, variables.tf to {defaults[name]}"
        )
    idle = defaults["cluster_idle_minutes_before_scale_down"]
    assert f"`cluster_idle_minutes_before_scale_down` ({idle})" in section
    assert f"+ {idle} idle minutes" in section
    regions = set(re.findall(r"armRegionName eq '([a-z0-9]+)'", section))
    assert regions == {defaults["location"]} and f"`location`, `{defaults['location']}`" in section
    assert re.findall(r"armSkuName eq '([^']+)'", section) == [defaults["gpu_cluster_vm_size"]]
    assert f"'IoT Hub' and skuName eq '{defaults['iothub_sku_name']}'" in section
    assert f"'Container Registry' and skuName eq '{defaults['container_registry_sku']}'" in section
    # Every note the table cites exists and names a Microsoft page; no figure goes unsourced.
    cited = set(re.findall(r"\[(\d)\]", section.split("\n- [1]", 1)[0]))
    notes = dict(re.findall(r"^- \[(\d)\] (.*?)(?=^- \[|^\S)", section, re.MULTILINE | re.DOTALL))
    assert cited and cited == set(notes), (cited, set(notes))
    for number, note in notes.items():
        assert re.search(r"https://(learn|azure)\.microsoft\.com/", note), f"note [{number}]"
    for paragraph in section.split("\n\n"):
        if re.search(r"US\$|\$\d+\.\d|\bdollars?\b|\bUSD\b|€|£", paragraph):
            assert "microsoft.com/" in paragraph and "not a quote" in paragraph, paragraph
    assert "read on 20" in section, "say when the pages were read"


def test_02_describes_the_tour_profile_it_trains() -> None:
    """02's account of the default run (epochs, batch, scenes, input size) is tour.yaml's."""
    config = load_config("tour")
    text = " ".join(
        nbformat.read(NOTEBOOKS / "02_training.ipynb", as_version=4).cells[0].source.split()
    )
    train = round(config.data.synth.num_images * config.data.split.train)
    synth, size = config.data.synth, config.model.image_size
    assert (
        f"{config.train.epochs} epochs in batches of {config.train.batch_size} on {train} scenes "
        f"of {synth.width}x{synth.height}, letterboxed to {size}x{size}"
    ) in text
