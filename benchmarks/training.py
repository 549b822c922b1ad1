"""Training throughput (images/s) of YOLOv3-tiny and YOLOv3 at 416 px, on the CPU and on a GPU.

Each measurement is the real training path (``build_dataset`` with augmentation from cached
procedural scenes at 416x416, ``YoloTrainer`` with AdamW under ``fit``): the time between the ends
of the first warm-up steps (tracing and compilation) and of the last step, over the images of the
steps in between. TensorFlow uses every core it sees (no thread limit here).

The CPU figures come from a process that sees no GPU (``CUDA_VISIBLE_DEVICES=-1``). When
TensorFlow sees a GPU, a second process measures float32 and then mixed precision
(``mixed_float16``) with XLA (``jit_compile=True``) at a larger batch; without one, the GPU part
is recorded as skipped.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import CLASSES, Context, failed, skipped

logger = logging.getLogger("benchmarks.training")

IMAGE_SIZE = 416
ARCHITECTURES = ("yolov3_tiny", "yolov3")


def _plan(device: str, quick: bool) -> dict[str, dict[str, int]]:
    """Batch, warm-up steps and timed steps per architecture."""
    if quick:
        return {
            "yolov3_tiny": {"batch": 2, "warmup": 1, "steps": 3},
            "yolov3": {"batch": 2, "warmup": 1, "steps": 1},
        }
    if device == "gpu":
        return {
            "yolov3_tiny": {"batch": 32, "warmup": 5, "steps": 50},
            "yolov3": {"batch": 32, "warmup": 5, "steps": 20},
        }
    return {
        "yolov3_tiny": {"batch": 8, "warmup": 3, "steps": 30},
        "yolov3": {"batch": 8, "warmup": 2, "steps": 5},
    }


def measure(
    architecture: str,
    samples: list[Any],
    batch: int,
    warmup: int,
    steps: int,
    *,
    mixed_precision: bool = False,
    jit_compile: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Images/s of ``fit`` for one architecture and setting (see the module docstring).

    Args:
        architecture: ``yolov3_tiny`` or ``yolov3``.
        samples: training samples (procedural scenes at 416x416).
        batch: images per step.
        warmup: untimed first steps (tracing, compilation, input pipeline start).
        steps: timed steps after the warm-up.
        mixed_precision: ``mixed_float16`` policy.
        jit_compile: XLA-compile the train step.
        seed: seed of initialisation, shuffling and augmentation.

    Returns:
        ``images_per_second``, ``step_ms_p50`` and the settings.
    """
    import keras

    from ppe.config import AugmentConfig
    from ppe.data.tfdata import PipelineSpec, build_dataset
    from ppe.model.spec import YoloSpec
    from ppe.model.training import YoloTrainer, make_optimizer
    from ppe.model.yolov3 import build_model

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")
    keras.utils.set_random_seed(seed)
    try:
        spec = YoloSpec.default(architecture, CLASSES, IMAGE_SIZE)  # type: ignore[arg-type]
        model = build_model(spec)
        trainer = YoloTrainer(model, spec)
        trainer.compile(optimizer=make_optimizer(1e-4), jit_compile=jit_compile)
        dataset = build_dataset(
            samples, spec, PipelineSpec(batch, True, AugmentConfig(), 100, 256, seed)
        )
        ends: list[float] = []

        class Clock(keras.callbacks.Callback):  # type: ignore[misc]
            def on_train_batch_end(self, step: int, logs: dict[str, Any] | None = None) -> None:
                ends.append(time.perf_counter())

        started = time.perf_counter()
        trainer.fit(
            dataset,
            epochs=1,
            steps_per_epoch=warmup + steps,
            callbacks=[Clock()],
            shuffle=False,
            verbose=0,
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")
    timed = ends[warmup - 1 :]
    seconds = timed[-1] - timed[0]
    step_ms = np.diff(timed) * 1000.0
    result = {
        "batch": batch,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "images_per_second": round(steps * batch / seconds, 2),
        "step_ms_p50": round(float(np.median(step_ms)), 1),
        "first_steps_s": round(ends[warmup - 1] - started, 1),
        "mixed_precision": mixed_precision,
        "jit_compile": jit_compile,
        "parameters": int(model.count_params()),
    }
    logger.info(
        "%s batch %d%s%s: %.2f images/s (%.0f ms/step)",
        architecture,
        batch,
        " mixed_float16" if mixed_precision else "",
        " XLA" if jit_compile else "",
        result["images_per_second"],
        result["step_ms_p50"],
    )
    return result


def _scenes(context: Context) -> Path:
    from ppe.config import SplitConfig, SynthConfig
    from ppe.data.synthetic import synthesize

    out = context.work / "training" / "scenes"
    if not out.exists():
        synth = SynthConfig(
            num_images=16 if context.quick else 64,
            width=IMAGE_SIZE,
            height=IMAGE_SIZE,
            seed=context.seed,
        )
        synthesize(out, synth, SplitConfig(train=1.0, val=0.0, test=0.0), list(CLASSES))
    return out


def run_device(context: Context) -> dict[str, Any]:
    """Measure every architecture on the device named by ``context.extra["device"]``."""
    import tensorflow as tf

    from ppe.data.voc import load_split

    device = context.extra.get("device", "cpu")
    gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        return skipped(
            "no GPU visible to TensorFlow on this machine",
            "run `make bench` (or --only training) on a machine with an NVIDIA GPU and the "
            "CUDA-enabled tensorflow wheel",
        )
    samples = load_split(_scenes(context), "train", list(CLASSES))
    plan = _plan(device, context.quick)
    settings = [(False, False), (True, True)] if device == "gpu" else [(False, False)]
    results: dict[str, Any] = {}
    for architecture in ARCHITECTURES:
        for mixed, jit in settings:
            key = architecture if not mixed else f"{architecture}_mixed_xla"
            results[key] = measure(
                architecture,
                samples,
                **plan[architecture],
                mixed_precision=mixed,
                jit_compile=jit,
                seed=context.seed,
            )
    names: list[str] = []
    if device == "gpu":
        names = [
            str(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
            for gpu in gpus
        ]
    return {
        "status": "ok",
        "device": device,
        "devices": names,
        "image_size": IMAGE_SIZE,
        "threads_visible": os.cpu_count(),
        "results": results,
    }


def _device_process(context: Context, device: str) -> dict[str, Any]:
    """Run :func:`run_device` in a child process (the CPU one sees no GPU)."""
    folder = context.work / "training"
    folder.mkdir(parents=True, exist_ok=True)
    child = Context(**{**context.__dict__, "extra": {"device": device}})
    context_file = folder / f"context-{device}.json"
    result_file = folder / f"result-{device}.json"
    context_file.write_text(child.to_json())
    result_file.unlink(missing_ok=True)
    env = dict(os.environ)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = "-1"
    command = [
        sys.executable,
        "-m",
        "benchmarks.worker",
        "training",
        "--function",
        "run_device",
        "--context",
        str(context_file),
        "--result",
        str(result_file),
    ]
    completed = subprocess.run(command, env=env, check=False)
    if result_file.is_file():
        document: dict[str, Any] = json.loads(result_file.read_text())
        return document
    return failed(f"the {device} training process exited with {completed.returncode}")


def run(context: Context) -> dict[str, Any]:
    """CPU throughput, then GPU throughput when a GPU is visible (see the module docstring)."""
    cpu = _device_process(context, "cpu")
    gpu = _device_process(context, "gpu")
    status = "ok" if cpu.get("status") == "ok" else cpu.get("status", "failed")
    return {
        "status": status,
        "cpu": cpu,
        "gpu": gpu,
        "targets": [],
        **({"reason": cpu.get("reason")} if status != "ok" else {}),
    }
