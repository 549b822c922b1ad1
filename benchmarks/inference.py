"""Inference: Keras fp32, LiteRT, ONNX Runtime and OpenVINO on the same model, batch 1, 2 threads.

Latency is the forward pass alone, batch 1, at the measured model's size (see
:mod:`benchmarks.models`), after warm-up: from the letterboxed image in the backend's own input
type to float head outputs (raw heads for Keras, the
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

The peer runtimes a user would try instead (ONNX Runtime and OpenVINO, fp32 and int8, converted
as :mod:`benchmarks.peers` says and calibrated on the LiteRT int8 export's images) take the float32
letterbox and are timed in the same interleaved blocks, on the same input, with the same threads.

mAP@0.5 of each backend comes from the same split through the same path as ``ppe export``:
:func:`ppe.evaluate.detect.detect_split` (letterbox, forward pass, NumPy decode and class-aware NMS,
boxes back to pixels) and :func:`ppe.evaluate.voc_map.evaluate_voc_map`, with the project's
percentile bootstrap interval over images (:mod:`ppe.evaluate.bootstrap`) and the paired interval
of the difference to Keras fp32 on the same resamples.

The ceiling: the machine's achieved fp32 and int8 matrix-product rate on the same threads and the
model's operation count (:mod:`benchmarks.peak`); each backend's achieved rate (operations / p50
latency) as a fraction of the peak of its precision.

The recommendation: among the backends the edge module could ship (all but Keras, whose
TensorFlow the edge image does not hold), those at equal mAP@0.5 with Keras fp32 (the paired 95%
interval of the difference contains 0, or the difference is within :data:`MAP_TOLERANCE`), the
fastest at p50.
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
#: Equal mAP for the choice of the edge backend: the paired interval contains 0, or the
#: difference is at most this (one 50-photo split moves int8 models by a point or two run to run).
MAP_TOLERANCE = 0.02
#: Issue 16's target for the shipped int8 model: within this many mAP points of Keras fp32.
INT8_MAP_POINTS = 1.0
#: The backend the edge module ships today (``ppe edge serve`` / the module run a LiteRT int8 file).
EDGE_BACKEND = "litert_int8"
#: Backends the edge module cannot ship (its image has no TensorFlow).
NOT_SHIPPABLE = ("keras_fp32",)


def precision(backend: str) -> str:
    """``int8`` or ``fp32``, from the backend's name."""
    return "int8" if backend.endswith("int8") else "fp32"


