"""``ppe champion``, ``ppe register`` and ``ppe models list|show|download``.

``ppe champion`` is the pipeline's champion step: it finds the registry's champion, downloads it
and evaluates it on the run's data (see :mod:`ppe.registry.champion`).

``ppe register`` registers **every** evaluated candidate, promoted or not, so each one stays
traceable (its version carries map50, data_hash, config_hash, git_commit and run_id tags, and the
gate's verdict as a property), as Azure ML users expect; the champion marker moves only when
``gate.json`` says ``promote: true``. Before moving it, the command checks that the champion the
gate compared against is still the champion (another run may have promoted a model since), and
refuses otherwise.

Only the standard library and ``ppe.config``/``ppe.errors`` are imported at top level: the CLI
imports this module at start-up.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from ppe.cli.options import add_config_arguments
from ppe.config import Config, load_config
from ppe.errors import PpeError
from ppe.registry.register import UNKNOWN, current_git_commit, register_candidate
from ppe.run.documents import EvaluationMetrics, GateDecision, RegisteredVersion, RegisterRecord

logger = logging.getLogger(__name__)


def _ml_client_from_environment() -> Any:
    """An MLClient for the workspace named by Terraform's outputs (environment over ``./.env``)."""
    from ppe.aml.client import ml_client
    from ppe.aml.settings import ENV_FILE_NAME, load_settings

    env_file = Path(ENV_FILE_NAME)
    settings = load_settings(os.environ, env_file if env_file.is_file() else None)
    return ml_client(settings)


def _registry(config: Config) -> Any:
    from ppe.registry import get_registry

    client = _ml_client_from_environment() if config.registry.backend == "azureml" else None
    return get_registry(config, ml_client=client)


def _register_command(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    gate = GateDecision.read(Path(args.gate))
    metrics = EvaluationMetrics.read(Path(args.metrics))
    model_dir = Path(args.model)
    if not model_dir.is_dir():
        raise PpeError(f"model folder {model_dir}: no such folder; pass the trained model folder")
    version = register_candidate(
        _registry(config),
        config.registry.model_name,
        model_dir,
        gate,
        metrics,
        config_hash=config.hash(),
        git_commit=args.git_commit or current_git_commit(Path.cwd()),
        run_id=args.run_id or UNKNOWN,
    )
    if args.out is not None:
        RegisterRecord(
            version=RegisteredVersion.model_validate(version.to_dict()), promoted=gate.promote
        ).write(Path(args.out))
    sys.stdout.write(json.dumps(version.to_dict(), indent=2) + "\n")
    return 0


def _champion_command(args: argparse.Namespace) -> int:
    from ppe.registry.champion import resolve_champion

    config = load_config(args.config, args.overrides)
    data_dir = Path(args.data)
    if not data_dir.is_dir():
        raise PpeError(f"data folder {data_dir}: no such folder; pass the run's VOC dataset")
    record = resolve_champion(
        _registry(config),
        config.registry.model_name,
        config.registry.backend,
        data_dir,
        Path(args.out),
        config.evaluate,
    )
    sys.stdout.write(record.model_dump_json(indent=2) + "\n")
    return 0


def _version_arg(args: argparse.Namespace) -> int | str:
    if args.version is not None:
        if args.version < 1:
            raise PpeError(f"--version {args.version}: versions start at 1")
        return int(args.version)
    return "champion"


def _models_command(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    name = args.name or config.registry.model_name
    registry = _registry(config)
    if args.action == "list":
        versions = registry.list(name)
        sys.stdout.write(json.dumps([v.to_dict() for v in versions], indent=2) + "\n")
        if not versions:
            logger.info("no versions of %s registered in %r", name, registry)
        return 0
    if args.action == "show":
        sys.stdout.write(
            json.dumps(registry.get(name, _version_arg(args)).to_dict(), indent=2) + "\n"
        )
        return 0
    if args.dest is None:
        raise PpeError("ppe models download needs --dest DIR")
    dest = registry.download(name, _version_arg(args), Path(args.dest))
    sys.stdout.write(f"{dest}\n")
    return 0


def register(subparsers: Any) -> None:
    """Add ``ppe register`` and ``ppe models`` to the CLI."""
    parser = subparsers.add_parser(
        "register",
        help="register a model version; mark it champion if gate.json promotes it",
        description=(
            "Register the model folder as the next version (always, for traceability) with tags "
            "map50, data_hash, config_hash, git_commit, run_id; move the champion marker to it "
            "only if gate.json says promote."
        ),
    )
    parser.add_argument("--model", required=True, metavar="DIR", help="the model folder")
    parser.add_argument("--gate", required=True, metavar="GATE_JSON")
    parser.add_argument("--metrics", required=True, metavar="METRICS_JSON")
    parser.add_argument("--run-id", metavar="ID", help="pipeline run id tag (default: unknown)")
    parser.add_argument(
        "--git-commit", metavar="SHA", help="source commit tag (default: git rev-parse HEAD)"
    )
    parser.add_argument(
        "--out",
        metavar="REGISTER_JSON",
        help="also write the registered version and the gate's verdict here (register.json)",
    )
    add_config_arguments(parser)
    parser.set_defaults(func=_register_command)

    champion = subparsers.add_parser(
        "champion",
        help="download the registry's champion and evaluate it on this data (the gate's input)",
        description=(
            "Write OUT/champion.json naming the registry's champion (or none); when there is "
            "one, download it to OUT/model and evaluate it on DATA into OUT/evaluate, with the "
            "config's evaluation settings, so `ppe gate --champion-dir OUT` compares like with "
            "like."
        ),
    )
    champion.add_argument("--data", required=True, metavar="DIR", help="Pascal VOC dataset")
    champion.add_argument("--out", required=True, metavar="DIR", help="absent or empty folder")
    add_config_arguments(champion)
    champion.set_defaults(func=_champion_command)

    models = subparsers.add_parser(
        "models",
        help="list, show or download registered model versions",
        description="Inspect the model registry (config registry.backend: local or azureml).",
    )
    models.add_argument("action", choices=["list", "show", "download"])
    choice = models.add_mutually_exclusive_group()
    choice.add_argument("--champion", action="store_true", help="the champion (the default)")
    choice.add_argument("--version", type=int, metavar="N", help="an integer version")
    models.add_argument("--dest", metavar="DIR", help="download target (absent or empty)")
    models.add_argument("--name", help="model name (default: config registry.model_name)")
    add_config_arguments(models)
    models.set_defaults(func=_models_command)
