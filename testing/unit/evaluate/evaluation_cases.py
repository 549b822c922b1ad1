"""Small hand-made evaluations shared by the bootstrap, operating-point and gate tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ppe.config import EvaluateConfig
from ppe.evaluate.detect import SplitDetections, metrics_document, write_evaluation
from ppe.evaluate.voc_map import ImageDetections, ImageGroundTruth, VocMapResult, evaluate_voc_map
from ppe.run.documents import EvaluationMetrics

CLASSES = ["helmet", "head"]
BOX = [10.0, 10.0, 50.0, 50.0]
FAR = [200.0, 200.0, 240.0, 240.0]


def random_split(num_images: int, seed: int, hit_rate: float = 0.7) -> SplitDetections:
    """A detector that finds each box with probability ``hit_rate`` and adds random misses."""
    rng = np.random.default_rng(seed)
    truths, found = [], []
    for _ in range(num_images):
        count = int(rng.integers(1, 4))
        corner = rng.uniform(0, 300, (count, 2))
        boxes = np.hstack([corner, corner + rng.uniform(15, 60, (count, 2))])
        labels = rng.integers(0, 2, count)
        truths.append(ImageGroundTruth(boxes, labels))
        hit = rng.random(count) < hit_rate
        extra = int(rng.integers(0, 3))
        corner = rng.uniform(0, 300, (extra, 2))
        false_boxes = np.hstack([corner, corner + 20.0])
        det_boxes = np.vstack([boxes[hit] + rng.normal(0, 1.5, (int(hit.sum()), 4)), false_boxes])
        det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2] + 1.0)
        scores = np.concatenate([rng.uniform(0.3, 1.0, int(hit.sum())), rng.uniform(0, 0.7, extra)])
        det_labels = np.concatenate([labels[hit], rng.integers(0, 2, extra)])
        found.append(ImageDetections(det_boxes, scores, det_labels))
    return SplitDetections([f"img{i:04d}" for i in range(num_images)], truths, found, 1.0)


def split_of(
    truths: Sequence[ImageGroundTruth], found: Sequence[ImageDetections]
) -> SplitDetections:
    """A :class:`SplitDetections` of hand-written images (ids img0000...)."""
    return SplitDetections(
        [f"img{i:04d}" for i in range(len(truths))], list(truths), list(found), 1.0
    )


def score(split: SplitDetections) -> VocMapResult:
    """The VOC evaluation of a split."""
    return evaluate_voc_map(split.ground_truths, split.detections, CLASSES)


def write_eval(
    folder: Path,
    split: SplitDetections,
    settings: EvaluateConfig | None = None,
    operating: tuple[Sequence[float], str] | None = None,
) -> EvaluationMetrics:
    """Write an evaluation folder (metrics.json, outcomes.json, pr_curves.json, Cartucho files)."""
    settings = settings or EvaluateConfig()
    result = score(split)
    metrics = metrics_document(
        result,
        split,
        settings,
        split="test",
        data_hash="data-1",
        model_hash_value=folder.name,
        backend="keras",
        class_names=CLASSES,
        operating=operating,
    )
    write_evaluation(folder, split, result, metrics, CLASSES)
    return metrics
