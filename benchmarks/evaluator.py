"""The mAP evaluator: :func:`ppe.evaluate.voc_map.evaluate_voc_map` on synthetic detections.

Seeded scenes of 640x480 pixels with 1-12 ground-truth boxes of two classes (5% difficult); the
"detector" finds 85% of them with jittered boxes and a confidence that grows with the overlap,
adds a few duplicates and 0-6 false positives at random places. Building the inputs is not timed;
each repetition times one full call of ``evaluate_voc_map`` (per-class ranking, matching, AP),
and images/s is the number of images over the median time.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from benchmarks.common import CLASSES, Context, target

logger = logging.getLogger("benchmarks.evaluator")

WIDTH, HEIGHT = 640, 480
IMAGES_PER_SECOND_TARGET = 5000.0


def synthetic_detections(num_images: int, seed: int) -> tuple[list[Any], list[Any]]:
    """Seeded ground truth and detections, pixel ``[xmin, ymin, xmax, ymax]`` boxes.

    Args:
        num_images: images to generate.
        seed: generator seed.

    Returns:
        ``(ground_truths, detections)``: lists of :class:`ppe.evaluate.voc_map.ImageGroundTruth`
        and :class:`ppe.evaluate.voc_map.ImageDetections`, one per image.
    """
    from ppe.evaluate.voc_map import ImageDetections, ImageGroundTruth

    rng = np.random.default_rng(seed)
    truths: list[ImageGroundTruth] = []
    found: list[ImageDetections] = []
    for _ in range(num_images):
        count = int(rng.integers(1, 13))
        size = rng.uniform(12, 160, (count, 2))
        corner = rng.uniform(0, 1, (count, 2)) * ([WIDTH, HEIGHT] - size)
        boxes = np.concatenate([corner + 1, corner + size], axis=1)
        labels = rng.integers(0, len(CLASSES), count)
        truths.append(ImageGroundTruth(boxes, labels, rng.random(count) < 0.05))
        hit = rng.random(count) < 0.85
        jitter = rng.normal(0, 0.12, (count, 4)) * np.repeat(size, 2, axis=1)
        det_boxes = (boxes + jitter)[hit]
        det_labels = np.where(rng.random(count) < 0.95, labels, 1 - labels)[hit]
        det_scores = np.clip(1.0 - np.abs(jitter[hit]).mean(axis=1) / 40.0, 0.05, 1.0)
        duplicates = rng.random(len(det_boxes)) < 0.1
        extra = int(rng.integers(0, 7))
        fp_size = rng.uniform(12, 120, (extra, 2))
        fp_corner = rng.uniform(0, 1, (extra, 2)) * ([WIDTH, HEIGHT] - fp_size)
        all_boxes = np.concatenate(
            [
                det_boxes,
                det_boxes[duplicates] + 3.0,
                np.concatenate([fp_corner, fp_corner + fp_size], 1),
            ]
        )
        all_scores = np.concatenate(
            [det_scores, det_scores[duplicates] * 0.8, rng.uniform(0.01, 0.6, extra)]
        )
        all_labels = np.concatenate(
            [det_labels, det_labels[duplicates], rng.integers(0, len(CLASSES), extra)]
        )
        all_boxes[:, 2:] = np.maximum(all_boxes[:, 2:], all_boxes[:, :2])
        found.append(ImageDetections(all_boxes, all_scores, all_labels))
    return truths, found


def run(context: Context) -> dict[str, Any]:
    """Time the evaluator on 10,000 images (1,000 in quick mode)."""
    from ppe.evaluate.voc_map import evaluate_voc_map

    num_images = 1000 if context.quick else 10_000
    repeats = 3 if context.quick else 5
    started = time.perf_counter()
    truths, found = synthetic_detections(num_images, context.seed)
    build_s = time.perf_counter() - started
    seconds: list[float] = []
    result = None
    for _ in range(repeats):
        started = time.perf_counter()
        result = evaluate_voc_map(truths, found, CLASSES)
        seconds.append(time.perf_counter() - started)
    assert result is not None
    median = float(np.median(seconds))
    rate = num_images / median
    num_gt = sum(len(truth.labels) for truth in truths)
    num_det = sum(len(item.labels) for item in found)
    logger.info(
        "evaluate_voc_map: %d images (%d boxes, %d detections) in %.3f s median: %.0f images/s",
        num_images,
        num_gt,
        num_det,
        median,
        rate,
    )
    return {
        "status": "ok",
        "settings": {
            "images": num_images,
            "ground_truth_boxes": num_gt,
            "detections": num_det,
            "classes": len(CLASSES),
            "repeats": repeats,
            "seed": context.seed,
            "input_build_s": round(build_s, 3),
        },
        "seconds_median": round(median, 4),
        "seconds_all": [round(value, 4) for value in seconds],
        "images_per_second": round(rate, 1),
        "map50": round(float(result.map50), 4),
        "targets": [
            target(
                "evaluator_images_per_second",
                f"evaluator >= {IMAGES_PER_SECOND_TARGET:,.0f} images/s",
                rate,
                rate >= IMAGES_PER_SECOND_TARGET,
                "images/s",
                f"{num_images:,} images, median of {repeats} calls",
            )
        ],
    }
