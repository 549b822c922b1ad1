"""Every `az` command line of the pipelines, the scripts and the READMEs' code blocks is accepted
by the Azure CLI's own parser (azure-cli from PyPI, `.venv-azure-cli`), without running it.

Extension commands whose extension is not on PyPI (`az iot hub|edge|dps ...`, from `azure-iot`)
are checked against the extension's parameter table, vendored with its source under
testing/fixtures/azure-cli/ (written by testing/tools/azure-cli/dump_extension_parameters.py).
Shell and pipeline variables in values (`"$x"`, `${x}`, `$(x)`, `${{ parameters.x }}`) are
tolerated; unknown commands, unknown options and missing required options are not.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from .terraform_config import REPO_ROOT, SETUP_HINT

AZ_ENV = REPO_ROOT / ".venv-azure-cli"
PARSER = REPO_ROOT / "testing" / "tools" / "azure-cli" / "parse_commands.py"
EXTENSIONS = sorted((REPO_ROOT / "testing" / "fixtures" / "azure-cli").glob("*.json"))
SOURCES = [
    *sorted((REPO_ROOT / "ado_pipelines").rglob("*.yml")),
    *sorted((REPO_ROOT / "infrastructure" / "scripts").glob("*.sh")),
    REPO_ROOT / "infrastructure" / "README.md",
    REPO_ROOT / "ado_pipelines" / "README.md",
]
# Arguments azure-cli adds to every command, extensions' included (knack's global arguments and
# azure-cli's --subscription), with the choices it enforces.
GLOBAL_ARGUMENTS: dict[str, dict[str, Any]] = {
    "output": {
        "options": ["--output", "-o"],
        "choices": ["json", "jsonc", "none", "table", "tsv", "yaml", "yamlc"],
    },
    "query": {"options": ["--query"]},
    "subscription": {"options": ["--subscription"]},
    "flags": {"options": ["--debug", "--verbose", "--only-show-errors", "--help", "-h"]},
}
PLACEHOLDER = "__VALUE__"
_TEMPLATE_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
_AZ_START = re.compile(r"(?<![\w./-])az\s+(?=[a-z])")
_STOP = set("|;&<>`\n")


@dataclass(frozen=True)
class CommandLine:
    """One `az` invocation found in a file."""

    where: str
    argv: tuple[str, ...]  # without the leading "az"

    def __str__(self) -> str:
        return f"{self.where}: az {' '.join(self.argv)}"


def _code(path: Path) -> list[tuple[int, str]]:
    """(first line number, text) of the parts of a file that are commands."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".md":
        blocks = re.finditer(r"^```(?:bash|sh|shell)?\n(.*?)^```", text, flags=re.M | re.S)
        return [(text[: b.start()].count("\n") + 2, b.group(1)) for b in blocks]
    return [(1, text)]


def _segment(text: str, start: int) -> str:
    """The command from `start` up to the end of the shell word list it belongs to."""
    depth, quote, index = 0, "", start
    while index < len(text):
        char = text[index]
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif text.startswith("$(", index) or text.startswith("${", index):
            depth += 1
            index += 1
        elif char in ")}" and depth:
            depth -= 1
        elif char == ")" or char in _STOP:
            break
        index += 1
    return text[start:index]


def command_lines_in(code: str, where: str, first_line: int = 1) -> list[CommandLine]:
    """Every `az ...` invocation in shell code (comments skipped, continuations joined)."""
    found = []
    lines = ["" if line.lstrip().startswith("#") else line for line in code.split("\n")]
    joined = "\n".join(lines).replace("\\\n", " ")
    joined = _TEMPLATE_EXPRESSION.sub(PLACEHOLDER, joined)
    for match in _AZ_START.finditer(joined):
        segment = _segment(joined, match.end())
        line = first_line + joined[: match.start()].count("\n")
        try:
            argv = tuple(shlex.split(segment, comments=True))
        except ValueError as error:
            pytest.fail(f"{where}:{line}: cannot split {segment!r}: {error}")
        found.append(CommandLine(f"{where}:{line}", argv))
    return found


