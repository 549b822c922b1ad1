"""Shared pieces of the benchmarks: the run context, result records, statistics, thread limits.

Every benchmark module exposes ``run(context: Context) -> dict``. The dictionary it returns has a
``status`` (``ok``, ``skipped`` or ``failed``); a skipped benchmark says why (``reason``) and how
to provide what it lacks (``how_to_enable``) and carries no figures. Targets are recorded with
:func:`target`: the figure measured beside the threshold it is compared with.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("benchmarks")

#: Environment variable naming the real hard-hat photos (xml folder + image folder, or VOC).
DATA_ENV = "PPE_HARDHAT_DATA"
#: Environment variable naming the official Darknet YOLOv3-tiny COCO weights.
WEIGHTS_ENV = "PPE_DARKNET_WEIGHTS"
#: The detector's classes.
CLASSES: tuple[str, ...] = ("helmet", "head")

STATUS_OK = "ok"
STATUS_SKIPPED = "skipped"
STATUS_FAILED = "failed"


@dataclass
class Context:
    """What one ``benchmarks.run`` invocation asks of every benchmark.

    Attributes:
        quick: tiny sizes and few iterations, to check the code paths (figures not comparable
            with the targets).
        work_dir: scratch folder shared by the benchmarks of one run (models, exports, data).
        repo_root: folder whose ``outputs/`` is searched for a demo model.
        data: real hard-hat dataset folder, or None.
        weights: Darknet YOLOv3-tiny COCO ``.weights`` file, or None.
        model: ``auto`` (registry champion, else latest run, else train one), ``train`` (always
            train one on synthetic scenes) or a model folder path.
        budget_minutes: wall-clock training budget of each real-data run.
        model_train_minutes: wall-clock budget of the synthetic model trained when none exists.
        threads: inference threads (Keras intra/inter-op, LiteRT, the edge server).
        image_size: network input side for inference and serving.
        seed: seed of data synthesis, shuffling and initialisation.
    """

    quick: bool
    work_dir: str
    repo_root: str
    data: str | None = None
    weights: str | None = None
    model: str = "auto"
    budget_minutes: float = 30.0
    model_train_minutes: float = 10.0
    threads: int = 2
    image_size: int = 416
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def work(self) -> Path:
        """``work_dir`` as a path."""
        return Path(self.work_dir)

    def to_json(self) -> str:
        """Serialise for a benchmark subprocess."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Context:
        """Inverse of :meth:`to_json`."""
        return cls(**json.loads(text))


def skipped(reason: str, how_to_enable: str) -> dict[str, Any]:
    """A benchmark (or part) that could not run: why, and what to provide. No figures."""
    logger.warning("skipped: %s (%s)", reason, how_to_enable)
    return {"status": STATUS_SKIPPED, "reason": reason, "how_to_enable": how_to_enable}


def failed(reason: str) -> dict[str, Any]:
    """A benchmark that raised: the error, no figures."""
    return {"status": STATUS_FAILED, "reason": reason}


def target(
    name: str,
    description: str,
    measured: float | None,
    met: bool,
    unit: str = "",
    note: str = "",
) -> dict[str, Any]:
    """One target of the issue, with the figure measured for it.

    Args:
        name: short identifier, e.g. ``int8_speedup``.
        description: the target in words, e.g. ``LiteRT int8 >= 4x faster than Keras fp32``.
        measured: the measured figure, or None when it could not be measured.
        met: whether the figure meets the target (False when not measured).
        unit: unit of ``measured``.
        note: how the figure was obtained, caveats.

    Returns:
        ``{"name", "target", "measured", "unit", "met", "status", "note"}``.
    """
    measured_value = None if measured is None or not math.isfinite(measured) else measured
    return {
        "name": name,
        "target": description,
        "measured": None if measured_value is None else round(float(measured_value), 4),
        "unit": unit,
        "met": bool(met) and measured_value is not None,
        "status": "measured" if measured_value is not None else "not_measured",
        "note": note,
    }


def summarize_ms(values: Sequence[float]) -> dict[str, float | int]:
    """Percentiles of latencies in milliseconds (p50, p95, p99, mean, min, max, count)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("no timings to summarise")
    return {
        "latency_ms_p50": round(float(np.percentile(array, 50)), 3),
        "latency_ms_p95": round(float(np.percentile(array, 95)), 3),
        "latency_ms_p99": round(float(np.percentile(array, 99)), 3),
        "latency_ms_mean": round(float(array.mean()), 3),
        "latency_ms_min": round(float(array.min()), 3),
        "latency_ms_max": round(float(array.max()), 3),
        "runs": int(array.size),
    }


def limit_tf_threads(threads: int) -> dict[str, int]:
    """Limit TensorFlow (and oneDNN's OpenMP) to ``threads`` before TensorFlow initialises.

    The environment variables are read when TensorFlow creates its thread pools, and
    ``tf.config.threading`` must be called before the first op runs; both are done here, so call
    this before anything else touches TensorFlow in the process.

    Args:
        threads: intra-op and inter-op thread count.

    Returns:
        The settings TensorFlow reports afterwards (``intra_op``, ``inter_op``).
    """
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ[name] = str(threads)
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError as error:  # TensorFlow already initialised: report what it uses
        logger.warning("TensorFlow thread pools already exist (%s); limits may not apply", error)
    return {
        "intra_op": int(tf.config.threading.get_intra_op_parallelism_threads()),
        "inter_op": int(tf.config.threading.get_inter_op_parallelism_threads()),
    }


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """Measure wall and process-CPU seconds of a block: ``{"wall_s", "cpu_s"}`` after it."""
    record: dict[str, float] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield record
    finally:
        record["wall_s"] = round(time.perf_counter() - wall, 3)
        record["cpu_s"] = round(time.process_time() - cpu, 3)


def env_path(explicit: str | None, variable: str) -> Path | None:
    """The path given on the command line, else the one in ``variable``, else None."""
    value = explicit or os.environ.get(variable)
    return Path(value).expanduser() if value else None


def write_record(document: dict[str, Any], out: Path) -> None:
    """Write an experiment's JSON record to ``out`` (folders made) and echo it on stdout."""
    text = json.dumps(document, indent=2) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    sys.stdout.write(text)
