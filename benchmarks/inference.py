"""Inference: Keras fp32 vs LiteRT fp32 vs LiteRT int8 on the same model, batch 1, 2 threads.

Latency is the forward pass alone, batch 1, at the benchmark size (416), after warm-up: from the
letterboxed image in the backend's own input type to float head outputs (raw heads for Keras, the
export's ``output_layout`` for LiteRT, see :mod:`ppe.model.decode`). Keras takes float32 in
[0, 1]; the LiteRT files take what the edge runtime builds for them in its letterbox
(:meth:`ppe.edge.runtime.LiteRTDetector.network_input`: float32 for fp32, int8 for int8, through
one lookup table, so quantising the input costs nothing extra), and their int8 outputs are
dequantised inside the timed call. The float-input path of the LiteRT backends (quantise a
float32 letterbox, then the same forward pass: what ``ppe evaluate`` and ``ppe export`` do) is
timed too and reported beside it as ``float_input_latency_ms_p50``. The calls are timed in
interleaved blocks (10 calls of each in turn) so that load from other processes on a shared
machine hits them alike. Keras runs the model in a ``tf.function`` graph (the fastest Keras path;
``predict_on_batch``, which ``ppe evaluate`` uses, is timed too and reported beside it) with
TensorFlow's intra-op and inter-op pools limited to ``--threads`` before TensorFlow starts; LiteRT
runs with ``num_threads=--threads``.

mAP@0.5 of each backend comes from the same split through the same path as ``ppe export``:
:func:`ppe.evaluate.detect.detect_split` (letterbox, forward pass, NumPy decode and class-aware NMS,
boxes back to pixels) and :func:`ppe.evaluate.voc_map.evaluate_voc_map`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Context, limit_tf_threads, summarize_ms, target

logger = logging.getLogger("benchmarks.inference")

BLOCK = 10
SPEEDUP_TARGET = 4.0
MAP_TOLERANCE = 0.02


def _interleaved_latency(
    calls: dict[str, tuple[Callable[[np.ndarray], Any], np.ndarray]], runs: int, warmup: int
) -> dict[str, list[float]]:
    """Milliseconds per ``call(input)``, each timed in alternating blocks of :data:`BLOCK`."""
    for call, argument in calls.values():
        for _ in range(warmup):
            call(argument)
    timings: dict[str, list[float]] = {name: [] for name in calls}
    while any(len(values) < runs for values in timings.values()):
        for name, (call, argument) in calls.items():
            for _ in range(min(BLOCK, runs - len(timings[name]))):
                started = time.perf_counter()
                call(argument)
                timings[name].append((time.perf_counter() - started) * 1000.0)
    return timings


def run(context: Context) -> dict[str, Any]:
    """Measure latency and mAP@0.5 of the three backends (see the module docstring)."""
    thread_settings = limit_tf_threads(context.threads)
    import tensorflow as tf

    from benchmarks.models import export_litert, prepare_model
    from ppe.config import EvaluateConfig
    from ppe.data.voc import load_split
    from ppe.evaluate.detect import detect_split, keras_predict, load_rgb
    from ppe.evaluate.voc_map import evaluate_voc_map
    from ppe.litert import LiteRTModel
    from ppe.model.bundle import load_model_dir
    from ppe.model.decode import RAW_LAYOUT
    from ppe.model.preprocess import letterbox

    prepared = prepare_model(context)
    files = export_litert(context, prepared)
    model, spec, _ = load_model_dir(prepared.model_dir)
    classes = list(spec.class_names)
    samples = load_split(prepared.data_dir, prepared.eval_split, classes)
    settings = EvaluateConfig()
    size = spec.image_size

    graph = tf.function(
        lambda images: model(images, training=False),
        input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)],
    )

    def keras_graph(batch: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(output) for output in graph(tf.constant(batch))]

    backends: dict[str, Callable[[np.ndarray], Any]] = {"keras_fp32": keras_graph}
    layouts = {"keras_fp32": RAW_LAYOUT}
    runtimes: dict[str, LiteRTModel] = {}
    for name, path in files.items():
        runtimes[name] = LiteRTModel(Path(path), spec, num_threads=context.threads)
        backends[name] = runtimes[name].predict
        layouts[name] = runtimes[name].layout

    entries: dict[str, dict[str, Any]] = {}
    for name, predict in backends.items():
        found = detect_split(predict, spec, samples, settings, batch_size=1, layout=layouts[name])
        scored = evaluate_voc_map(found.ground_truths, found.detections, classes)
        entries[name] = {
            "map50": round(float(scored.map50), 4),
            "ap": {
                key: None if value is None else round(value, 4) for key, value in scored.ap.items()
            },
            "pipeline_ms_per_image": round(found.seconds * 1000.0 / len(samples), 2),
        }
        logger.info("%s: mAP@0.5 %.4f on %d images", name, scored.map50, len(samples))

    image = load_rgb(Path(samples[0].image_path))
    first, _ = letterbox(image, size)
    batch = first[np.newaxis].astype(np.float32)
    calls: dict[str, tuple[Callable[[np.ndarray], Any], np.ndarray]] = {
        "keras_fp32": (keras_graph, batch),
        "keras_predict_on_batch": (keras_predict(model), batch),
    }
    native = {name: runtime.detector.network_input(image)[0] for name, runtime in runtimes.items()}
    for name, runtime in runtimes.items():
        calls[name] = (runtime.detector.forward, native[name])
        calls[f"{name}_float_input"] = (runtime.predict, batch)
    runs = 20 if context.quick else 300
    timings = _interleaved_latency(calls, runs, warmup=2 if context.quick else 10)
    keras_p50 = float(np.percentile(timings["keras_fp32"], 50))
    for name in backends:
        stats = summarize_ms(timings[name])
        if name in runtimes:
            float_input = summarize_ms(timings[f"{name}_float_input"])
            stats["float_input_latency_ms_p50"] = float_input["latency_ms_p50"]
            stats["float_input_latency_ms_p95"] = float_input["latency_ms_p95"]
            stats["input_dtype"] = str(native[name].dtype)
        else:
            stats["input_dtype"] = "float32"
        entries[name].update(stats)
        entries[name]["speedup_vs_keras"] = round(keras_p50 / max(stats["latency_ms_p50"], 1e-9), 3)
        entries[name]["map50_delta_vs_keras"] = round(
            entries[name]["map50"] - entries["keras_fp32"]["map50"], 4
        )
        entries[name]["size_bytes"] = (
            Path(files[name]).stat().st_size
            if name in files
            else Path(prepared.model_dir, "model.keras").stat().st_size
        )
    on_batch = summarize_ms(timings["keras_predict_on_batch"])
    entries["keras_fp32"]["predict_on_batch_latency_ms_p50"] = on_batch["latency_ms_p50"]
    entries["keras_fp32"]["predict_on_batch_latency_ms_p95"] = on_batch["latency_ms_p95"]
    for name, entry in entries.items():
        logger.info(
            "%s: p50 %.2f ms, p95 %.2f ms, %.2fx Keras, mAP@0.5 %.4f",
            name,
            entry["latency_ms_p50"],
            entry["latency_ms_p95"],
            entry["speedup_vs_keras"],
            entry["map50"],
        )

    int8 = entries["litert_int8"]
    delta_points = abs(int8["map50_delta_vs_keras"]) * 100.0
    return {
        "status": "ok",
        "settings": {
            "architecture": spec.architecture,
            "image_size": size,
            "batch": 1,
            "threads": context.threads,
            "tensorflow_threads": thread_settings,
            "latency_runs": runs,
            "latency": "forward pass only, on each backend's own input type (LiteRT int8: the "
            "int8 tensor the edge runtime's letterbox builds), interleaved blocks of 10 calls",
            "keras_path": "tf.function graph call (predict_on_batch also reported)",
            "model": prepared.origin,
            "model_training": prepared.training,
            "eval_data": prepared.data_origin,
            "eval_images": len(samples),
            "score_threshold": settings.score_threshold,
            "nms_iou_threshold": settings.nms_iou_threshold,
        },
        "backends": entries,
        "targets": [
            target(
                "int8_speedup",
                f"LiteRT int8 >= {SPEEDUP_TARGET:g}x faster than Keras fp32 (p50, batch 1)",
                int8["speedup_vs_keras"],
                int8["speedup_vs_keras"] >= SPEEDUP_TARGET,
                "x",
            ),
            target(
                "int8_map_delta",
                f"LiteRT int8 mAP@0.5 within {MAP_TOLERANCE * 100:g} points of Keras fp32",
                delta_points,
                delta_points <= MAP_TOLERANCE * 100.0,
                "points",
                f"Keras {entries['keras_fp32']['map50']:.4f}, int8 {int8['map50']:.4f} on "
                f"{len(samples)} images",
            ),
        ],
    }
