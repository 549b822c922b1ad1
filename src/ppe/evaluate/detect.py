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
from ppe.evaluate import bootstrap
from ppe.evaluate.cartucho import write_cartucho
from ppe.evaluate.operating import CRITERION, choose_thresholds, operating_point
from ppe.evaluate.voc_map import (
    DetectionOutcomes,
    ImageDetections,
    ImageGroundTruth,
    VocMapResult,
    evaluate_voc_map,
)
from ppe.files import replaced_dir
from ppe.model.decode import RAW_LAYOUT, detect
from ppe.model.preprocess import LetterboxTransform, letterbox
from ppe.model.spec import YoloSpec
from ppe.run import documents
from ppe.run.documents import ClassThresholds, EvaluationMetrics, PrCurve, PrCurves
from ppe.run.layout import (
    MODEL_JSON,
    MODEL_KERAS,
    curves_file,
    metrics_file,
    outcomes_file,
    thresholds_file,
)

logger = logging.getLogger(__name__)

#: A forward pass: float32 ``(B, S, S, 3)`` in [0, 1] -> head outputs (raw heads, stride 32 first,
#: unless ``detect_split`` is told another :data:`ppe.model.decode.OUTPUT_LAYOUTS` layout).
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
    layout: str = RAW_LAYOUT,
) -> SplitDetections:
    """Run ``predict`` over ``samples`` and collect pixel detections.

    Args:
        predict: the backend's forward pass (see :data:`PredictFn`).
        spec: the model spec (input size, anchors, classes).
        samples: :class:`ppe.data.voc.Sample` objects of one split.
        settings: score threshold, NMS IoU threshold and detection cap.
        batch_size: images per forward pass (default: ``settings.batch_size``).
        layout: the output layout of ``predict`` (a LiteRT export's ``output_layout``).

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
            layout=layout,
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
    for name in (MODEL_JSON, MODEL_KERAS):
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


def _outcomes(result: VocMapResult) -> DetectionOutcomes:
    if result.outcomes is None:
        raise PpeError("the evaluation result has no per-detection outcomes; use evaluate_voc_map")
    return result.outcomes


def operating_thresholds(
    model_dir: Path, class_names: Sequence[str], floor: float
) -> tuple[list[float], str]:
    """The score threshold the edge applies to each class, and where it comes from.

    Args:
        model_dir: The model folder (its ``thresholds.json``, if any, is read).
        class_names: The model's classes.
        floor: The edge's live ``score_threshold`` (``edge.score_threshold``).

    Returns:
        One threshold per class, and a sentence naming the source.
    """
    path = thresholds_file(model_dir)
    if not path.is_file():
        return [floor] * len(class_names), f"edge.score_threshold {floor:g} for every class"
    chosen = ClassThresholds.read(path)
    return (
        chosen.in_force(list(class_names), floor),
        f"per class, the larger of edge.score_threshold {floor:g} and the model's "
        f"{path.name} (chosen on the {chosen.split} split: {chosen.criterion})",
    )


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
    operating: tuple[Sequence[float], str] | None = None,
) -> EvaluationMetrics:
    """The ``metrics.json`` document (see DESIGN: ``map50``, per-class AP, counts, hashes).

    Args:
        result: The VOC evaluation.
        split_detections: The detections it scored.
        settings: The evaluation settings (thresholds, bootstrap resamples and seed).
        split: The split's name.
        data_hash: The dataset's content hash.
        model_hash_value: The model's hash.
        backend: ``keras``, ``litert-fp32``...
        class_names: The model's classes.
        operating: Per-class operating thresholds and their source (see
            :func:`operating_thresholds`); None leaves ``operating_point`` out.
    """
    outcomes = _outcomes(result)
    intervals = bootstrap.bootstrap_map(
        outcomes,
        list(class_names),
        resamples=settings.bootstrap_resamples,
        seed=settings.bootstrap_seed,
    )
    point = None
    if operating is not None:
        point = operating_point(
            outcomes,
            split_detections.ground_truths,
            split_detections.detections,
            class_names,
            operating[0],
            operating[1],
            settings.iou_threshold,
        )
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
            "bootstrap": documents.BootstrapIntervals(
                method=bootstrap.METHOD,
                level=intervals.level,
                resamples=intervals.resamples,
                seed=intervals.seed,
                map50=documents.Interval(low=intervals.map50.low, high=intervals.map50.high),
                ap={
                    name: documents.Interval(low=value.low, high=value.high)
                    for name, value in intervals.ap.items()
                },
            ),
            "operating_point": point,
        }
    )


def curves_document(result: VocMapResult) -> PrCurves:
    """Precision/recall curves per class (at most ``MAX_CURVE_POINTS`` points each)."""
    return PrCurves(
        curves={
            item.name: PrCurve(precision=_subsample(item.precision), recall=_subsample(item.recall))
            for item in result.classes
        }
    )


def outcomes_document(
    result: VocMapResult, split_detections: SplitDetections, class_names: Sequence[str]
) -> documents.DetectionOutcomes:
    """``outcomes.json``: every detection's outcome, per image (for paired resampling)."""
    outcomes = _outcomes(result)
    return documents.DetectionOutcomes(
        image_ids=list(split_detections.image_ids),
        classes=list(class_names),
        num_ground_truth=outcomes.num_ground_truth.tolist(),
        image=outcomes.image.tolist(),
        label=outcomes.label.tolist(),
        score=outcomes.score.tolist(),
        outcome=outcomes.outcome.tolist(),
    )


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
        curves_document(result).write(curves_file(staging))
        outcomes_document(result, split_detections, class_names).write(outcomes_file(staging))
        metrics.write(metrics_file(staging))
    return out_dir


