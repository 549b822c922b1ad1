"""Options every ``ppe`` subcommand that reads the config shares."""

from __future__ import annotations

from typing import Any


def add_config_arguments(parser: Any) -> None:
    """Add the shared ``--config`` and ``--set`` options to an argparse parser."""
    parser.add_argument(
        "--config",
        default="demo",
        metavar="NAME|PATH",
        help="packaged profile (smoke, demo) or a YAML file (default: demo)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set train.epochs=5 (repeatable)",
    )
