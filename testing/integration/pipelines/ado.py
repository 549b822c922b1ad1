"""Offline checks of the Azure DevOps YAML under ado_pipelines/ that the schema cannot make.

Each check takes the pipelines folder (so the negative tests can run it on a broken copy) and
returns a list of findings, one readable line each; an empty list means the check passed.

- :func:`template_graph_errors`: every referenced template exists, every parameter passed is
  declared, every declared parameter is typed, every required one is passed, literal arguments
  respect ``values:``, and templates only read parameters they declare.
- :func:`ppe_invocations` / :func:`cli_errors`: every ``ppe`` command in a script body parses
  with the real ``ppe`` argument parser.
- :func:`variable_errors`: every ``$(macro)`` is defined where it is used.
- :func:`forbidden_pattern_errors`: no ``continueOnError: true``, ``--exit-zero``, ``|| true``,
  ``latest`` images, unpinned agent images, or steps without ``displayName``.
- :func:`terraform_facts`: what Terraform creates (service connection, variable group and its
  keys, environments, pipelines), read from infrastructure/*.tf with python-hcl2.
- :func:`service_connection_errors`: every service connection named is Terraform's, except the
  one documented IaC connection (:data:`IAC_SERVICE_CONNECTION`), used by the IaC pipeline only.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
PIPELINES = REPO_ROOT / "ado_pipelines"
INFRASTRUCTURE = REPO_ROOT / "infrastructure"

ENTRY_PIPELINES = (
    "ci_pipeline.yml",
    "iac_pipeline.yml",
    "model_training_pipeline.yml",
    "edge_deployment_pipeline.yml",
)
PINNED_VM_IMAGE = "ubuntu-24.04"
TEMPLATE_KINDS = ("steps", "jobs", "stages")
SCRIPT_KEYS = ("script", "bash", "inlineScript")

# Predefined variables the pipelines may read (learn.microsoft.com, "Use predefined variables").
PREDEFINED_VARIABLES = frozenset(
    {
        "Agent.TempDirectory",
        "Agent.ToolsDirectory",
        "Build.ArtifactStagingDirectory",
        "Build.BuildId",
        "Build.BuildNumber",
        "Build.Repository.LocalPath",
        "Build.SourceBranch",
        "Build.SourcesDirectory",
        "Common.TestResultsDirectory",
        "Pipeline.Workspace",
        "System.AccessToken",
        "System.CollectionUri",
        "System.DefaultWorkingDirectory",
    }
)

_MACRO = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.]*)\)")
# A shell variable in a script (``"${version}"``) holds a value known only when the step runs; it
# is parsed as "1", which every option type the CLI has accepts (text, path, integer).
_SHELL_VARIABLE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
_EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
_PARAMETER_REFERENCE = re.compile(r"\bparameters\.([A-Za-z_][A-Za-z0-9_]*)")
_IIF_TRUE_BRANCH = re.compile(r"^\s*iif\(.*?,\s*'([^']*)'\s*,\s*'[^']*'\s*\)\s*$", re.DOTALL)
_PPE_COMMAND = re.compile(r"(?<![\w./=-])(?:[\w./-]*/)?ppe(?=[ \t])")
# What may precede a command on a line: nothing, a shell operator, a subshell or a keyword.
_COMMAND_POSITION = re.compile(r"(^|&&|\|\||\||;|\(|\$\(|\bthen|\bdo|\belse|\btime|\bexec)\s*$")
_SHELL_OPERATORS = frozenset({"&&", "||", "|", ";", "(", ")", "&", ";;"})


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------


def yaml_files(root: Path) -> list[Path]:
    """Every YAML file under the pipelines folder, sorted; ``examples/`` (other repositories'
    pipelines, checked by consumer.py) left out."""
    return sorted(p for p in root.rglob("*.yml") if "examples" not in p.relative_to(root).parts)


def load(path: Path) -> Any:
    """Parse one YAML file (an empty file reads as an empty mapping)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {} if data is None else data


def kind_of(path: Path, root: Path) -> str:
    """``pipeline``, ``steps``, ``jobs``, ``stages`` or ``variables``, from the file's folder."""
    parts = path.relative_to(root).parts
    if len(parts) == 3 and parts[0] == "templates" and parts[1] in TEMPLATE_KINDS:
        return parts[1]
    if len(parts) == 2 and parts[0] == "variables":
        return "variables"
    return "pipeline"


