"""Compile-time expansion of Azure Pipelines YAML, enough for this repository's templates.

Azure DevOps expands templates when a run starts: template references (``- template: x.yml``,
``x.yml@alias`` from a repository resource), typed parameters with their defaults, ``${{ if }}``,
``${{ each }}``, ``${{ insert }}`` and template expressions
(https://learn.microsoft.com/azure/devops/pipelines/process/templates,
https://learn.microsoft.com/azure/devops/pipelines/process/expressions). This module does the same
for the constructs the templates here use, so a consumer's pipeline can be rendered the way the
service renders it and its steps checked. Anything it does not know (an unknown function, an
``else``, a ``variables.`` reference) raises :class:`RenderError` rather than guessing.

Macros (``$(name)``) are runtime values and stay as they are; :func:`expand_macros` replaces them
once the caller knows the values (as the agent does before a task runs).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ado import declared_parameters, is_expression_key, load

_WHOLE_EXPRESSION = re.compile(r"^\s*\$\{\{(.*)\}\}\s*$", re.DOTALL)
_EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
_MACRO = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.]*)\)")
_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*)|(?P<punct>[().,\[\]]))"
)
TEMPLATE_KINDS = ("stages", "jobs", "steps", "variables")


class RenderError(Exception):
    """The YAML uses something this expander does not implement, or breaks a template rule."""


@dataclass
class Repositories:
    """Where template references resolve: ``self`` and each repository resource alias."""

    self_root: Path
    aliases: dict[str, Path] = field(default_factory=dict)

    def resolve(self, reference: str, including: Path) -> Path:
        """The file a ``template:`` reference names, from the file that includes it."""
        path, _, alias = reference.partition("@")
        if alias:
            if alias == "self":
                return (self.self_root / path.lstrip("/")).resolve()
            if alias not in self.aliases:
                raise RenderError(f"{including}: {reference}: no repository resource {alias!r}")
            return (self.aliases[alias] / path.lstrip("/")).resolve()
        if path.startswith("/"):
            root = next(
                (r for r in [*self.aliases.values(), self.self_root] if _is_under(including, r)),
                self.self_root,
            )
            return (root / path.lstrip("/")).resolve()
        return (including.parent / path).resolve()


def _mark_steps(kind: str, items: list[Any], path: Path) -> None:
    """Record in each step (key ``__template__``) the innermost template file that wrote it."""
    if kind == "steps":
        for item in items:
            if isinstance(item, dict):
                item.setdefault("__template__", path)
        return
    for item in items:
        if not isinstance(item, dict):
            continue
        if "jobs" in item:
            _mark_steps("jobs", item["jobs"], path)
        deploy = (item.get("strategy") or {}).get("runOnce", {}).get("deploy", {})
        for steps in (item.get("steps"), deploy.get("steps")):
            if isinstance(steps, list):
                _mark_steps("steps", steps, path)


def _is_under(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


# ------------------------------------------------------------------------------------------------
# Expressions
# ------------------------------------------------------------------------------------------------


def _tokens(text: str) -> list[tuple[str, str]]:
    found = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise RenderError(f"cannot parse expression {text!r} at {text[position:]!r}")
        kind = match.lastgroup
        assert kind is not None
        found.append((kind, match.group(kind)))
        position = match.end()
    return found


class _Parser:
    def __init__(self, text: str, context: Mapping[str, Any]) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.position = 0
        self.context = context

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise RenderError(f"expression {self.text!r}: expected {value or 'more'}")
        self.position += 1
        return token

    def parse(self) -> Any:
        value = self.expression()
        if self.peek() is not None:
            raise RenderError(f"expression {self.text!r}: unexpected {self.peek()}")
        return value

    def expression(self) -> Any:
        kind, value = self.take()
        if kind == "string":
            return value[1:-1].replace("''", "'")
        if kind == "number":
            return float(value) if "." in value else int(value)
        if kind != "name":
            raise RenderError(f"expression {self.text!r}: unexpected {value!r}")
        if value in ("true", "false"):
            return value == "true"
        following = self.peek()
        if following is not None and following[1] == "(":
            return self.call(value)
        return self.path(value)

    def call(self, name: str) -> Any:
        self.take("(")
        arguments = []
        while self.peek() is not None and self.peek() != ("punct", ")"):
            arguments.append(self.expression())
            if self.peek() == ("punct", ","):
                self.take(",")
        self.take(")")
        return _call(name, arguments, self.text)

    def path(self, head: str) -> Any:
        if head not in self.context:
            raise RenderError(
                f"expression {self.text!r}: {head!r} is not available at compile time here"
            )
        value = self.context[head]
        while self.peek() in (("punct", "."), ("punct", "[")):
            _, punct = self.take()
            if punct == ".":
                _, key = self.take()
                value = _member(value, key, self.text)
            else:
                kind, key = self.take()
                self.take("]")
                index: Any = int(key) if kind == "number" else key.strip("'")
                value = _member(value, index, self.text)
        return value


def _member(value: Any, key: Any, text: str) -> Any:
    if isinstance(value, Mapping) and key in value:
        return value[key]
    if isinstance(value, list) and isinstance(key, int) and 0 <= key < len(value):
        return value[key]
    raise RenderError(f"expression {text!r}: no {key!r} in {value!r}")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return "" if value is None else str(value)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value != "" and value.lower() != "false"
    return bool(value)


def _call(name: str, arguments: list[Any], text: str) -> Any:
    # https://learn.microsoft.com/azure/devops/pipelines/process/expressions#functions
    lowered = name.lower()
    if lowered in ("eq", "ne") and len(arguments) == 2:
        left, right = (_text(a).lower() for a in arguments)
        return (left == right) == (lowered == "eq")
    if lowered == "not" and len(arguments) == 1:
        return not _truthy(arguments[0])
    if lowered == "and":
        return all(_truthy(a) for a in arguments)
    if lowered == "or":
        return any(_truthy(a) for a in arguments)
    if lowered == "iif" and len(arguments) == 3:
        return arguments[1] if _truthy(arguments[0]) else arguments[2]
    if lowered == "coalesce":
        return next((a for a in arguments if _text(a) != ""), "")
    raise RenderError(f"expression {text!r}: function {name}() is not implemented here")


def evaluate(text: str, context: Mapping[str, Any]) -> Any:
    """The value of one template expression (the text between ``${{`` and ``}}``)."""
    return _Parser(text, context).parse()


def interpolate(value: str, context: Mapping[str, Any]) -> Any:
    """A scalar with its template expressions replaced; a whole expression keeps its type."""
    whole = _WHOLE_EXPRESSION.match(value)
    if whole and "${{" not in whole.group(1):
        return evaluate(whole.group(1), context)
    return _EXPRESSION.sub(lambda m: _text(evaluate(m.group(1), context)), value)


# ------------------------------------------------------------------------------------------------
# Templates
# ------------------------------------------------------------------------------------------------


@dataclass
class Renderer:
    """Expands documents the way the service does at compile time."""

    repositories: Repositories

    def bind(self, path: Path, document: Any, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """A template's parameters: its declared defaults overlaid with the arguments."""
        declared = declared_parameters(document)
        raw = {p["name"]: p for p in document.get("parameters") or [] if isinstance(p, dict)}
        bound: dict[str, Any] = {}
        for name in arguments:
            if name not in declared:
                raise RenderError(f"{path}: is passed {name!r}, which it does not declare")
        for name, parameter in declared.items():
            if name in arguments:
                value = arguments[name]
            elif parameter.has_default:
                value = raw[name].get("default")
            else:
                raise RenderError(f"{path}: required parameter {name!r} is not passed")
            if parameter.values is not None and _text(value) not in parameter.values:
                raise RenderError(f"{path}: {name}={value!r} is not one of {parameter.values}")
            bound[name] = value
        return bound

    def template(self, reference: str, including: Path, arguments: Mapping[str, Any]) -> Any:
        """Render a referenced template: (its kind, the expanded items, its file)."""
        path = self.repositories.resolve(reference, including)
        if not path.is_file():
            raise RenderError(f"{including}: template {reference} does not exist ({path})")
        document = load(path)
        context = {"parameters": self.bind(path, document, arguments)}
        kinds = [kind for kind in TEMPLATE_KINDS if kind in document]
        if len(kinds) != 1:
            raise RenderError(f"{path}: expected one of {TEMPLATE_KINDS}, found {kinds}")
        items = self.items(document[kinds[0]], context, path)
        _mark_steps(kinds[0], items, path)
        return kinds[0], items

    def items(self, items: Any, context: Mapping[str, Any], source: Path) -> list[Any]:
        """A list with directives spliced in and template references expanded."""
        if not isinstance(items, list):
            raise RenderError(f"{source}: expected a list, got {items!r}")
        out: list[Any] = []
        for item in items:
            if isinstance(item, dict) and item and all(is_expression_key(k) for k in item):
                for key, body in item.items():
                    out.extend(self._directive(key, body, context, source))
            elif isinstance(item, dict) and isinstance(item.get("template"), str):
                reference = interpolate(item["template"], context)
                arguments = self.value(item.get("parameters") or {}, context, source)
                _, expanded = self.template(reference, source, arguments)
                out.extend(expanded)
            elif isinstance(item, str) and _WHOLE_EXPRESSION.match(item):
                value = interpolate(item, context)
                out.extend(value if isinstance(value, list) else [value])
            else:
                out.append(self.value(item, context, source))
        return out

    def _directive(self, key: str, body: Any, context: Mapping[str, Any], source: Path) -> Any:
        inner = _WHOLE_EXPRESSION.match(key)
        assert inner is not None
        text = inner.group(1).strip()
        if text.startswith("if "):
            return self.items(body, context, source) if _truthy(evaluate(text[3:], context)) else []
        each = re.fullmatch(r"each\s+(\w+)\s+in\s+(.+)", text, re.DOTALL)
        if each:
            out = []
            collection = evaluate(each.group(2), context)
            for element in collection.items() if isinstance(collection, dict) else collection:
                if isinstance(collection, dict):
                    element = {"key": element[0], "value": element[1]}
                out.extend(self.items(body, {**context, each.group(1): element}, source))
            return out
        raise RenderError(f"{source}: directive ${{{{ {text} }}}} is not implemented here")

    def value(self, node: Any, context: Mapping[str, Any], source: Path) -> Any:
        """Any node with its expressions evaluated."""
        if isinstance(node, str):
            return interpolate(node, context)
        if isinstance(node, list):
            return self.items(node, context, source)
        if isinstance(node, dict):
            result: dict[str, Any] = {}
            for key, child in node.items():
                if not is_expression_key(key):
                    result[str(interpolate(str(key), context))] = self.value(child, context, source)
                    continue
                text = _WHOLE_EXPRESSION.match(key).group(1).strip()  # type: ignore[union-attr]
                if text == "insert":
                    inserted = self.value(child, context, source)
                    if not isinstance(inserted, dict):
                        raise RenderError(f"{source}: ${{{{ insert }}}} of a non-mapping")
                    result.update(inserted)
                elif text.startswith("if "):
                    if _truthy(evaluate(text[3:], context)):
                        result.update(self.value(child, context, source))
                else:
                    raise RenderError(
                        f"{source}: ${{{{ {text} }}}} in a mapping is not implemented"
                    )
            return result
        return node

    def pipeline(self, path: Path, runtime: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """An entry pipeline that ``extends`` a stage template: its variables and stages."""
        document = load(path)
        context = {"parameters": self.bind(path, document, dict(runtime or {}))}
        variables = self.items(document.get("variables") or [], context, path)
        extends = document.get("extends")
        if not isinstance(extends, dict):
            raise RenderError(f"{path}: the consumer pipelines extend a stage template")
        arguments = self.value(extends.get("parameters") or {}, context, path)
        kind, stages = self.template(extends["template"], path, arguments)
        if kind != "stages":
            raise RenderError(f"{path}: extends a {kind} template; expected stages")
        return {"variables": variables, "stages": stages}


# ------------------------------------------------------------------------------------------------
# The rendered pipeline
# ------------------------------------------------------------------------------------------------


@dataclass
class Job:
    """One rendered job: its stage, name, variables and steps."""

    stage: dict[str, Any]
    job: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.stage['stage']}.{self.job.get('job') or self.job.get('deployment')}"

    @property
    def steps(self) -> list[dict[str, Any]]:
        if "steps" in self.job:
            return list(self.job["steps"])
        return list(self.job["strategy"]["runOnce"]["deploy"]["steps"])

    def variables(self) -> dict[str, str]:
        """Stage and job variables (the job's win), as name -> value."""
        found: dict[str, str] = {}
        for scope in (self.stage, self.job):
            found.update(variable_values(scope.get("variables") or {}))
        return found


def variable_values(variables: Any) -> dict[str, str]:
    """``variables:`` in either form (mapping, or a list of name/value items) as a mapping."""
    if isinstance(variables, dict):
        return {str(k): _text(v) for k, v in variables.items()}
    found = {}
    for item in variables:
        if isinstance(item, dict) and "name" in item:
            found[str(item["name"])] = _text(item.get("value"))
    return found


def jobs(rendered: Mapping[str, Any]) -> Iterator[Job]:
    """Every job of a rendered pipeline."""
    for stage in rendered["stages"]:
        for job in stage.get("jobs") or []:
            yield Job(stage, job)


def expand_macros(text: str, values: Mapping[str, str], depth: int = 0) -> str:
    """``$(name)`` replaced by its value, recursively (values may hold macros); others stay."""
    if depth > 10:
        raise RenderError(f"macro expansion does not terminate: {text!r}")
    expanded = _MACRO.sub(lambda m: values.get(m.group(1), m.group(0)), text)
    return expanded if expanded == text else expand_macros(expanded, values, depth + 1)
