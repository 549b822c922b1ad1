"""``ppe edge``: commands of the IoT Edge module (``ppedetector``) in the full ``ppe``.

The ``edge`` group collects its subcommands from :data:`SUBCOMMANDS`: each entry is a function that
adds one subcommand to the group's subparsers and sets its ``func``. ``manifest`` and
``stage-model`` are here; ``run``
and ``serve`` come from :mod:`ppe.cli.edge_module`, which the ``ppe-edge`` wheel (the module
image) ships alone. Heavy imports stay inside the handlers, so ``ppe --help`` stays fast and needs
neither LiteRT nor the IoT SDK.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

from ppe.cli.edge_module import register_runtime
from ppe.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE = Path("environments/iotedge/deployment.template.json")
DEFAULT_SCHEMAS = Path("testing/fixtures/schemas/iotedge")

# A function that adds one subcommand to the `edge` group's subparsers.
Registrar: TypeAlias = "Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]"


def add_manifest_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ppe edge manifest`` (render the deployment manifest for one platform)."""
    parser = subparsers.add_parser(
        "manifest",
        help="render and validate the IoT Edge deployment manifest for one platform",
        description=(
            "Render deployment.template.json into a deployment manifest, as `iotedgedev "
            "solution genconfig` does, and validate it against the official schemas. "
            "Variables come from the environment, then from the .env file."
        ),
    )
    parser.add_argument("--platform", required=True, choices=("amd64", "arm64v8"))
    parser.add_argument(
        "--tag", required=True, help="image tag suffix (CONTAINER_TAG), e.g. the build id"
    )
    parser.add_argument(
        "--model-version", required=True, help="registered model version the module loads"
    )
    parser.add_argument(
        "--template",
        type=Path,
        default=DEFAULT_TEMPLATE,
        help=f"deployment template (default: {DEFAULT_TEMPLATE})",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        default=None,
        help="dotenv file with the template's variables (default: .env beside the template, "
        "if present); the environment wins over it",
    )
    parser.add_argument("--out", type=Path, required=True, help="manifest file to write")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument(
        "--layered",
        action="store_true",
        help="write only the module, its routes, registry credentials and twin, for "
        "`az iot edge deployment create --layered`",
    )
    kind.add_argument(
        "--base",
        action="store_true",
        help="write the base deployment (edgeAgent and edgeHub without the module), for "
        "`az iot edge deployment create` without --layered",
    )
    parser.add_argument(
        "--schemas",
        type=Path,
        default=DEFAULT_SCHEMAS,
        help=f"folder of the IoT Edge JSON schemas (default: {DEFAULT_SCHEMAS})",
    )
    parser.add_argument(
        "--no-validate", action="store_true", help="skip the schema validation (not advised)"
    )
    parser.set_defaults(func=run_manifest)


def _environment(template: Path, env_file: Path | None) -> dict[str, str]:
    """The process environment over the values of the dotenv file (as iotedgedev merges them)."""
    from ppe.iotedge.manifest import parse_dotenv

    if env_file is None:
        beside = template.parent / ".env"
        env_file = beside if beside.is_file() else None
    elif not env_file.is_file():
        raise ConfigError(f"--env-file {env_file}: no such file")
    values: dict[str, str] = {}
    if env_file is not None:
        logger.info("reading variables from %s (the environment overrides them)", env_file)
        values = parse_dotenv(env_file.read_text(encoding="utf-8"), os.environ)
    else:
        logger.info("no .env file beside %s: reading variables from the environment", template)
    values.update(os.environ)
    return values


def run_manifest(args: argparse.Namespace) -> int:
    """Handle ``ppe edge manifest``."""
    from ppe.iotedge import manifest as edge_manifest

    env = _environment(args.template, args.env_file)
    template = edge_manifest.expand_template(
        args.template, env, args.platform, tag=args.tag, model_version=args.model_version
    )
    manifest = edge_manifest.to_manifest(template)
    if args.no_validate:
        logger.warning("schema validation skipped (--no-validate)")
    else:
        edge_manifest.validate_template(template, args.schemas)
        edge_manifest.validate_manifest(manifest, args.schemas)
        logger.info("template and manifest match the IoT Edge schemas in %s", args.schemas)
    if args.layered:
        document = edge_manifest.layered_manifest(manifest)
    elif args.base:
        document = edge_manifest.base_manifest(manifest)
    else:
        document = manifest
    edge_manifest.write_manifest(document, args.out)
    image = manifest["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"][
        edge_manifest.MODULE_NAME
    ]["settings"]["image"]
    logger.info(
        "wrote the %s%s manifest (image %s, model version %s) to %s; it holds the registry "
        "password: keep it out of published artifacts",
        args.platform,
        " layered" if args.layered else " base" if args.base else "",
        image,
        args.model_version,
        args.out,
    )
    return 0


def add_stage_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ppe edge stage-model`` (put an export's model into the image build context)."""
    parser = subparsers.add_parser(
        "stage-model",
        help="stage an exported model for the module image build, or check a staged one",
        description=(
            "Replace OUT with exactly the files of EXPORT that the module image bakes in "
            "(ppe.iotedge.staging.MODEL_FILES), or with --check verify that a staged folder "
            "holds exactly those. environments/docker/stage_model.sh runs it."
        ),
    )
    parser.add_argument("--export", type=Path, help="folder written by `ppe export --out`")
    parser.add_argument("--out", type=Path, help="staging folder to replace")
    parser.add_argument(
        "--check", type=Path, metavar="FOLDER", help="only check FOLDER, a staged model"
    )
    parser.set_defaults(func=run_stage)


def run_stage(args: argparse.Namespace) -> int:
    """Handle ``ppe edge stage-model``."""
    from ppe.iotedge.staging import check_staged, stage_model

    if args.check is not None:
        if args.export is not None or args.out is not None:
            raise ConfigError("--check takes no --export or --out")
        check_staged(args.check)
        logger.info("%s holds the model files the image needs", args.check)
        return 0
    if args.export is None or args.out is None:
        raise ConfigError("give --export and --out (or --check FOLDER)")
    stage_model(args.export, args.out)
    return 0


# The `edge` group's subcommands, in `ppe edge --help` order: append `run`, `serve` here.
SUBCOMMANDS: list[Registrar] = [add_manifest_command, add_stage_command, register_runtime]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``edge`` command group and every subcommand in :data:`SUBCOMMANDS`."""
    parser = subparsers.add_parser(
        "edge",
        help="IoT Edge module: deployment manifest (and the module's runtime commands)",
        description="Commands of the ppedetector IoT Edge module.",
    )
    edge_subparsers = parser.add_subparsers(
        dest="edge_command", metavar="SUBCOMMAND", required=True
    )
    for add_subcommand in SUBCOMMANDS:
        add_subcommand(edge_subparsers)
