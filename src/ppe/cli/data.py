"""``ppe data`` subcommands: ``import``, ``synth``, ``check``, ``hash`` and ``anchors``.

Only the standard library and :mod:`ppe.config` / :mod:`ppe.errors` are imported at module level;
each handler imports what it needs, so ``ppe --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from ppe.cli.options import add_config_arguments
from ppe.config import load_config

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``data`` command group to the top-level ``ppe`` subparsers."""
    data = subparsers.add_parser(
        "data", help="datasets: import, synthesise, check and hash Pascal VOC folders"
    )
    commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    importer = commands.add_parser(
        "import",
        help="turn an xml folder + image folder into a Pascal VOC dataset with seeded splits",
        description=(
            "Convert VOC XML files plus a folder of images (nested split subfolders allowed) into "
            "Annotations/, JPEGImages/ and ImageSets/Main/{train,val,test}.txt. Classes are mapped "
            "with data.class_map. A source with its own train/, val/ and test/ folders keeps "
            "them; one without is split with data.split. Every problem of the source is "
            "reported at once, and nothing is written unless the import succeeds."
        ),
    )
    importer.add_argument("--annotations", type=Path, required=True, metavar="DIR")
    importer.add_argument("--images", type=Path, required=True, metavar="DIR")
    importer.add_argument("--out", type=Path, required=True, metavar="DIR")
    importer.add_argument("--force", action="store_true", help="replace a non-empty --out")
    importer.add_argument(
        "--allow-empty", action="store_true", help="accept images without objects"
    )
    how = importer.add_mutually_exclusive_group()
    how.add_argument(
        "--eval-only",
        action="store_true",
        help="an evaluation-only set: every image goes to the test split (train/val empty)",
    )
    how.add_argument(
        "--resplit",
        action="store_true",
        help="ignore the source's train/val/test folders and split with data.split",
    )
    add_config_arguments(importer)
    importer.set_defaults(func=import_command)

    synth = commands.add_parser(
        "synth",
        help="render procedural hard-hat scenes as a Pascal VOC dataset",
        description="Render data.synth.num_images scenes (seeded by data.synth.seed) as VOC.",
    )
    synth.add_argument("--out", type=Path, required=True, metavar="DIR")
    synth.add_argument("--force", action="store_true", help="replace a non-empty --out")
    add_config_arguments(synth)
    synth.set_defaults(func=synth_command)

    check = commands.add_parser(
        "check",
        help="list every problem of a Pascal VOC dataset (exit 1 if any)",
        description=(
            "Print one line per problem, '<file>: <reason and fix>', and exit 1; or a one-line "
            "summary (images, objects per class, content hash) and exit 0 when clean."
        ),
    )
    check.add_argument("dataset", type=Path, metavar="DIR")
    check.add_argument("--allow-empty", action="store_true", help="accept images without objects")
    add_config_arguments(check)
    check.set_defaults(func=check_command)

    hasher = commands.add_parser(
        "hash", help="print the sha256 content hash of a Pascal VOC dataset"
    )
    hasher.add_argument("dataset", type=Path, metavar="DIR")
    hasher.set_defaults(func=hash_command)

    anchors = commands.add_parser(
        "anchors",
        help="fit anchors to a Pascal VOC dataset's boxes (k-means, IoU distance)",
        description=(
            "Cluster the letterboxed box shapes of one split into as many anchors as "
            "model.architecture needs (6 for yolov3_tiny, 9 for yolov3) with the 1 - IoU "
            "distance, print the mean best-anchor IoU of Darknet's anchors and of the fitted "
            "ones, and the model.anchors YAML to put in a config (or write it with --out)."
        ),
    )
    anchors.add_argument("dataset", type=Path, metavar="DIR")
    anchors.add_argument("--split", default="train", choices=("train", "val", "test"))
    anchors.add_argument("--seed", type=int, default=0, help="k-means seed (default 0)")
    anchors.add_argument(
        "--out", type=Path, metavar="FILE", help="also write the YAML snippet to FILE"
    )
    add_config_arguments(anchors)
    anchors.set_defaults(func=anchors_command)


def import_command(args: argparse.Namespace) -> int:
    """``ppe data import``: write a VOC dataset under ``--out``; 0 on success."""
    from ppe.data.importer import import_dataset

    config = load_config(args.config, args.overrides)
    report = import_dataset(
        args.annotations,
        args.images,
        args.out,
        classes=config.model.classes,
        class_map=config.data.class_map,
        split=config.data.split,
        force=args.force,
        allow_empty=args.allow_empty,
        eval_only=args.eval_only,
        resplit=args.resplit,
    )
    sys.stdout.write(f"{args.out}: {report.line()}\n")
    return 0


def synth_command(args: argparse.Namespace) -> int:
    """``ppe data synth``: render scenes into ``--out``; 0 on success."""
    from ppe.data.synthetic import synthesize

    config = load_config(args.config, args.overrides)
    report = synthesize(
        args.out, config.data.synth, config.data.split, config.model.classes, force=args.force
    )
    sys.stdout.write(f"{args.out}: {report.line()}\n")
    return 0


def check_command(args: argparse.Namespace) -> int:
    """``ppe data check``: problems on stdout and 1, or a summary line and 0."""
    from ppe.data.check import summarize_dataset
    from ppe.errors import DatasetInvalidError

    config = load_config(args.config, args.overrides)
    try:
        summary = summarize_dataset(
            args.dataset, config.model.classes, allow_empty=args.allow_empty
        )
    except DatasetInvalidError as error:
        sys.stdout.write("".join(f"{problem}\n" for problem in error.problems))
        count = len(error.problems)
        logger.error("%s: %d problem%s", args.dataset, count, "s" * (count != 1))
        return 1
    sys.stdout.write(f"{args.dataset}: {summary.line()}\n")
    return 0


def hash_command(args: argparse.Namespace) -> int:
    """``ppe data hash``: print the dataset's sha256 content hash; 0 on success."""
    from ppe.data.voc import dataset_hash

    sys.stdout.write(f"{dataset_hash(args.dataset)}\n")
    return 0


def anchors_command(args: argparse.Namespace) -> int:
    """``ppe data anchors``: fitted anchors as config YAML on stdout; 0 on success."""
    from ppe.data.anchors import dataset_anchors, mean_best_iou
    from ppe.model.spec import YoloSpec

    config = load_config(args.config, args.overrides)
    darknet = YoloSpec.default(config.model.architecture, config.model.classes)
    count = 3 * darknet.num_scales
    fit, sizes = dataset_anchors(
        args.dataset, config.model.classes, count, split=args.split, seed=args.seed
    )
    used = [darknet.anchors[index] for index in darknet.used_anchors]
    sys.stdout.write(
        f"{args.dataset} ({args.split}): {fit.boxes} boxes; mean best-anchor IoU "
        f"{mean_best_iou(sizes, used):.3f} with Darknet's anchors, {fit.mean_iou:.3f} with these "
        f"{count}:\n{fit.yaml()}"
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(fit.yaml(), encoding="utf-8")
    return 0