def command_lines(path: Path) -> list[CommandLine]:
    """Every `az ...` invocation in a file (for Markdown: in its shell code blocks)."""
    where = str(path.relative_to(REPO_ROOT))
    return [line for first, code in _code(path) for line in command_lines_in(code, where, first)]


def all_command_lines() -> list[CommandLine]:
    return [line for path in SOURCES for line in command_lines(path)]


def _is_variable(value: str) -> bool:
    return "$" in value or PLACEHOLDER in value


@cache
def extension_tables() -> dict[str, dict[str, Any]]:
    """Vendored extension commands: name -> parameters (options, required, choices)."""
    table: dict[str, dict[str, Any]] = {}
    for path in EXTENSIONS:
        table.update(json.loads(path.read_text(encoding="utf-8"))["commands"])
    return table


def extension_command(argv: tuple[str, ...]) -> str | None:
    """The vendored extension command an argument vector names, if any."""
    words = [w for w in argv if not w.startswith("-")]
    for length in range(len(words), 0, -1):
        name = " ".join(argv[:length])
        if name in extension_tables():
            return name
    return None


def extension_errors(argv: tuple[str, ...], name: str) -> list[str]:
    """What the extension's parser would reject: unknown or missing options, bad choices."""
    parameters = extension_tables()[name]
    by_option = {
        o: p for p in [*parameters.values(), *GLOBAL_ARGUMENTS.values()] for o in p["options"]
    }
    seen: set[str] = set()
    errors = []
    rest = list(argv[len(name.split()) :])
    for index, token in enumerate(rest):
        if not token.startswith("-") or token == "-":
            continue
        option = token.split("=", 1)[0]
        if option not in by_option:
            # argparse (allow_abbrev) takes an unambiguous prefix of a long option.
            prefixed = {o for o in by_option if option.startswith("--") and o.startswith(option)}
            if len({id(by_option[o]) for o in prefixed}) != 1:
                errors.append(f"unrecognized argument {option} for az {name}")
                continue
            option = prefixed.pop()
        parameter = by_option[option]
        seen.update(parameter["options"])
        value = (
            token.split("=", 1)[1]
            if "=" in token
            else (rest[index + 1] if index + 1 < len(rest) else "")
        )
        choices = parameter.get("choices")
        checkable = value and not value.startswith("-") and not _is_variable(value)
        # azure-cli's enum arguments compare case-insensitively.
        if choices and checkable and value.lower() not in {c.lower() for c in choices}:
            errors.append(f"{option} {value!r}: not one of {choices}")
    for parameter in parameters.values():
        if parameter.get("required") and not seen & set(parameter["options"]):
            errors.append(f"az {name}: missing required {'/'.join(parameter['options'])}")
    return errors


_VERDICTS: dict[tuple[str, ...], str | None] = {}


def core_errors(lines: list[CommandLine]) -> dict[CommandLine, str]:
    """The real CLI parser's verdict on command lines of azure-cli's own commands.

    One parser process serves the whole module: it is started once, for every vector that the
    tests will ask about (see `prime`), and its verdicts are kept.
    """
    missing = sorted({line.argv for line in lines if line.argv not in _VERDICTS})
    if missing:
        _VERDICTS.update(zip(missing, _parse(missing), strict=True))
    errors = {}
    for line in lines:
        verdict = _VERDICTS[line.argv]
        if verdict is None:
            continue
        # A variable stands for a value the CLI would check at run time.
        quoted = re.findall(r"'([^']*)' is not a valid value", verdict)
        if quoted and all(_is_variable(value) for value in quoted):
            continue
        errors[line] = verdict
    return errors


