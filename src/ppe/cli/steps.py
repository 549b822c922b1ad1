"""Subcommands for the steps that are single modules: train, evaluate, report and pipeline.

Only light imports here: the CLI imports every command module at start-up, and the IoT Edge image
has no TensorFlow.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from ppe.cli.options import add_config_arguments
from ppe.config import load_config

logger = logging.getLogger(__name__)

DEFAULT_TRACKING_DB = Path("outputs") / "mlflow.db"


def resolve_tracking_uri(configured: str | None, environ: dict[str, str]) -> str:
    """Pick the MLflow tracking URI.

    The config's URI wins; else ``MLFLOW_TRACKING_URI`` (Azure ML jobs set it to the workspace);
    else the embedded SQLite store ``outputs/mlflow.db`` (no server).
    """
    if configured:
        return configured
    if environ.get("MLFLOW_TRACKING_URI"):
        return environ["MLFLOW_TRACKING_URI"]
    DEFAULT_TRACKING_DB.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{DEFAULT_TRACKING_DB.resolve()}"


def _train(args: argparse.Namespace) -> int:
    from ppe.train import train

    config = load_config(args.config, args.overrides)
    environ = dict(os.environ)
    uri = None if args.no_tracking else resolve_tracking_uri(config.tracking.uri, environ)
    train(config, args.data, args.out, environ=environ, tracking_uri=uri)
    return 0


def register(subparsers: Any) -> None:
    """Add ``ppe train``, ``ppe evaluate``, ``ppe report`` and ``ppe pipeline run``."""
    parser = subparsers.add_parser(
        "train",
        help="train the detector on a VOC dataset (resumes an interrupted run in --out)",
        description="Train YOLOv3 on a Pascal VOC folder; checkpoints every epoch, TensorBoard "
        "logs, MLflow tracking, and a model folder in OUT/model.",
    )
    parser.add_argument("--data", type=Path, required=True, help="Pascal VOC dataset folder")
    parser.add_argument("--out", type=Path, required=True, help="training output folder")
    parser.add_argument(
        "--no-tracking", action="store_true", help="do not record the run with MLflow"
    )
    add_config_arguments(parser)
    parser.set_defaults(func=_train)
    register_steps(subparsers)


def _evaluate(args: argparse.Namespace) -> int:
    from ppe.evaluate.detect import evaluate_model_dir

    config = load_config(args.config, args.overrides)
    evaluate_model_dir(
        args.model,
        args.data,
        args.out,
        config.evaluate,
        split=args.split,
        operating_threshold=config.edge.score_threshold,
    )
    return 0


def _thresholds(args: argparse.Namespace) -> int:
    from ppe.evaluate.detect import write_class_thresholds

    config = load_config(args.config, args.overrides)
    write_class_thresholds(args.model, args.data, config.evaluate, split=args.split)
    return 0


def _report(args: argparse.Namespace) -> int:
    from ppe.errors import PpeError
    from ppe.report import ReportInputs, build_report
    from ppe.run.layout import RunLayout, report_zip

    folders = {
        name: getattr(args, name)
        for name in ("evaluate", "train", "champion", "gate", "register", "data")
    }
    if args.run is not None:
        run = RunLayout(args.run)
        defaults = ReportInputs.of_run(run)
        folders = {
            name: value if value is not None else getattr(defaults, name)
            for name, value in folders.items()
        }
    out = args.out or (RunLayout(args.run).port("report") if args.run is not None else None)
    if folders["evaluate"] is None or out is None:
        raise PpeError("ppe report needs --run RUN_DIR, or --evaluate DIR and --out DIR")
    title = args.run_id or (args.run.name if args.run is not None else out.name)
    index = build_report(ReportInputs(**folders), out, title)
    logger.info("open %s in a browser (or unzip %s)", index, report_zip(out))
    return 0


def _pipeline_run(args: argparse.Namespace) -> int:
    from ppe.cli import run_command
    from ppe.pipeline.local import run_pipeline

    config = load_config(args.config, args.overrides)
    result = run_pipeline(
        config,
        args.out,
        execute=run_command,
        run_id=args.run_id,
        tracking=not args.no_tracking,
    )
    verdict = "promoted to champion" if result.promoted else "not promoted (champion kept)"
    logger.info(
        "run %s: mAP@0.5 %s, %s; report: %s",
        result.run_dir.name,
        f"{result.map50:.4f}" if result.map50 is not None else "n/a",
        verdict,
        result.report,
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from ppe.export import export_model_dir

    config = load_config(args.config, args.overrides)
    export_model_dir(args.model, args.data, args.out, config, num_threads=args.threads)
    return 0


def register_steps(subparsers: Any) -> None:
    """Add ``ppe evaluate``, ``ppe report`` and ``ppe pipeline run``."""
    evaluate = subparsers.add_parser(
        "evaluate",
        help="score a model folder on a split: metrics.json and Cartucho/mAP files",
        description="Run the model over a split with the config's score threshold and NMS and "
        "write metrics.json (VOC 2010+ mAP@0.5, AP per class, counts, hashes), pr_curves.json, "
        "ground-truth/ and detection-results/ (Cartucho/mAP format).",
    )
    evaluate.add_argument("--model", type=Path, required=True, help="model folder")
    evaluate.add_argument("--data", type=Path, required=True, help="Pascal VOC dataset folder")
    evaluate.add_argument(
        "--split",
        choices=("train", "val", "test"),
        default=None,
        help="split to evaluate (default: evaluate.split of the config)",
    )
    evaluate.add_argument("--out", type=Path, required=True, help="output folder (replaced)")
    add_config_arguments(evaluate)
    evaluate.set_defaults(func=_evaluate)

    thresholds = subparsers.add_parser(
        "thresholds",
        help="choose per-class score thresholds on a split, into the model folder",
        description="Run the model over a split (validation by default), choose each class's "
        "score threshold by maximum F1 and write thresholds.json into the model folder; the "
        "edge module applies max(its live score_threshold, the class's threshold).",
    )
    thresholds.add_argument("--model", type=Path, required=True, help="model folder (written)")
    thresholds.add_argument("--data", type=Path, required=True, help="Pascal VOC dataset folder")
    thresholds.add_argument(
        "--split",
        choices=("train", "val", "test"),
        default="val",
        help="split to choose on (default: val; never the split the model is scored on)",
    )
    add_config_arguments(thresholds)
    thresholds.set_defaults(func=_thresholds)

    export = subparsers.add_parser(
        "export",
        help="LiteRT fp32 and int8 models for the edge, with the mAP of each backend",
        description="Convert a model folder to LiteRT fp32 and full-integer int8 (calibrated on "
        "train-split images) and score Keras, fp32 and int8 on the evaluation split.",
    )
    export.add_argument("--model", type=Path, required=True, help="model folder")
    export.add_argument("--data", type=Path, required=True, help="Pascal VOC dataset folder")
    export.add_argument("--out", type=Path, required=True, help="export folder (replaced)")
    export.add_argument("--threads", type=int, default=2, help="LiteRT interpreter threads")
    add_config_arguments(export)
    export.set_defaults(func=_export)

    report = subparsers.add_parser(
        "report",
        help="HTML report with plots for a run folder (report/index.html and report.zip)",
        description="Build the report from a local run folder (--run), or from the step output "
        "folders (as the Azure ML report step does); a folder given explicitly wins over --run.",
    )
    report.add_argument("--run", type=Path, help="local pipeline run folder")
    for name, what in (
        ("evaluate", "the evaluate step's folder (required without --run)"),
        ("train", "the train step's folder (loss curves)"),
        ("champion", "the champion step's folder (champion vs challenger)"),
        ("gate", "the gate step's folder (the decision)"),
        ("register", "the register step's folder"),
        ("data", "the Pascal VOC dataset (sample images)"),
    ):
        report.add_argument(f"--{name}", type=Path, metavar="DIR", help=what)
    report.add_argument("--run-id", help="the run's name in the page title")
    report.add_argument(
        "--out", type=Path, metavar="DIR", help="report folder (default: RUN/report)"
    )
    report.set_defaults(func=_report)

    pipeline = subparsers.add_parser("pipeline", help="run every step locally")
    pipeline_sub = pipeline.add_subparsers(
        dest="pipeline_command", metavar="COMMAND", required=True
    )
    run = pipeline_sub.add_parser(
        "run",
        help="data, champion, train, evaluate, gate, register, export, report in one command",
        description="Run the whole pipeline in-process; each run gets OUT/<run id>/.",
    )
    run.add_argument(
        "--out",
        type=Path,
        default=Path("outputs") / "runs",
        help="folder of runs (default: outputs/runs)",
    )
    run.add_argument("--run-id", default=None, help="run id (default: the UTC time)")
    run.add_argument("--no-tracking", action="store_true", help="no MLflow tracking")
    add_config_arguments(run)
    run.set_defaults(func=_pipeline_run)
