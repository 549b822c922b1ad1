"""Issue 16 item 7: LiteRT int8 with the ``raw`` head output against the ``split`` one.

``python -m benchmarks.issue16_int8 --model MODEL_DIR --data VOC_DIR --out
benchmarks/experiments/issue16_int8.json [--config hardhat] [--set evaluate.split=val]``

Exports one trained model folder twice with :func:`ppe.export.export_model_dir` (the ``ppe
export`` code: same calibration images, same evaluation split, same decode and NMS), once per
output layout, and writes each export's ``metrics.json`` backends (Keras, LiteRT fp32, LiteRT
int8: mAP@0.5, AP per class, delta to Keras) side by side, with the int8 output quantisation
parameters each export got and how far the int8 model's decoded boxes and scores are from the fp32
model's on the evaluation photos (every anchor the fp32 model scores at least ``--min-score``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import write_record

logger = logging.getLogger("benchmarks.issue16_int8")


def _quantisation(path: Path) -> list[dict[str, Any]]:
    """Name (signature name where the file has one), shape and int8 scale of every output."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    names: dict[int, str] = {}
    signatures = interpreter.get_signature_list()
    if len(signatures) == 1:
        runner = interpreter.get_signature_runner(next(iter(signatures)))
        names = {int(d["index"]): name for name, d in runner.get_output_details().items()}
    return [
        {
            "name": names.get(int(detail["index"]), detail["name"]),
            "shape": [int(v) for v in detail["shape"]],
            "scale": float(detail["quantization"][0]),
            "zero_point": int(detail["quantization"][1]),
        }
        for detail in interpreter.get_output_details()
    ]


def _int8_vs_fp32(folder: Path, samples: list[Any], min_score: float) -> dict[str, Any]:
    """Decoded int8 boxes and scores against fp32 on the same letterboxed photos (input pixels)."""
    import numpy as np

    from ppe.edge.runtime import LiteRTDetector
    from ppe.evaluate.detect import load_rgb
    from ppe.export import FP32_FILE, INT8_FILE
    from ppe.model.decode import decode
    from ppe.model.preprocess import letterbox

    float_model = LiteRTDetector(folder / FP32_FILE)
    int8_model = LiteRTDetector(folder / INT8_FILE)
    spec = float_model.spec
    box_errors: list[np.ndarray] = []
    score_errors: list[np.ndarray] = []
    for sample in samples:
        image, _ = letterbox(load_rgb(Path(sample.image_path)), spec.image_size)
        want_boxes, want_scores = decode(
            float_model.head_outputs(image), spec, float_model.output_layout
        )
        boxes, scores = decode(int8_model.head_outputs(image), spec, int8_model.output_layout)
        keep = want_scores[0].max(axis=1) >= min_score
        box_errors.append(np.abs(boxes[0][keep] - want_boxes[0][keep]) * spec.image_size)
        score_errors.append(np.abs(scores[0][keep] - want_scores[0][keep]))
    boxes_px = np.concatenate(box_errors).ravel()
    scores_abs = np.concatenate(score_errors).ravel()
    return {
        "anchors": int(boxes_px.size // 4),
        "box_edge_error_px_mean": round(float(boxes_px.mean()), 3),
        "box_edge_error_px_p95": round(float(np.percentile(boxes_px, 95)), 3),
        "score_error_mean": round(float(scores_abs.mean()), 5),
        "score_error_p95": round(float(np.percentile(scores_abs, 95)), 5),
    }


def export_experiment_parser(description: str) -> argparse.ArgumentParser:
    """The options of the int8 export experiments: one model folder, its data, the record."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", type=Path, required=True, help="a model folder (ppe train)")
    parser.add_argument("--data", type=Path, required=True, help="its Pascal VOC dataset")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", default="hardhat")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--threads", type=int, default=2)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Export with each layout and write the comparison JSON."""
    from ppe.config import load_config
    from ppe.data.voc import load_split
    from ppe.export import INT8_FILE, export_model_dir
    from ppe.model.bundle import read_model_json
    from ppe.model.decode import OUTPUT_LAYOUTS

    parser = export_experiment_parser(__doc__.splitlines()[0])
    parser.add_argument("--min-score", type=float, default=0.1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    config = load_config(args.config, args.overrides)
    classes = list(read_model_json(args.model).spec.class_names)
    samples = load_split(args.data, config.evaluate.split, classes)
    started = time.time()
    layouts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="issue16-int8-") as work:
        for layout in OUTPUT_LAYOUTS:
            out = Path(work) / layout
            export = config.export.model_copy(update={"output_layout": layout})
            laid_out = config.model_copy(update={"export": export})
            metrics = export_model_dir(args.model, args.data, out, laid_out, args.threads)
            layouts[layout] = {
                "backends": {
                    name: {
                        "map50": entry.map50,
                        "map50_delta_vs_keras": entry.map50_delta_vs_keras,
                        "ap": entry.ap,
                    }
                    for name, entry in metrics.backends.items()
                },
                "int8_outputs": _quantisation(out / INT8_FILE),
                "int8_vs_fp32": _int8_vs_fp32(out, samples, args.min_score),
            }
            images, split = metrics.images, metrics.split
    document = {
        "experiment": "issue16_int8",
        "split": split,
        "images": images,
        "representative_images": config.export.representative_images,
        "min_score": args.min_score,
        "layouts": layouts,
        "seconds": round(time.time() - started, 1),
    }
    write_record(document, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
