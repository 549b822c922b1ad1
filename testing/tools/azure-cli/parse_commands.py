"""Parse `az` command lines with the real Azure CLI parser, without running them.

Runs inside `.venv-azure-cli`. Reads a JSON list of argument vectors (without the leading `az`)
on stdin and prints, for each, null when the CLI's parser accepts it or the parser's error
message. Each command group's module is loaded once, through the CLI's command index, and the
arguments of just the commands asked about; the parser then parses each vector as `az` would
before running a command. Nothing runs and nothing is sent anywhere.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from typing import Any


def parse_all(vectors: list[list[str]]) -> list[str | None]:
    """The parser's verdict on each argument vector (None: accepted)."""
    from azure.cli.core import get_default_cli

    cli = get_default_cli()
    results: list[str | None] = [None] * len(vectors)
    groups: dict[str, list[int]] = {}
    for index, vector in enumerate(vectors):
        groups.setdefault(vector[0] if vector else "", []).append(index)
    for indices in groups.values():
        # One invocation (command table, parser) per command group, as `az` has per run.
        invocation = cli.invocation_cls(
            cli_ctx=cli,
            parser_cls=cli.parser_cls,
            commands_loader_cls=cli.commands_loader_cls,
            help_cls=cli.help_cls,
        )
        cli.invocation = invocation
        loader: Any = invocation.commands_loader
        # The command index maps the first word to its module(s). Asking for a command that the
        # module lacks would make the CLI load every module (about 30 s); such a vector is
        # reported here as az reports it, without that search.
        group = vectors[indices[0]][0]
        loader.load_command_table([group])
        names: set[str] = set()
        for index in list(indices):
            vector = vectors[index]
            for length in range(len(vector), 0, -1):
                if " ".join(vector[:length]) in loader.command_table:
                    names.add(" ".join(vector[:length]))
                    break
            else:
                words = [w for w in vector if not w.startswith("-")]
                results[index] = f"'{' '.join(words[:3])}' is not a command of az {group}"
                indices.remove(index)
        for name in sorted(names):
            invocation.data["command_string"] = name
            loader.command_name = name
            loader.load_arguments(name)
        invocation.parser.cli_ctx = cli
        invocation.parser.load_command_table(loader)
        for index in indices:
            errors = io.StringIO()
            try:
                with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
                    invocation.parser.parse_args(vectors[index])
            except SystemExit:
                message = errors.getvalue().strip().splitlines()
                results[index] = message[0] if message else "rejected"
    return results


if __name__ == "__main__":
    json.dump(parse_all(json.load(sys.stdin)), sys.stdout)
