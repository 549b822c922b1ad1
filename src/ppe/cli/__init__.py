"""The ``ppe`` command line: one subcommand per pipeline step, each with file inputs and outputs.

Each area of the package owns its subcommands in a ``commands`` module exposing
``register(subparsers)``; this module only assembles them, configures logging and turns
:class:`ppe.errors.PpeError` into a one-line message and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from ppe import __version__
from ppe.errors import PpeError

logger = logging.getLogger("ppe")

# Modules that add subcommands, in the order `ppe --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "ppe.cli.data",
    "ppe.cli.model",
    "ppe.cli.steps",
    "ppe.cli.edge",
    "ppe.cli.gate",
    "ppe.cli.registry",
    "ppe.cli.aml",
)


def get_args_parser(command_modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    """Build the argument parser of ``command_modules`` (no work is done at import time)."""
    parser = argparse.ArgumentParser(
        prog="ppe",
        description="Hard-hat (PPE) detector: data, training, evaluation, registry and edge steps.",
    )
    parser.add_argument("--version", action="version", version=f"ppe {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in command_modules:
        module = importlib.import_module(module_name)
        module.register(subparsers)
    return parser


def configure_logging(verbosity: int) -> None:
    """Send log records to stderr; quiet TensorFlow's C++ start-up chatter unless debugging."""
    level = logging.DEBUG if verbosity >= 2 else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if verbosity < 2:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        for noisy in ("absl", "tensorflow", "h5py", "matplotlib", "PIL", "urllib3", "azure"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def run_command(argv: Sequence[str]) -> None:
    """Run one ``ppe`` command line in this process; errors propagate as exceptions.

    Raises:
        PpeError: the command failed, or it returned a non-zero status.
    """
    args = get_args_parser().parse_args(list(argv))
    status = args.func(args)
    if status:
        raise PpeError(f"`ppe {' '.join(argv)}` exited with status {status}")


def main(
    argv: Sequence[str] | None = None, command_modules: Sequence[str] = COMMAND_MODULES
) -> int:
    """Run one ``ppe`` subcommand and return its exit status.

    ``command_modules``: the modules whose subcommands exist (the ``ppe-edge`` wheel's ``ppe``
    has only :mod:`ppe.cli.edge_module`).
    """
    parser = get_args_parser(command_modules)
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        status: int = args.func(args)
    except PpeError as error:
        logger.error("%s", error)
        return error.exit_code
    except KeyboardInterrupt:
        logger.error("interrupted")
        return 130
    return status


if __name__ == "__main__":  # pragma: no cover - `python -m ppe.cli`
    sys.exit(main())
