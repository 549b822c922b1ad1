"""Bootstrap intervals for VOC mAP: resample the evaluated images, recompute AP, take percentiles.

A bootstrap resample draws ``num_images`` images with replacement; image ``i`` drawn ``k`` times
counts ``k`` times. Because a detection's outcome (true positive, false positive, ignored) depends
only on its own image (:class:`ppe.evaluate.voc_map.DetectionOutcomes`), the AP of a resample is
computed without matching again: every detection and every ground-truth box of image ``i`` gets
the weight ``k``, the ranked cumulative sums become weighted sums, and the all-point AP follows as
in :func:`ppe.evaluate.voc_map.average_precision`. This equals evaluating the resample with the
images physically repeated (a repeated image's copies of a detection share one score, and copies
of a false positive never set the precision envelope; exact when no two images share a score).

The interval is the percentile interval of the resampled values (Efron & Tibshirani, "An
Introduction to the Bootstrap", ch. 13). A resample in which a class has no ground truth leaves
that class out of its mean, as the point estimate does; a resample in which no class has any
leaves no value. The same resamples applied to two evaluations of the same images give the paired
interval of their difference (:func:`paired_difference`).

NumPy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ppe.errors import DataError
from ppe.evaluate.voc_map import DetectionOutcomes

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Two-sided coverage of every interval.
LEVEL = 0.95
#: What the intervals are, in words (written into the documents).
METHOD = "percentile bootstrap over images"
# Weighted detection rows handled per block of resamples (bounds peak memory).
_CELLS_PER_BLOCK = 4_000_000


@dataclass(frozen=True)
class Interval:
    """A two-sided interval; None ends when no resample had a value."""

    low: float | None
    high: float | None

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the closed interval."""
        return self.low is not None and self.high is not None and self.low <= value <= self.high


@dataclass(frozen=True)
class BootstrapResult:
    """Intervals of mAP and of each class's AP.

    Attributes:
        map50: Interval of the mean AP.
        ap: Class name -> interval of its AP.
        resamples: Number of resamples drawn.
        seed: The random generator's seed.
        level: Two-sided coverage (0.95).
    """

    map50: Interval
    ap: dict[str, Interval]
    resamples: int
    seed: int
    level: float = LEVEL


def resample_weights(num_images: int, resamples: int, seed: int) -> IntArray:
    """How often each image is drawn in each resample.

    Args:
        num_images: Images in the evaluation.
        resamples: Number of resamples.
        seed: Seed of NumPy's default generator (the same seed gives the same resamples).

    Returns:
        ``(resamples, num_images)`` int64 counts; every row sums to ``num_images``.

    Raises:
        DataError: No images or fewer than one resample.
    """
    if num_images < 1:
        raise DataError("the bootstrap needs at least one evaluated image")
    if resamples < 1:
        raise DataError(f"the bootstrap needs at least one resample, got {resamples}")
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, num_images, size=(resamples, num_images))
    offsets = np.arange(resamples, dtype=np.int64)[:, None] * num_images
    counts = np.bincount((drawn + offsets).ravel(), minlength=resamples * num_images)
    return counts.reshape(resamples, num_images).astype(np.int64)


