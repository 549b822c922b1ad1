"""Run a detector over a dataset split and score it with VOC mAP (``ppe evaluate``).

Every backend (Keras, LiteRT fp32, LiteRT int8) goes through the same path: Pillow decode ->
:func:`ppe.model.preprocess.letterbox` -> backend forward pass -> :func:`ppe.model.decode.detect`
(class-aware hard NMS) -> boxes mapped back to original pixels. So the champion, the challenger and
the exported models are compared with identical pre- and post-processing.

Pixel boxes written here follow the VOC convention of the annotations: ``[xmin, ymin, xmax, ymax]``,
1-based inclusive (a continuous box ``[x0, x1)`` in pixels becomes ``[x0 + 1, x1]``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ppe.config import EvaluateConfig
from ppe.errors import DataError, PpeError
from ppe.evaluate.cartucho import write_cartucho
from ppe.evaluate.voc_map import ImageDetections, ImageGroundTruth, VocMapResult, evaluate_voc_map
from ppe.files import replaced_dir
from ppe.model.decode import detect
from ppe.model.preprocess import LetterboxTransform, letterbox
from ppe.model.spec import YoloSpec
from ppe.run.documents import EvaluationMetrics
from ppe.run.layout import curves_file, metrics_file

logger = logging.getLogger(__name__)

#: A forward pass: float32 ``(B, S, S, 3)`` in [0, 1] -> raw head outputs, stride 32 first.
PredictFn = Callable[[np.ndarray], Sequence[np.ndarray]]

MAX_CURVE_POINTS = 400


@dataclass(frozen=True)
class SplitDetections:
    """Detections of every image of a split, aligned with its ground truth.

    Attributes:
        image_ids: VOC ids in split order.
        ground_truths: per image, VOC pixel boxes, labels and difficult flags.
        detections: per image, VOC pixel boxes ``[xmin, ymin, xmax, ymax]``, scores, labels.
        seconds: wall time of preprocessing + forward passes + decoding.
    """

    image_ids: list[str]
    ground_truths: list[ImageGroundTruth]
    detections: list[ImageDetections]
    seconds: float


def load_rgb(path: Path) -> np.ndarray:
    """Decode an image file to uint8 ``(H, W, 3)`` RGB, with a clear error if it is unreadable."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as error:
        raise DataError(
            f"{path}: cannot decode the image ({error}); run `ppe data check`"
        ) from error


def to_voc_pixels(boxes: np.ndarray) -> np.ndarray:
    """Continuous pixel boxes ``(K, 4)`` -> VOC 1-based inclusive ``[x0 + 1, y0 + 1, x1, y1]``."""
    voc = np.asarray(boxes, dtype=np.float64).copy()
    voc[:, :2] += 1.0
    voc[:, 2:] = np.maximum(voc[:, 2:], voc[:, :2])
    return voc


def detect_split(
    predict: PredictFn,
    spec: YoloSpec,
    samples: Sequence[Any],
    settings: EvaluateConfig,
    batch_size: int | None = None,
) -> SplitDetections:
    """Run ``predict`` over ``samples`` and collect pixel detections.

    Args:
        predict: the backend's forward pass (see :data:`PredictFn`).
        spec: the model spec (input size, anchors, classes).
        samples: :class:`ppe.data.voc.Sample` objects of one split.
        settings: score threshold, NMS IoU threshold and detection cap.
        batch_size: images per forward pass (default: ``settings.batch_size``).

    Returns:
        The :class:`SplitDetections`.
    """
    size = spec.image_size
    batch = batch_size or settings.batch_size
    ids: list[str] = []
    truths: list[ImageGroundTruth] = []
    found: list[ImageDetections] = []
    started = time.perf_counter()
    for first in range(0, len(samples), batch):
        chunk = samples[first : first + batch]
        inputs = np.zeros((len(chunk), size, size, 3), dtype=np.float32)
        transforms: list[LetterboxTransform] = []
        for row, sample in enumerate(chunk):
            inputs[row], transform = letterbox(load_rgb(Path(sample.image_path)), size)
            transforms.append(transform)
        outputs = [np.asarray(output) for output in predict(inputs)]
        per_image = detect(
            outputs,
            spec,
            score_threshold=settings.score_threshold,
            iou_threshold=settings.nms_iou_threshold,
            max_detections=settings.max_detections,
        )
        for sample, transform, result in zip(chunk, transforms, per_image, strict=True):
            ids.append(sample.image_id)
            truths.append(ImageGroundTruth(sample.pixel_boxes, sample.labels, sample.difficult))
            pixels = to_voc_pixels(transform.to_original(result.boxes))
            found.append(ImageDetections(pixels, result.scores, result.classes))
    return SplitDetections(ids, truths, found, time.perf_counter() - started)


def keras_predict(model: Any) -> PredictFn:
    """Forward pass of a Keras model as a :data:`PredictFn`."""

    def predict(batch: np.ndarray) -> list[np.ndarray]:
        outputs = model.predict_on_batch(batch)
        if not isinstance(outputs, list | tuple):
            outputs = [outputs]
        return [np.asarray(output) for output in outputs]

    return predict