def _parse(vectors: list[tuple[str, ...]]) -> list[str | None]:
    """Run testing/tools/azure-cli/parse_commands.py in .venv-azure-cli on the vectors."""
    python = AZ_ENV / "bin" / "python"
    if not python.is_file():
        pytest.fail(f"{python.relative_to(REPO_ROOT)} is missing; {SETUP_HINT}")
    config = AZ_ENV / "azure-config"  # the CLI's command index lives here between runs
    completed = subprocess.run(
        [str(python), str(PARSER)],
        input=json.dumps([list(vector) for vector in vectors]),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={
            **os.environ,
            "AZURE_CONFIG_DIR": str(config),
            "AZURE_CORE_COLLECT_TELEMETRY": "false",
            "AZURE_CORE_NO_COLOR": "true",
        },
    )
    if completed.returncode != 0:
        pytest.fail(f"parse_commands.py failed ({completed.returncode}): {completed.stderr}")
    verdicts: list[str | None] = json.loads(completed.stdout)
    return verdicts


def check(lines: list[CommandLine]) -> list[str]:
    """Every problem with these command lines, one message each."""
    problems: list[str] = []
    core: list[CommandLine] = []
    for line in lines:
        name = extension_command(line.argv)
        if name is None:
            core.append(line)
        else:
            problems += [f"{line}: {error}" for error in extension_errors(line.argv, name)]
    problems += [f"{line}: {error}" for line, error in core_errors(core).items()]
    return problems


# Negative controls, through the same path: an unknown command, an unknown option, a bad choice
# (core CLI), and an unknown option, a missing required option, a bad choice (extension).
BROKEN = [
    CommandLine("control", ("acr", "bulid", "--registry", "r", ".")),
    CommandLine("control", ("keyvault", "secret", "show", "--vaultname", "v", "-n", "n")),
    CommandLine("control", ("storage", "account", "list", "--output", "yml")),
    CommandLine("control", ("iot", "hub", "query", "--hub-name", "h", "--query-cmd", "x")),
    CommandLine("control", ("iot", "edge", "set-modules", "--hub-name", "h", "-d", "d")),
    CommandLine("control", ("iot", "hub", "query", "-n", "h", "-q", "x", "--auth-type", "sas")),
]
SAMPLE = (
    'mapfile -t a < <(az storage account list --resource-group "${RG}" --output tsv)\n'
    "x=\"$(az keyvault secret show --vault-name '${{ parameters.vault }}' \\\n"
    '  --name $(secretName) --query value --output tsv)"\n'
)


@pytest.fixture(scope="module")
def lines() -> list[CommandLine]:
    found = all_command_lines()
    # One parser run for everything this module asks about.
    core_errors(found + BROKEN + command_lines_in(SAMPLE, "sample"))
    return found


def test_the_pipelines_and_scripts_contain_az_commands(lines: list[CommandLine]) -> None:
    # The extraction must see the calls the permission matrix covers.
    text = " ".join(str(line) for line in lines)
    for expected in ("az acr build", "az storage account list", "az iot edge deployment create"):
        assert expected in text, expected
    assert len(lines) >= 15


def test_every_az_command_line_parses(lines: list[CommandLine]) -> None:
    assert check(lines) == []


def test_the_parser_rejects_what_az_would_reject(lines: list[CommandLine]) -> None:
    problems = check(BROKEN)
    for line in BROKEN:
        assert any(p.startswith(str(line)) for p in problems), (line, problems)
    good = [CommandLine("control", ("iot", "hub", "query", "-n", "$hub", "-q", "x"))]
    assert check(good) == []


def test_variables_in_values_are_tolerated(lines: list[CommandLine]) -> None:
    found = command_lines_in(SAMPLE, "sample")
    assert [line.argv[:3] for line in found] == [
        ("storage", "account", "list"),
        ("keyvault", "secret", "show"),
    ]
    assert found[1].argv[-1] == "tsv" and PLACEHOLDER in found[1].argv[4]
    assert check(found) == []
