"""``ppe weights ...`` subcommands.

Only the standard library and :mod:`ppe.errors` are imported at module level: the CLI imports
every command module at start-up, and TensorFlow must load only when a handler runs.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ppe.errors import PpeError

logger = logging.getLogger(__name__)

_ARCHITECTURES = ("yolov3", "yolov3_tiny")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ppe weights import-darknet`` to the CLI.

    Args:
        subparsers: the top-level ``ppe`` subparsers.
    """
    weights = subparsers.add_parser(
        "weights", help="pretrained weights: import Darknet .weights files into a model folder"
    )
    weights_commands = weights.add_subparsers(
        dest="weights_command", metavar="WEIGHTS_COMMAND", required=True
    )
    importer = weights_commands.add_parser(
        "import-darknet",
        help="convert official Darknet COCO weights into a model folder",
        description=(
            "Read an official Darknet .weights file into the Keras model and write a model "
            "folder. Without --classes the 80-class COCO model is written; with --classes the "
            "backbone and neck are transferred into a new model for those classes (its output "
            "layers start untrained)."
        ),
    )
    importer.add_argument(
        "--weights", required=True, type=Path, help="Darknet .weights file (COCO, 80 classes)"
    )
    importer.add_argument(
        "--architecture", required=True, choices=_ARCHITECTURES, help="network the file is for"
    )
    importer.add_argument("--out", required=True, type=Path, help="model folder to create")
    importer.add_argument(
        "--classes",
        help="comma-separated target classes (e.g. helmet,head): transfer backbone and neck",
    )
    importer.add_argument(
        "--names",
        type=Path,
        help="class names file of the weights, one a line (default: the 80 COCO names)",
    )
    importer.add_argument(
        "--image-size",
        type=int,
        default=416,
        help="square input size of the written model, a multiple of 32 (default 416)",
    )
    importer.add_argument(
        "--overwrite", action="store_true", help="replace --out if it already exists"
    )
    importer.set_defaults(func=import_darknet)


def _read_names(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise PpeError(f"cannot read class names file {path}: {error}") from error
    names = tuple(line.strip() for line in lines if line.strip())
    if not names:
        raise PpeError(f"class names file {path} is empty; list one class name a line")
    return names


def _parse_classes(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(","))
    if not names or any(not name for name in names) or len(set(names)) != len(names):
        raise PpeError(
            f"--classes {value!r} must be unique, non-empty names separated by commas, "
            "e.g. helmet,head"
        )
    return names


def import_darknet(args: argparse.Namespace) -> int:
    """Handle ``ppe weights import-darknet``.

    Args:
        args: parsed arguments (``weights``, ``architecture``, ``out``, ``classes``, ``names``,
            ``image_size``, ``overwrite``).

    Returns:
        0 on success.

    Raises:
        PpeError: bad arguments, a bad weights file, or an existing output folder.
    """
    from ppe.model.spec import COCO_CLASS_NAMES, YoloSpec

    source_names = _read_names(args.names) if args.names else COCO_CLASS_NAMES
    target_names = _parse_classes(args.classes) if args.classes else None
    if args.out.exists() and not args.overwrite:
        raise PpeError(f"{args.out} already exists; choose another --out or pass --overwrite")
    try:
        source_spec = YoloSpec.default(args.architecture, source_names, args.image_size)
        target_spec = (
            YoloSpec.default(args.architecture, target_names, args.image_size)
            if target_names
            else None
        )
    except ValueError as error:
        raise PpeError(str(error)) from error

    from ppe.model.bundle import save_model_dir
    from ppe.model.darknet_weights import load_darknet_weights, transfer
    from ppe.model.heads import init_head
    from ppe.model.yolov3 import build_model

    source_model = build_model(source_spec)
    header = load_darknet_weights(source_model, source_spec, args.weights)
    metadata: dict[str, object] = {
        "source": "darknet",
        "darknet_weights": args.weights.name,
        "darknet_header": [header.major, header.minor, header.revision, header.seen],
        "source_classes": len(source_names),
    }
    if target_spec is None:
        model, spec = source_model, source_spec
    else:
        model, spec = build_model(target_spec), target_spec
        report = transfer(source_model, model)
        metadata["transfer"] = {
            "copied_layers": len(report.copied),
            "copied_values": report.copied_values,
            "skipped_layers": [name for name, _ in report.skipped],
        }
        # The new class-dependent outputs start at score priors, with COCO's box rows.
        skipped = {name for name, _ in report.skipped}
        fresh = [s for s in spec.strides if f"head_s{s}_output_conv" in skipped]
        head = init_head(model, spec, source=source_model, source_spec=source_spec, strides=fresh)
        metadata["head_init"] = {
            "objectness_bias": {str(s): b for s, b in head.objectness_bias.items()},
            "class_bias": head.class_bias,
            "box_rows_from_source": head.box_rows_from,
        }
    save_model_dir(model, spec, args.out, metadata, overwrite=args.overwrite)
    logger.info(
        "wrote %s: %s, %d classes (%s)",
        args.out,
        spec.architecture,
        spec.num_classes,
        "transferred" if target_spec else "COCO",
    )
    return 0
