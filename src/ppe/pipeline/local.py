"""``ppe pipeline run``: the step graph run on this machine, every step in one process.

The data step (synthesise, import or use a VOC folder, then check it) provides the graph input
``data``; then each step of :data:`ppe.run.graph.STEPS` runs in order, as the same ``ppe``
command line its Azure ML component runs, with its folders taken from the run layout
(:mod:`ppe.run.layout`). ``pipeline.json`` records each step's duration and the outcome.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ppe.config import Config
from ppe.errors import PpeError
from ppe.run import graph, layout
from ppe.run.documents import EvaluationMetrics, GateDecision
from ppe.run.layout import RunLayout, new_run_id

logger = logging.getLogger(__name__)

DATA_STEP = "data"


@dataclass
class PipelineResult:
    """The outcome of one pipeline run."""

    run_dir: Path
    promoted: bool
    map50: float | None
    report: Path | None
    steps: dict[str, float] = field(default_factory=dict)


def step_argv(
    step: graph.Step, run: RunLayout, ports: dict[str, Path], run_id: str, tracking: bool
) -> list[str]:
    """The ``ppe`` arguments of ``step`` with the run's folders.

    Args:
        step: The graph step.
        run: The run's layout.
        ports: Graph inputs -> folders (``data`` may be a VOC folder outside the run).
        run_id: The run id.
        tracking: False renders :attr:`~ppe.run.graph.Token.NO_TRACKING` as ``--no-tracking``.
    """

    def folder(port: str) -> Path:
        return ports.get(port, run.port(port))

    def source(arg: graph.In) -> str:
        return str(folder(arg.port) / arg.path) if arg.path else str(folder(arg.port))

    def target(arg: graph.Out) -> str:
        out = run.port(step.output)
        return str(out / arg.path) if arg.path else str(out)

    def token(arg: graph.Token) -> str | None:
        if arg is graph.Token.CONFIG:
            return str(run.config)
        if arg is graph.Token.RUN_ID:
            return run_id
        return None if tracking else "--no-tracking"

    return step.render(source, target, token)


def plan(
    run: RunLayout, ports: dict[str, Path], run_id: str, tracking: bool
) -> list[tuple[graph.Step, list[str]]]:
    """Every step of the graph in order, with its ``ppe`` arguments for this run."""
    return [(step, step_argv(step, run, ports, run_id, tracking)) for step in graph.STEPS]


class _Timer:
    """Times each step and records it in ``pipeline.json``."""

    def __init__(self, run: RunLayout) -> None:
        self.run = run
        self.durations: dict[str, float] = {}

    def time(self, name: str, action: Callable[[], Any]) -> Any:
        logger.info("== step %s", name)
        started = time.perf_counter()
        try:
            return action()
        except PpeError as error:
            raise PpeError(
                f"step {name!r} failed: {error} (the run folder {self.run.run_dir} keeps what "
                "the finished steps wrote; fix the cause and start a new run)",
                exit_code=error.exit_code,
            ) from error
        finally:
            self.durations[name] = round(time.perf_counter() - started, 2)
            self.write({})

    def write(self, extra: dict[str, Any]) -> None:
        document = {"steps": self.durations, **extra}
        self.run.pipeline.write_text(json.dumps(document, indent=2))


def run_pipeline(
    config: Config,
    out_root: Path,
    *,
    execute: Callable[[list[str]], None],
    run_id: str | None = None,
    tracking: bool = True,
) -> PipelineResult:
    """Prepare the data, then run every step of the graph in order.

    Args:
        config: The resolved config (saved as the run's ``config.yaml``, which every step reads).
        out_root: Runs are created under it as ``<out_root>/<run id>/``.
        execute: Runs one ``ppe`` command line in this process and raises on failure
            (:func:`ppe.cli.run_command`; the runner itself knows no command line parser).
        run_id: The run id (default: the UTC time).
        tracking: Record training with MLflow (the URI: config, ``MLFLOW_TRACKING_URI``, or the
            embedded store, as ``ppe train`` resolves it).

    Returns:
        The :class:`PipelineResult`.

    Raises:
        PpeError: a step failed (the message names it); the run folder keeps what the finished
            steps wrote.
    """
    from ppe.data.prepare import prepare_data

    run_id = run_id or new_run_id()
    run = RunLayout(out_root / run_id)
    if run.run_dir.exists() and any(run.run_dir.iterdir()):
        raise PpeError(f"{run.run_dir} already exists; choose another --run-id or remove it")
    run.run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run.config)
    timer = _Timer(run)

    ports = {"data": timer.time(DATA_STEP, lambda: prepare_data(config, run.run_dir))}
    for step, argv in plan(run, ports, run_id, tracking):
        timer.time(step.name, functools.partial(execute, argv))

    decision = GateDecision.read(layout.gate_file(run.port("gate")))
    metrics = EvaluationMetrics.read(layout.metrics_file(run.port("evaluate")))
    report = layout.report_index(run.port("report"))
    timer.write(
        {
            "run_id": run_id,
            "promoted": decision.promote,
            "map50": metrics.map50,
            "reason": decision.reason,
        }
    )
    logger.info("%s", decision.reason)
    logger.info("report: %s", report)
    return PipelineResult(run.run_dir, decision.promote, metrics.map50, report, timer.durations)
