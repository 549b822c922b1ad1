"""BestEpoch: the epoch with the best validation score is the one shipped, not the last."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ppe.model.spec import YoloSpec
from ppe.model.targets import encode_targets
from ppe.model.training import YoloTrainer, make_optimizer
from ppe.model.yolov3 import build_model
from ppe.train.best import BEST_RECORD, BEST_WEIGHTS, BestEpoch

SPEC = YoloSpec.default("yolov3_tiny", ("helmet", "head"), image_size=64)


def _dataset() -> tf.data.Dataset:
    pixels = np.random.default_rng(0).random((4, 64, 64, 3), dtype=np.float32)
    boxes = tf.ragged.constant([[[0.1, 0.1, 0.5, 0.6]]] * 4, ragged_rank=1, inner_shape=(4,))
    labels = tf.ragged.constant([[0]] * 4)
    return (
        tf.data.Dataset.from_tensor_slices((pixels, boxes, labels))
        .map(lambda image, b, c: (image, encode_targets(b, c, SPEC, max_boxes=4)))
        .batch(2)
    )


def test_the_best_scored_epoch_is_restored_at_the_end(tmp_path: Path) -> None:
    """The scorer here is scripted (0.1, 0.5, 0.2): the test is about which weights ship.

    ``ppe train`` scores with the real VOC mAP@0.5 (``map50_scorer``, covered by the training
    integration test).
    """
    keras.utils.set_random_seed(0)
    detector = build_model(SPEC)
    trainer = YoloTrainer(detector, SPEC)
    # Eager: the callback's choice does not depend on the step being a graph, and tracing the
    # train step was most of this test's time (graph-mode ppe train is the integration test's).
    trainer.compile(optimizer=make_optimizer(2e-3), run_eagerly=True)
    scores = iter([0.1, 0.5, 0.2])
    (tmp_path / BEST_RECORD).parent.mkdir(parents=True)
    (tmp_path / BEST_RECORD).write_text(json.dumps({"epoch": 9, "score": 0.99}))  # stale
    best = BestEpoch(detector, lambda _: next(scores), tmp_path)
    per_epoch: list[list[np.ndarray]] = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda *_: per_epoch.append([np.array(w) for w in detector.get_weights()])
    )
    history = trainer.fit(_dataset(), epochs=3, verbose=0, shuffle=False, callbacks=[best, record])
    assert history.history["val_map50"] == [0.1, 0.5, 0.2]
    assert (best.best_epoch, best.best_score) == (2, 0.5)
    assert not all(np.array_equal(a, b) for a, b in zip(per_epoch[1], per_epoch[2], strict=True))
    for shipped, epoch_2 in zip(detector.get_weights(), per_epoch[1], strict=True):
        np.testing.assert_array_equal(shipped, epoch_2)
    assert json.loads((tmp_path / BEST_RECORD).read_text()) == {"epoch": 2, "score": 0.5}
    assert (tmp_path / BEST_WEIGHTS).is_file()
    # A resumed run keeps its best so far: a worse epoch does not replace it.
    resumed = BestEpoch(detector, lambda _: 0.3, tmp_path, resume=True)
    resumed.on_train_begin()
    resumed.on_epoch_end(3, {})
    assert (resumed.best_epoch, resumed.best_score) == (2, 0.5)
