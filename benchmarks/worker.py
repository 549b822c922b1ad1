"""Run one benchmark in this process: ``python -m benchmarks.worker NAME --context F --result F``.

``benchmarks.run`` starts one worker per benchmark, so each gets a fresh Python and TensorFlow
(thread pools, mixed-precision policy and memory do not carry over). The result (or the error) is
written as JSON to ``--result``; the exit status is 0 unless the benchmark raised.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import Context, failed

logger = logging.getLogger("benchmarks.worker")

BENCHMARKS = (
    "evaluator",
    "inference",
    "serving",
    "training",
    "real_data",
    "edge_image",
    "machine",
)


def clean(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [clean(item) for item in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark named on the command line and write its result JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    parser.add_argument("name", choices=BENCHMARKS)
    parser.add_argument("--function", default="run", help="function of the module to call")
    parser.add_argument("--context", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)

    from ppe.cli import configure_logging

    configure_logging(args.verbose)
    context = Context.from_json(args.context.read_text())
    started = datetime.now(UTC)
    clock = time.perf_counter()
    status = 0
    try:
        module = importlib.import_module(f"benchmarks.{args.name}")
        result: dict[str, Any] = getattr(module, args.function)(context)
    except Exception as error:
        logger.error("%s failed:\n%s", args.name, traceback.format_exc())
        result = failed(f"{type(error).__name__}: {error}")
        status = 1
    result["started_utc"] = started.isoformat(timespec="seconds")
    result["seconds"] = round(time.perf_counter() - clock, 1)
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(clean(result), indent=2, allow_nan=False, default=str))
    return status


if __name__ == "__main__":
    sys.exit(main())