def weighted_ap(outcomes: DetectionOutcomes, weights: IntArray) -> FloatArray:
    """Per-class AP of each resample.

    Args:
        outcomes: The evaluation's per-detection outcomes.
        weights: ``(resamples, num_images)`` draw counts (all ones: the point estimate).

    Returns:
        ``(resamples, num_classes)`` AP; NaN where the resample has no ground truth of the class.
    """
    weights = np.asarray(weights, dtype=np.int64)
    if weights.ndim != 2 or weights.shape[1] != outcomes.num_images:
        raise DataError(
            f"weights must have shape (resamples, {outcomes.num_images}), got {weights.shape}"
        )
    num_classes = outcomes.num_ground_truth.shape[1]
    counted = outcomes.outcome >= 0
    # Rank like the metric: class ascending, score descending, ties in row order (stable).
    order = np.lexsort((-outcomes.score, outcomes.label))
    order = order[counted[order]]
    ranked_label = outcomes.label[order]
    bounds = np.searchsorted(ranked_label, np.arange(num_classes + 1), side="left")
    npos = weights.astype(np.float64) @ outcomes.num_ground_truth.astype(np.float64)
    result = np.zeros((len(weights), num_classes), dtype=np.float64)
    for index in range(num_classes):
        rows = order[bounds[index] : bounds[index + 1]]
        tp = (outcomes.outcome[rows] == 1).astype(np.float64)
        image = outcomes.image[rows]
        block = max(1, _CELLS_PER_BLOCK // max(len(rows), 1))
        for start in range(0, len(weights), block):
            w = weights[start : start + block][:, image].astype(np.float64)
            positives = npos[start : start + block, index]
            if len(rows) == 0:
                result[start : start + block, index] = 0.0
                continue
            cum_tp = np.cumsum(w * tp, axis=1)
            cum_all = np.cumsum(w, axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                precision = np.where(cum_all > 0, cum_tp / cum_all, 0.0)
                recall = cum_tp / positives[:, None]
            envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
            steps = np.diff(recall, axis=1, prepend=0.0)
            result[start : start + block, index] = np.sum(steps * envelope, axis=1)
        result[npos[:, index] == 0, index] = np.nan
    return result


def mean_ap(ap: FloatArray) -> FloatArray:
    """Mean over the classes that have ground truth in each resample (NaN when none has)."""
    present = ~np.isnan(ap)
    totals = np.where(present, ap, 0.0).sum(axis=1)
    counts = present.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)


def percentile_interval(values: FloatArray, level: float = LEVEL) -> Interval:
    """The central ``level`` percentile interval of the finite values (None ends if none)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return Interval(None, None)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return Interval(float(low), float(high))


def bootstrap_map(
    outcomes: DetectionOutcomes, class_names: list[str], *, resamples: int, seed: int
) -> BootstrapResult:
    """Percentile intervals of mAP and per-class AP over image resamples.

    Args:
        outcomes: The evaluation's per-detection outcomes.
        class_names: Names for the class indices.
        resamples: Number of resamples (the ``evaluate.bootstrap_resamples`` key).
        seed: Generator seed (``evaluate.bootstrap_seed``).

    Returns:
        The :class:`BootstrapResult`.
    """
    weights = resample_weights(outcomes.num_images, resamples, seed)
    ap = weighted_ap(outcomes, weights)
    return BootstrapResult(
        map50=percentile_interval(mean_ap(ap)),
        ap={name: percentile_interval(ap[:, index]) for index, name in enumerate(class_names)},
        resamples=resamples,
        seed=seed,
    )


@dataclass(frozen=True)
class PairedDifference:
    """The challenger's mAP minus the champion's, on the same images.

    Attributes:
        difference: The point difference.
        interval: Its paired percentile interval.
        resamples: Number of resamples.
        seed: Generator seed.
        level: Two-sided coverage.
    """

    difference: float
    interval: Interval
    resamples: int
    seed: int
    level: float = LEVEL


def paired_difference(
    challenger: DetectionOutcomes,
    champion: DetectionOutcomes,
    *,
    resamples: int,
    seed: int,
) -> PairedDifference:
    """Paired bootstrap of ``mAP(challenger) - mAP(champion)``: one set of resamples for both.

    Args:
        challenger: The challenger's outcomes.
        champion: The champion's outcomes on the same images, in the same order.
        resamples: Number of resamples.
        seed: Generator seed.

    Returns:
        The :class:`PairedDifference`.

    Raises:
        DataError: The two evaluations did not see the same images and ground truth.
    """
    if challenger.num_images != champion.num_images or not np.array_equal(
        challenger.num_ground_truth, champion.num_ground_truth
    ):
        raise DataError(
            "the paired comparison needs both models evaluated on the same images with the "
            f"same ground truth ({challenger.num_images} vs {champion.num_images} images); "
            "re-evaluate the champion on the challenger's data and split"
        )
    ones = np.ones((1, challenger.num_images), dtype=np.int64)
    point = float(
        mean_ap(weighted_ap(challenger, ones))[0] - mean_ap(weighted_ap(champion, ones))[0]
    )
    weights = resample_weights(challenger.num_images, resamples, seed)
    delta = mean_ap(weighted_ap(challenger, weights)) - mean_ap(weighted_ap(champion, weights))
    return PairedDifference(
        difference=point if math.isfinite(point) else math.nan,
        interval=percentile_interval(delta),
        resamples=resamples,
        seed=seed,
    )
