"""YoloTrainer with model.fit: learning, metrics, NaN reporting, mixed precision."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import pytest
import tensorflow as tf

from ppe.model.spec import YoloSpec
from ppe.model.targets import encode_targets
from ppe.model.training import FreezeBackbone, YoloTrainer, backbone_layers, make_optimizer
from ppe.model.yolov3 import build_model

#: About this many seconds on 2 cores: scheduled first (testing/conftest.py).
pytestmark = pytest.mark.heavy(45)

SPEC = YoloSpec.default("yolov3_tiny", ("helmet", "head"), image_size=64)


def _dataset(batch_size: int = 4, images: int = 4, poison: bool = False) -> tf.data.Dataset:
    rng = np.random.default_rng(1)
    pixels = rng.random((images, 64, 64, 3), dtype=np.float32)
    if poison:
        pixels[0, 0, 0, 0] = np.nan
    boxes = tf.ragged.constant(
        [[[0.1, 0.1, 0.5, 0.6], [0.6, 0.5, 0.8, 0.9]][: 1 + i % 2] for i in range(images)],
        ragged_rank=1,
        inner_shape=(4,),
    )
    labels = tf.ragged.constant([[0, 1][: 1 + i % 2] for i in range(images)])
    return (
        tf.data.Dataset.from_tensor_slices((pixels, boxes, labels))
        .map(lambda image, b, c: (image, encode_targets(b, c, SPEC, max_boxes=4)))
        .batch(batch_size)
    )


@dataclass
class Trained:
    trainer: YoloTrainer
    history: dict[str, list[float]]
    kernel_before: np.ndarray
    evaluation: dict[str, float]


@pytest.fixture(scope="module")
def trained() -> Trained:
    """One graph-mode trainer fitted once (tracing train_step is the expensive part)."""
    keras.utils.set_random_seed(0)
    detector = build_model(SPEC)
    kernel_before = detector.get_layer("head_s16_output_conv").kernel.numpy().copy()
    trainer = YoloTrainer(detector, SPEC)
    trainer.compile(optimizer=make_optimizer(2e-3))
    history = trainer.fit(_dataset(), epochs=12, verbose=0, shuffle=False)
    evaluation = trainer.evaluate(_dataset(), verbose=0, return_dict=True)
    return Trained(trainer, history.history, kernel_before, evaluation)


def test_fit_reduces_the_loss_and_reports_its_parts(trained: Trained) -> None:
    losses = trained.history["loss"]
    assert set(trained.history) == {"loss", "box_loss", "obj_loss", "cls_loss"}
    assert len(losses) == 12 and all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0]
    parts = sum(trained.history[f"{part}_loss"][0] for part in ("box", "obj", "cls"))
    np.testing.assert_allclose(losses[0], parts, rtol=1e-5)


def test_evaluate_reports_the_same_metrics(trained: Trained) -> None:
    assert set(trained.evaluation) == {"loss", "box_loss", "obj_loss", "cls_loss"}
    assert np.isfinite(trained.evaluation["loss"])
    assert trained.evaluation["loss"] < trained.history["loss"][0]


def test_trainer_updates_the_wrapped_detector(trained: Trained) -> None:
    detector = trained.trainer.detector
    kernel = detector.get_layer("head_s16_output_conv").kernel.numpy()
    assert not np.array_equal(kernel, trained.kernel_before)


def test_optimizer_decays_kernels_only() -> None:
    optimizer = make_optimizer(1e-3, weight_decay=0.1)
    model = build_model(SPEC)
    decayed = {v.name for v in model.trainable_variables if optimizer._use_weight_decay(v)}
    assert decayed == {"kernel"}


def test_weight_decay_is_the_fraction_removed_per_step_at_the_peak_rate() -> None:
    """One step with a zero gradient: Adam's update is 0, so only the decay moves the weights.

    Keras AdamW computes ``w -= w * weight_decay * lr`` (https://keras.io/api/optimizers/adamw/);
    the configured value must be the per-step fraction at the peak rate, not 1,000 times less.
    """
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([0], [1e-3, 5e-4])
    optimizer = make_optimizer(schedule, weight_decay=0.01, peak_learning_rate=1e-3)
    kernel = keras.Variable(np.ones((2, 2), np.float32), name="kernel")
    bias = keras.Variable(np.ones((2,), np.float32), name="bias")
    zeros = [np.zeros((2, 2), np.float32), np.zeros((2,), np.float32)]
    optimizer.apply_gradients(zip(zeros, [kernel, bias], strict=True))
    np.testing.assert_allclose(kernel.numpy(), 0.99, rtol=1e-6)  # at the peak rate: 1%
    np.testing.assert_allclose(bias.numpy(), 1.0)  # biases are not decayed
    optimizer.apply_gradients(zip(zeros, [kernel, bias], strict=True))
    np.testing.assert_allclose(kernel.numpy(), 0.99 * 0.995, rtol=1e-6)  # half rate: half decay
    with pytest.raises(ValueError, match="peak_learning_rate is required"):
        make_optimizer(schedule)


def test_freeze_backbone_keeps_it_fixed_for_its_epochs_then_trains_it() -> None:
    keras.utils.set_random_seed(0)
    detector = build_model(SPEC)
    trainer = YoloTrainer(detector, SPEC)
    trainer.compile(optimizer=make_optimizer(2e-3))
    backbone = backbone_layers(detector)
    assert [layer.name for layer in backbone][:2] == ["backbone_conv1_conv", "backbone_conv1_bn"]

    def snapshot(prefix: str) -> list[np.ndarray]:
        return [
            np.array(w)
            for layer in detector.layers
            if layer.name.startswith(prefix)
            for w in layer.get_weights()
        ]

    snapshots: list[tuple[list[np.ndarray], list[np.ndarray]]] = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda *_: snapshots.append((snapshot("backbone_"), snapshot("head_")))
    )
    start = (snapshot("backbone_"), snapshot("head_"))
    trainer.fit(
        _dataset(),
        epochs=3,
        verbose=0,
        shuffle=False,
        callbacks=[FreezeBackbone(detector, 2), record],
    )
    (frozen_1, head_1), (frozen_2, head_2), (after, _) = snapshots
    # Epochs 1-2: kernels, batch-norm scales AND moving statistics unchanged; the head learns.
    for before, value_1, value_2 in zip(start[0], frozen_1, frozen_2, strict=True):
        np.testing.assert_array_equal(value_1, before)
        np.testing.assert_array_equal(value_2, before)
    assert not all(np.array_equal(a, b) for a, b in zip(start[1], head_1, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(head_1, head_2, strict=True))
    # Epoch 3: the backbone trains, and is left trainable.
    assert not all(np.array_equal(a, b) for a, b in zip(start[0], after, strict=True))
    assert all(layer.trainable for layer in backbone)


def test_non_finite_loss_reaches_the_caller(trained: Trained) -> None:
    history = trained.trainer.fit(
        _dataset(batch_size=2, poison=True),
        epochs=3,
        verbose=0,
        shuffle=False,
        callbacks=[keras.callbacks.TerminateOnNaN()],
    )
    assert np.isnan(history.history["loss"][0])
    assert len(history.history["loss"]) == 1  # stopped in the first epoch


@pytest.fixture
def mixed_precision():  # type: ignore[no-untyped-def]
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    yield
    keras.config.set_dtype_policy(previous)


@pytest.mark.usefixtures("mixed_precision")
def test_mixed_precision_trains_with_float32_loss() -> None:
    detector = build_model(SPEC)
    assert detector.outputs[0].dtype == "float32"  # the heads stay float32
    trainer = YoloTrainer(detector, SPEC)
    # Eager: the same train_step code, without paying for a second graph trace.
    trainer.compile(optimizer=make_optimizer(1e-3), run_eagerly=True)
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    history = trainer.fit(_dataset(), epochs=1, verbose=0, shuffle=False)
    assert all(np.isfinite(history.history["loss"]))


def test_jit_compiled_train_step() -> None:
    """XLA compiles the whole step (the GPU configuration; also runs on CPU)."""
    trainer = YoloTrainer(build_model(SPEC), SPEC)
    trainer.compile(optimizer=make_optimizer(1e-3), jit_compile=True)
    history = trainer.fit(_dataset(), epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.requires_gpu
@pytest.mark.usefixtures("mixed_precision")
def test_jit_and_mixed_precision_on_gpu() -> None:
    with tf.device("/GPU:0"):
        trainer = YoloTrainer(build_model(SPEC), SPEC)
        trainer.compile(optimizer=make_optimizer(1e-3), jit_compile=True)
        history = trainer.fit(_dataset(), epochs=3, verbose=0, shuffle=False)
    assert all(np.isfinite(history.history["loss"]))
