"""``ppe pipeline run``: every step in one process, each in its own folder of the run.

A run folder ``<out>/<run id>/`` holds::

    config.yaml          the resolved config
    data/                the dataset (synthesised, imported, or a pointer to a VOC folder)
    data_check.txt       the data check's verdict
    train/               checkpoints, TensorBoard logs, the model folder, train.json
    evaluate/            metrics.json, pr_curves.json, ground-truth/, detection-results/
    champion/            the champion model, downloaded from the registry (if there is one)
    champion_evaluate/   the champion evaluated on this run's data, split and thresholds
    gate.json            champion vs challenger decision
    register.json        the registered version and whether it became champion
    export/              LiteRT fp32/int8 models, labels and the mAP/latency of each backend
    report/index.html    the report; report.zip beside it
    pipeline.json        the steps, their durations and outcome

The same steps run as separate ``ppe`` commands in Azure ML components and Azure DevOps.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ppe.config import Config
from ppe.errors import DataError, PpeError

logger = logging.getLogger(__name__)


@dataclass
class PipelineResult:
    """The outcome of one pipeline run."""

    run_dir: Path
    promoted: bool
    map50: float | None
    report: Path | None
    steps: dict[str, float] = field(default_factory=dict)


def new_run_id(now: datetime | None = None) -> str:
    """A sortable run id from the UTC time, e.g. ``20261123-141502``."""
    return (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")


def git_commit(cwd: Path) -> str:
    """The current git commit of ``cwd`` (``unknown`` outside a git checkout)."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "unknown"


def prepare_data(config: Config, run_dir: Path) -> Path:
    """Synthesise or import the dataset into ``run_dir/data`` (or use a VOC folder in place).

    Returns:
        The Pascal VOC folder the later steps read.
    """
    from ppe.data.check import check_dataset

    data = config.data
    target = run_dir / "data"
    if data.source == "synth":
        from ppe.data.synthetic import synthesize

        synthesize(target, data.synth, data.split, config.model.classes)
    elif data.source == "import":
        from ppe.data.importer import import_dataset

        assert data.path is not None  # the config validator guarantees it
        import_dataset(
            data.path / "annotations",
            data.path / "images",
            target,
            classes=config.model.classes,
            class_map=data.class_map,
            split=data.split,
        )
    else:
        assert data.path is not None
        target = data.path
    problems = check_dataset(target, config.model.classes)
    verdict = "\n".join(str(problem) for problem in problems) or "clean"
    (run_dir / "data_check.txt").write_text(verdict + "\n", encoding="utf-8")
    if problems:
        raise DataError(
            f"{target}: the data check found {len(problems)} problem(s), see "
            f"{run_dir / 'data_check.txt'}; fix them or run `ppe data check {target}`"
        )
    return target


class _Steps:
    """Times each step and records it in ``pipeline.json``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.durations: dict[str, float] = {}

    def run(self, name: str, action: Callable[[], Any]) -> Any:
        logger.info("== step %s", name)
        started = time.perf_counter()
        try:
            return action()
        finally:
            self.durations[name] = round(time.perf_counter() - started, 2)
            self.write({})

    def write(self, extra: Mapping[str, Any]) -> None:
        document = {"steps": self.durations, **extra}
        (self.run_dir / "pipeline.json").write_text(json.dumps(document, indent=2))


def run_pipeline(
    config: Config,
    out_root: Path,
    *,
    run_id: str | None = None,
    environ: Mapping[str, str] | None = None,
    tracking_uri: str | None = None,
    repo_dir: Path | None = None,
) -> PipelineResult:
    """Run data -> check -> train -> evaluate -> gate -> register -> export -> report.

    Args:
        config: the resolved config.
        out_root: runs are created under it as ``<out_root>/<run id>/``.
        run_id: the run id (default: the UTC time).
        environ: process environment (distribution strategy of the train step).
        tracking_uri: MLflow tracking URI (None: no tracking).
        repo_dir: where to read the git commit recorded with the model (default: cwd).

    Returns:
        The :class:`PipelineResult`.

    Raises:
        PpeError: a step failed; the run folder keeps what the finished steps wrote.
    """
    from ppe.evaluate.detect import evaluate_model_dir
    from ppe.export import export_model_dir
    from ppe.gate import run_gate
    from ppe.registry import get_registry
    from ppe.registry.commands import register_candidate
    from ppe.report import build_report
    from ppe.train import train

    run_id = run_id or new_run_id()
    run_dir = out_root / run_id
    if run_dir.exists() and any(run_dir.iterdir()):
        raise PpeError(f"{run_dir} already exists; choose another --run-id or remove it")
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / "config.yaml")
    steps = _Steps(run_dir)
    name = config.registry.model_name
    registry = get_registry(config)

    data_dir = steps.run("data", lambda: prepare_data(config, run_dir))
    trained = steps.run(
        "train",
        lambda: train(
            config, data_dir, run_dir / "train", environ=environ, tracking_uri=tracking_uri
        ),
    )
    metrics_path = run_dir / "evaluate" / "metrics.json"
    steps.run(
        "evaluate",
        lambda: evaluate_model_dir(
            trained.model_dir, data_dir, run_dir / "evaluate", config.evaluate
        ),
    )

    # The champion is always re-evaluated on this run's data, split and thresholds, so the gate
    # compares like with like (and the report can show both per class).
    champion = registry.champion(name)
    champion_metrics: Path | None = None
    if champion is not None:
        champion_dir = run_dir / "champion" / "model"
        registry.download(name, champion.version, champion_dir)
        steps.run(
            "champion_evaluate",
            lambda: evaluate_model_dir(
                champion_dir, data_dir, run_dir / "champion_evaluate", config.evaluate
            ),
        )
        champion_metrics = run_dir / "champion_evaluate" / "metrics.json"
    decision = steps.run(
        "gate",
        lambda: run_gate(
            metrics_path,
            champion_metrics,
            run_dir / "gate.json",
            margin=config.gate.margin,
            metric=config.gate.metric,
        ),
    )

    def register() -> dict[str, Any]:
        version = register_candidate(
            registry,
            name,
            trained.model_dir,
            json.loads((run_dir / "gate.json").read_text()),
            json.loads(metrics_path.read_text()),
            config_hash=config.hash(),
            git_commit=git_commit(repo_dir or Path.cwd()),
            run_id=run_id,
        )
        summary = {"version": version.to_dict(), "promoted": decision.promote}
        (run_dir / "register.json").write_text(json.dumps(summary, indent=2))
        return summary

    steps.run("register", register)
    steps.run(
        "export",
        lambda: export_model_dir(trained.model_dir, data_dir, run_dir / "export", config),
    )
    report = steps.run("report", lambda: build_report(run_dir))
    metrics = json.loads(metrics_path.read_text())
    steps.write(
        {
            "run_id": run_id,
            "promoted": decision.promote,
            "map50": metrics.get("map50"),
            "reason": decision.reason,
        }
    )
    logger.info("%s", decision.reason)
    logger.info("report: %s", report)
    return PipelineResult(run_dir, decision.promote, metrics.get("map50"), report, steps.durations)
