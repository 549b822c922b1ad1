"""Write the command and parameter table of an Azure CLI extension from its source tree, as JSON.

Extensions such as `azure-iot` are not on PyPI, so the `az` parser test cannot install them; it
checks their command lines against the table this script writes (vendored under
testing/fixtures/azure-cli/). Run it once per extension version, with the extension's source
(for example a checkout of Azure/azure-iot-cli-extension at the pinned release) and an
environment that has azure-cli plus the extension's own dependencies (its setup.py):

    python dump_extension_parameters.py SOURCE_DIR azext_iot "iot hub,iot edge,iot dps" > out.json

It loads the extension's command loader the way azure-cli loads an installed extension (command
table, handler signatures by reflection, the extension's argument registry merged into the main
one) and records, per command, each parameter's option strings, whether it is required and its
choices. Nothing is sent anywhere and no command runs.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any


def dump(source: str, module_name: str, prefixes: list[str]) -> dict[str, Any]:
    """The parameter table of every extension command under ``prefixes``."""
    sys.path.insert(0, source)
    from azure.cli.core import get_default_cli

    cli = get_default_cli()
    invocation = cli.invocation_cls(
        cli_ctx=cli,
        parser_cls=cli.parser_cls,
        commands_loader_cls=cli.commands_loader_cls,
        help_cls=cli.help_cls,
    )
    cli.invocation = invocation
    loader = importlib.import_module(module_name).COMMAND_LOADER_CLS(cli_ctx=cli)
    # Some commands carry a minimum API version of a management SDK that the installed CLI's
    # profile may not list; that gate decides availability at run time, not the command's shape.
    loader.supported_api_version = lambda *args, **kwargs: True
    table = loader.load_command_table(None)
    commands: dict[str, Any] = {}
    for name in sorted(table):
        if not any(name == p or name.startswith(p + " ") for p in prefixes):
            continue
        invocation.data["command_string"] = name
        loader.command_name = name
        command = table[name]
        command.load_arguments()
        loader.load_arguments(name)
        main = invocation.commands_loader
        main.argument_registry.arguments.update(loader.argument_registry.arguments)
        main.extra_argument_registry.update(loader.extra_argument_registry)
        loader._update_command_definitions()
        parameters: dict[str, Any] = {}
        for dest, argument in sorted(command.arguments.items()):
            settings = argument.type.settings
            if dest == "cmd":  # the CLI injects its command object; it is no parameter
                continue
            options = settings.get("options_list") or ["--" + dest.replace("_", "-")]
            choices = settings.get("choices")
            parameters[dest] = {
                "options": sorted(o if isinstance(o, str) else str(o) for o in options),
                "required": bool(settings.get("required")),
                **({"choices": sorted(map(str, choices))} if choices else {}),
            }
        commands[name] = parameters
    return commands


if __name__ == "__main__":
    source_dir, module, prefix_list = sys.argv[1:4]
    json.dump(
        dump(source_dir, module, prefix_list.split(",")), sys.stdout, indent=1, sort_keys=True
    )
    sys.stdout.write("\n")
