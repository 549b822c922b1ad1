"""Offline stand-ins for `terraform validate`: parse, schema-check and evaluate Terraform code.

- Parsing uses HashiCorp's own HCL parser (npm `@cdktf/hcl2json`, WASM) through
  `testing/tools/hcl2json.mjs`; its JSON keeps attributes as values and blocks as lists of objects.
- `check_body` compares a resource/data/provider body with a provider schema (vendored under
  `testing/fixtures/schemas/terraform/`): unknown arguments, missing required ones, blocks written
  as attributes and the reverse, single blocks repeated.
- `evaluate` runs a validation condition, from the expression syntax tree that the same parser
  returns, on a Python value: enough of Terraform's language for `validation` blocks.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import gzip
import ipaddress
import json
import math
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
INFRASTRUCTURE = REPO_ROOT / "infrastructure"
NODE_TOOLS = REPO_ROOT / "testing" / "tools"
SCHEMAS = REPO_ROOT / "testing" / "fixtures" / "schemas" / "terraform"
SETUP_HINT = "run `make setup` (it installs testing/tools/node_modules and .venv-checkov)"

# Arguments every resource/data block accepts, owned by Terraform rather than by the provider.
META_ARGUMENTS = frozenset(
    {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"}
)

Spec = Mapping[str, Any]


def node_binary() -> str:
    """Return the `node` executable, failing (not skipping) the test when it is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"node is not on PATH; {SETUP_HINT}")
    if not (NODE_TOOLS / "node_modules" / "@cdktf" / "hcl2json").is_dir():
        pytest.fail(f"testing/tools/node_modules/@cdktf/hcl2json is missing; {SETUP_HINT}")
    return node