def recommend(entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The fastest shippable backend at equal mAP@0.5 with Keras fp32 (see the module docstring).

    Args:
        entries: backend -> its entry (``latency_ms_p50``, ``map50_delta_vs_keras``,
            ``map50_delta_interval``).

    Returns:
        ``backend`` (None when none qualifies), ``qualifying``, ``excluded`` (backend -> why) and
        the ``rule``.
    """
    qualifying: list[str] = []
    excluded: dict[str, str] = {}
    for name, entry in entries.items():
        if name in NOT_SHIPPABLE:
            excluded[name] = "the edge image has no TensorFlow"
            continue
        delta = entry["map50_delta_vs_keras"]
        low, high = entry.get("map50_delta_interval") or (None, None)
        within = low is not None and high is not None and low <= 0.0 <= high
        if within or abs(delta) <= MAP_TOLERANCE:
            qualifying.append(name)
        else:
            excluded[name] = (
                f"mAP@0.5 {delta * 100:+.1f} points vs Keras fp32 (paired 95% interval "
                f"{_points(low)} to {_points(high)})"
            )
    best = min(qualifying, key=lambda name: entries[name]["latency_ms_p50"], default=None)
    return {
        "backend": best,
        "qualifying": sorted(qualifying, key=lambda name: entries[name]["latency_ms_p50"]),
        "excluded": excluded,
        "edge_backend": EDGE_BACKEND,
        "rule": "fastest p50 among backends the edge image can run whose mAP@0.5 equals Keras "
        "fp32's: the paired 95% bootstrap interval of the difference contains 0, or the "
        f"difference is within {MAP_TOLERANCE * 100:g} points",
    }


def _points(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}"


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

    from benchmarks.models import calibration_count, export_litert, export_peers, prepare_model
    from benchmarks.peak import measure_peak, operation_count
    from benchmarks.peers import PeerModel, cpu_has_vnni, model_bytes, versions
    from ppe.config import EvaluateConfig
    from ppe.data.voc import load_split
    from ppe.evaluate.bootstrap import LEVEL, bootstrap_map, paired_difference
    from ppe.evaluate.detect import detect_split, keras_predict, load_rgb
    from ppe.evaluate.voc_map import evaluate_voc_map
    from ppe.litert import LiteRTModel
    from ppe.model.bundle import load_model_dir
    from ppe.model.decode import RAW_LAYOUT
    from ppe.model.preprocess import letterbox

    prepared = prepare_model(context)
    files: dict[str, Path] = {**export_litert(context, prepared), **export_peers(context, prepared)}
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
    peers: dict[str, PeerModel] = {}
    for name, path in files.items():
        if path.suffix == ".tflite":
            runtimes[name] = LiteRTModel(Path(path), spec, num_threads=context.threads)
            backends[name] = runtimes[name].predict
            layouts[name] = runtimes[name].layout
        else:
            # The peers are converted from the Keras model itself: its raw head outputs.
            peers[name] = PeerModel(name, Path(path), spec.output_shapes, context.threads)
            backends[name] = peers[name].predict
            layouts[name] = RAW_LAYOUT

    entries: dict[str, dict[str, Any]] = {}
    outcomes: dict[str, Any] = {}
    for name, predict in backends.items():
        found = detect_split(predict, spec, samples, settings, batch_size=1, layout=layouts[name])
        scored = evaluate_voc_map(found.ground_truths, found.detections, classes)
        outcomes[name] = scored.outcomes
        interval = bootstrap_map(
            scored.outcomes,
            classes,
            resamples=settings.bootstrap_resamples,
            seed=settings.bootstrap_seed,
        ).map50
        entries[name] = {
            "map50": round(float(scored.map50), 4),
            "map50_interval": _interval(interval.low, interval.high),
            "ap": {
                key: None if value is None else round(value, 4) for key, value in scored.ap.items()
            },
            "pipeline_ms_per_image": round(found.seconds * 1000.0 / len(samples), 2),
        }
        logger.info("%s: mAP@0.5 %.4f on %d images", name, scored.map50, len(samples))
    for name in backends:
        paired = paired_difference(
            outcomes[name],
            outcomes["keras_fp32"],
            resamples=settings.bootstrap_resamples,
            seed=settings.bootstrap_seed,
        )
        entries[name]["map50_delta_interval"] = _interval(paired.interval.low, paired.interval.high)

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
    for name, peer in peers.items():
        calls[name] = (peer.forward, batch)
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
            model_bytes(Path(files[name]))
            if name in files
            else Path(prepared.model_dir, "model.keras").stat().st_size
        )
    on_batch = summarize_ms(timings["keras_predict_on_batch"])
    entries["keras_fp32"]["predict_on_batch_latency_ms_p50"] = on_batch["latency_ms_p50"]
    entries["keras_fp32"]["predict_on_batch_latency_ms_p95"] = on_batch["latency_ms_p95"]
    peak = measure_peak(context.threads, context.quick)
    operations = operation_count(model)
    for name, entry in entries.items():
        entry["precision"] = precision(name)
        achieved = operations["operations"] / (entry["latency_ms_p50"] / 1000.0) / 1e9
        ceiling = peak["fp32_gflops"] if entry["precision"] == "fp32" else peak["int8_gops"]
        entry["achieved_gops"] = round(achieved, 2)
        entry["fraction_of_peak"] = round(achieved / ceiling, 4)
    recommendation = recommend(entries)
    logger.info("recommended edge backend: %s", recommendation["backend"])
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
            "profile": prepared.profile,
            "litert_output_layout": layouts.get("litert_int8", layouts.get("litert_fp32")),
            "eval_data": prepared.data_origin,
            "eval_images": len(samples),
            "score_threshold": settings.score_threshold,
            "nms_iou_threshold": settings.nms_iou_threshold,
            "bootstrap": {
                "resamples": settings.bootstrap_resamples,
                "seed": settings.bootstrap_seed,
                "level": LEVEL,
            },
            "calibration_images": calibration_count(context),
            "onnxruntime_int8_reduce_range": not cpu_has_vnni(),
            "peer_versions": versions(),
        },
        "backends": entries,
        "ceiling": {"peak": peak, "model_operations": operations},
        "recommendation": recommendation,
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
                f"LiteRT int8 mAP@0.5 within {INT8_MAP_POINTS:g} point of Keras fp32",
                delta_points,
                delta_points <= INT8_MAP_POINTS,
                "points",
                f"Keras {entries['keras_fp32']['map50']:.4f}, int8 {int8['map50']:.4f} on "
                f"{len(samples)} images",
            ),
            _edge_target(entries, recommendation),
        ],
    }


def _interval(low: float | None, high: float | None) -> list[float] | None:
    if low is None or high is None:
        return None
    return [round(low, 4), round(high, 4)]


def _edge_target(entries: dict[str, dict[str, Any]], recommendation: dict[str, Any]) -> Any:
    """The edge module's backend is the fastest at equal mAP: the best one's p50 over its own."""
    best = recommendation["backend"]
    edge = entries[EDGE_BACKEND]
    ratio = None if best is None else entries[best]["latency_ms_p50"] / edge["latency_ms_p50"]
    return target(
        "edge_backend_fastest",
        f"the edge module's backend ({EDGE_BACKEND}) is the fastest at equal mAP@0.5",
        ratio,
        best == EDGE_BACKEND,
        "x",
        f"fastest at equal mAP: {best}; figure: its p50 / {EDGE_BACKEND} p50 (1 when it is "
        f"{EDGE_BACKEND}, below 1 when another backend is faster)",
    )
