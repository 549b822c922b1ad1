"""``ppe export``: LiteRT (TFLite) fp32 and full-integer int8 models for the edge, with their mAP.

Output folder::

    model_fp32.tflite    float32 LiteRT model (raw YOLO heads)
    model_int8.tflite    full-integer int8 model (int8 input, int8 ops, int8 outputs); the
                         representative data are letterboxed train-split images
    labels.txt           class names, one a line, in output order
    model.json           the model spec and metadata (the edge runtime reads it)
    thresholds.json      the model folder's per-class score thresholds, copied when it has them
                         (``ppe train`` chooses them on the val split; the edge applies them)
    metrics.json         mAP@0.5, AP per class and batch-1 latency of Keras, LiteRT fp32 and int8
                         on the same evaluation split, with the same decode and NMS

The LiteRT files take the letterboxed image (see :func:`ppe.model.preprocess.letterbox`) and return
the raw heads; decoding and NMS run in NumPy (:mod:`ppe.model.decode`) on the device, exactly as in
evaluation.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppe.config import Config
from ppe.errors import PpeError
from ppe.files import replaced_dir
from ppe.run.documents import BackendMetrics, ExportMetrics, finite_or_none
from ppe.run.layout import LABELS_FILE, MODEL_JSON, metrics_file, thresholds_file

logger = logging.getLogger(__name__)

FP32_FILE = "model_fp32.tflite"
INT8_FILE = "model_int8.tflite"
LATENCY_RUNS = 30


def _representative(samples: Sequence[Any], size: int, count: int) -> Iterator[list[np.ndarray]]:
    """Letterboxed train images as float32 ``(1, S, S, 3)`` batches for int8 calibration."""
    from ppe.evaluate.detect import load_rgb
    from ppe.model.preprocess import letterbox

    step = max(1, len(samples) // count)
    for sample in list(samples)[::step][:count]:
        image, _ = letterbox(load_rgb(Path(sample.image_path)), size)
        yield [image[np.newaxis]]


def convert(
    model: Any, samples: Sequence[Any], size: int, count: int, int8: bool, out_dir: Path
) -> dict[str, Path]:
    """Convert a Keras model to LiteRT files in ``out_dir``.

    Args:
        model: the Keras inference model (raw head outputs).
        samples: train-split samples for the int8 representative dataset.
        size: network input side in pixels.
        count: representative images to use.
        int8: also write the full-integer model.
        out_dir: where to write ``model_fp32.tflite`` (and ``model_int8.tflite``).

    Returns:
        Backend name -> file.
    """
    import tensorflow as tf

    files: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="ppe-export-") as tmp:
        saved_model = Path(tmp) / "saved_model"
        model.export(str(saved_model), verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        files["litert_fp32"] = out_dir / FP32_FILE
        files["litert_fp32"].write_bytes(converter.convert())
        if int8:
            converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: _representative(samples, size, count)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
            files["litert_int8"] = out_dir / INT8_FILE
            files["litert_int8"].write_bytes(converter.convert())
    for name, path in files.items():
        logger.info("%s: %s (%.1f MB)", name, path, path.stat().st_size / 1e6)
    return files


def latency_ms(predict: Any, size: int, runs: int = LATENCY_RUNS) -> dict[str, float]:
    """Batch-1 latency percentiles of a forward pass on a random letterboxed input."""
    rng = np.random.default_rng(0)
    batch = rng.random((1, size, size, 3), dtype=np.float32)
    predict(batch)
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        predict(batch)
        timings.append((time.perf_counter() - started) * 1000.0)
    return {
        "latency_ms_p50": round(float(np.percentile(timings, 50)), 3),
        "latency_ms_p95": round(float(np.percentile(timings, 95)), 3),
    }


def export_model_dir(
    model_dir: Path, data_dir: Path, out_dir: Path, config: Config, num_threads: int = 2
) -> ExportMetrics:
    """Export a model folder to LiteRT and measure every backend on the evaluation split.

    Args:
        model_dir: a model folder from ``ppe train``.
        data_dir: the Pascal VOC dataset (train split for calibration, evaluation split for mAP).
        out_dir: the export folder (replaced atomically).
        config: export and evaluate sections are used.
        num_threads: LiteRT interpreter threads.

    Returns:
        The ``metrics.json`` document.

    Raises:
        PpeError: not a model folder, or an empty train or evaluation split.
    """
    from ppe.data.voc import dataset_hash, load_split
    from ppe.evaluate.detect import detect_split, keras_predict
    from ppe.evaluate.voc_map import evaluate_voc_map
    from ppe.litert import LiteRTModel
    from ppe.model.bundle import load_model_dir

    model, spec, metadata = load_model_dir(model_dir)
    classes = list(spec.class_names)
    train_samples = load_split(data_dir, "train", classes)
    eval_samples = load_split(data_dir, config.evaluate.split, classes)
    if not train_samples or not eval_samples:
        raise PpeError(
            f"{data_dir}: export needs images in the train split (int8 calibration) and the "
            f"{config.evaluate.split} split (mAP); one of them is empty"
        )
    with replaced_dir(out_dir) as staging:
        files = convert(
            model,
            train_samples,
            spec.image_size,
            config.export.representative_images,
            config.export.int8,
            staging,
        )
        (staging / LABELS_FILE).write_text("".join(f"{name}\n" for name in classes))
        (staging / MODEL_JSON).write_text(
            json.dumps(
                {
                    "spec": spec.to_dict(),
                    "metadata": metadata,
                    "files": {k: v.name for k, v in files.items()},
                },
                indent=2,
            )
        )
        chosen = thresholds_file(model_dir)
        if chosen.is_file():
            shutil.copyfile(chosen, thresholds_file(staging))
        else:
            logger.warning(
                "%s has no %s: the edge will apply edge.score_threshold to every class "
                "(write it with `ppe thresholds`, then export again)",
                model_dir,
                chosen.name,
            )
        backends: dict[str, Any] = {"keras": keras_predict(model)}
        for name, path in files.items():
            backends[name] = LiteRTModel(path, spec, num_threads=num_threads).predict
        results: dict[str, Any] = {}
        for name, predict in backends.items():
            found = detect_split(predict, spec, eval_samples, config.evaluate, batch_size=1)
            scored = evaluate_voc_map(
                found.ground_truths, found.detections, classes, config.evaluate.iou_threshold
            )
            results[name] = {
                "map50": scored.map50,
                "ap": scored.ap,
                **latency_ms(predict, spec.image_size),
                "size_bytes": (staging / files[name].name).stat().st_size
                if name in files
                else None,
                "file": files[name].name if name in files else None,
            }
            logger.info(
                "%s: mAP@0.5 %.4f, p50 %.1f ms", name, scored.map50, results[name]["latency_ms_p50"]
            )
        keras = results["keras"]
        for entry in results.values():
            delta = entry["map50"] - keras["map50"]
            entry["map50_delta_vs_keras"] = finite_or_none(round(delta, 6))
            entry["map50"] = finite_or_none(entry["map50"])
            entry["speedup_vs_keras"] = round(
                keras["latency_ms_p50"] / max(entry["latency_ms_p50"], 1e-9), 3
            )
        document = ExportMetrics(
            split=config.evaluate.split,
            images=len(eval_samples),
            data_hash=dataset_hash(data_dir),
            threads=num_threads,
            thresholds=config.evaluate.model_dump(mode="json"),
            backends={name: BackendMetrics(**entry) for name, entry in results.items()},
        )
        document.write(metrics_file(staging))
    return document
