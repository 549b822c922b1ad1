"""``make bench``: run the benchmarks and write ``results/<date>.json`` and ``RESULTS.md``.

Usage::

    python -m benchmarks.run [--quick] [--only NAME,...] [--budget-minutes N]
                             [--data PATH] [--weights PATH] [--model auto|train|PATH] [--out DIR]

Benchmarks (in this order): ``evaluator``, ``training``, ``real_data``, ``inference``,
``serving``, ``edge_image``; inference and serving measure the model that ``real_data``
fine-tuned, when it ran.
Each runs in its own Python process (``benchmarks.worker``); the orchestrator never imports
TensorFlow. A benchmark that lacks a prerequisite (real data, weights, a GPU) is recorded
as ``skipped`` with the reason and how to provide it; one that raises is ``failed`` with the error.

Full runs write ``benchmarks/results/<UTC date>.json`` and ``benchmarks/RESULTS.md``. Quick runs
(``--quick``: tiny sizes, few iterations, short budgets; a code-path check, not a measurement)
are marked ``"mode": "quick"`` and default to ``benchmarks/results/quick/`` (git-ignored), so
they are never mistaken for real figures. ``--out DIR`` puts both files in ``DIR``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import DATA_ENV, STATUS_FAILED, WEIGHTS_ENV, Context, failed
from benchmarks.machine import host_facts, load_average
from benchmarks.report import render

logger = logging.getLogger("benchmarks.run")

BENCHMARKS: tuple[str, ...] = (
    "evaluator",
    "training",
    "real_data",
    "inference",
    "serving",
    "edge_image",
)
BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
SCHEMA_VERSION = 2


def get_args_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmarks of the hard-hat detector: inference backends, the edge module's "
        "/score, training throughput, real-data fine-tuning and the mAP evaluator.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and few iterations: checks the code paths in minutes (not a "
        "measurement; results marked mode=quick)",
    )
    parser.add_argument(
        "--only", default=None, help=f"comma-separated subset of {','.join(BENCHMARKS)}"
    )
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=None,
        help="wall-clock training budget of each real-data run (default 30; quick 0.5)",
    )
    parser.add_argument("--data", default=None, help=f"real hard-hat photos (default: ${DATA_ENV})")
    parser.add_argument(
        "--weights",
        default=None,
        help=f"Darknet yolov3-tiny.weights (default: ${WEIGHTS_ENV})",
    )
    parser.add_argument(
        "--model",
        default="auto",
        help="model for inference and serving: auto (registry champion, else the latest "
        "outputs/runs/*/train/model, else train one), train (always train one), or a model folder",
    )
    parser.add_argument(
        "--model-train-minutes",
        type=float,
        default=None,
        help="budget of the synthetic model trained when none is found (default 10; quick 0.25)",
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="inference and server threads (default 2)"
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=416,
        help=(
            "inference and serving input size, a multiple of 32 (default 416); the real-data "
            "model is measured at the size it was trained at"
        ),
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every generator (default 0)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for <date>.json and RESULTS.md (default: benchmarks/results and "
        "benchmarks/RESULTS.md; quick: benchmarks/results/quick)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="scratch folder for models, exports and data (default: a temporary folder, removed)",
    )
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="JSON",
        help="only regenerate the Markdown from an existing results JSON",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0)
    return parser


def _git() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
    }


PATH_OPTIONS = ("--data", "--weights", "--out", "--work-dir", "--model", "--render")


def public_command(argv: Sequence[str]) -> str:
    """The command line with every path argument cut to its last component.

    Results may be committed; paths of the machine they ran on must not be.
    """
    words: list[str] = []
    expecting_path = False
    for word in argv:
        if expecting_path:
            words.append(Path(word).name or word)
            expecting_path = False
            continue
        option, equals, value = word.partition("=")
        if option in PATH_OPTIONS and equals:
            words.append(f"{option}={Path(value).name or value}")
        else:
            words.append(word)
            expecting_path = word in PATH_OPTIONS
    return "python -m benchmarks.run " + shlex.join(words)


def _name(explicit: str | None, variable: str) -> str | None:
    value = explicit or os.environ.get(variable)
    return Path(value).name if value else None


def _selected(only: str | None) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise SystemExit(
            f"--only: unknown benchmark(s) {', '.join(unknown)}; "
            f"choose from {', '.join(BENCHMARKS)}"
        )
    return [name for name in BENCHMARKS if name in names]


def run_worker(name: str, context: Context, verbose: int = 0) -> dict[str, Any]:
    """Run one benchmark in a child process and return its result document."""
    context_file = context.work / f"context-{name}.json"
    result_file = context.work / f"result-{name}.json"
    context_file.write_text(context.to_json())
    command = [
        sys.executable,
        "-m",
        "benchmarks.worker",
        name,
        "--context",
        str(context_file),
        "--result",
        str(result_file),
    ] + ["-v"] * verbose
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    completed = subprocess.run(command, env=env, check=False)
    if result_file.is_file():
        document: dict[str, Any] = json.loads(result_file.read_text())
        return document
    return failed(f"the {name} process exited with {completed.returncode} and wrote no result")


def _output_paths(args: argparse.Namespace, date: str) -> tuple[Path, Path]:
    if args.out is not None:
        return args.out / f"{date}.json", args.out / "RESULTS.md"
    if args.quick:
        folder = BENCH_DIR / "results" / "quick"
        return folder / f"{date}.json", folder / "RESULTS.md"
    return BENCH_DIR / "results" / f"{date}.json", BENCH_DIR / "RESULTS.md"


def write_markdown(document: dict[str, Any], json_path: Path, markdown_path: Path) -> None:
    """Write ``RESULTS.md`` for ``document`` (naming the JSON relative to the Markdown)."""
    try:
        source = os.path.relpath(json_path, markdown_path.parent)
    except ValueError:
        source = str(json_path)
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    markdown_path.write_text(render(document, source), encoding="utf-8")


def rendered_markdown_path(results: Path, out: Path | None) -> Path:
    """Where ``--render RESULTS [--out OUT]`` writes its Markdown.

    ``OUT/RESULTS.md`` when ``--out`` is given; ``benchmarks/RESULTS.md`` for a JSON directly in
    ``benchmarks/results/`` (however the path is spelt: relative, absolute or through a link);
    else ``RESULTS.md`` beside the JSON (a partial run's own folder).
    """
    if out is not None:
        return out / "RESULTS.md"
    if results.resolve().parent == (BENCH_DIR / "results").resolve():
        return BENCH_DIR / "RESULTS.md"
    return results.parent / "RESULTS.md"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks; 0 unless one of them failed."""
    args = get_args_parser().parse_args(argv)
    from ppe.cli import configure_logging

    configure_logging(args.verbose)
    if args.render is not None:
        document = json.loads(args.render.read_text())
        markdown = rendered_markdown_path(args.render, args.out)
        write_markdown(document, args.render, markdown)
        sys.stdout.write(f"wrote {markdown}\n")
        return 0
    if args.image_size % 32 or args.image_size < 32:
        raise SystemExit(f"--image-size {args.image_size} must be a positive multiple of 32")
    names = _selected(args.only)
    started = datetime.now(UTC)
    clock = time.perf_counter()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="ppe-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    context = Context(
        quick=args.quick,
        work_dir=str(work.resolve()),
        repo_root=str(Path.cwd()),
        data=args.data,
        weights=args.weights,
        model=args.model,
        budget_minutes=args.budget_minutes
        if args.budget_minutes is not None
        else (0.5 if args.quick else 30.0),
        model_train_minutes=args.model_train_minutes
        if args.model_train_minutes is not None
        else (0.25 if args.quick else 10.0),
        threads=args.threads,
        image_size=args.image_size,
        seed=args.seed,
    )
    machine = host_facts()
    machine["load_average_start"] = machine.pop("load_average")
    results: dict[str, Any] = {}
    try:
        probe = run_worker("machine", context, args.verbose)
        machine.update(
            {k: v for k, v in probe.items() if k not in ("status", "seconds", "started_utc")}
        )
        for name in names:
            logger.info("=== %s%s ===", name, " (quick)" if args.quick else "")
            results[name] = run_worker(name, context, args.verbose)
            logger.info(
                "=== %s: %s in %.0f s ===",
                name,
                results[name].get("status"),
                results[name].get("seconds", 0),
            )
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    machine["load_average_end"] = load_average()
    date = started.strftime("%Y-%m-%d")
    targets = [
        {"benchmark": name, **item}
        for name, result in results.items()
        for item in result.get("targets", [])
    ]
    document = {
        "schema_version": SCHEMA_VERSION,
        "mode": "quick" if args.quick else "full",
        "date": date,
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - clock, 1),
        "command": public_command(sys.argv[1:] if argv is None else argv),
        "git": _git(),
        "options": {
            key: value
            for key, value in context.__dict__.items()
            if key not in ("work_dir", "repo_root", "extra", "data", "weights")
        }
        | {
            # File names only: no paths of this machine in committed results.
            "data": _name(context.data, DATA_ENV),
            "weights": _name(context.weights, WEIGHTS_ENV),
        },
        "machine": machine,
        "benchmarks": results,
        "targets": targets,
    }
    json_path, markdown_path = _output_paths(args, date)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    write_markdown(document, json_path, markdown_path)
    statuses = {name: result.get("status") for name, result in results.items()}
    met = sum(1 for item in targets if item["met"])
    sys.stdout.write(
        f"benchmarks ({document['mode']}): "
        + ", ".join(f"{name} {status}" for name, status in statuses.items())
        + f"; targets met {met}/{len(targets)}; wrote {json_path} and {markdown_path}\n"
    )
    return 1 if STATUS_FAILED in statuses.values() else 0


if __name__ == "__main__":
    sys.exit(main())
