"""A product repository that reuses the templates (ado_pipelines/examples/consumer/) works.

Azure DevOps reads only the template files of a repository resource; the expanded pipeline runs
"as if it were defined entirely in the source repo", so "you can't use scripts from the template
repo" (https://learn.microsoft.com/azure/devops/pipelines/process/templates#use-other-repositories).
The templates therefore check the templates repository out beside the product's (``checkout:
<alias>`` fetches the resource's pinned ``ref``,
https://learn.microsoft.com/azure/devops/pipelines/repos/multi-repo-checkout) and install ``ppe``
from it. These tests hold that rule: the consumer's pipelines are rendered through this
repository's templates, the tooling step is run in a workspace that holds only the consumer
example and the checked-out templates repository, and every step's ``ppe`` command line and every
file it names must work there.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from .ado import (
    PIPELINES,
    REPO_ROOT,
    TerraformFacts,
    environments_used,
    forbidden_pattern_errors,
    load,
    variable_errors,
)
from .ado import service_connections_used as connections_used
from .consumer import (
    CONSUMER,
    CONSUMER_PIPELINES,
    Step,
    Workspace,
    checkout_layout,
    graph_errors,
    path_errors,
    pipeline_variables,
    ppe_argvs,
    render_consumer,
    repository_resources,
    workspace_steps,
    yaml_files,
)
from .render import RenderError, jobs
from .test_language_service import failing, validate

#: About this many seconds on 2 cores: scheduled first (testing/conftest.py).
pytestmark = pytest.mark.heavy(80)

TOOLING_TEMPLATE = "ado_pipelines/templates/steps/ppe_tooling.yml"
# Every ppe command the two consumer pipelines must run (so an empty extraction cannot pass).
EXPECTED_COMMANDS = {
    ("aml", "build"),
    ("aml", "submit"),
    ("aml", "models", "download"),
    ("data", "import"),
    ("export",),
    ("edge", "manifest"),
}
_PARSE = """
import contextlib, io, json, sys
import ppe
from ppe.cli import get_args_parser
parser = get_args_parser()
errors = []
for argv in json.load(sys.stdin):
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
        errors.append(None)
    except SystemExit as exit_:
        lines = stderr.getvalue().strip().splitlines() or ["exit " + str(exit_.code)]
        errors.append(None if exit_.code in (0, None) else lines[-1])
print(json.dumps({"package": ppe.__file__, "errors": errors}))
"""


EXCLUDE = ("--exclude-standard",)  # what .gitignore leaves out is not in a checkout


def _copy_repository(destination: Path) -> None:
    """This repository's files as a checkout of its tag holds them (tracked and to-be-tracked)."""
    listed = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "ls-files", "-z", "--cached", "--others", *EXCLUDE],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


@dataclass
class Agent:
    """A workspace after the tooling step ran: what later steps of the job see."""

    workspace: Workspace
    layout: dict[str, Path]
    set_variables: dict[str, str]
    path: str

    @property
    def tooling(self) -> Path:
        return Path(self.set_variables["ppeTooling"])


