"""``ppe gate``: the champion/challenger decision (:mod:`ppe.gate`) on the command line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ppe.cli.options import add_config_arguments
from ppe.config import load_config
from ppe.gate import read_champion, run_gate


def _command(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    champion_path = Path(args.champion) if args.champion else None
    champion_version = None
    if args.champion_dir:
        record, champion_path = read_champion(Path(args.champion_dir))
        champion_version = record.version
    run_gate(
        Path(args.challenger),
        champion_path,
        Path(args.out),
        margin=config.gate.margin,
        metric=config.gate.metric,
        champion_version=champion_version,
        decision=config.gate.decision,
        resamples=config.evaluate.bootstrap_resamples,
        seed=config.evaluate.bootstrap_seed,
    )
    return 0


def register(subparsers: Any) -> None:
    """Add ``ppe gate`` to the CLI."""
    parser = subparsers.add_parser(
        "gate",
        help="champion/challenger decision from two metrics.json files",
        description=(
            "Compare the challenger's metrics.json with the champion's and write gate.json "
            "(promote true/false and why). Exit status 0 whether or not it promotes."
        ),
    )
    parser.add_argument("--challenger", required=True, metavar="METRICS_JSON")
    champion = parser.add_mutually_exclusive_group()
    champion.add_argument(
        "--champion",
        metavar="METRICS_JSON",
        help="the champion's metrics on the same data and split (omit when there is no champion)",
    )
    champion.add_argument(
        "--champion-dir",
        metavar="DIR",
        help="the output of `ppe champion` (champion.json, and the champion's evaluation)",
    )
    parser.add_argument("--out", required=True, metavar="GATE_JSON")
    add_config_arguments(parser)
    parser.set_defaults(func=_command)
