"""Bootstrap intervals of mAP: a hand-computed case, the evaluator as oracle, and properties."""

from __future__ import annotations

import numpy as np
import pytest
from testing.unit.evaluate.evaluation_cases import BOX, CLASSES, FAR, random_split, score, split_of

from ppe.config import EvaluateConfig, load_config
from ppe.errors import ConfigError, DataError
from ppe.evaluate.bootstrap import (
    bootstrap_map,
    mean_ap,
    paired_difference,
    resample_weights,
    weighted_ap,
)
from ppe.evaluate.detect import metrics_document
from ppe.evaluate.voc_map import ImageDetections, ImageGroundTruth, evaluate_voc_map


def _two_images() -> tuple[list[ImageGroundTruth], list[ImageDetections]]:
    # A: one helmet, found (0.9). B: one helmet; a miss elsewhere (0.8), then the box (0.7).
    truths = [ImageGroundTruth([BOX], [0]), ImageGroundTruth([BOX], [0])]
    found = [
        ImageDetections([BOX], [0.9], [0]),
        ImageDetections([FAR, BOX], [0.8, 0.7], [0, 0]),
    ]
    return truths, found


def test_resampled_ap_by_hand() -> None:
    # Ranked TP(A) .9, FP(B) .8, TP(B) .7 of 2 boxes: recall .5/.5/1, envelope 1/.67/.67: AP 5/6.
    # {A, A}: two TPs ranked first: AP 1. {B, B}: FP FP TP TP of 2: precision at the two recall
    # steps 1/3 and 2/4, envelope 1/2 at both: AP 1/2.
    result = score(split_of(*_two_images()))
    assert result.map50 == pytest.approx(5 / 6)
    assert result.outcomes is not None
    ap = weighted_ap(result.outcomes, np.array([[1, 1], [2, 0], [0, 2]]))
    np.testing.assert_allclose(ap[:, 0], [5 / 6, 1.0, 0.5])
    assert np.isnan(ap[:, 1]).all()  # no head box in any resample: left out of the mean
    np.testing.assert_allclose(mean_ap(ap), [5 / 6, 1.0, 0.5])
    # The draws are {A,A}, {B,B} a quarter of the time each: the 95% interval is [1/2, 1].
    intervals = bootstrap_map(result.outcomes, CLASSES, resamples=1000, seed=0)
    assert (intervals.map50.low, intervals.map50.high) == (0.5, 1.0)
    assert intervals.ap["head"].low is None and intervals.ap["head"].high is None


def test_a_resample_scores_as_the_repeated_images_do() -> None:
    # Oracle: the evaluator itself, on the resample's images physically repeated.
    split = random_split(25, seed=4)
    result = score(split)
    assert result.outcomes is not None
    weights = resample_weights(25, 15, seed=7)
    resampled = weighted_ap(result.outcomes, weights)
    for row, counts in enumerate(weights):
        index = np.repeat(np.arange(25), counts)
        again = evaluate_voc_map(
            [split.ground_truths[i] for i in index], [split.detections[i] for i in index], CLASSES
        )
        expected = [np.nan if ap is None else ap for ap in again.ap.values()]
        np.testing.assert_allclose(resampled[row], expected, atol=1e-12)
    # All-ones weights give the point estimate.
    ones = weighted_ap(result.outcomes, np.ones((1, 25), dtype=np.int64))
    assert mean_ap(ones)[0] == pytest.approx(result.map50, abs=1e-12)