def _tooling_step(steps: list[Step]) -> Step:
    matches = [s for s in steps if s.template == TOOLING_TEMPLATE and s.kind == "script"]
    assert matches, "no job runs ado_pipelines/templates/steps/ppe_tooling.yml"
    return matches[0]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, groups: dict[str, set[str]]) -> Agent:
    """Lay out a job's workspace from its checkouts and run the rendered tooling step in it."""
    workspace = Workspace(tmp_path_factory.mktemp("agent") / "1")
    rendered = render_consumer(CONSUMER, REPO_ROOT, CONSUMER_PIPELINES[0])
    first_job = next(jobs(rendered))
    layout = checkout_layout(first_job.steps, workspace)
    assert set(layout) == {"self", "ppe_templates"}, layout
    shutil.copytree(CONSUMER, layout["self"])  # the product repository: nothing of this one
    _copy_repository(layout["ppe_templates"])
    steps = workspace_steps(
        CONSUMER_PIPELINES[0], rendered, workspace, pipeline_variables(rendered, groups), {}
    )
    tooling = _tooling_step(steps)
    tooling.working_directory.mkdir(parents=True, exist_ok=True)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_"))}
    completed = subprocess.run(
        ["bash", "-c", tooling.script],
        cwd=tooling.working_directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    set_variables = dict(
        re.findall(r"##vso\[task\.setvariable variable=(\w+)\](.*)", completed.stdout)
    )
    prepended = re.findall(r"##vso\[task\.prependpath\](.*)", completed.stdout)
    return Agent(
        workspace, layout, set_variables, os.pathsep.join([*prepended, os.environ["PATH"]])
    )


def _all_steps(agent: Agent, groups: dict[str, set[str]], templates_root: Path = REPO_ROOT,
               consumer_root: Path = CONSUMER) -> list[Step]:  # fmt: skip
    steps = []
    for pipeline in CONSUMER_PIPELINES:
        rendered = render_consumer(consumer_root, templates_root, pipeline)
        for job in jobs(rendered):  # every job lays out its checkouts the same way (or has none)
            assert checkout_layout(job.steps, agent.workspace) in ({}, agent.layout), job.name
        steps += workspace_steps(
            pipeline, rendered, agent.workspace, pipeline_variables(rendered, groups),
            agent.set_variables,
        )  # fmt: skip
    return steps


def _parse_errors(agent: Agent, argvs: list[tuple[str, ...]]) -> tuple[str, list[str | None]]:
    """Parse command lines with the ppe the tooling step installed (its own interpreter)."""
    completed = subprocess.run(
        [str(agent.tooling / ".venv" / "bin" / "python"), "-c", _PARSE],
        input=json.dumps([list(a) for a in argvs]),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout)
    return result["package"], result["errors"]


# ------------------------------------------------------------------------------------------------
# Static: schema, references, names
# ------------------------------------------------------------------------------------------------


def test_the_consumer_example_validates_with_the_language_service() -> None:
    files = yaml_files(CONSUMER)
    assert len(files) == 3, files
    report = validate(files)
    assert report["files"] == len(files)
    assert failing(report) == []


def test_the_consumer_references_resolve_against_these_templates(terraform: TerraformFacts) -> None:
    repository = f"{terraform.project}/{terraform.repository}"
    assert graph_errors(CONSUMER, REPO_ROOT, repository) == []
    for pipeline in CONSUMER_PIPELINES:
        document = load(CONSUMER / pipeline)
        assert set(repository_resources(document)) == {"ppe_templates"}
        assert document["extends"]["template"].endswith("@ppe_templates")


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        ("pipelines/training.yml", "    toolingRepository: ppe_templates\n", "",
         "passes toolingRepository=None; it must be 'ppe_templates'"),
        ("pipelines/training.yml", "ref: refs/tags/v1.0.0", "ref: refs/heads/main",
         "is not pinned to a tag"),
        ("pipelines/training.yml", "stages/model_training.yml@", "stages/model_trainin.yml@",
         "model_trainin.yml@ppe_templates does not exist"),
        ("pipelines/training.yml", "    experiment: $(productExperiment)\n", "",
         "does not pass 'experiment'"),
        ("pipelines/edge_delivery.yml", "    deploymentsToKeep:", "    deploymentsToKept:",
         "passes 'deploymentsToKept'"),
        ("pipelines/edge_delivery.yml", "@ppe_templates\n  parameters:",
         "@templates\n  parameters:", "names no repository resource"),
    ],
)  # fmt: skip
def test_broken_consumer_references_are_caught(
    tmp_path: Path, terraform: TerraformFacts, file: str, old: str, new: str, expected: str
) -> None:
    copy = tmp_path / "consumer"
    shutil.copytree(CONSUMER, copy)
    text = (copy / file).read_text(encoding="utf-8")
    assert old in text, old
    (copy / file).write_text(text.replace(old, new), encoding="utf-8")
    errors = graph_errors(copy, REPO_ROOT, f"{terraform.project}/{terraform.repository}")
    assert any(expected in e for e in errors), errors


