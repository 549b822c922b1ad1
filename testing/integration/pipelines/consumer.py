"""Checks of a product repository that reuses the templates: ado_pipelines/examples/consumer/.

- :func:`graph_errors`: every ``template:`` reference of the consumer (``x.yml@alias`` against
  this repository's templates, plain ones against the consumer's own files) exists, is passed
  only declared parameters and every required one, literals within ``values:`` and of the right
  type; the alias is a pinned repository resource; templates that take ``toolingRepository`` get
  that alias (or their jobs would look for the tooling in the product's checkout).
- :func:`workspace_steps`: the consumer's pipelines rendered through the templates (render.py),
  with each step's script, working directory and environment as the agent would see them in a
  workspace laid out by the job's own ``checkout`` steps.
- :func:`path_errors`: files a script or a step names that are not in that workspace.
"""

from __future__ import annotations

import itertools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ado import (
    PIPELINES,
    REPO_ROOT,
    Reference,
    _commands_in,
    _type_error,
    declared_parameters,
    load,
    references,
)
from .render import Renderer, Repositories, expand_macros, jobs, variable_values

CONSUMER = PIPELINES / "examples" / "consumer"
CONSUMER_PIPELINES = ("pipelines/training.yml", "pipelines/edge_delivery.yml")
#: The folder name of the consumer's own checkout in the example workspace (its repository name).
CONSUMER_REPOSITORY = "site-a"
TOOLING_PARAMETER = "toolingRepository"
#: Options of ppe commands whose values are files or folders the command reads.
INPUT_OPTIONS = frozenset(
    {"--config", "--data", "--annotations", "--images", "--env-file", "--template", "--schemas",
     "--model", "--conda-dir", "--module-json"}
)  # fmt: skip
_PATH_LIKE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_./-]*$")
_FILE_SUFFIXES = (".sh", ".json", ".yml", ".yaml", ".py", ".txt", ".toml", ".lock")


def yaml_files(root: Path) -> list[Path]:
    """The consumer's pipeline YAML files."""
    return sorted(root.rglob("*.yml"))


def repository_resources(document: Any) -> dict[str, dict[str, Any]]:
    """``resources.repositories`` of a pipeline, by alias."""
    resources = document.get("resources") if isinstance(document, dict) else None
    found = {}
    for entry in (resources or {}).get("repositories") or []:
        if isinstance(entry, dict) and "repository" in entry:
            found[str(entry["repository"])] = entry
    return found


def graph_errors(root: Path, templates_root: Path, repository_name: str) -> list[str]:
    """Template references, parameters and repository resources of a consumer under ``root``.

    ``repository_name`` is ``<project>/<repository>`` of this repository in Azure DevOps (what
    Terraform creates); every resource that names it must pin a tag.
    """
    errors: list[str] = []
    for path in yaml_files(root):
        name = path.relative_to(root).as_posix()
        document = load(path)
        resources = repository_resources(document)
        for alias, entry in resources.items():
            if entry.get("type") != "git" or entry.get("name") != repository_name:
                errors.append(
                    f"{name}: repository resource {alias!r} is {entry.get('type')} "
                    f"{entry.get('name')!r}, not the templates repository git {repository_name!r}"
                )
            if not str(entry.get("ref", "")).startswith("refs/tags/"):
                errors.append(
                    f"{name}: repository resource {alias!r} is not pinned to a tag "
                    f"(ref {entry.get('ref')!r}; use refs/tags/<version>)"
                )
        repositories = Repositories(root, {alias: templates_root for alias in resources})
        for reference in references(path, document):
            errors += _reference_errors(name, path, reference, repositories, set(resources))
    return errors