def is_expression_key(key: object) -> bool:
    """Whether a mapping key is a compile-time directive such as ``${{ if ... }}``."""
    return isinstance(key, str) and key.strip().startswith("${{")


def walk(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Yield ``(path, node)`` for a node and everything below it."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, index))


def flatten_items(items: Any) -> Iterator[Any]:
    """List items with ``${{ if }}`` / ``${{ each }}`` blocks spliced in, as ADO expands them."""
    if not isinstance(items, list):
        return
    for item in items:
        if isinstance(item, dict) and item and all(is_expression_key(k) for k in item):
            for value in item.values():
                yield from flatten_items(value)
        else:
            yield item


# ------------------------------------------------------------------------------------------------
# Template graph
# ------------------------------------------------------------------------------------------------


@dataclass
class Parameter:
    """One declared template parameter."""

    name: str
    type: str | None
    has_default: bool
    values: list[str] | None


@dataclass
class Reference:
    """One ``template:`` reference found in a file."""

    source: Path
    where: str
    target: str
    arguments: dict[str, Any] = field(default_factory=dict)


def declared_parameters(document: Any) -> dict[str, Parameter]:
    """The parameters a template (or a pipeline's runtime parameters) declares."""
    declared: dict[str, Parameter] = {}
    raw = document.get("parameters") if isinstance(document, dict) else None
    if isinstance(raw, list):
        for entry in raw:
            if isinstance(entry, dict) and "name" in entry:
                values = entry.get("values")
                declared[str(entry["name"])] = Parameter(
                    name=str(entry["name"]),
                    type=entry.get("type"),
                    has_default="default" in entry,
                    values=[str(v) for v in values] if isinstance(values, list) else None,
                )
    elif isinstance(raw, dict):  # the old untyped form: name: default
        for name in raw:
            declared[str(name)] = Parameter(str(name), None, True, None)
    return declared


def references(path: Path, document: Any) -> list[Reference]:
    """Every ``template:`` reference in a document (``extends`` included)."""
    found = []
    for node_path, node in walk(document):
        if isinstance(node, dict) and isinstance(node.get("template"), str):
            arguments = node.get("parameters") or {}
            found.append(
                Reference(
                    source=path,
                    where="/".join(str(p) for p in node_path) or "/",
                    target=node["template"],
                    arguments=arguments if isinstance(arguments, dict) else {},
                )
            )
    return found


def candidate_targets(reference: Reference, declared: dict[str, Parameter]) -> list[str] | str:
    """The template paths a reference can name, or an error message.

    A path may use ``${{ parameters.x }}`` when ``x`` declares ``values:``; every value is tried.
    """
    if "@" in reference.target:
        return "references another repository: checked where that repository is built"
    names = _PARAMETER_REFERENCE.findall(reference.target)
    if not _EXPRESSION.search(reference.target):
        return [reference.target]
    if len(names) != 1 or names[0] not in declared or not declared[names[0]].values:
        return (
            f"template path {reference.target!r} is an expression; only ${{{{ parameters.x }}}} "
            "with a declared values: list can be checked"
        )
    values = declared[names[0]].values or []
    return [_EXPRESSION.sub(value, reference.target) for value in values]


def _resolve(source: Path, target: str, root: Path) -> Path:
    if target.startswith("/"):
        return (root.parent / target.lstrip("/")).resolve()
    return (source.parent / target).resolve()


def _is_literal(value: Any) -> bool:
    return not (isinstance(value, str) and ("$(" in value or "${{" in value or "$[" in value))


def _type_error(parameter: Parameter, value: Any) -> str | None:
    if not _is_literal(value):
        return None
    expected = parameter.type
    if expected == "boolean" and not isinstance(value, bool):
        return f"expects a boolean, got {value!r}"
    if expected == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return f"expects a number, got {value!r}"
    if expected == "string" and isinstance(value, dict | list):
        return f"expects a string, got a {type(value).__name__}"
    if expected in {"stepList", "jobList", "stageList", "deploymentList"} and not isinstance(
        value, list
    ):
        return f"expects a {expected}, got {value!r}"
    if parameter.values is not None and str(value) not in parameter.values:
        return f"{value!r} is not one of {parameter.values}"
    return None


def template_graph_errors(root: Path) -> list[str]:
    """Check every template reference, declaration and parameter use under ``root``."""
    errors: list[str] = []
    referenced: set[Path] = set()
    documents = {path: load(path) for path in yaml_files(root)}
    for path, document in documents.items():
        name = path.relative_to(root)
        declared = declared_parameters(document)
        for parameter in declared.values():
            if parameter.type is None:
                errors.append(f"{name}: parameter {parameter.name!r} has no type")
        used = set()
        for _, node in walk(document):
            if isinstance(node, str):
                for expression in _EXPRESSION.findall(node):
                    used.update(_PARAMETER_REFERENCE.findall(expression))
            if isinstance(node, dict):
                for key in node:
                    if isinstance(key, str):
                        for expression in _EXPRESSION.findall(key):
                            used.update(_PARAMETER_REFERENCE.findall(expression))
        for undeclared in sorted(used - set(declared)):
            errors.append(f"{name}: uses parameters.{undeclared}, which it does not declare")

        for reference in references(path, document):
            targets = candidate_targets(reference, declared)
            if isinstance(targets, str):
                if "another repository" not in targets:
                    errors.append(f"{name} at {reference.where}: {targets}")
                continue
            for target in targets:
                resolved = _resolve(path, target, root)
                if resolved not in documents:
                    errors.append(f"{name} at {reference.where}: template {target} does not exist")
                    continue
                referenced.add(resolved)
                target_declared = declared_parameters(documents[resolved])
                for argument, value in reference.arguments.items():
                    if argument not in target_declared:
                        errors.append(
                            f"{name} at {reference.where}: passes {argument!r}, which "
                            f"{target} does not declare"
                        )
                        continue
                    problem = _type_error(target_declared[argument], value)
                    if problem:
                        errors.append(
                            f"{name} at {reference.where}: {target} parameter {argument!r} "
                            f"{problem}"
                        )
                for parameter in target_declared.values():
                    if not parameter.has_default and parameter.name not in reference.arguments:
                        errors.append(
                            f"{name} at {reference.where}: does not pass {parameter.name!r}, "
                            f"which {target} requires"
                        )
    for path in documents:
        if kind_of(path, root) != "pipeline" and path not in referenced:
            errors.append(f"{path.relative_to(root)}: no pipeline or template uses it")
    return errors


# ------------------------------------------------------------------------------------------------
# ppe commands
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    """One ``ppe`` command line found in a script body."""

    file: str
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.file}: ppe {' '.join(self.argv)}"