def test_the_consumer_uses_the_names_terraform_creates(terraform: TerraformFacts) -> None:
    # The product lives in the platform's project: Terraform's connection, variable group (through
    # the shared variables template) and environments. Nothing else exists there for it.
    assert set(connections_used(CONSUMER).values()) == {terraform.service_connection}
    common = load(PIPELINES / "variables" / "common.yml")
    assert {"group": terraform.variable_group} in common["variables"]
    edge = load(CONSUMER / "pipelines" / "edge_delivery.yml")
    assert set(edge["extends"]["parameters"]["environments"].values()) <= terraform.environments
    assert not environments_used(CONSUMER)  # named only through the typed parameter above


def test_every_consumer_variable_is_defined_and_no_forbidden_pattern(
    tmp_path: Path, groups: dict[str, set[str]]
) -> None:
    # The consumer's $(macros) come from its own variables file and, through the templates
    # repository's variables template, the platform's group and pinned versions.
    aliases = {"ppe_templates": REPO_ROOT}
    assert variable_errors(CONSUMER, groups, aliases) == []
    assert forbidden_pattern_errors(CONSUMER) == []
    copy = tmp_path / "consumer"
    shutil.copytree(CONSUMER, copy)
    training = copy / "pipelines" / "training.yml"
    text = training.read_text(encoding="utf-8")
    training.write_text(text.replace("$(productExperiment)", "$(experiment)"), "utf-8")
    errors = variable_errors(copy, groups, aliases)
    assert any("$(experiment) is not defined" in e for e in errors), errors


def test_the_consumer_config_is_a_valid_ppe_config() -> None:
    from ppe.config import load_config

    training = load(CONSUMER / "pipelines" / "training.yml")
    config = training["extends"]["parameters"]["config"]
    assert load_config(CONSUMER / config).name == "site-a"


# ------------------------------------------------------------------------------------------------
# Rendered and run in a product workspace
# ------------------------------------------------------------------------------------------------


def test_the_tooling_is_the_templates_repository_at_the_pinned_checkout(agent: Agent) -> None:
    # ppe_tooling.yml found the templates repository where the checkout put it, installed ppe
    # there with its make target, and put that ppe first on PATH for the later steps.
    assert agent.tooling == agent.layout["ppe_templates"]
    assert shutil.which("ppe", path=agent.path) == str(agent.tooling / ".venv" / "bin" / "ppe")
    assert agent.layout["self"] != agent.layout["ppe_templates"]
    assert not (agent.layout["self"] / "pyproject.toml").exists()  # only the product's files