def _reference_errors(
    name: str, path: Path, reference: Reference, repositories: Repositories, aliases: set[str]
) -> list[str]:
    where = f"{name} at {reference.where}"
    _, _, alias = reference.target.partition("@")
    if alias and alias not in aliases:
        return [f"{where}: {reference.target} names no repository resource of this pipeline"]
    target = repositories.resolve(reference.target, path)
    if not target.is_file():
        return [f"{where}: template {reference.target} does not exist ({target})"]
    errors = []
    declared = declared_parameters(load(target))
    for argument, value in reference.arguments.items():
        if argument not in declared:
            errors.append(
                f"{where}: passes {argument!r}, which {reference.target} does not declare"
            )
            continue
        problem = _type_error(declared[argument], value)
        if problem:
            errors.append(f"{where}: {reference.target} parameter {argument!r} {problem}")
    for parameter in declared.values():
        if not parameter.has_default and parameter.name not in reference.arguments:
            errors.append(
                f"{where}: does not pass {parameter.name!r}, which {reference.target} requires"
            )
    if alias and TOOLING_PARAMETER in declared:
        passed = reference.arguments.get(TOOLING_PARAMETER)
        if passed != alias:
            errors.append(
                f"{where}: passes {TOOLING_PARAMETER}={passed!r}; it must be {alias!r}, the "
                "resource the templates come from, or the jobs look for ppe in this repository"
            )
    return errors


# ------------------------------------------------------------------------------------------------
# Rendered steps in a workspace
# ------------------------------------------------------------------------------------------------


@dataclass
class Step:
    """One rendered step as the agent runs it."""

    pipeline: str
    job: str
    template: str  # the template file that wrote it, relative to its repository
    display_name: str
    kind: str  # "script", "task", "checkout", ...
    script: str  # with macros expanded ("" for steps without one)
    working_directory: Path
    env: dict[str, str]
    raw: dict[str, Any]


@dataclass
class Workspace:
    """The agent's folders for one job (Azure Pipelines' layout under $(Pipeline.Workspace))."""

    root: Path

    @property
    def sources(self) -> Path:
        return self.root / "s"

    def predefined(self, self_path: Path) -> dict[str, str]:
        """Predefined variables (learn.microsoft.com, "Use predefined variables")."""
        return {
            "Pipeline.Workspace": str(self.root),
            "Agent.BuildDirectory": str(self.root),
            "Build.SourcesDirectory": str(self.sources),
            "System.DefaultWorkingDirectory": str(self.sources),
            "Build.Repository.LocalPath": str(self_path),
            "Build.ArtifactStagingDirectory": str(self.root / "a"),
            "Agent.TempDirectory": str(self.root / "_temp"),
            "Agent.ToolsDirectory": str(self.root / "_tool"),
            "Common.TestResultsDirectory": str(self.root / "TestResults"),
            "Build.BuildId": "4242",
            "Build.BuildNumber": "20261201.1",
            "Build.SourceBranch": "refs/heads/main",
            "System.AccessToken": "job-access-token",
            "System.CollectionUri": "https://dev.azure.com/contoso/",
        }


def checkout_layout(steps: list[dict[str, Any]], workspace: Workspace) -> dict[str, Path]:
    """Where each checked-out repository lands, by alias (``self`` included).

    One checkout: ``s``; several: ``s/<repository name>`` unless the step sets ``path`` (relative
    to the workspace) (https://learn.microsoft.com/azure/devops/pipelines/repos/multi-repo-checkout).
    """
    checkouts = [step for step in steps if "checkout" in step and step["checkout"] != "none"]
    layout = {}
    for step in checkouts:
        alias = str(step["checkout"])
        if "path" in step:
            layout[alias] = workspace.root / str(step["path"])
        elif len(checkouts) == 1:
            layout[alias] = workspace.sources
        else:
            layout[alias] = workspace.sources / (CONSUMER_REPOSITORY if alias == "self" else alias)
    return layout