def test_resample_weights_draw_every_image_count_once() -> None:
    weights = resample_weights(40, 300, seed=1)
    assert weights.shape == (300, 40) and (weights.sum(axis=1) == 40).all()
    np.testing.assert_array_equal(weights, resample_weights(40, 300, seed=1))
    assert not np.array_equal(weights, resample_weights(40, 300, seed=2))
    # Each image is drawn once per resample on average.
    assert weights.mean() == pytest.approx(1.0)
    with pytest.raises(DataError, match="at least one evaluated image"):
        resample_weights(0, 10, seed=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_interval_contains_the_estimate_and_narrows_with_more_images(seed: int) -> None:
    many = score(random_split(300, seed=seed))
    few = score(random_split(30, seed=seed))
    assert many.outcomes is not None and few.outcomes is not None
    wide = bootstrap_map(few.outcomes, CLASSES, resamples=500, seed=0).map50
    narrow = bootstrap_map(many.outcomes, CLASSES, resamples=500, seed=0).map50
    assert wide.contains(few.map50) and narrow.contains(many.map50)
    assert wide.low is not None and wide.high is not None
    assert narrow.low is not None and narrow.high is not None
    assert wide.high - wide.low > 1.8 * (narrow.high - narrow.low)


def test_metrics_json_carries_the_interval_with_the_configured_resamples_and_seed() -> None:
    split = random_split(40, seed=3)
    result = score(split)

    def document(settings: EvaluateConfig) -> tuple[float | None, float | None, int, int]:
        metrics = metrics_document(
            result,
            split,
            settings,
            split="test",
            data_hash="d",
            model_hash_value="m",
            backend="keras",
            class_names=CLASSES,
        )
        assert metrics.bootstrap is not None
        assert metrics.bootstrap.level == 0.95 and set(metrics.bootstrap.ap) == set(CLASSES)
        interval = metrics.bootstrap.map50
        return interval.low, interval.high, metrics.bootstrap.resamples, metrics.bootstrap.seed

    base = document(EvaluateConfig())
    assert base[2:] == (1000, 0)
    assert document(EvaluateConfig()) == base  # a fixed seed: the same interval every time
    assert document(EvaluateConfig(bootstrap_seed=5))[:2] != base[:2]
    assert document(EvaluateConfig(bootstrap_resamples=200))[2] == 200
    assert document(EvaluateConfig(bootstrap_resamples=200))[:2] != base[:2]


def test_bootstrap_keys_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"evaluate\.bootstrap_resamples"):
        load_config(None, ["evaluate.bootstrap_resamples=5"])


def test_paired_difference_of_a_model_with_itself_is_zero() -> None:
    result = score(random_split(30, seed=8))
    assert result.outcomes is not None
    same = paired_difference(result.outcomes, result.outcomes, resamples=300, seed=0)
    assert same.difference == 0.0
    assert (same.interval.low, same.interval.high) == (0.0, 0.0)


def test_paired_interval_is_narrower_than_the_two_unpaired_ones() -> None:
    # Two detectors on the same images share most of their errors: the pairing removes the
    # image-to-image variation that both unpaired intervals carry.
    split = random_split(120, seed=11)
    better = split_of(
        split.ground_truths,
        [
            ImageDetections(
                np.vstack([found.boxes, truth.boxes[:1]]),
                np.append(found.scores, 0.95),
                np.append(found.labels, truth.labels[:1]),
            )
            for truth, found in zip(split.ground_truths, split.detections, strict=True)
        ],
    )
    base, improved = score(split), score(better)
    assert base.outcomes is not None and improved.outcomes is not None
    paired = paired_difference(improved.outcomes, base.outcomes, resamples=500, seed=0)
    assert paired.difference == pytest.approx(improved.map50 - base.map50)
    assert paired.interval.contains(paired.difference)
    single = bootstrap_map(base.outcomes, CLASSES, resamples=500, seed=0).map50
    assert paired.interval.low is not None and paired.interval.high is not None
    assert single.low is not None and single.high is not None
    assert paired.interval.high - paired.interval.low < single.high - single.low


def test_paired_difference_refuses_other_images() -> None:
    one, other = score(random_split(10, seed=1)), score(random_split(12, seed=1))
    assert one.outcomes is not None and other.outcomes is not None
    with pytest.raises(DataError, match="same images"):
        paired_difference(one.outcomes, other.outcomes, resamples=100, seed=0)
