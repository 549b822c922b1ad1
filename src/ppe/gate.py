"""Champion/challenger gate: decide from two ``metrics.json`` files whether to promote a model.

The rule: promote the challenger only if its score (``gate.metric``, mAP@0.5) is at least the
champion's plus ``gate.margin``. The first model (no champion) is promoted. With a positive
margin a tie is not promoted. With ``margin == 0`` the rule reads "no worse than the champion",
so a tie **is** promoted: the newer model (current code, current data) replaces an equally good
one, which keeps the registry moving; users who want "strictly better" set a small positive
margin. A challenger whose evaluation is missing, failed or non-finite (NaN, inf) is never
promoted. Both scores must come from the same data (``data_hash``), the same ``split`` and the
same evaluation ``thresholds``; otherwise the comparison is refused, unless a
``champion_evaluator`` is given that re-evaluates the champion on the challenger's data.

The ``metrics.json`` fields compared: ``map50`` (the metric), ``ap`` (per class), ``data_hash``,
``split``, ``model_hash``, ``thresholds``; files are read as
:class:`ppe.run.documents.EvaluationMetrics`. :func:`decide` itself takes mappings and also
honours ``status`` (anything other than ``"ok"`` marks a failed evaluation) and ``error``.

Both evaluations also leave ``outcomes.json`` next to their ``metrics.json``; with both, the
gate adds a paired comparison: the same bootstrap resamples of the images applied to both models
give the 95% interval of the difference (:func:`ppe.evaluate.bootstrap.paired_difference`). It is
written into ``gate.json`` and the reason. With ``gate.decision: paired_interval`` it also decides:
the interval's lower end must reach the margin (with margin 0 a lower end of 0 passes, as a tie
does), so a gain that the images cannot tell from chance is not promoted.

``ppe gate`` (:mod:`ppe.cli.gate`) writes ``gate.json`` atomically and exits 0 whether or not it
promotes (the decision is data); it exits non-zero only on errors. This module imports nothing
heavy at top level (the CLI imports it at start-up).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from ppe.errors import DataError, DocumentError, GateError
from ppe.run import layout
from ppe.run.documents import (
    ChampionRecord,
    DetectionOutcomes,
    EvaluationMetrics,
    GateDecision,
    Interval,
    PairedComparison,
)

logger = logging.getLogger(__name__)

# Scores closer than this count as equal when checking "challenger >= champion + margin", so that
# float rounding of the sum cannot flip a decision that is exactly on the boundary.
_ROUNDING = 1e-12

ChampionEvaluator = Callable[[], Mapping[str, Any] | EvaluationMetrics]

#: The values of ``gate.decision``.
DecisionRule = Literal["point", "paired_interval"]
POINT: DecisionRule = "point"
PAIRED_INTERVAL: DecisionRule = "paired_interval"


def rule_text(metric: str, margin: float, decision: DecisionRule = POINT) -> str:
    """The promotion rule in words."""
    tie = (
        "a tie is not promoted"
        if margin > 0
        else "a tie is promoted (margin 0 means no worse than the champion)"
    )
    test = (
        f"challenger {metric} >= champion {metric} + {margin:g}"
        if decision == POINT
        else f"the lower end of the 95% paired bootstrap interval of challenger {metric} - "
        f"champion {metric} >= {margin:g}"
    )
    return (
        f"promote if {test}; the first model is promoted; {tie}; a missing, failed or "
        "non-finite evaluation is never promoted"
    )


def _passes(delta: float, margin: float) -> bool:
    # margin > 0: strictly better by at least the margin (a tie never passes);
    # margin == 0: no worse than the champion (a tie passes).
    return (delta > 0 and delta >= margin - _ROUNDING) if margin > 0 else delta >= -_ROUNDING


def paired_text(paired: PairedComparison | None) -> str:
    """The paired comparison in one sentence ('' when there is none)."""
    if paired is None or paired.difference is None:
        return ""
    low, high = paired.interval.low, paired.interval.high
    span = f"[{low:+.4f}, {high:+.4f}]" if low is not None and high is not None else "undefined"
    return (
        f" Paired bootstrap over the same {paired.images} images ({paired.resamples} "
        f"resamples): challenger - champion = {paired.difference:+.4f}, "
        f"{paired.level:.0%} interval {span}."
    )


def _score(metrics: Mapping[str, Any], metric: str) -> float | None:
    """The metric as a finite float, or None when it is missing, failed or not finite."""
    status = metrics.get("status", "ok")
    if status != "ok":
        return None
    value = metrics.get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _failure_reason(metrics: Mapping[str, Any] | None, metric: str) -> str:
    if metrics is None:
        return "the challenger has no evaluation (metrics file missing)"
    status = metrics.get("status", "ok")
    if status != "ok":
        detail = metrics.get("error")
        return f"the challenger's evaluation did not succeed (status {status!r}" + (
            f": {detail})" if detail else ")"
        )
    return f"the challenger's {metric} is {metrics.get(metric)!r}, not a finite number"


def _mismatches(challenger: Mapping[str, Any], champion: Mapping[str, Any]) -> list[str]:
    out = []
    for key in ("data_hash", "split", "thresholds"):
        if challenger.get(key) != champion.get(key):
            out.append(f"{key} {champion.get(key)!r} (champion) vs {challenger.get(key)!r}")
    return out


def decide(
    challenger: Mapping[str, Any] | None,
    champion: Mapping[str, Any] | None,
    *,
    margin: float,
    metric: str = "map50",
    champion_evaluator: ChampionEvaluator | None = None,
    paired: PairedComparison | None = None,
    decision: DecisionRule = POINT,
) -> GateDecision:
    """Decide whether the challenger replaces the champion (a pure function of its inputs).

    Args:
        challenger: The challenger's ``metrics.json`` content, or None when the evaluation is
            missing.
        champion: The champion's ``metrics.json`` content, or None when there is no champion.
        margin: Required improvement (``>= 0``), e.g. 0.005 = half a mAP point.
        metric: The metrics key compared (``map50``).
        champion_evaluator: Called (once) when the champion's metrics were computed on other
            data, split or thresholds; it must return the champion's metrics on the
            challenger's data. Without it such a comparison is refused.
        paired: The paired comparison of the two evaluations (same images), if available; it
            is dropped when the champion had to be re-evaluated (it described other data).
        decision: ``point`` (the scores) or ``paired_interval`` (the interval's lower end).

    Returns:
        The :class:`GateDecision`.

    Raises:
        GateError: Negative margin, an unknown decision, champion metrics on other
            data/split/thresholds (and no evaluator, or the evaluator's result still differs), a
            champion score that is not a finite number, or ``paired_interval`` without a paired
            comparison.
    """
    if not margin >= 0 or not math.isfinite(margin):
        raise GateError(f"gate margin must be a finite number >= 0, got {margin!r}")
    if decision not in (POINT, PAIRED_INTERVAL):
        raise GateError(f"gate decision must be {POINT!r} or {PAIRED_INTERVAL!r}, got {decision!r}")
    rule = rule_text(metric, margin, decision)

    def _decision(promote: bool, reason: str, **fields: Any) -> GateDecision:
        values: dict[str, Any] = {
            "challenger_score": None,
            "champion_score": None,
            "data_hash": challenger.get("data_hash") if challenger else None,
            "split": challenger.get("split") if challenger else None,
            "challenger_model_hash": challenger.get("model_hash") if challenger else None,
            "champion_model_hash": champion.get("model_hash") if champion else None,
        }
        values.update(fields)
        return GateDecision(
            promote=promote,
            reason=reason,
            rule=rule,
            metric=metric,
            margin=margin,
            decision=decision,
            **values,
        )

    challenger_score = _score(challenger, metric) if challenger is not None else None
    if challenger_score is None:
        reason = f"Not promoted: {_failure_reason(challenger, metric)}."
        logger.warning("%s", reason)
        return _decision(False, reason)

    if champion is None:
        reason = (
            f"Promoted: there is no champion yet, so the first model "
            f"({metric} {challenger_score:.4f}) becomes the champion."
        )
        return _decision(True, reason, challenger_score=challenger_score)

    assert challenger is not None  # for type checkers: a score implies metrics
    reevaluated = False
    mismatches = _mismatches(challenger, champion)
    if mismatches:
        if champion_evaluator is None:
            raise GateError(
                "the champion's metrics were computed on different data or settings ("
                + "; ".join(mismatches)
                + "): the scores are not comparable. Re-evaluate the champion on the same data "
                "(`ppe evaluate` with the champion model on this data and split) and pass that "
                "metrics.json as --champion"
            )
        logger.info("champion metrics differ (%s): re-evaluating the champion", mismatches)
        result = champion_evaluator()
        champion = result.to_json_dict() if isinstance(result, EvaluationMetrics) else dict(result)
        reevaluated = True
        paired = None
        still = _mismatches(challenger, champion)
        if still:
            raise GateError(
                "the champion re-evaluation still differs from the challenger's evaluation ("
                + "; ".join(still)
                + "); fix the evaluator so it uses the challenger's data, split and thresholds"
            )

    champion_score = _score(champion, metric)
    if champion_score is None:
        raise GateError(
            f"the champion's {metric} is {champion.get(metric)!r} (status "
            f"{champion.get('status', 'ok')!r}), not a finite number; re-evaluate the champion"
        )
    delta = challenger_score - champion_score
    if decision == PAIRED_INTERVAL:
        low = paired.interval.low if paired is not None else None
        if low is None:
            raise GateError(
                "gate.decision is paired_interval but there is no paired comparison: both "
                "evaluations need their outcomes.json on the same images (re-run `ppe evaluate` "
                "and `ppe champion` on this data), or set gate.decision: point"
            )
        promote = _passes(low, margin)
        verdict = "Promoted" if promote else "Not promoted"
        relation = ">=" if promote else "<"
        reason = (
            f"{verdict}: the lower end of the paired 95% interval of {metric} "
            f"(challenger {challenger_score:.4f} - champion {champion_score:.4f}) is "
            f"{low:+.4f} {relation} margin {margin:g}."
        )
    elif _passes(delta, margin):
        promote = True
        reason = (
            f"Promoted: challenger {metric} {challenger_score:.4f} >= champion "
            f"{champion_score:.4f} + margin {margin:g}."
        )
    elif delta == 0 or abs(delta) <= _ROUNDING:
        promote = False
        reason = (
            f"Not promoted: challenger {metric} {challenger_score:.4f} ties the champion, and "
            f"a tie does not beat the margin {margin:g}."
        )
    else:
        promote = False
        reason = (
            f"Not promoted: challenger {metric} {challenger_score:.4f} < champion "
            f"{champion_score:.4f} + margin {margin:g}."
        )
    return GateDecision(
        promote=promote,
        reason=reason + paired_text(paired),
        rule=rule,
        metric=metric,
        margin=margin,
        decision=decision,
        paired=paired,
        challenger_score=challenger_score,
        champion_score=champion_score,
        data_hash=challenger.get("data_hash"),
        split=challenger.get("split"),
        challenger_model_hash=challenger.get("model_hash"),
        champion_model_hash=champion.get("model_hash"),
        champion_reevaluated=reevaluated,
    )


def read_metrics(path: Path, role: str) -> dict[str, Any]:
    """Read a ``metrics.json`` written by ``ppe evaluate`` (:class:`EvaluationMetrics`).

    Args:
        path: The file.
        role: ``challenger`` or ``champion`` (for messages).

    Returns:
        The document's content, for :func:`decide`.

    Raises:
        GateError: The file is missing, not JSON, or not an evaluation's metrics document.
    """
    try:
        return EvaluationMetrics.read(path).to_json_dict()
    except DocumentError as error:
        raise GateError(f"{role} metrics {error}") from None


def paired_comparison(
    challenger_metrics: Path, champion_metrics: Path, *, resamples: int, seed: int
) -> PairedComparison | None:
    """The paired bootstrap of two evaluations from the ``outcomes.json`` beside their metrics.

    Args:
        challenger_metrics: The challenger's ``metrics.json``.
        champion_metrics: The champion's ``metrics.json``.
        resamples: Bootstrap resamples (``evaluate.bootstrap_resamples``).
        seed: Generator seed (``evaluate.bootstrap_seed``).

    Returns:
        The comparison; None when either ``outcomes.json`` is absent (an older evaluation).

    Raises:
        GateError: An outcomes file that does not read, or two evaluations of different images.
    """
    import numpy as np

    from ppe.evaluate import bootstrap
    from ppe.evaluate.voc_map import DetectionOutcomes as Outcomes

    paths = [layout.outcomes_file(path.parent) for path in (challenger_metrics, champion_metrics)]
    if not all(path.is_file() for path in paths):
        logger.info("no paired comparison: %s", [str(p) for p in paths if not p.is_file()])
        return None
    try:
        challenger, champion = (DetectionOutcomes.read(path) for path in paths)
    except DocumentError as error:
        raise GateError(str(error)) from None
    if challenger.image_ids != champion.image_ids or challenger.classes != champion.classes:
        raise GateError(
            f"{paths[1]} and {paths[0]} are evaluations of different images or classes; "
            "evaluate the champion on the challenger's data and split (`ppe champion`)"
        )

    def arrays(document: DetectionOutcomes) -> Outcomes:
        return Outcomes(
            num_images=len(document.image_ids),
            num_ground_truth=np.asarray(document.num_ground_truth, dtype=np.int64).reshape(
                len(document.image_ids), len(document.classes)
            ),
            image=np.asarray(document.image, dtype=np.int64),
            label=np.asarray(document.label, dtype=np.int64),
            score=np.asarray(document.score, dtype=np.float64),
            outcome=np.asarray(document.outcome, dtype=np.int8),
        )

    try:
        result = bootstrap.paired_difference(
            arrays(challenger), arrays(champion), resamples=resamples, seed=seed
        )
    except DataError as error:
        raise GateError(f"{paths[0]}: {error}") from None
    return PairedComparison(
        method=bootstrap.METHOD,
        images=len(challenger.image_ids),
        difference=result.difference if math.isfinite(result.difference) else None,
        interval=Interval(low=result.interval.low, high=result.interval.high),
        level=result.level,
        resamples=result.resamples,
        seed=result.seed,
    )


def read_champion(champion_dir: Path) -> tuple[ChampionRecord, Path | None]:
    """The champion step's record and its metrics file (None when there is no champion).

    Raises:
        GateError: ``champion.json`` is missing or malformed.
    """
    try:
        record = ChampionRecord.read(layout.champion_file(champion_dir))
    except DocumentError as error:
        raise GateError(str(error)) from None
    if not record.present:
        return record, None
    return record, layout.metrics_file(layout.champion_evaluate_dir(champion_dir))


def run_gate(
    challenger_path: Path,
    champion_path: Path | None,
    out: Path,
    *,
    margin: float,
    metric: str = "map50",
    champion_evaluator: ChampionEvaluator | None = None,
    champion_version: int | None = None,
    decision: DecisionRule = POINT,
    resamples: int = 1000,
    seed: int = 0,
) -> GateDecision:
    """Read the metrics files, decide, and write ``gate.json``.

    If the challenger's metrics file is missing or unreadable, a ``gate.json`` with
    ``promote: false`` is still written (so no stale decision is left behind for ``ppe
    register``) and the error is raised.

    Args:
        challenger_path: The challenger's ``metrics.json``.
        champion_path: The champion's ``metrics.json``; None when there is no champion.
        out: Where to write ``gate.json``.
        margin: See :func:`decide`.
        metric: See :func:`decide`.
        champion_evaluator: See :func:`decide`.
        champion_version: The champion's registry version, recorded in ``gate.json``.
        decision: See :func:`decide`.
        resamples: Bootstrap resamples of the paired comparison.
        seed: Its generator seed.

    Returns:
        The decision.

    Raises:
        GateError: As :func:`read_metrics` and :func:`decide`.
    """
    try:
        challenger = read_metrics(challenger_path, "challenger")
    except GateError as error:
        empty = decide(None, None, margin=margin, metric=metric)
        failed = empty.model_copy(update={"reason": f"Not promoted: {error}."})
        failed.write(out)
        raise
    champion = read_metrics(champion_path, "champion") if champion_path is not None else None
    # Only evaluations of the same data, split and thresholds pair up; otherwise decide() refuses
    # or re-evaluates the champion, and the outcomes on disk describe other data.
    paired = (
        paired_comparison(challenger_path, champion_path, resamples=resamples, seed=seed)
        if champion_path is not None
        and champion is not None
        and not _mismatches(challenger, champion)
        else None
    )
    result = decide(
        challenger,
        champion,
        margin=margin,
        metric=metric,
        champion_evaluator=champion_evaluator,
        paired=paired,
        decision=decision,
    )
    if champion_version is not None:
        result = result.model_copy(update={"champion_version": champion_version})
    result.write(out)
    logger.info("%s (written to %s)", result.reason, out)
    return result