def test_every_consumer_script_works_in_the_product_workspace(
    agent: Agent, groups: dict[str, set[str]]
) -> None:
    steps = _all_steps(agent, groups)
    scripts = [s for s in steps if s.script]
    assert len(scripts) >= 20, [s.display_name for s in scripts]
    # Every job that runs ppe installed it first with the tooling step.
    for job in {s.job for s in steps}:
        job_steps = [s for s in steps if s.job == job]
        if any(ppe_argvs(s) for s in job_steps):
            assert any(s.template == TOOLING_TEMPLATE for s in job_steps), job
    # Every script is valid bash once rendered.
    for step in scripts:
        checked = subprocess.run(
            ["bash", "-n"], input=step.script, capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, (step.display_name, checked.stderr)
    # Every ppe command line parses with the ppe the template installed.
    argvs = [argv for step in steps for argv in ppe_argvs(step)]
    found = {argv[: len(c)] for argv in argvs for c in EXPECTED_COMMANDS}
    assert found >= EXPECTED_COMMANDS, EXPECTED_COMMANDS - found
    package, errors = _parse_errors(agent, argvs)
    assert Path(package).is_relative_to(agent.tooling), package
    assert [(argv, e) for argv, e in zip(argvs, errors, strict=True) if e] == []
    # No step refers to a file the product workspace lacks.
    assert path_errors(steps) == []


def test_the_product_builds_its_azure_ml_job_from_its_own_checkout(
    agent: Agent, groups: dict[str, set[str]]
) -> None:
    # The first script of the training job, run as rendered in the product's workspace with the
    # installed ppe (azure-ai-ml builds and validates the job offline; nothing is submitted).
    steps = _all_steps(agent, groups)
    build = next(s for s in steps if s.display_name == "Build the Azure ML pipeline job")
    environment = {
        **os.environ,
        **build.env,
        "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
        "PATH": agent.path,
    }
    completed = subprocess.run(
        ["bash", "-c", build.script],
        cwd=build.working_directory,
        env={k: v for k, v in environment.items() if not k.startswith("VIRTUAL_ENV")},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    job_file = Path(re.search(r'--out "?([^"\s]+)', build.script).group(1))  # type: ignore[union-attr]
    job = yaml.safe_load(job_file.read_text(encoding="utf-8"))
    product = {
        v["name"]: v["value"]
        for v in load(CONSUMER / "pipelines" / "variables" / "product.yml")["variables"]
    }
    assert job["experiment_name"] == product["productExperiment"]
    assert job["inputs"]["data"]["path"] == f"azureml:{product['productDataAsset']}@latest"
    # The product's config travels in the job's code snapshot.
    snapshot = yaml.safe_load((job_file.parent / "code" / "config.yaml").read_text("utf-8"))
    assert snapshot["name"] == "site-a"


def test_a_template_reading_this_repositorys_layout_is_caught(
    tmp_path: Path, agent: Agent, groups: dict[str, set[str]]
) -> None:
    # The templates as they were before the tooling checkout: scripts ran in the product's checkout.
    templates = tmp_path / "templates_repository"
    shutil.copytree(PIPELINES, templates / "ado_pipelines")
    package = templates / "ado_pipelines" / "templates" / "jobs" / "edge_package.yml"
    text = package.read_text(encoding="utf-8")
    old = 'bash "$(ppeTooling)/environments/docker/stage_model.sh"'
    assert old in text
    package.write_text(text.replace(old, "bash environments/docker/stage_model.sh"), "utf-8")
    errors = path_errors(_all_steps(agent, groups, templates_root=templates))
    assert any("refers to environments/docker/stage_model.sh" in e for e in errors), errors


def test_a_product_path_the_product_lacks_and_a_bad_ppe_option_are_caught(
    tmp_path: Path, agent: Agent, groups: dict[str, set[str]]
) -> None:
    consumer = tmp_path / "consumer"
    shutil.copytree(CONSUMER, consumer)
    edge = consumer / "pipelines" / "edge_delivery.yml"
    text = edge.read_text(encoding="utf-8")
    edge.write_text(text.replace("data/calibration/images", "data/photos"), encoding="utf-8")
    errors = path_errors(_all_steps(agent, groups, consumer_root=consumer))
    assert any("refers to data/photos" in e for e in errors), errors

    templates = tmp_path / "templates_repository"
    shutil.copytree(PIPELINES, templates / "ado_pipelines")
    job = templates / "ado_pipelines" / "templates" / "jobs" / "aml_training.yml"
    job.write_text(job.read_text("utf-8").replace("--data-name", "--data-asset"), "utf-8")
    steps = _all_steps(agent, groups, templates_root=templates)
    argvs = [argv for step in steps for argv in ppe_argvs(step)]
    _, parse = _parse_errors(agent, argvs)
    assert any(e and "--data-asset" in e for e in parse), parse


def test_the_rollouts_run_in_the_products_azure_devops_environments(tmp_path: Path) -> None:
    consumer = tmp_path / "consumer"
    shutil.copytree(CONSUMER, consumer)
    edge = consumer / "pipelines" / "edge_delivery.yml"
    text = edge.read_text(encoding="utf-8")
    old = "      staging: staging\n      production: production\n"
    assert old in text
    edge.write_text(
        text.replace(old, "      staging: site-a-staging\n      production: site-a-live\n"), "utf-8"
    )
    rendered = render_consumer(consumer, REPO_ROOT, CONSUMER_PIPELINES[1])
    deployments = {
        job.stage["stage"]: job.job["environment"]
        for job in jobs(rendered)
        if "deployment" in job.job
    }
    assert deployments == {"deploy_staging": "site-a-staging", "deploy_production": "site-a-live"}
    # The devices' rollout (target condition, priority) stays the environment's own.
    variables = {job.stage["stage"]: job.variables() for job in jobs(rendered)}
    assert variables["deploy_staging"]["edgeTargetCondition"] == "tags.environment='staging'"


def test_the_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    consumer = tmp_path / "consumer"
    shutil.copytree(CONSUMER, consumer)
    training = consumer / "pipelines" / "training.yml"
    text = training.read_text(encoding="utf-8")
    training.write_text(
        text.replace("config: config/ppe.yaml", "config: ${{ format('{0}', 'x') }}"), "utf-8"
    )
    with pytest.raises(RenderError, match=r"format\(\) is not implemented"):
        render_consumer(consumer, REPO_ROOT, CONSUMER_PIPELINES[0])


# ------------------------------------------------------------------------------------------------
# The README's walk-through
# ------------------------------------------------------------------------------------------------


def _reuse_section() -> str:
    text = (PIPELINES / "README.md").read_text(encoding="utf-8")
    heading = "## Reusing the templates from another repository\n"
    assert heading in text
    return text.split(heading, 1)[1].split("\n## ", 1)[0]


def test_the_readme_walk_through_matches_the_example(
    terraform: TerraformFacts, ppe_parser: argparse.ArgumentParser
) -> None:
    section = " ".join(_reuse_section().split())  # wrapped lines joined
    # The resource name a user keeps is the one Terraform creates, as the example writes it.
    repository = f"{terraform.project}/{terraform.repository}"
    assert f"`{repository}`" in section
    for pipeline in CONSUMER_PIPELINES:
        assert (
            repository_resources(load(CONSUMER / pipeline))["ppe_templates"]["name"] == repository
        )
        assert f"`{pipeline}`" in section
    # Every file of the example is named; the training pipeline's name is the edge trigger's.
    for name in ("config/ppe.yaml", "data/calibration/", "pipelines/variables/product.yml"):
        assert name in section, name
    edge = load(CONSUMER / "pipelines" / "edge_delivery.yml")
    assert f"`{edge['resources']['pipelines'][0]['source']}`" in section
    # The data upload it tells a user to run parses, with the example's data asset name.
    upload = re.search(r"`ppe (aml data upload [^`]+)`", section)
    assert upload is not None
    arguments = ppe_parser.parse_args(upload.group(1).split())
    product = load(CONSUMER / "pipelines" / "variables" / "product.yml")["variables"]
    assert {"name": "productDataAsset", "value": arguments.name} in product
    # The authorisation step names the Terraform variable and its fields.
    variables = (REPO_ROOT / "infrastructure" / "variables.tf").read_text(encoding="utf-8")
    assert 'variable "ado_product_pipelines"' in variables
    assert "`ado_product_pipelines`" in section
    assert "pipeline_id =" in section and "deploys =" in section
    # The documents the choice rests on are cited.
    for url in (
        "https://learn.microsoft.com/azure/devops/pipelines/process/templates#use-other-repositories",
        "https://learn.microsoft.com/azure/devops/pipelines/repos/multi-repo-checkout",
        "https://learn.microsoft.com/azure/devops/pipelines/security/secure-access-to-repos",
    ):
        assert url in section, url
