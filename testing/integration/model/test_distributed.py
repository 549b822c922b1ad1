"""YoloTrainer under tf.distribute.MirroredStrategy on two logical CPU devices.

Logical devices must be configured before TensorFlow initialises, so this runs in a fresh
interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    import keras
    from ppe.model.spec import YoloSpec
    from ppe.model.targets import encode_targets
    from ppe.model.training import YoloTrainer, make_optimizer
    from ppe.model.yolov3 import build_model

    spec = YoloSpec.default("yolov3_tiny", ("helmet", "head"), image_size=64)
    rng = np.random.default_rng(0)
    pixels = rng.random((4, 64, 64, 3), dtype=np.float32)
    boxes = tf.ragged.constant(
        [[[0.1, 0.1, 0.5, 0.6]], [[0.5, 0.5, 0.9, 0.9], [0.1, 0.6, 0.3, 0.9]],
         [[0.2, 0.2, 0.4, 0.3]], [[0.0, 0.0, 1.0, 1.0]]],
        ragged_rank=1, inner_shape=(4,),
    )
    labels = tf.ragged.constant([[0], [1, 0], [1], [0]])
    data = (
        tf.data.Dataset.from_tensor_slices((pixels, boxes, labels))
        .map(lambda image, b, c: (image, encode_targets(b, c, spec, max_boxes=4)))
        .batch(4)
    )
    keras.utils.set_random_seed(0)
    weights = build_model(spec).get_weights()

    single = YoloTrainer(build_model(spec), spec)
    single.detector.set_weights(weights)
    single.compile(optimizer=make_optimizer(1e-3))
    reference = single.evaluate(data, verbose=0, return_dict=True)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = YoloTrainer(build_model(spec), spec)
        mirrored.detector.set_weights(weights)
        mirrored.compile(optimizer=make_optimizer(1e-3))
    distributed = mirrored.evaluate(data, verbose=0, return_dict=True)

    # The objective each replica minimises: its share of the global-batch mean.
    images, targets = next(iter(data))
    per_image = single._loss_parts((images, targets), training=False)["total"].numpy()
    dist_data = strategy.experimental_distribute_dataset(data)
    replica_objectives = strategy.run(
        lambda batch: mirrored._objective(mirrored._loss_parts(batch, training=False)),
        args=(next(iter(dist_data)),),
    )
    objective = float(strategy.reduce("SUM", replica_objectives, axis=None))
    history = mirrored.fit(data, epochs=2, verbose=0, shuffle=False)
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "reference": reference,
        "distributed": distributed,
        "objective": objective,
        "mean_per_image": float(per_image.mean()),
        "fit_loss": history.history["loss"],
    }))
    """
)


def test_mirrored_strategy_matches_single_device() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=400, check=False
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    for name, value in result["reference"].items():
        assert abs(result["distributed"][name] - value) <= 1e-4 * max(1.0, abs(value)), name
    # Summed over replicas, the per-replica objectives equal the mean over the global batch.
    assert abs(result["objective"] - result["mean_per_image"]) <= 1e-4 * result["mean_per_image"]
    assert len(result["fit_loss"]) == 2
    assert all(v == v and abs(v) != float("inf") for v in result["fit_loss"])
