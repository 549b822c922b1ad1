"""Mixed precision of a training run: ``train.mixed_precision`` to a Keras dtype policy.

* ``float16``: Keras's ``mixed_float16`` (GPUs with tensor cores; loss scaling is automatic);
* ``bfloat16``: ``mixed_bfloat16``, which pays off on CPUs with bfloat16 instructions (the
  ``avx512_bf16`` or ``amx_bf16`` flags in ``/proc/cpuinfo``) and GPUs that have them;
* ``auto``: ``mixed_float16`` when TensorFlow sees a GPU, else ``mixed_bfloat16`` when the CPU
  flags show bfloat16 support, else ``float32``;
* ``none``: ``float32``.

Variables stay float32 under every policy (https://keras.io/api/mixed_precision/policy/); the
heads' output convolutions compute in float32 (:mod:`ppe.model.yolov3`) and the loss casts to
float32. Standard library at import time.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: CPU flags (Linux ``/proc/cpuinfo``) that mean bfloat16 arithmetic in hardware.
BF16_CPU_FLAGS: tuple[str, ...] = ("avx512_bf16", "amx_bf16")
_POLICIES = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU feature flags from ``cpuinfo`` (empty when the file is missing: not Linux)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def resolve_policy(setting: str, *, gpus: int, flags: Iterable[str]) -> str:
    """The Keras dtype policy name for ``train.mixed_precision``.

    Args:
        setting: ``none``, ``float16``, ``bfloat16`` or ``auto``.
        gpus: number of GPUs TensorFlow sees.
        flags: the CPU's feature flags (see :func:`cpu_flags`).

    Returns:
        ``float32``, ``mixed_float16`` or ``mixed_bfloat16``.

    Raises:
        ValueError: an unknown setting (names the key and the choices).
    """
    if setting == "auto":
        bf16 = sorted(set(flags) & set(BF16_CPU_FLAGS))
        if gpus:
            policy, reason = "mixed_float16", f"{gpus} GPU(s) visible"
        elif bf16:
            policy, reason = "mixed_bfloat16", f"CPU flags {', '.join(bf16)}"
        else:
            policy, reason = "float32", f"no GPU and no CPU flag of {', '.join(BF16_CPU_FLAGS)}"
        logger.info("train.mixed_precision=auto: %s (%s)", policy, reason)
        return policy
    if setting not in _POLICIES:
        raise ValueError(
            f"train.mixed_precision: {setting!r} is not one of none, float16, bfloat16, auto"
        )
    if setting == "bfloat16" and not gpus and not set(flags) & set(BF16_CPU_FLAGS):
        logger.warning(
            "train.mixed_precision=bfloat16 on a CPU without %s: TensorFlow emulates it, "
            "expect slower training than float32",
            " or ".join(BF16_CPU_FLAGS),
        )
    return _POLICIES[setting]


@contextlib.contextmanager
def training_policy(setting: str) -> Iterator[str]:
    """Keras's global dtype policy for ``train.mixed_precision`` within the block (restored after).

    Yields:
        The policy name in force.
    """
    import keras
    import tensorflow as tf

    policy = resolve_policy(
        setting, gpus=len(tf.config.list_physical_devices("GPU")), flags=cpu_flags()
    )
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield policy
    finally:
        keras.config.set_dtype_policy(previous)


def float32_model(model: Any, spec: Any) -> Any:
    """The model to ship: ``model`` itself, or a float32 copy when it computes in 16 bits.

    A model built under a mixed policy saves that policy with its layers; the edge, the exports
    and ``/score`` expect float32 computation. Leaves the global policy at ``float32`` when it
    copies (:func:`training_policy` restores it).
    """
    import keras

    from ppe.model.yolov3 import build_model

    if model.dtype_policy.name == "float32" and keras.config.dtype_policy().name == "float32":
        return model
    keras.config.set_dtype_policy("float32")
    copy = build_model(spec)
    copy.set_weights(model.get_weights())
    logger.info("shipping a float32 copy of the %s model", model.dtype_policy.name)
    return copy