def run_node_tool(script: str, *args: str, stdin: str | None = None) -> tuple[int, Any]:
    """Run one of the node scripts in testing/tools and parse the JSON it prints.

    Args:
        script: File name under testing/tools (hcl2json.mjs or hclfmt.mjs).
        *args: Its command-line arguments.
        stdin: Text fed to its standard input.

    Returns:
        The exit status and the parsed JSON output.
    """
    completed = subprocess.run(
        [node_binary(), str(NODE_TOOLS / script), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    if not completed.stdout:
        pytest.fail(f"{script} printed nothing (exit {completed.returncode}): {completed.stderr}")
    return completed.returncode, json.loads(completed.stdout)


def terraform_files(root: Path = INFRASTRUCTURE) -> list[Path]:
    """All `.tf` files under `root`, skipping `.terraform/` provider caches."""
    return sorted(p for p in root.rglob("*.tf") if ".terraform" not in p.parts)


def parse_files(files: list[Path]) -> dict[Path, dict[str, Any]]:
    """Parse files with HashiCorp's HCL parser.

    Args:
        files: HCL files.

    Returns:
        For each file, ``{"json": body}`` or ``{"error": diagnostic}``.
    """
    _, result = run_node_tool("hcl2json.mjs", *(str(f) for f in files))
    return {Path(name): value for name, value in result.items()}


def expression_asts(expressions: list[str]) -> list[dict[str, Any]]:
    """Syntax trees of HCL expressions (from `getExpressionAst`), in order."""
    _, result = run_node_tool("hcl2json.mjs", "--expr", stdin=json.dumps(expressions))
    return [item["ast"] if "ast" in item else pytest.fail(item["error"]) for item in result]


def unwrap(expression: Any) -> str:
    """Strip the ``${...}`` that hcl2json puts around a non-literal expression."""
    if isinstance(expression, str) and expression.startswith("${") and expression.endswith("}"):
        return expression[2:-1]
    return json.dumps(expression)


# ------------------------------------------------------------------------------------------------
# Module model
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One labelled top-level block (resource, data, variable, output, module, provider...)."""

    file: Path
    kind: str
    labels: tuple[str, ...]
    body: dict[str, Any]

    @property
    def address(self) -> str:
        """Terraform-style address, e.g. ``azurerm_key_vault.this`` or ``variable.location``."""
        return (
            ".".join(self.labels)
            if self.kind == "resource"
            else ".".join((self.kind, *self.labels))
        )


def iter_blocks(parsed: Mapping[Path, Mapping[str, Any]]) -> Iterator[Block]:
    """Flatten hcl2json output into labelled blocks."""
    label_depth = {"resource": 2, "data": 2, "variable": 1, "output": 1, "module": 1, "provider": 1}
    for file, result in parsed.items():
        body = result["json"]
        for kind, content in body.items():
            depth = label_depth.get(kind, 0)
            if depth == 0:
                for item in content:
                    yield Block(file, kind, (), item)
            elif depth == 1:
                for label, items in content.items():
                    for item in items:
                        yield Block(file, kind, (label,), item)
            else:
                for type_name, named in content.items():
                    for name, items in named.items():
                        for item in items:
                            yield Block(file, kind, (type_name, name), item)


# ------------------------------------------------------------------------------------------------
# Schema check
# ------------------------------------------------------------------------------------------------


def load_schemas() -> dict[str, dict[str, Any]]:
    """Vendored provider schemas keyed by provider local name (azurerm, azuredevops, time)."""
    with gzip.open(SCHEMAS / "azurerm-4.55.0.schema.json.gz", "rt", encoding="utf-8") as handle:
        azurerm = json.load(handle)
    return {
        "azurerm": azurerm,
        "azuredevops": json.loads((SCHEMAS / "azuredevops-1.16.0.arguments.json").read_text()),
        "time": json.loads((SCHEMAS / "time-0.13.1.arguments.json").read_text()),
    }


def _is_block_value(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _block_attributes(spec: Spec) -> dict[str, Any] | None:
    if spec["type"] == "block":
        return dict(spec["block"])
    element = spec.get("element")
    if spec["type"] == "array" and element and element.get("type") == "block":
        return dict(element["block"])
    return None


def check_body(
    body: Mapping[str, Any], schema: Mapping[str, Spec], where: str, *, top_level: bool = True
) -> list[str]:
    """Compare a block body with its schema.

    Args:
        body: The hcl2json body (attributes as values, nested blocks as lists of objects).
        schema: Attribute specs (``{"type", "required", "block"|"element"}``).
        where: Address used in the messages.
        top_level: Whether meta-arguments (count, lifecycle...) are allowed here.

    Returns:
        One message per problem; empty when the body matches.
    """
    problems: list[str] = []
    present = set()
    for name, value in body.items():
        if top_level and name in META_ARGUMENTS:
            continue
        if name == "dynamic":
            for dynamic_name, items in value.items():
                present.add(dynamic_name)
                spec = schema.get(dynamic_name)
                nested = _block_attributes(spec) if spec else None
                if nested is None:
                    problems.append(
                        f'{where}: dynamic "{dynamic_name}" is not a block of this type'
                    )
                    continue
                for item in items:
                    for content in item.get("content", []):
                        problems += check_body(
                            content, nested, f"{where}.{dynamic_name}", top_level=False
                        )
            continue
        present.add(name)
        spec = schema.get(name)
        if spec is None:
            problems.append(f'{where}: unsupported argument "{name}"')
            continue
        nested = _block_attributes(spec)
        if nested is not None:
            if not _is_block_value(value):
                problems.append(f'{where}: "{name}" is a block, written as an attribute')
                continue
            if spec["type"] == "block" and len(value) > 1:
                problems.append(f'{where}: "{name}" may appear only once')
            for item in value:
                problems += check_body(item, nested, f"{where}.{name}", top_level=False)
        elif _is_block_value(value) and spec["type"] not in ("array", "map"):
            problems.append(f'{where}: "{name}" is an argument, written as a block')
    for name, spec in schema.items():
        if spec.get("required") and name not in present and name != "id":
            problems.append(f'{where}: missing required argument "{name}"')
    return problems


# ------------------------------------------------------------------------------------------------
# Expression evaluation (validation conditions)
# ------------------------------------------------------------------------------------------------


class EvalError(Exception):
    """An expression failed the way Terraform would fail (`can()` turns it into false)."""


class UnsupportedExpressionError(Exception):
    """The expression uses language the evaluator does not implement (a test bug, not a value)."""


def _regex(pattern: str, text: Any) -> Any:
    if not isinstance(text, str):
        raise EvalError(f"regex: expected a string, got {text!r}")
    match = re.search(pattern, text)
    if match is None:
        raise EvalError(f"regex {pattern!r} does not match {text!r}")
    return match.group(0)


def _cidrhost(prefix: Any, host: int) -> str:
    try:
        network = ipaddress.ip_network(prefix, strict=False)
    except (TypeError, ValueError) as error:
        raise EvalError(f"invalid CIDR {prefix!r}") from error
    if host >= network.num_addresses:
        raise EvalError(f"host {host} out of range for {prefix}")
    return str(network.network_address + host)


def _length(value: Any) -> int:
    if value is None:
        raise EvalError("length of null")
    return len(value)


# What `plantimestamp()` returns while an expression is evaluated: tests set it to simulate a
# plan at a given moment (`PLAN_TIMESTAMP.set(...)`); unset, the function is unsupported.
PLAN_TIMESTAMP: contextvars.ContextVar[dt.datetime] = contextvars.ContextVar("PLAN_TIMESTAMP")


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_rfc3339(text: Any) -> dt.datetime:
    if not isinstance(text, str):
        raise EvalError(f"expected an RFC 3339 timestamp, got {text!r}")
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise EvalError(f"not an RFC 3339 timestamp: {text!r}") from error
    if parsed.tzinfo is None:
        raise EvalError(f"RFC 3339 timestamp without an offset: {text!r}")
    return parsed


def _plantimestamp() -> str:
    try:
        return _rfc3339(PLAN_TIMESTAMP.get())
    except LookupError as error:
        raise UnsupportedExpressionError("plantimestamp() outside a simulated plan") from error


_DURATION = re.compile(r"(-?\d+(?:\.\d+)?)(h|m|s)")


def _timeadd(timestamp: Any, duration: Any) -> str:
    """Terraform's timeadd with Go duration units h, m and s."""
    if not isinstance(duration, str) or not re.fullmatch(rf"(?:{_DURATION.pattern})+", duration):
        raise EvalError(f"timeadd: unsupported duration {duration!r}")
    seconds = sum(
        float(number) * {"h": 3600, "m": 60, "s": 1}[unit]
        for number, unit in _DURATION.findall(duration)
    )
    return _rfc3339(_parse_rfc3339(timestamp) + dt.timedelta(seconds=seconds))


_FORMATDATE = {"YYYY": "%Y", "MM": "%m", "DD": "%d", "hh": "%H", "mm": "%M", "ss": "%S"}


def _formatdate(spec: Any, timestamp: Any) -> str:
    """Terraform's formatdate for numeric specifiers (YYYY, MM, M, DD, D, hh, mm, ss)."""
    moment = _parse_rfc3339(timestamp).astimezone(dt.UTC)
    parts = re.findall(r"YYYY|MM|M|DD|D|hh|mm|ss|[^A-Za-z]+|[A-Za-z]+", str(spec))
    text = ""
    for part in parts:
        if part in _FORMATDATE:
            text += moment.strftime(_FORMATDATE[part])
        elif part == "M":
            text += str(moment.month)
        elif part == "D":
            text += str(moment.day)
        elif part.isalpha():
            raise UnsupportedExpressionError(f"formatdate specifier {part!r}")
        else:
            text += part
    return text


def _tonumber(value: Any) -> int | float:
    if _is_number(value):
        return value  # type: ignore[no-any-return]
    try:
        return int(value) if re.fullmatch(r"-?\d+", str(value)) else float(value)
    except (TypeError, ValueError) as error:
        raise EvalError(f"tonumber({value!r})") from error


def _lookup(mapping: Any, key: Any, *default: Any) -> Any:
    if not isinstance(mapping, dict):
        raise EvalError(f"lookup: {mapping!r} is not a map")
    if key in mapping:
        return mapping[key]
    if default:
        return default[0]
    raise EvalError(f"lookup: no key {key!r} and no default")


def _file(path: Any) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise EvalError(f"file({path!r}): {error}") from error


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "regex": _regex,
    "cidrhost": _cidrhost,
    "length": _length,
    "contains": lambda collection, value: value in collection,
    "alltrue": lambda values: all(v is True for v in values),
    "anytrue": lambda values: any(v is True for v in values),
    "floor": lambda number: math.floor(number),
    "keys": lambda mapping: sorted(mapping),
    "values": lambda mapping: [mapping[k] for k in sorted(mapping)],
    "lower": lambda text: text.lower(),
    "startswith": lambda text, prefix: text.startswith(prefix),
    "endswith": lambda text, suffix: text.endswith(suffix),
    "trimprefix": lambda text, prefix: text.removeprefix(prefix),
    "lookup": _lookup,
    "file": _file,
    "yamldecode": lambda text: yaml.safe_load(text),
    "timeadd": _timeadd,
    "plantimestamp": _plantimestamp,
    "formatdate": _formatdate,
    "tonumber": _tonumber,
}

_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "equal": lambda a, b: _equal(a, b),
    "notEqual": lambda a, b: not _equal(a, b),
    "lessThan": lambda a, b: _number(a) < _number(b),
    "lessThanOrEqual": lambda a, b: _number(a) <= _number(b),
    "greaterThan": lambda a, b: _number(a) > _number(b),
    "greaterThanOrEqual": lambda a, b: _number(a) >= _number(b),
    "add": lambda a, b: _number(a) + _number(b),
    "subtract": lambda a, b: _number(a) - _number(b),
    "multiply": lambda a, b: _number(a) * _number(b),
    "divide": lambda a, b: _number(a) / _number(b),
    "modulo": lambda a, b: _number(a) % _number(b),
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(left: Any, right: Any) -> bool:
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    return type(left) is type(right) and bool(left == right)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EvalError(f"expected a number, got {value!r}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise EvalError(f"expected a bool, got {value!r}")
    return value


_ESCAPES = re.compile(r"\\(?:u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))|\$\$\{|%%\{")
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def _hcl_unescape(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole in ("$${", "%%{"):
            return whole[1:]
        code = match.group(1) or match.group(2)
        if code:
            return chr(int(code, 16))
        if match.group(3) not in _SIMPLE_ESCAPES:
            raise UnsupportedExpressionError(f"escape {whole!r}")
        return _SIMPLE_ESCAPES[match.group(3)]

    return _ESCAPES.sub(replace, text)


def _traverse(value: Any, steps: list[dict[str, str]]) -> Any:
    for step in steps:
        key: Any = step["segment"]
        if step["type"] == "indexTraversal":
            key = int(key) if isinstance(value, list) else key
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError) as error:
            raise EvalError(f"cannot read {key!r} of {value!r}") from error
    return value


def evaluate(ast: Mapping[str, Any], scope: Mapping[str, Any]) -> Any:
    """Evaluate an expression syntax tree.

    Args:
        ast: A node from `getExpressionAst` (type, meta, children).
        scope: Root names: ``{"var": {...}}`` plus for-expression variables.

    Returns:
        The value (Python str/int/float/bool/list/dict/None).

    Raises:
        EvalError: Where Terraform would report an error (`can()` catches it).
        UnsupportedExpressionError: For language this evaluator does not implement.
    """
    kind = ast["type"]
    meta = ast.get("meta", {})
    children = ast.get("children", [])
    if kind == "literalValue":
        literal_type, text = meta["type"], meta["value"]
        if literal_type == "number":
            return float(text) if any(c in text for c in ".eE") else int(text)
        if literal_type == "bool":
            return text == "true"
        if literal_type == "string":
            # The syntax tree keeps the source text of template literals: undo HCL's escapes.
            return _hcl_unescape(text)
        if text == "null":
            return None
        raise UnsupportedExpressionError(f"literal {meta}")
    if kind in ("template", "templateWrap"):
        parts = [evaluate(child, scope) for child in children]
        if len(parts) == 1:
            return parts[0]
        # Terraform writes a whole number without a decimal point.
        return "".join(
            str(int(p)) if isinstance(p, float) and p.is_integer() else str(p) for p in parts
        )
    if kind == "scopeTraversal":
        steps = meta["traversal"]
        root = steps[0]["segment"]
        if root not in scope:
            raise UnsupportedExpressionError(f"unknown name {root!r}")
        return _traverse(scope[root], steps[1:])
    if kind == "relativeTraversal":
        return _traverse(evaluate(children[0], scope), meta["traversal"])
    if kind == "tuple":
        return [evaluate(child, scope) for child in children]
    if kind == "function":
        name = meta["name"]
        if name == "can":
            try:
                evaluate(children[0], scope)
            except EvalError:
                return False
            return True
        if name not in FUNCTIONS:
            raise UnsupportedExpressionError(f"function {name}()")
        arguments = [evaluate(child, scope) for child in children]
        try:
            return FUNCTIONS[name](*arguments)
        except (TypeError, AttributeError, ValueError) as error:
            raise EvalError(f"{name}{tuple(arguments)}: {error}") from error
    if kind == "conditional":
        condition = _bool(evaluate(children[0], scope))
        return evaluate(children[1] if condition else children[2], scope)
    if kind == "unaryOp":
        value = evaluate(children[0], scope)
        if meta["operator"] == "logicalNot":
            return not _bool(value)
        if meta["operator"] == "negate":
            return -_number(value)
        raise UnsupportedExpressionError(f"unary {meta['operator']}")
    if kind == "binaryOp":
        operator = meta["operator"]
        left, right = (evaluate(child, scope) for child in children)
        if operator == "logicalAnd":
            return _bool(left) and _bool(right)
        if operator == "logicalOr":
            return _bool(left) or _bool(right)
        if operator not in _BINARY:
            raise UnsupportedExpressionError(f"operator {operator}")
        return _BINARY[operator](left, right)
    if kind == "for":
        with_key = bool(meta.get("keyExpression"))
        if meta.get("conditionalExpression") or meta.get("groupedValue"):
            raise UnsupportedExpressionError("for expressions with `if` or grouping")
        if len(children) != (3 if with_key else 2):
            raise UnsupportedExpressionError(f"for expression: {meta.get('value')}")
        collection = evaluate(children[0], scope)
        pairs = (
            sorted(collection.items())
            if isinstance(collection, dict)
            else list(enumerate(collection))
        )
        items: list[Any] = []
        mapping: dict[str, Any] = {}
        for key, value in pairs:
            inner = dict(scope)
            inner[meta["valVar"]] = value
            if meta.get("keyVar"):
                inner[meta["keyVar"]] = key
            if with_key:
                mapping[str(evaluate(children[1], inner))] = evaluate(children[2], inner)
            else:
                items.append(evaluate(children[1], inner))
        return mapping if with_key else items
    if kind == "" and len(children) == 1:
        # Parentheses.
        return evaluate(children[0], scope)
    if kind == "object" and not children:
        return {}
    raise UnsupportedExpressionError(f"expression type {kind!r}: {meta.get('value')}")