def _score_split(
    model_dir: Path, data_dir: Path, split: str, settings: EvaluateConfig, *, empty_hint: str
) -> tuple[YoloSpec, SplitDetections, VocMapResult]:
    """Run a model folder over ``split`` and score it (the cheap checks before TensorFlow).

    Raises:
        PpeError: not a model folder, or an empty split (``empty_hint`` says what to do).
    """
    from ppe.data.voc import load_split
    from ppe.model.bundle import load_model_dir, read_model_json

    spec = read_model_json(model_dir).spec
    samples = load_split(data_dir, split, list(spec.class_names))
    if not samples:
        raise PpeError(
            f"{data_dir}: split {split!r} has no images (ImageSets/Main/{split}.txt is empty); "
            + empty_hint
        )
    model, spec, _ = load_model_dir(model_dir)
    found = detect_split(keras_predict(model), spec, samples, settings)
    result = evaluate_voc_map(
        found.ground_truths, found.detections, spec.class_names, settings.iou_threshold
    )
    return spec, found, result


def evaluate_model_dir(
    model_dir: Path,
    data_dir: Path,
    out_dir: Path,
    settings: EvaluateConfig,
    split: str | None = None,
    *,
    operating_threshold: float | None = None,
) -> EvaluationMetrics:
    """``ppe evaluate``: score a model folder on a split and write ``metrics.json`` and friends.

    Args:
        model_dir: a model folder (``model.keras`` + ``model.json``).
        data_dir: a Pascal VOC dataset.
        out_dir: output folder (replaced atomically).
        settings: thresholds (the same for every model compared).
        split: split name (default ``settings.split``).
        operating_threshold: the edge's ``score_threshold``: with it, ``metrics.json`` also
            holds the counts and confusion matrix at the edge's thresholds.

    Returns:
        The metrics document written to ``out_dir/metrics.json``.

    Raises:
        PpeError: not a model folder, an empty split, or unreadable data.
    """
    from ppe.data.voc import dataset_hash

    split = split or settings.split
    spec, found, result = _score_split(
        model_dir,
        data_dir,
        split,
        settings,
        empty_hint="evaluate on another split with --split, or re-split the dataset",
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
        operating=(
            operating_thresholds(model_dir, spec.class_names, operating_threshold)
            if operating_threshold is not None
            else None
        ),
    )
    write_evaluation(out_dir, found, result, metrics, spec.class_names)
    ap_text = ", ".join(
        f"{name} {value:.3f}" if value is not None else f"{name} n/a"
        for name, value in result.ap.items()
    )
    interval = metrics.bootstrap.map50 if metrics.bootstrap is not None else None
    logger.info(
        "mAP@0.5 %.4f (95%% interval %s) on %d %s images (%s); wrote %s",
        result.map50,
        f"{interval.low:.4f}-{interval.high:.4f}"
        if interval is not None and interval.low is not None and interval.high is not None
        else "n/a",
        len(found.image_ids),
        split,
        ap_text,
        metrics_file(out_dir),
    )
    return metrics


def write_class_thresholds(
    model_dir: Path, data_dir: Path, settings: EvaluateConfig, split: str = "val"
) -> ClassThresholds:
    """Choose per-class score thresholds on ``split`` and write them into the model folder.

    The edge module reads ``thresholds.json`` next to its ``.tflite`` (the export folder carries
    it along), and ``ppe evaluate`` reports the operating point with it.

    Args:
        model_dir: a model folder (``model.keras`` + ``model.json``).
        data_dir: a Pascal VOC dataset.
        settings: detection settings (score threshold, NMS) of the evaluation.
        split: the split to choose on (validation: never the split the model is scored on).

    Returns:
        The document written to ``model_dir/thresholds.json``.

    Raises:
        PpeError: an empty split or unreadable data.
    """
    spec, _, result = _score_split(
        model_dir,
        data_dir,
        split,
        settings,
        empty_hint="per-class thresholds are chosen on a validation split: give the dataset one",
    )
    chosen = ClassThresholds(
        split=split,
        criterion=CRITERION,
        thresholds=choose_thresholds(_outcomes(result), spec.class_names),
    )
    chosen.write(thresholds_file(model_dir))
    logger.info("per-class score thresholds on the %s split: %s", split, chosen.thresholds)
    return chosen
