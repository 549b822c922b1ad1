"""``ppe export``: LiteRT (TFLite) fp32 and full-integer int8 models for the edge, with their mAP.

Output folder::

    model_fp32.tflite    float32 LiteRT model (outputs in ``export.output_layout``, see below)
    model_int8.tflite    full-integer int8 model (int8 input, int8 ops, int8 outputs); the
                         representative data are letterboxed train-split images
    labels.txt           class names, one a line, in output order
    model.json           the model spec, the output layout (``output_layout``) and metadata
                         (the edge runtime reads it)
    thresholds.json      the model folder's per-class score thresholds, copied when it has them
                         (``ppe train`` chooses them on the val split; the edge applies them)
    metrics.json         mAP@0.5, AP per class and batch-1 latency of Keras, LiteRT fp32 and int8
                         on the same evaluation split, with the same decode and NMS

The LiteRT files take the letterboxed image (see :func:`ppe.model.preprocess.letterbox`). Their
outputs follow ``export.output_layout`` (:mod:`ppe.model.decode`): ``raw`` (the default), the head's
convolution outputs, one per scale, which the int8 model quantises with one scale for box offsets,
objectness and class logits together; or ``split``, per scale box values (sigmoid cell offsets and
log-sizes) and class scores (probabilities) as separate outputs computed inside the graph, each
with its own int8 scale. Which one loses less mAP is measured in
``benchmarks/experiments/issue16_recipe.md`` (sections 5 and 10). Box decoding and NMS run in NumPy
(:mod:`ppe.model.decode`) on the device, exactly as in evaluation.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppe.config import Config
from ppe.errors import PpeError
from ppe.files import replaced_dir
from ppe.model.decode import (
    OUTPUT_LAYOUT_KEY,
    RAW_LAYOUT,
    check_layout,
    layout_outputs,
)
from ppe.model.spec import YoloSpec
from ppe.run.documents import BackendMetrics, ExportMetrics, finite_or_none
from ppe.run.layout import LABELS_FILE, MODEL_JSON, metrics_file, thresholds_file

logger = logging.getLogger(__name__)

FP32_FILE = "model_fp32.tflite"
INT8_FILE = "model_int8.tflite"
LATENCY_RUNS = 30


#: Calibration data for int8: a callable yielding float32 ``(1, S, S, 3)`` input batches.
Representative = Callable[[], Iterator[list[np.ndarray]]]


def representative_images(samples: Sequence[Any], size: int, count: int) -> Representative:
    """Up to ``count`` evenly spaced letterboxed images of ``samples`` for int8 calibration."""
    from ppe.evaluate.detect import load_rgb
    from ppe.model.preprocess import letterbox

    def batches() -> Iterator[list[np.ndarray]]:
        step = max(1, len(samples) // count)
        for sample in list(samples)[::step][:count]:
            image, _ = letterbox(load_rgb(Path(sample.image_path)), size)
            yield [image[np.newaxis]]

    return batches


def layout_model(model: Any, spec: YoloSpec, layout: str) -> Any:
    """The Keras model whose outputs are ``layout`` (:func:`ppe.model.decode.layout_outputs`).

    For ``split`` each scale's output convolution is cut in two convolutions with the same
    weights, one for the box rows ``tx, ty, tw, th`` of every anchor and one for the objectness
    and class rows, so that a full-integer model quantises the box activations with their own
    (narrow) scale instead of the one the wide score logits set. Their outputs are then decoded
    in the graph into a dict of named outputs: per scale, ``boxes_s<stride>`` =
    ``[sigmoid(tx), sigmoid(ty), tw, th]`` and ``scores_s<stride>`` =
    ``sigmoid(objectness) * sigmoid(class)``; the names become the LiteRT signature's output
    names, which the edge runtime matches. For ``raw`` the model itself is returned.

    Raises:
        ValueError: an unknown layout.
    """
    import keras

    if check_layout(layout) == RAW_LAYOUT:
        return model
    depth = 5 + spec.num_classes
    anchors = spec.anchors_per_scale
    rows = np.arange(anchors * depth).reshape(anchors, depth)
    outputs: dict[str, Any] = {}
    for slot in layout_outputs(spec, layout):
        stride = spec.strides[slot.scale]
        original = model.get_layer(f"head_s{stride}_output_conv")
        kernel, bias = original.get_weights()
        picked = rows[:, :4] if slot.kind == "boxes" else rows[:, 4:]
        picked = picked.reshape(-1)
        conv = keras.layers.Conv2D(picked.size, 1, padding="same", name=f"export_{slot.name}_conv")
        values = conv(original.input)
        conv.set_weights([kernel[..., picked], bias[picked]])
        values = keras.layers.Reshape((*slot.shape[:3], picked.size // anchors))(values)
        if slot.kind == "boxes":
            offsets = keras.ops.sigmoid(values[..., 0:2])
            outputs[slot.name] = keras.ops.concatenate([offsets, values[..., 2:4]], axis=-1)
        else:
            outputs[slot.name] = keras.ops.sigmoid(values[..., 0:1]) * keras.ops.sigmoid(
                values[..., 1:]
            )
    return keras.Model(model.input, outputs, name=f"{model.name}_{layout}")


def convert(
    model: Any,
    spec: YoloSpec,
    representative: Representative | None,
    out_dir: Path,
    layout: str,
) -> dict[str, Path]:
    """Convert a Keras model to LiteRT files in ``out_dir``.

    Args:
        model: the Keras inference model (raw head outputs) built from ``spec``.
        spec: its spec.
        representative: calibration inputs for the full-integer model (e.g.
            :func:`representative_images`), or None to write the float32 model only.
        out_dir: where to write ``model_fp32.tflite`` (and ``model_int8.tflite``).
        layout: the files' output layout (:data:`ppe.model.decode.OUTPUT_LAYOUTS`).

    Returns:
        Backend name -> file.
    """
    import tensorflow as tf

    files: dict[str, Path] = {}
    exported = layout_model(model, spec, layout)
    with tempfile.TemporaryDirectory(prefix="ppe-export-") as tmp:
        saved_model = Path(tmp) / "saved_model"
        exported.export(str(saved_model), verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        files["litert_fp32"] = out_dir / FP32_FILE
        files["litert_fp32"].write_bytes(converter.convert())
        if representative is not None:
            converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
            files["litert_int8"] = out_dir / INT8_FILE
            files["litert_int8"].write_bytes(converter.convert())
    for name, path in files.items():
        logger.info("%s: %s (%.1f MB)", name, path, path.stat().st_size / 1e6)
    return files


def litert_manifest(
    spec: YoloSpec, metadata: dict[str, Any], files: dict[str, Path], layout: str
) -> dict[str, Any]:
    """The ``model.json`` written beside LiteRT files: spec, output layout, metadata, files."""
    return {
        "spec": spec.to_dict(),
        OUTPUT_LAYOUT_KEY: check_layout(layout),
        "metadata": metadata,
        "files": {name: path.name for name, path in files.items()},
    }


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
    model_dir: Path,
    data_dir: Path,
    out_dir: Path,
    config: Config,
    num_threads: int = 2,
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
        calibration = representative_images(
            train_samples, spec.image_size, config.export.representative_images
        )
        layout = config.export.output_layout
        files = convert(model, spec, calibration if config.export.int8 else None, staging, layout)
        (staging / LABELS_FILE).write_text("".join(f"{name}\n" for name in classes))
        (staging / MODEL_JSON).write_text(
            json.dumps(litert_manifest(spec, metadata, files, layout), indent=2)
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
        backends: dict[str, tuple[Any, str]] = {"keras": (keras_predict(model), RAW_LAYOUT)}
        for name, path in files.items():
            runtime = LiteRTModel(path, spec, num_threads=num_threads)
            backends[name] = (runtime.predict, runtime.layout)
        results: dict[str, Any] = {}
        for name, (predict, backend_layout) in backends.items():
            found = detect_split(
                predict, spec, eval_samples, config.evaluate, batch_size=1, layout=backend_layout
            )
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