def render_consumer(
    consumer_root: Path, templates_root: Path, pipeline: str, runtime: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One consumer pipeline expanded through the templates of ``templates_root``."""
    path = consumer_root / pipeline
    aliases = {alias: templates_root for alias in repository_resources(load(path))}
    return Renderer(Repositories(consumer_root, aliases)).pipeline(path, runtime)


def pipeline_variables(rendered: dict[str, Any], groups: dict[str, set[str]]) -> dict[str, str]:
    """Pipeline-level variables; a group's keys get placeholder values named after them."""
    values: dict[str, str] = {}
    for item in rendered["variables"]:
        if isinstance(item, dict) and "group" in item:
            for key in groups.get(str(item["group"]), set()):
                values[key] = f"group-{key.lower().replace('_', '-')}"
    values.update(variable_values(rendered["variables"]))
    return values


def workspace_steps(
    pipeline: str,
    rendered: dict[str, Any],
    workspace: Workspace,
    pipeline_values: dict[str, str],
    set_by_steps: dict[str, str],
) -> list[Step]:
    """Every step of every job, with macros expanded as the agent expands them.

    ``set_by_steps``: values that earlier steps set at run time (``task.setvariable``); runtime
    expressions (``$[ ... ]``) stand for a plausible value ("7").
    """
    found = []
    for job in jobs(rendered):
        layout = checkout_layout(job.steps, workspace)
        values = {
            **workspace.predefined(layout.get("self", workspace.sources)),
            **pipeline_values,
            **job.variables(),
        }
        values.update(set_by_steps)
        values = {k: ("7" if v.strip().startswith("$[") else v) for k, v in values.items()}
        for step in job.steps:
            template = step.get("__template__")
            if isinstance(template, Path):
                template_name = (
                    template.relative_to(REPO_ROOT).as_posix()
                    if template.is_relative_to(REPO_ROOT)
                    else template.name
                )
            else:
                template_name = pipeline
            inputs = step.get("inputs") or {}
            if "script" in step or "bash" in step:
                kind, script = "script", str(step.get("script", step.get("bash")))
                directory = str(step.get("workingDirectory", "$(System.DefaultWorkingDirectory)"))
            elif "task" in step:
                kind, script = "task", str(inputs.get("inlineScript", ""))
                directory = str(inputs.get("workingDirectory", "$(System.DefaultWorkingDirectory)"))
            else:
                kind, script, directory = next(iter(step)), "", "$(System.DefaultWorkingDirectory)"
            env = {
                str(k): expand_macros(str(v), values) for k, v in (step.get("env") or {}).items()
            }
            found.append(
                Step(
                    pipeline=pipeline,
                    job=job.name,
                    template=template_name,
                    display_name=str(step.get("displayName", "")),
                    kind=kind,
                    script=expand_macros(script, values),
                    working_directory=Path(expand_macros(directory, values)),
                    env=env,
                    raw=step,
                )
            )
    return found


def ppe_argvs(step: Step) -> list[tuple[str, ...]]:
    """The ``ppe`` command lines of a rendered step's script."""
    return [tuple(tokens) for tokens in _commands_in(step.script)]


def _candidate_paths(step: Step) -> list[str]:
    """Relative paths a step reads: ppe input options, path-like script words, its env values."""
    names: list[str] = []
    for argv in ppe_argvs(step):
        for option, value in itertools.pairwise(argv):
            if (
                option in INPUT_OPTIONS
                and not value.startswith("/")
                and ("/" in value or value.endswith(_FILE_SUFFIXES))
            ):
                names.append(value)
    for line in re.sub(r"\\\n", " ", step.script).splitlines():
        if line.strip().startswith("#"):
            continue
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            continue  # a line of a heredoc or a multi-line quote: not a command line
        # A shell assignment (module_json='x/y.json') names its value.
        values = [re.sub(r"^[A-Za-z_][A-Za-z0-9_]*=", "", token) for token in tokens]
        names += [value for value in values if _looks_like_a_file(value)]
    names += [value for value in step.env.values() if _looks_like_a_file(value)]
    return names


def _looks_like_a_file(token: str) -> bool:
    """A relative path with a folder part that is a file name or exists in this repository."""
    if not _PATH_LIKE.match(token) or token.startswith(("/", "-")) or "/" not in token:
        return False
    return token.endswith(_FILE_SUFFIXES) or (REPO_ROOT / token).exists()


def path_errors(steps: list[Step]) -> list[str]:
    """Working directories that do not exist, and relative files a step names that are not there.

    A file a step writes (``--out``, ``--dest``) is not named here; everything named is read.
    Paths are resolved against the step's working directory, as the agent runs it.
    """
    errors = []
    for step in steps:
        where = f"{step.pipeline} {step.job} [{step.template}] {step.display_name!r}"
        if step.kind in ("script", "task") and not step.working_directory.is_dir():
            errors.append(f"{where}: working directory {step.working_directory} does not exist")
            continue
        for name in _candidate_paths(step):
            if not (step.working_directory / name).exists():
                errors.append(
                    f"{where}: refers to {name}, which {step.working_directory} does not have"
                )
    return errors
