"""Tiny YOLOv3-tiny LiteRT models for the edge tests, built once and cached.

Run as a script (``python tflite_models.py OUT_DIR``) it imports TensorFlow, builds
``YoloSpec.default("yolov3_tiny", image_size=96)`` with ``ppe.model.yolov3.build_model`` and
converts it with ``ppe.export.convert`` (the ``ppe export`` conversion) into:

* ``random_fp32.tflite`` / ``random_int8.tflite``: seeded random weights, float32 and full-integer
  int8 (int8 input and outputs); ``reference.npz`` holds a fixed input and Keras' raw outputs for
  it, to compare the interpreter against. The output biases are set like a trained detector's
  (objectness and class logits far below zero, box logits near it: ``TRAINED_LIKE_BIAS``), so the
  raw head spans a wide range while the box values span a narrow one, as on a real model;
* ``rigged_fp32.tflite`` / ``rigged_int8.tflite``: the same network with both output convolutions
  set to zero weights and a chosen bias, so every frame yields the same known raw outputs
  (``RIGGED_BIAS``): one ``head`` box per cell of the 3 x 3 stride-32 grid with score
  sigmoid(4.0) * sigmoid(0.4) ~= 0.588, nothing else. These give real detections through the
  real interpreter without training;
* ``labels.txt``: ``helmet`` and ``head``; ``model.json``: their spec and output layout (the
  runtime needs it).

The top folder holds the ``split`` output layout that ``ppe export`` writes; ``raw/`` holds
``random_fp32``, ``random_int8`` and ``rigged_int8`` in the ``raw`` layout of exports made before
``output_layout`` existed, with a ``model.json`` that has no such key.

The test process never imports TensorFlow: :func:`ensure_models` runs this file in a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from filelock import FileLock

IMAGE_SIZE = 96
CLASS_NAMES = ("helmet", "head")
# Per output stride, per anchor: tx, ty, tw, th, objectness, helmet, head (raw logits). Only the
# first stride-32 anchor (81 x 82 of 416) fires: one head box per cell of the 3 x 3 grid.
_OFF = (0.0, 0.0, 0.0, 0.0, -8.0, -8.0, -8.0)
RIGGED_BIAS = {
    32: ((0.0, 0.0, 0.0, 0.0, 4.0, -4.0, 0.4), _OFF, _OFF),
    16: (_OFF, _OFF, _OFF),
}
RIGGED_BOXES = 9
# Output bias of the random models per channel: tx, ty, tw, th, objectness, helmet, head.
TRAINED_LIKE_BIAS = (0.0, 0.0, 0.0, 0.0, -7.0, -3.0, -3.0)
RAW_DIR = "raw"
RIGGED_HEAD_SCORE = float(1 / (1 + np.exp(-4.0)) * 1 / (1 + np.exp(-0.4)))
FILES = (
    "random_fp32.tflite",
    "random_int8.tflite",
    "rigged_fp32.tflite",
    "rigged_int8.tflite",
    "reference.npz",
    "labels.txt",
    "model.json",
    f"{RAW_DIR}/random_fp32.tflite",
    f"{RAW_DIR}/random_int8.tflite",
    f"{RAW_DIR}/rigged_int8.tflite",
    f"{RAW_DIR}/labels.txt",
    f"{RAW_DIR}/model.json",
)
_REPO = Path(__file__).resolve().parents[3]


def rigged_raw_outputs() -> list[np.ndarray]:
    """The raw head outputs every frame gets from the rigged models, in model order."""
    from ppe.model.spec import YoloSpec

    spec = YoloSpec.default("yolov3_tiny", CLASS_NAMES, image_size=IMAGE_SIZE)
    outputs = []
    for stride, shape in zip(spec.strides, spec.output_shapes, strict=True):
        outputs.append(np.broadcast_to(np.float32(RIGGED_BIAS[stride]), (1, *shape)).copy())
    return outputs


def _cache_key() -> str:
    digest = hashlib.sha256()
    for path in (
        Path(__file__),
        _REPO / "src" / "ppe" / "model" / "yolov3.py",
        _REPO / "src" / "ppe" / "model" / "spec.py",
        _REPO / "src" / "ppe" / "model" / "decode.py",
        _REPO / "src" / "ppe" / "export.py",
    ):
        digest.update(path.read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()[:16]


def ensure_models(cache_root: Path) -> Path:
    """Build the models into ``cache_root/<key>`` unless already there; returns that folder."""
    folder = cache_root / _cache_key()
    with FileLock(str(cache_root / "build.lock"), timeout=600):
        if all((folder / name).is_file() for name in FILES):
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
        result = subprocess.run(
            [sys.executable, str(Path(__file__)), str(folder)],
            env=env,
            capture_output=True,
            text=True,
            timeout=540,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"building the test models failed:\n{result.stderr[-4000:]}")
    return folder


def _build(out: Path) -> None:
    import tensorflow as tf

    from ppe.export import convert, litert_manifest
    from ppe.model.decode import OUTPUT_LAYOUT_KEY, RAW_LAYOUT, SPLIT_LAYOUT
    from ppe.model.spec import YoloSpec
    from ppe.model.yolov3 import build_model

    tf.keras.utils.set_random_seed(0)
    spec = YoloSpec.default("yolov3_tiny", CLASS_NAMES, image_size=IMAGE_SIZE)
    model = build_model(spec)
    rng = np.random.default_rng(0)
    # Random BN statistics so the network is not near-identity everywhere.
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                    rng.normal(0, 0.1, beta.shape).astype(np.float32),
                    rng.normal(0, 0.1, mean.shape).astype(np.float32),
                    rng.uniform(0.5, 1.5, variance.shape).astype(np.float32),
                ]
            )
    for stride in spec.strides:
        layer = model.get_layer(f"head_s{stride}_output_conv")
        kernel, bias = layer.get_weights()
        trained_like = np.tile(np.float32(TRAINED_LIKE_BIAS), spec.anchors_per_scale)
        layer.set_weights([kernel, trained_like.reshape(bias.shape)])
    reference_input = rng.random((1, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)
    reference = model(reference_input, training=False)
    np.savez(
        out / "reference.npz",
        input=reference_input,
        **{f"output_{i}": np.asarray(value) for i, value in enumerate(reference)},
    )

    def representative() -> object:
        generator = np.random.default_rng(1)
        for _ in range(8):
            yield [generator.random((1, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)]

    def write(folder: Path, prefix: str, layout: str, int8_only: bool) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        written = convert(model, spec, representative, folder, layout)  # type: ignore[arg-type]
        for backend, path in written.items():
            if int8_only and backend != "litert_int8":
                path.unlink()
            else:
                path.rename(folder / f"{prefix}_{backend.removeprefix('litert_')}.tflite")
        (folder / "labels.txt").write_text("\n".join(CLASS_NAMES) + "\n", encoding="utf-8")
        manifest = litert_manifest(spec, {}, {}, layout)
        if layout == RAW_LAYOUT:  # an export from before the output_layout key
            del manifest[OUTPUT_LAYOUT_KEY]
        (folder / "model.json").write_text(json.dumps(manifest), encoding="utf-8")

    write(out, "random", SPLIT_LAYOUT, False)
    write(out / RAW_DIR, "random", RAW_LAYOUT, False)
    for stride in spec.strides:
        layer = model.get_layer(f"head_s{stride}_output_conv")
        kernel, bias = layer.get_weights()
        layer.set_weights([np.zeros_like(kernel), np.float32(RIGGED_BIAS[stride]).reshape(-1)])
        assert bias.shape == (spec.anchors_per_scale * (5 + spec.num_classes),)
    write(out, "rigged", SPLIT_LAYOUT, False)
    write(out / RAW_DIR, "rigged", RAW_LAYOUT, True)


if __name__ == "__main__":
    _build(Path(sys.argv[1]))
