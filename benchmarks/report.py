"""Render a results JSON document as the Markdown of ``benchmarks/RESULTS.md``.

The Markdown is derived from the JSON only (``python -m benchmarks.run --render FILE.json``
regenerates it), so the two never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

QUICK_BANNER = (
    "> **Quick mode** (`--quick`): tiny sizes, short budgets and few iterations, to check the "
    "code paths. These figures are not measurements of the targets; run `make bench` for those."
)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _score(value: float | None) -> str:
    """An mAP or AP in [0, 1] with three decimals."""
    return "n/a" if value is None else f"{value:.3f}"


def _measured(value: Any, unit: str) -> str:
    """A target's measured figure: an mAP with three decimals (two would print 0.7965 as 0.80
    beside a "no" for a 0.80 target), anything else as :func:`_fmt` does."""
    if unit.startswith("mAP") and isinstance(value, float):
        return _score(value)
    return _fmt(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _not_ok(result: dict[str, Any]) -> list[str] | None:
    status = result.get("status")
    if status == "ok":
        return None
    lines = [f"**{status}**: {result.get('reason', 'no reason recorded')}."]
    if result.get("how_to_enable"):
        lines.append(f"To run it: {result['how_to_enable']}.")
    return [" ".join(lines), ""]


def _load(values: Sequence[float] | None) -> str:
    return " / ".join(f"{value:.2f}" for value in values) if values else "n/a"


def _machine(document: dict[str, Any]) -> list[str]:
    machine = document.get("machine", {})
    versions = machine.get("versions", {})
    gpus = machine.get("tensorflow_gpus") or []
    smi = machine.get("nvidia_smi") or []
    if gpus or smi:
        accelerator = "; ".join(
            [f"TensorFlow: {', '.join(gpus) or 'no GPU'}"]
            + [f"nvidia-smi: {g['name']} ({g['memory']}, driver {g['driver']})" for g in smi]
        )
    else:
        accelerator = "none (TensorFlow sees no GPU; no nvidia-smi)"
    load = machine.get("load_average_start"), machine.get("load_average_end")
    rows = [
        ("CPU", machine.get("cpu_model")),
        ("cores", f"{machine.get('cores')} ({machine.get('cores_usable')} usable)"),
        ("memory", f"{_fmt(machine.get('memory_gib'), 1)} GiB"),
        ("accelerator", accelerator),
        ("OS / Python", f"{machine.get('os')} / {machine.get('python')}"),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v)),
        (
            "load average (1/5/15 min) at start; at end",
            f"{_load(load[0])}; {_load(load[1])} (other processes may share the cores)",
        ),
    ]
    return ["## Machine", "", *_table(("", ""), rows)]


def _targets(document: dict[str, Any]) -> list[str]:
    rows = []
    for item in document.get("targets", []):
        unit = item.get("unit", "")
        measured = (
            "not measured"
            if item.get("measured") is None
            else f"{_measured(item['measured'], unit)} {unit}".strip()
        )
        met = "not measured" if item.get("status") == "not_measured" else _fmt(item.get("met"))
        rows.append((item["target"], measured, met, item.get("note") or ""))
    if not rows:
        return []
    return ["## Targets", "", *_table(("target", "measured", "met", "note"), rows)]


def _interval(values: Sequence[float] | None, scale: float = 1.0, digits: int = 3) -> str:
    if not values:
        return "n/a"
    return f"[{values[0] * scale:.{digits}f}, {values[1] * scale:.{digits}f}]"


def _ceiling(result: dict[str, Any]) -> list[str]:
    ceiling = result.get("ceiling")
    if not ceiling:
        return []
    peak, operations = ceiling.get("peak", {}), ceiling.get("model_operations", {})
    lines = [
        f"Ceiling: this machine's achieved peak on {peak.get('threads')} threads is "
        f"{_fmt(peak.get('fp32_gflops'))} GFLOP/s fp32 and {_fmt(peak.get('int8_gops'))} GOP/s "
        f"int8 ({peak.get('method')}). The model does "
        f"{_fmt(operations.get('gigaoperations'), 3)} G operations per image "
        f"({operations.get('method')}); a backend's achieved rate is that over its p50, its "
        "fraction of peak that rate over the peak of its precision.",
        "",
    ]
    recommendation = result.get("recommendation")
    if recommendation:
        best = recommendation.get("backend")
        edge = recommendation.get("edge_backend")
        verdict = (
            f"the module's backend ({edge}) is that backend"
            if best == edge
            else f"the edge module ships {edge} today; the measured recommendation is {best}"
        )
        lines += [
            f"**Edge backend: {best or 'none qualifies'}** ({recommendation.get('rule')}); "
            f"{verdict}. At equal mAP, fastest first: "
            f"{', '.join(recommendation.get('qualifying', [])) or 'none'}."
            + "".join(
                f" Not eligible: {name} ({why})."
                for name, why in recommendation.get("excluded", {}).items()
            ),
            "",
        ]
    return lines


def _inference(result: dict[str, Any]) -> list[str]:
    settings = result.get("settings", {})
    lines = [
        f"## Inference (batch 1, {settings.get('image_size', 416)}x"
        f"{settings.get('image_size', 416)}, {settings.get('threads', 2)} threads)",
        "",
    ]
    skipped = _not_ok(result)
    if skipped:
        return lines + skipped
    backends = result.get("backends", {})
    classes = list(next(iter(backends.values()), {}).get("ap", {}))
    rows = []
    for name, entry in backends.items():
        rows.append(
            (
                name,
                entry.get("input_dtype", "n/a"),
                entry.get("latency_ms_p50"),
                entry.get("latency_ms_p95"),
                f"{_fmt(entry.get('speedup_vs_keras'))}x",
                entry.get("float_input_latency_ms_p50", "same"),
                _fmt(entry.get("fraction_of_peak", 0) * 100.0, 1)
                if entry.get("fraction_of_peak") is not None
                else "n/a",
                _score(entry.get("map50")),
                _interval(entry.get("map50_interval")),
                _interval(entry.get("map50_delta_interval"), 100.0, 1),
                *(_score(entry.get("ap", {}).get(c)) for c in classes),
                _fmt((entry.get("size_bytes") or 0) / 1e6, 1),
            )
        )
    header = (
        "backend",
        "input",
        "p50 ms",
        "p95 ms",
        "speed-up vs Keras",
        "p50 ms from float32 input",
        "% of peak",
        "mAP@0.5",
        "mAP 95% interval",
        "vs Keras, points (paired 95%)",
        *(f"AP {c}" for c in classes),
        "size MB",
    )
    keras = backends.get("keras_fp32", {})
    lines += _table(header, rows)
    lines += [
        f"Model: {settings.get('model')}"
        + (
            f"; LiteRT files with `{settings['litert_output_layout']}` outputs (the "
            f"`{settings.get('profile')}` profile's `export.output_layout`)"
            if settings.get("litert_output_layout")
            else ""
        )
        + f". Evaluation: {settings.get('eval_data')} "
        f"({settings.get('eval_images')} images, score threshold "
        f"{settings.get('score_threshold')}, NMS IoU {settings.get('nms_iou_threshold')}). "
        f"Latency: {settings.get('latency')}, {settings.get('latency_runs')} runs each; Keras as "
        f"a `tf.function` graph (`predict_on_batch` p50 "
        f"{_fmt(keras.get('predict_on_batch_latency_ms_p50'))} ms), TensorFlow threads: "
        + ", ".join(f"{k} {v}" for k, v in (settings.get("tensorflow_threads") or {}).items())
        + ".",
        "",
    ]
    versions = settings.get("peer_versions")
    if versions:
        lines += [
            "Peer runtimes: "
            + ", ".join(f"{name} {version}" for name, version in versions.items())
            + f"; int8 models calibrated on {settings.get('calibration_images')} train images "
            "(the LiteRT int8 export's)"
            + (
                "; ONNX Runtime int8 with 7-bit weights (`reduce_range`: this CPU has no VNNI)"
                if settings.get("onnxruntime_int8_reduce_range")
                else ""
            )
            + ". mAP intervals: percentile bootstrap over images, "
            f"{(settings.get('bootstrap') or {}).get('resamples')} resamples.",
            "",
        ]
    return lines + _ceiling(result)


def _serving(result: dict[str, Any]) -> list[str]:
    lines = ["## Edge module: `POST /score` over loopback", ""]
    skipped = _not_ok(result)
    if skipped:
        return lines + skipped
    rows = []
    for phase in ("sequential", "concurrent"):
        item = result.get(phase, {})
        rows.append(
            (
                phase,
                item.get("clients"),
                item.get("requests_ok"),
                sum(item.get("errors", {}).values()),
                item.get("requests_per_s"),
                item.get("latency_ms_p50"),
                item.get("latency_ms_p99"),
                item.get("server_total_ms_p50"),
            )
        )
    settings = result.get("settings", {})
    by_backend = result.get("by_backend")
    if by_backend:
        rows = [
            (
                backend,
                int(clients),
                phase.get("requests_ok"),
                sum(phase.get("errors", {}).values()),
                phase.get("requests_per_s"),
                phase.get("latency_ms_p50"),
                phase.get("latency_ms_p99"),
                phase.get("server_total_ms_p50"),
            )
            for backend, item in by_backend.items()
            for clients, phase in item.get("phases", {}).items()
        ]
    lines += _table(
        (
            "backend" if by_backend else "phase",
            "clients",
            "requests",
            "errors",
            "requests/s",
            "p50 ms",
            "p99 ms",
            "server-side p50 ms",
        ),
        rows,
    )
    lines += [
        f"Server: {settings.get('server')}, {settings.get('model')}, "
        f"{settings.get('server_threads')} interpreter threads. Images: {settings.get('images')}, "
        f"{settings.get('image_size')}. Clients share the cores with the server."
        + (
            " Peer runtimes: the same HTTP server and detection path on ONNX Runtime or "
            "OpenVINO (`python -m benchmarks.peer_server`); targets are checked on litert_int8 "
            "(1 and 4 clients)."
            if by_backend
            else ""
        ),
        "",
    ]
    return lines


def _training(result: dict[str, Any]) -> list[str]:
    lines = ["## Training throughput (416 px, synthetic scenes, `fit` with augmentation)", ""]
    skipped = _not_ok(result)
    if skipped:
        return lines + skipped
    rows = []
    notes = []
    for device in ("cpu", "gpu"):
        part = result.get(device, {})
        if part.get("status") != "ok":
            notes.append(
                f"{device.upper()}: **{part.get('status')}**: {part.get('reason')}"
                + (f". To run it: {part['how_to_enable']}" if part.get("how_to_enable") else "")
                + "."
            )
            continue
        label = device.upper() + (f" ({', '.join(part['devices'])})" if part.get("devices") else "")
        for name, item in part.get("results", {}).items():
            precision = "mixed_float16 + XLA" if item.get("mixed_precision") else "float32"
            rows.append(
                (
                    label,
                    name.removesuffix("_mixed_xla"),
                    precision,
                    item.get("batch"),
                    item.get("timed_steps"),
                    item.get("images_per_second"),
                    item.get("step_ms_p50"),
                )
            )
    lines += _table(
        ("device", "model", "precision", "batch", "timed steps", "images/s", "ms/step"), rows
    )
    return lines + [note + "\n" for note in notes]


def _real_data(result: dict[str, Any]) -> list[str]:
    lines = ["## Real data: YOLOv3-tiny from COCO weights vs from scratch", ""]
    skipped = _not_ok(result)
    if skipped:
        return lines + skipped
    settings = result.get("settings", {})
    classes = list(result.get("from_coco", {}).get("per_class", {}))
    rows = []
    for name in ("from_coco", "from_scratch"):
        item = result.get(name, {})
        training = item.get("training", {})
        rows.append(
            (
                name,
                _fmt(training.get("wall_s", 0) / 60.0, 1),
                training.get("steps"),
                training.get("epochs"),
                training.get("final_loss"),
                _score(item.get("map50")),
                *(_score(item.get("per_class", {}).get(c, {}).get("ap")) for c in classes),
            )
        )
    lines += _table(
        (
            "run",
            "minutes",
            "steps",
            "epochs",
            "final loss",
            "mAP@0.5 (val)",
            *(f"AP {c}" for c in classes),
        ),
        rows,
    )
    lines += [
        f"{settings.get('train_images')} train / {settings.get('val_images')} val images "
        f"({settings.get('split')}), {settings.get('image_size')} px, batch "
        f"{settings.get('batch')}, peak learning rate {settings.get('peak_learning_rate')}, "
        f"budget {settings.get('budget_minutes')} min each on the CPU.",
        "",
    ]
    return lines


def _evaluator(result: dict[str, Any]) -> list[str]:
    lines = ["## mAP evaluator (`evaluate_voc_map`, synthetic detections)", ""]
    skipped = _not_ok(result)
    if skipped:
        return lines + skipped
    settings = result.get("settings", {})
    return lines + _table(
        ("images", "ground-truth boxes", "detections", "median s", "images/s"),
        [
            (
                settings.get("images"),
                settings.get("ground_truth_boxes"),
                settings.get("detections"),
                result.get("seconds_median"),
                result.get("images_per_second"),
            )
        ],
    )


def _edge_image(result: dict[str, Any]) -> list[str]:
    lines = ["## Edge module image (built offline)", ""]
    skipped = _not_ok(result)
    if skipped:
        return lines + skipped
    settings = result.get("settings", {})
    return lines + _table(
        (
            "base image",
            "image (MB)",
            "our layers (MB)",
            "local base (MB)",
            "official base (MB, published)",
            "build (s)",
            "start-up to /healthz (s, median)",
            "starts (s)",
        ),
        [
            (
                settings.get("base_image"),
                result.get("image_mb"),
                result.get("our_layers_mb"),
                result.get("local_base_mb"),
                (
                    f"{result['official_base']}: {_fmt(result.get('official_base_mb'))}"
                    if result.get("official_base")
                    else "n/a (not recorded)"
                ),
                result.get("build_s"),
                result.get("startup_s"),
                ", ".join(f"{value:.2f}" for value in result.get("startup_s_all", [])),
            )
        ],
    )


SECTIONS = {
    "inference": _inference,
    "serving": _serving,
    "edge_image": _edge_image,
    "training": _training,
    "real_data": _real_data,
    "evaluator": _evaluator,
}


def render(document: dict[str, Any], source: str = "") -> str:
    """The Markdown page for a results document.

    Args:
        document: the results JSON (as written by ``benchmarks.run``).
        source: path of the JSON file, named in the page.

    Returns:
        Markdown text ending with a newline.
    """
    quick = document.get("mode") == "quick"
    git = document.get("git", {})
    commit = (git.get("commit") or "unknown")[:12] + (
        " (uncommitted changes)" if git.get("dirty") else ""
    )
    lines = ["# Benchmark results" + (" (quick mode)" if quick else ""), ""]
    if quick:
        lines += [QUICK_BANNER, ""]
    lines += [
        f"Mode: **{document.get('mode')}**. Run {document.get('started_utc')} to "
        f"{document.get('finished_utc')} ({_fmt(document.get('duration_s'), 0)} s) at commit "
        f"{commit}, with `{document.get('command')}`"
        + (f"; results JSON `{source}`" if source else "")
        + ".",
        "",
    ]
    lines += _machine(document)
    lines += _targets(document)
    for name, result in document.get("benchmarks", {}).items():
        if name in SECTIONS:
            lines += SECTIONS[name](result)
    return "\n".join(lines).rstrip() + "\n"
