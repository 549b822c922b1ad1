"""Register a candidate; the champion marker moves only when the gate promoted it.

Every evaluated model is registered, and the marker moves only if the champion the gate compared
against is still the champion. Each version carries ``map50``, ``data_hash``, ``config_hash``,
``git_commit`` and ``run_id`` tags and the gate's verdict as properties, as Azure ML users expect.
Standard library at import.
"""

from __future__ import annotations

import logging
import math
import subprocess
from pathlib import Path
from typing import Any

from ppe.errors import PpeError
from ppe.run.documents import EvaluationMetrics, GateDecision

logger = logging.getLogger(__name__)

UNKNOWN = "unknown"


def current_git_commit(cwd: Path) -> str:
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
        return UNKNOWN
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else UNKNOWN


def build_tags(
    metrics: EvaluationMetrics, config_hash: str, git_commit: str, run_id: str
) -> dict[str, str]:
    """The tags recorded on a registered version (all strings, as Azure ML requires)."""
    score = metrics.map50
    text = "nan"
    if score is not None and math.isfinite(score):
        text = f"{float(score):.6f}"
    return {
        "map50": text,
        "data_hash": metrics.data_hash,
        "config_hash": config_hash,
        "git_commit": git_commit,
        "run_id": run_id,
    }


def register_candidate(
    registry: Any,
    name: str,
    model_dir: Path,
    gate: GateDecision,
    metrics: EvaluationMetrics,
    *,
    config_hash: str,
    git_commit: str,
    run_id: str,
) -> Any:
    """Register a candidate and move the champion marker if the gate promoted it.

    Args:
        registry: A :class:`ppe.registry.ModelRegistry`.
        name: Model name.
        model_dir: The model folder.
        gate: The gate's decision (``gate.json``).
        metrics: The candidate's evaluation (``metrics.json``).
        config_hash: Hash of the resolved config.
        git_commit: Source commit.
        run_id: Pipeline run id.

    Returns:
        The registered :class:`ppe.registry.ModelVersion` (champion if promoted).

    Raises:
        PpeError: gate.json and metrics.json describe different models or data, or the champion
            changed since the gate ran (nothing is registered then).
    """
    promote = gate.promote
    for gate_key, gate_value, metrics_key, metrics_value in (
        ("challenger_model_hash", gate.challenger_model_hash, "model_hash", metrics.model_hash),
        ("data_hash", gate.data_hash, "data_hash", metrics.data_hash),
    ):
        if gate_value is not None and gate_value != metrics_value:
            raise PpeError(
                f"gate.json {gate_key} {gate_value!r} differs from metrics.json "
                f"{metrics_key} {metrics_value!r}: they describe different runs; pass "
                "the gate.json and metrics.json of the same run"
            )
    if promote:
        current = registry.champion(name)
        expected = gate.champion_model_hash
        current_hash = current.properties.get("model_hash") if current is not None else None
        if (current is None) != (expected is None) or (
            current_hash is not None and current_hash != expected
        ):
            raise PpeError(
                f"the champion of {name!r} changed since the gate ran (gate compared against "
                f"model_hash {expected!r}, the registry's champion is "
                f"{'none' if current is None else f'version {current.version}'} with model_hash "
                f"{current_hash!r}); re-run `ppe gate` against the current champion"
            )
    properties = {
        "model_hash": metrics.model_hash,
        "split": metrics.split,
        "gate_promote": "true" if promote else "false",
        "gate_reason": gate.reason,
    }
    tags = build_tags(metrics, config_hash, git_commit, run_id)
    version = registry.register(model_dir, name, tags=tags, properties=properties)
    if promote:
        version = registry.set_champion(name, version.version)
        logger.info("registered %s version %d and made it the champion", name, version.version)
    else:
        logger.info(
            "registered %s version %d (not promoted: the champion is unchanged)",
            name,
            version.version,
        )
    return version
