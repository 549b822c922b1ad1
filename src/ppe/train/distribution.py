"""The ``tf.distribute`` strategy of a training process, from its environment.

Azure ML's TensorFlow distribution sets ``TF_CONFIG`` on every node
(https://learn.microsoft.com/azure/machine-learning/how-to-train-tensorflow#distributed-training);
``ppe aml run-local`` sets the same on loopback ports. Standard library at import time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)


def select_strategy(environ: Mapping[str, str]) -> Any:
    """Pick the ``tf.distribute`` strategy for this process.

    Args:
        environ: the process environment (``TF_CONFIG`` decides multi-worker training).

    Returns:
        ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names more than one worker,
        ``MirroredStrategy`` with several local GPUs, else the default strategy.
    """
    import tensorflow as tf

    tf_config = environ.get("TF_CONFIG")
    if tf_config:
        cluster = json.loads(tf_config).get("cluster", {})
        if len(cluster.get("worker", [])) > 1:
            logger.info(
                "TF_CONFIG names %d workers: MultiWorkerMirroredStrategy", len(cluster["worker"])
            )
            return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        logger.info("%d GPUs: MirroredStrategy", len(gpus))
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def worker_role(environ: Mapping[str, str]) -> tuple[bool, int]:
    """``(is_chief, worker index)`` from ``TF_CONFIG``; a single process is the chief.

    In multi-worker training every worker runs this script; only the chief (task ``chief``, or
    worker 0 when there is none) writes the model folder, the summary and MLflow records. The
    others keep their checkpoints in a private folder so they never overwrite the chief's.
    """
    tf_config = environ.get("TF_CONFIG")
    if not tf_config:
        return True, 0
    document = json.loads(tf_config)
    task = document.get("task", {})
    task_type, index = task.get("type", "worker"), int(task.get("index", 0))
    has_chief = bool(document.get("cluster", {}).get("chief"))
    return (task_type == "chief" or (task_type == "worker" and index == 0 and not has_chief)), index