def model_hash(model_dir: Path) -> str:
    """sha256 (first 16 hex) of a model folder's ``model.keras`` and ``model.json``."""
    digest = hashlib.sha256()
    for name in ("model.json", "model.keras"):
        path = model_dir / name
        if path.is_file():
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def _subsample(values: np.ndarray) -> list[float]:
    if len(values) <= MAX_CURVE_POINTS:
        return [float(v) for v in values]
    index = np.linspace(0, len(values) - 1, MAX_CURVE_POINTS).round().astype(int)
    return [float(v) for v in values[index]]


def metrics_document(
    result: VocMapResult,
    split_detections: SplitDetections,
    settings: EvaluateConfig,
    *,
    split: str,
    data_hash: str,
    model_hash_value: str,
    backend: str,
    class_names: Sequence[str],
) -> EvaluationMetrics:
    """The ``metrics.json`` document (see DESIGN: ``map50``, per-class AP, counts, hashes)."""
    per_class = result.to_dict(include_curves=False)["per_class"]
    gt_counts = {name: 0 for name in class_names}
    det_counts = {name: 0 for name in class_names}
    for truth in split_detections.ground_truths:
        for label, difficult in zip(truth.labels, truth.difficult, strict=True):
            if not difficult:
                gt_counts[class_names[int(label)]] += 1
    for found in split_detections.detections:
        for label in found.labels:
            det_counts[class_names[int(label)]] += 1
    images = len(split_detections.image_ids)
    return EvaluationMetrics.model_validate(
        {
            "map50": result.map50 if math.isfinite(result.map50) else None,
            "ap": result.ap,
            "per_class": per_class,
            "classes": list(class_names),
            "counts": {
                "images": images,
                "ground_truth": gt_counts,
                "detections": det_counts,
            },
            "thresholds": {
                "score_threshold": settings.score_threshold,
                "nms_iou_threshold": settings.nms_iou_threshold,
                "nms": "class-aware hard NMS",
                "max_detections": settings.max_detections,
                "iou_threshold": settings.iou_threshold,
                "ap_definition": "PASCAL VOC 2010+ all-point, +1-pixel IoU, difficult ignored",
            },
            "split": split,
            "data_hash": data_hash,
            "model_hash": model_hash_value,
            "backend": backend,
            "images_per_second": round(images / max(split_detections.seconds, 1e-9), 2),
        }
    )


def curves_document(result: VocMapResult) -> dict[str, Any]:
    """Precision/recall curves per class (at most ``MAX_CURVE_POINTS`` points each)."""
    return {
        item.name: {"precision": _subsample(item.precision), "recall": _subsample(item.recall)}
        for item in result.classes
    }


def write_evaluation(
    out_dir: Path,
    split_detections: SplitDetections,
    result: VocMapResult,
    metrics: EvaluationMetrics,
    class_names: Sequence[str],
) -> Path:
    """Write metrics, curves and Cartucho files to ``out_dir`` atomically (temp folder + rename)."""
    with replaced_dir(out_dir) as staging:
        write_cartucho(
            staging,
            split_detections.image_ids,
            split_detections.ground_truths,
            split_detections.detections,
            class_names,
        )
        curves_file(staging).write_text(json.dumps(curves_document(result)))
        metrics.write(metrics_file(staging))
    return out_dir


def evaluate_model_dir(
    model_dir: Path,
    data_dir: Path,
    out_dir: Path,
    settings: EvaluateConfig,
    split: str | None = None,
) -> EvaluationMetrics:
    """``ppe evaluate``: score a model folder on a split and write ``metrics.json`` and friends.

    Args:
        model_dir: a model folder (``model.keras`` + ``model.json``).
        data_dir: a Pascal VOC dataset.
        out_dir: output folder (replaced atomically).
        settings: thresholds (the same for every model compared).
        split: split name (default ``settings.split``).

    Returns:
        The metrics document written to ``out_dir/metrics.json``.

    Raises:
        PpeError: not a model folder, an empty split, or unreadable data.
    """
    from ppe.data.voc import dataset_hash, load_split
    from ppe.model.bundle import load_model_dir, read_model_json

    split = split or settings.split
    # Check the cheap things first (no TensorFlow yet): the model folder's manifest and the split.
    spec = read_model_json(model_dir).spec
    samples = load_split(data_dir, split, list(spec.class_names))
    if not samples:
        raise PpeError(
            f"{data_dir}: split {split!r} has no images (ImageSets/Main/{split}.txt is empty); "
            "evaluate on another split with --split, or re-split the dataset"
        )
    model, spec, _ = load_model_dir(model_dir)
    found = detect_split(keras_predict(model), spec, samples, settings)
    result = evaluate_voc_map(
        found.ground_truths, found.detections, spec.class_names, settings.iou_threshold
    )
    metrics = metrics_document(
        result,
        found,
        settings,
        split=split,
        data_hash=dataset_hash(data_dir),
        model_hash_value=model_hash(model_dir),
        backend="keras",
        class_names=spec.class_names,
    )
    write_evaluation(out_dir, found, result, metrics, spec.class_names)
    ap_text = ", ".join(
        f"{name} {value:.3f}" if value is not None else f"{name} n/a"
        for name, value in result.ap.items()
    )
    logger.info(
        "mAP@0.5 %.4f on %d %s images (%s); wrote %s",
        result.map50,
        len(samples),
        split,
        ap_text,
        metrics_file(out_dir),
    )
    return metrics
