"""The EMA of the weights under a ``tf.distribute`` mirrored strategy (two replicas on the CPU).

Multi-worker training (``MultiWorkerMirroredStrategy``, what Azure ML's TensorFlow distribution
runs) keeps the same mirrored variables as ``MirroredStrategy``: the average is updated in the
replica context of every step and swapped in and out in the cross-replica context of the epoch
callbacks. Two logical CPU devices give two real replicas in one process; logical devices must
be set before TensorFlow starts, hence the subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json, sys
from pathlib import Path
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
import keras
import numpy as np

from ppe.model.spec import YoloSpec
from ppe.model.targets import encode_targets
from ppe.model.training import AveragedValidation, YoloTrainer, make_optimizer
from ppe.model.yolov3 import build_model
from ppe.train.best import BestEpoch

spec = YoloSpec.default("yolov3_tiny", ("helmet", "head"), image_size=64)
pixels = np.random.default_rng(0).random((4, 64, 64, 3), dtype=np.float32)
boxes = tf.ragged.constant([[[0.1, 0.1, 0.5, 0.6]]] * 4, ragged_rank=1, inner_shape=(4,))
labels = tf.ragged.constant([[0]] * 4)
data = (
    tf.data.Dataset.from_tensor_slices((pixels, boxes, labels))
    .map(lambda image, b, c: (image, encode_targets(b, c, spec, max_boxes=4)))
    .batch(4)
)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
keras.utils.set_random_seed(0)
with strategy.scope():
    detector = build_model(spec)
    trainer = YoloTrainer(detector, spec)
    optimizer = make_optimizer(5e-3, ema_decay=0.9)
    trainer.compile(optimizer=optimizer)
    trainer(tf.zeros((1, 64, 64, 3)))
    optimizer.build(trainer.trainable_variables)

def values(variables):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]

scored, raw = [], []
def scorer(model):
    scored.append(values(optimizer._trainable_variables))
    return float(len(scored))

record = keras.callbacks.LambdaCallback(
    on_epoch_end=lambda *_, **__: raw.append(values(optimizer._trainable_variables))
)
best = BestEpoch(detector, scorer, Path(sys.argv[1]))
history = trainer.fit(
    data, validation_data=data, epochs=2, verbose=0,
    callbacks=[AveragedValidation(), best, record],
)
same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
averages = values(optimizer._model_variables_moving_average)
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "finite": bool(np.all(np.isfinite(history.history["loss"] + history.history["val_loss"]))),
    "scored_is_average": same(scored[-1], averages),
    "scored_is_raw": same(scored[-1], raw[-1]),
    "shipped_is_average": same(values(optimizer._trainable_variables), averages),
}))
"""


def test_the_average_is_kept_scored_and_shipped_with_two_replicas(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result == {
        "replicas": 2,
        "finite": True,
        "scored_is_average": True,
        "scored_is_raw": False,
        "shipped_is_average": True,
    }
