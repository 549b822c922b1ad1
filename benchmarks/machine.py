"""Describe the machine the benchmarks ran on: cores, CPU, memory, accelerator, versions, load.

The parts that need no TensorFlow (``/proc``, ``nvidia-smi``) are in :func:`host_facts`; the
TensorFlow device list and library versions come from :func:`run`, which ``benchmarks.run``
calls in a child process so that TensorFlow never starts in the orchestrating process.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.common import Context


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where the OS does not say)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def _nvidia_smi() -> list[dict[str, str]] | None:
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        output = subprocess.run(
            [
                executable,
                "--query-gpu=name,memory.total,driver_version",
                "--format=csv,noheader",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = []
    for line in output.strip().splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "memory": parts[1], "driver": parts[2]})
    return gpus


def host_facts() -> dict[str, Any]:
    """Cores, CPU model, memory, OS, Python, load and ``nvidia-smi`` GPUs (no TensorFlow)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "load_average": load_average(),
        "nvidia_smi": _nvidia_smi(),
    }


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def run(context: Context) -> dict[str, Any]:
    """TensorFlow's devices and the library versions (runs in a child process)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    details = []
    for gpu in gpus:
        try:
            name = tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
        except (RuntimeError, ValueError):
            name = gpu.name
        details.append(str(name))
    import keras
    import numpy

    return {
        "status": "ok",
        "tensorflow_devices": [device.name for device in tf.config.list_physical_devices()],
        "tensorflow_gpus": details,
        "versions": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": numpy.__version__,
            "ai_edge_litert": _version("ai-edge-litert"),
            "ppe": _version("ppe"),
        },
    }