def _substitute(text: str, declared: dict[str, Parameter]) -> str:
    """Replace template expressions and macros by plausible argument values."""

    def expression(match: re.Match[str]) -> str:
        body = match.group(1)
        iif = _IIF_TRUE_BRANCH.match(body)
        if iif:
            return iif.group(1)
        names = _PARAMETER_REFERENCE.findall(body)
        if len(names) == 1 and body.strip() == f"parameters.{names[0]}":
            parameter = declared.get(names[0])
            if parameter and parameter.values:
                return parameter.values[0]
        return "EXPR"

    return _MACRO.sub("MACRO", _EXPRESSION.sub(expression, text))


def _commands_in(script: str) -> Iterator[list[str]]:
    """Token lists following each ``ppe`` in a bash script, up to the end of its command."""
    joined = _SHELL_VARIABLE.sub("1", re.sub(r"\\\n", " ", script))
    for line in joined.splitlines():
        if line.strip().startswith("#"):
            continue
        for match in _PPE_COMMAND.finditer(line):
            if not _COMMAND_POSITION.search(line[: match.start()]):
                continue  # an argument or a message that mentions ppe, not a command
            lexer = shlex.shlex(line[match.end() :], posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            tokens: list[str] = []
            with contextlib.suppress(ValueError):  # an unmatched quote after the command ends it
                for token in lexer:
                    if token in _SHELL_OPERATORS:
                        break
                    tokens.append(token)
            yield tokens


def ppe_invocations(root: Path) -> list[Invocation]:
    """Every ``ppe`` command in the script bodies (and ``script`` parameters) under ``root``."""
    found = []
    for path in yaml_files(root):
        document = load(path)
        declared = declared_parameters(document)
        for node_path, node in walk(document):
            if isinstance(node, str) and node_path and node_path[-1] in SCRIPT_KEYS:
                for tokens in _commands_in(_substitute(node, declared)):
                    found.append(Invocation(str(path.relative_to(root)), tuple(tokens)))
    return found


def cli_error(parser: argparse.ArgumentParser, argv: tuple[str, ...]) -> str | None:
    """Parse ``argv`` with the ``ppe`` parser; the parser's message when it refuses."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(list(argv))
        except SystemExit as error:
            if error.code not in (0, None):
                return stderr.getvalue().strip().splitlines()[-1]
    return None


def cli_errors(root: Path, parser: argparse.ArgumentParser) -> list[str]:
    """Every ``ppe`` invocation that the real parser rejects."""
    errors = []
    for invocation in ppe_invocations(root):
        problem = cli_error(parser, invocation.argv)
        if problem:
            errors.append(f"{invocation}: {problem}")
    return errors


# ------------------------------------------------------------------------------------------------
# Variables
# ------------------------------------------------------------------------------------------------


def _variables_defined(
    document: Any,
    source: Path,
    root: Path,
    groups: dict[str, set[str]],
    aliases: dict[str, Path] | None = None,
) -> set[str]:
    """Variables a document defines itself or through the variables templates/groups it names
    (``x.yml@alias`` read from ``aliases[alias]``, the root of that repository)."""
    defined: set[str] = set()
    for node_path, node in walk(document):
        if not node_path or node_path[-1] != "variables":
            continue
        if isinstance(node, dict):
            defined.update(str(k) for k in node if not is_expression_key(k))
        for item in flatten_items(node):
            if not isinstance(item, dict):
                continue
            if "name" in item:
                defined.add(str(item["name"]))
            if "group" in item:
                defined.update(groups.get(str(item["group"]), set()))
            template = item.get("template")
            if isinstance(template, str) and "@" in template:
                path, _, alias = template.partition("@")
                included = (aliases or {}).get(alias, Path("/nonexistent")) / path.lstrip("/")
                if included.is_file():
                    defined.update(
                        _variables_defined(load(included), included, root, groups, aliases)
                    )
            elif isinstance(template, str):
                targets = candidate_targets(
                    Reference(source, "", template), declared_parameters(document)
                )
                for target in targets if isinstance(targets, list) else []:
                    included = _resolve(source, target, root)
                    if included.is_file():
                        defined.update(
                            _variables_defined(load(included), included, root, groups, aliases)
                        )
    # Output variables written with `##vso[task.setvariable variable=x]` in this file.
    text = yaml.safe_dump(document)
    defined.update(re.findall(r"task\.setvariable variable=([A-Za-z_][A-Za-z0-9_.]*)", text))
    return defined


def variable_errors(
    root: Path, groups: dict[str, set[str]], aliases: dict[str, Path] | None = None
) -> list[str]:
    """Every ``$(name)`` macro that its file cannot see.

    A file sees the predefined variables, the variables it defines (``variables:`` blocks, the
    variables templates and groups it includes, ``task.setvariable``). Templates therefore cannot
    read their caller's variables; the caller passes values in as parameters.
    """
    errors = []
    for path in yaml_files(root):
        document = load(path)
        visible = PREDEFINED_VARIABLES | _variables_defined(document, path, root, groups, aliases)
        for node_path, node in walk(document):
            if not isinstance(node, str):
                continue
            for name in _MACRO.findall(node):
                if name not in visible:
                    where = "/".join(str(p) for p in node_path)
                    errors.append(f"{path.relative_to(root)} at {where}: $({name}) is not defined")
    return errors


def variable_groups(root: Path) -> set[str]:
    """Names of the variable groups the YAML links."""
    names = set()
    for path in yaml_files(root):
        for node_path, node in walk(load(path)):
            if node_path and node_path[-1] == "group" and isinstance(node, str):
                names.add(node)
    return names


# ------------------------------------------------------------------------------------------------
# Forbidden patterns
# ------------------------------------------------------------------------------------------------

_FORBIDDEN_TEXT = (
    (re.compile(r"continueOnError:\s*(true|yes|on)\b", re.IGNORECASE), "continueOnError: true"),
    (re.compile(r"--exit-zero\b"), "--exit-zero"),
    (re.compile(r"\|\|\s*(true|:)(\s|$)"), "|| true"),
    (re.compile(r":latest\b|-latest\b"), "a 'latest' image"),
)


def _step_lists(document: Any) -> Iterator[tuple[str, list[Any]]]:
    for node_path, node in walk(document):
        if node_path and node_path[-1] == "steps" and isinstance(node, list):
            yield "/".join(str(p) for p in node_path), node


def forbidden_pattern_errors(root: Path) -> list[str]:
    """Failure-hiding settings, unpinned images and steps without a display name."""
    errors = []
    for path in yaml_files(root):
        name = path.relative_to(root)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for pattern, label in _FORBIDDEN_TEXT:
                if pattern.search(line):
                    errors.append(f"{name}:{number}: {label}: {line.strip()}")
        document = load(path)
        for node_path, node in walk(document):
            if node_path and node_path[-1] == "vmImage" and node != PINNED_VM_IMAGE:
                if isinstance(node, str) and node.strip().startswith("${{"):
                    continue
                errors.append(f"{name}: vmImage {node!r} is not the pinned {PINNED_VM_IMAGE}")
        for where, steps in _step_lists(document):
            for step in flatten_items(steps):
                if isinstance(step, str) or not isinstance(step, dict):
                    continue  # `- ${{ step }}` insertions: checked where they are written
                if "template" in step:
                    continue
                if not step.get("displayName"):
                    first = next(iter(step), "?")
                    errors.append(f"{name} at {where}: {first} step has no displayName")
    return errors


# ------------------------------------------------------------------------------------------------
# Terraform
# ------------------------------------------------------------------------------------------------


@dataclass
class TerraformFacts:
    """Names Terraform gives the Azure DevOps objects (with its default variables)."""

    service_connection: str
    variable_group: str
    variable_group_keys: set[str]
    environments: set[str]
    pipelines: dict[str, str]  # build definition name -> yml_path
    project: str = ""  # the Azure DevOps project
    repository: str = ""  # the Azure Repos repository that holds this template


def _load_hcl(path: Path) -> dict[str, Any]:
    import hcl2

    options = hcl2.SerializationOptions(strip_string_quotes=True, with_comments=False)
    with path.open(encoding="utf-8") as handle:
        result: dict[str, Any] = hcl2.load(handle, serialization_options=options)
    return result


def terraform_facts(infrastructure: Path = INFRASTRUCTURE) -> TerraformFacts:
    """Evaluate the names Terraform creates, from its variables' defaults and its locals."""
    variables: dict[str, Any] = {}
    locals_: dict[str, Any] = {}
    modules: dict[str, Any] = {}
    for tf in sorted(infrastructure.glob("*.tf")):
        parsed = _load_hcl(tf)
        for block in parsed.get("variable", []):
            for var_name, body in block.items():
                variables[var_name] = body.get("default")
        for block in parsed.get("locals", []):
            locals_.update({k: v for k, v in block.items() if not k.startswith("__")})
        for block in parsed.get("module", []):
            modules.update(block)

    def lookup(reference: str) -> Any:
        head, _, rest = reference.partition(".")
        parts = rest.split(".")
        value: Any = {"var": variables, "local": locals_}[head]
        for part in parts:
            value = value[part]
        return evaluate(value)

    def evaluate(value: Any) -> Any:
        if isinstance(value, str):
            whole = re.fullmatch(r"\$\{((?:var|local)\.[\w.]+)\}", value)
            if whole:
                return lookup(whole.group(1))
            return re.sub(
                r"\$\{((?:var|local)\.[\w.]+)\}", lambda m: str(lookup(m.group(1))), value
            )
        return value

    devops = next(
        body for body in modules.values() if str(body.get("source", "")).endswith("modules/devops")
    )
    service_connection = devops["service_connection"]
    if isinstance(service_connection, list):
        service_connection = service_connection[0]
    pipelines = evaluate(devops["pipelines"])
    return TerraformFacts(
        service_connection=evaluate(service_connection["name"]),
        variable_group=evaluate(devops["variable_group_name"]),
        variable_group_keys=set(evaluate(devops["pipeline_variables"])),
        environments=set(evaluate(devops["environments"]).values()),
        pipelines={p["name"]: p["yml_path"] for p in pipelines.values()},
        project=evaluate(devops["project_name"]),
        repository=evaluate(devops["repository_name"]),
    )


#: The one service connection a pipeline may name that Terraform does not create: the IaC
#: pipeline's privileged plan/apply connection. Terraform creates the Azure DevOps project that the
#: connection lives in (and cannot grant itself Owner), so an administrator creates it once, by
#: hand, as the README section below documents. Every other connection must be Terraform's.
IAC_SERVICE_CONNECTION = "sc-ppe-iac"
IAC_SERVICE_CONNECTION_DOCS = ("infrastructure/README.md", "## The IaC service connection")
#: The only files that may name it: the IaC entry pipeline and the Terraform stage template.
IAC_SERVICE_CONNECTION_FILES = frozenset({"iac_pipeline.yml", "templates/stages/terraform.yml"})


def _is_connection_key(key: str) -> bool:
    return key in {"azureSubscription", "connectedServiceNameARM"} or key.endswith(
        ("ServiceConnection", "serviceConnection")
    )


def service_connections_used(root: Path) -> dict[str, str]:
    """Literal service connection names in the YAML, with where they appear.

    Covers task inputs, template arguments and the defaults of connection parameters (a template
    that defaults a connection names it as surely as a pipeline that passes it).
    """
    used = {}
    for path in yaml_files(root):
        name = path.relative_to(root).as_posix()
        document = load(path)
        for node_path, node in walk(document):
            if not node_path or not isinstance(node, str) or not _is_literal(node):
                continue
            if _is_connection_key(str(node_path[-1])):
                used[f"{name} at {'/'.join(map(str, node_path))}"] = node
        raw = document.get("parameters") if isinstance(document, dict) else None
        for entry in raw if isinstance(raw, list) else []:
            if not isinstance(entry, dict) or not _is_connection_key(str(entry.get("name", ""))):
                continue
            for value in [entry.get("default"), *(entry.get("values") or [])]:
                if isinstance(value, str) and _is_literal(value):
                    used[f"{name} parameter {entry['name']}"] = value
    return used


def service_connection_errors(root: Path, terraform_connection: str) -> list[str]:
    """Service connections that are neither Terraform's nor the documented IaC connection, and
    uses of the IaC connection outside the IaC pipeline."""
    errors = []
    for where, connection in sorted(service_connections_used(root).items()):
        file = where.split(" ", 1)[0]
        if connection == terraform_connection:
            if file in IAC_SERVICE_CONNECTION_FILES:
                errors.append(
                    f"{where}: the IaC pipeline applies with {IAC_SERVICE_CONNECTION!r}; "
                    f"{connection!r} cannot create role assignments"
                )
        elif connection == IAC_SERVICE_CONNECTION:
            if file not in IAC_SERVICE_CONNECTION_FILES:
                errors.append(
                    f"{where}: {connection!r} is the privileged IaC connection; only "
                    f"{sorted(IAC_SERVICE_CONNECTION_FILES)} may use it, the others use "
                    f"{terraform_connection!r}"
                )
        else:
            errors.append(
                f"{where}: {connection!r} is neither created by Terraform "
                f"({terraform_connection!r}) nor the documented IaC connection "
                f"({IAC_SERVICE_CONNECTION!r}, {' '.join(IAC_SERVICE_CONNECTION_DOCS)})"
            )
    return errors


def environments_used(root: Path) -> dict[str, str]:
    """Literal Azure DevOps environment names: ``environment:`` values and arguments."""
    used = {}
    for path in yaml_files(root):
        document = load(path)
        for node_path, node in walk(document):
            if (
                node_path
                and node_path[-1] == "environment"
                and isinstance(node, str)
                and _is_literal(node)
            ):
                used[f"{path.relative_to(root)} at {'/'.join(map(str, node_path))}"] = node
        for parameter in declared_parameters(document).values():
            if parameter.name == "environment" and parameter.values:
                for value in parameter.values:
                    used[f"{path.relative_to(root)} parameter environment value {value}"] = value
    return used
