"""Issue 16 item 7: where the int8 model loses its accuracy, layer by layer, and what keeping the
worst layers in float buys.

``python -m benchmarks.issue16_int8_layers --model MODEL_DIR --data VOC_DIR --out
benchmarks/experiments/issue16_int8_layers.json [--config hardhat] [--set evaluate.split=val]
[--keep-float 1,2,4]``

Exports the model folder with :func:`ppe.export.export_model_dir` (the ``ppe export`` code, the
configured ``export.output_layout``), then runs TensorFlow Lite's quantisation debugger
(``tf.lite.experimental.QuantizationDebugger``) on the same calibration images the export used
(letterboxed train-split photos, ``export.representative_images`` of them): for every quantised
tensor, the root-mean-square error of the int8 value against the float one, in units of that
tensor's quantisation step (``rmse / scale``; rounding alone gives 1/sqrt(12) = 0.289). The layers
are chosen on train photos, so the mAP of the selectively quantised models below is not selected
on the split it is scored on. For each ``--keep-float`` count K, the K layers with the largest
``rmse / scale`` are left in float (the debugger's ``denylisted_nodes``; everything else int8)
and the model is scored on the evaluation split with the edge runtime, like the export's own
backends, with its batch-1 latency.
"""

from __future__ import annotations

import csv
import io
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import write_record

logger = logging.getLogger("benchmarks.issue16_int8_layers")

#: Uniform rounding error of one quantisation step: sqrt(1/12).
ROUNDING_ONLY = (1.0 / 12.0) ** 0.5


def _layer_errors(debugger: Any) -> list[dict[str, Any]]:
    """The debugger's per-tensor statistics with ``rmse_over_scale``, worst first."""
    text = io.StringIO()
    debugger.layer_statistics_dump(text)
    rows = []
    for row in csv.DictReader(io.StringIO(text.getvalue())):
        scale = float(row["scale"])
        mse = float(row["mean_squared_error"])
        rows.append(
            {
                "tensor": row["tensor_name"],
                "op": row["op_name"],
                "elements": int(float(row["num_elements"])),
                "scale": scale,
                "rmse_over_scale": round((mse**0.5) / scale, 4) if scale > 0 else None,
                "max_abs_error": round(float(row["max_abs_error"]), 6),
            }
        )
    rows.sort(key=lambda row: -(row["rmse_over_scale"] or 0.0))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Export, find the layers with the largest int8 error, and score selective models."""
    import tensorflow as tf

    from benchmarks.issue16_int8 import export_experiment_parser
    from ppe.config import load_config
    from ppe.data.voc import load_split
    from ppe.evaluate.detect import detect_split
    from ppe.evaluate.voc_map import evaluate_voc_map
    from ppe.export import export_model_dir, latency_ms, layout_model, representative_images
    from ppe.litert import LiteRTModel
    from ppe.model.bundle import load_model_dir

    parser = export_experiment_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--keep-float",
        default="1,2,4",
        help="comma-separated counts of worst layers to leave in float (default 1,2,4)",
    )
    args = parser.parse_args(argv)
    try:
        counts = sorted({int(value) for value in args.keep_float.split(",")})
    except ValueError:
        parser.error(f"--keep-float {args.keep_float!r}: give counts such as 1,2,4")
    if not counts or counts[0] < 1:
        parser.error(f"--keep-float {args.keep_float!r}: every count must be 1 or more")
    logging.basicConfig(level=logging.INFO)
    config = load_config(args.config, args.overrides)
    model, spec, _ = load_model_dir(args.model)
    classes = list(spec.class_names)
    layout = config.export.output_layout
    train = load_split(args.data, "train", classes)
    samples = load_split(args.data, config.evaluate.split, classes)
    calibration = representative_images(train, spec.image_size, config.export.representative_images)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="issue16-int8-layers-") as work:
        folder = Path(work) / "export"
        metrics = export_model_dir(args.model, args.data, folder, config, args.threads)
        saved_model = Path(work) / "saved_model"
        layout_model(model, spec, layout).export(str(saved_model), verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=calibration
        )
        debugger.run()
        layers = _layer_errors(debugger)
        selective: dict[str, Any] = {}
        for count in counts:
            names = [row["tensor"] for row in layers[:count]]
            options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=names)
            chosen = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=calibration, debug_options=options
            )
            path = folder / f"model_int8_keep{count}.tflite"
            path.write_bytes(chosen.get_nondebug_quantized_model())
            runtime = LiteRTModel(path, spec, num_threads=args.threads)
            found = detect_split(
                runtime.predict,
                spec,
                samples,
                config.evaluate,
                batch_size=1,
                layout=runtime.layout,
            )
            scored = evaluate_voc_map(
                found.ground_truths, found.detections, classes, config.evaluate.iou_threshold
            )
            keras_map = metrics.backends["keras"].map50 or 0.0
            selective[str(count)] = {
                "float_layers": names,
                "map50": round(scored.map50, 6),
                "map50_delta_vs_keras": round(scored.map50 - keras_map, 6),
                "ap": scored.ap,
                **latency_ms(runtime.predict, spec.image_size),
                "size_bytes": path.stat().st_size,
            }
            logger.info("keep %d in float: mAP@0.5 %.4f", count, scored.map50)
    document = {
        "experiment": "issue16_int8_layers",
        "output_layout": layout,
        "split": metrics.split,
        "images": metrics.images,
        "representative_images": config.export.representative_images,
        "export": {
            name: {
                "map50": entry.map50,
                "map50_delta_vs_keras": entry.map50_delta_vs_keras,
                "latency_ms_p50": entry.latency_ms_p50,
            }
            for name, entry in metrics.backends.items()
        },
        "rounding_only_rmse_over_scale": round(ROUNDING_ONLY, 4),
        "worst_layers": layers[:10],
        "layers": len(layers),
        "selective": selective,
        "seconds": round(time.time() - started, 1),
    }
    write_record(document, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
