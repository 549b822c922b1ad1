"""train.ema_decay (EMA of the weights) and train.mixed_precision (dtype policy of training)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from ppe.config import load_config
from ppe.errors import ConfigError
from ppe.model.spec import YoloSpec
from ppe.model.targets import encode_targets
from ppe.model.training import (
    AveragedValidation,
    FreezeBackbone,
    YoloTrainer,
    evaluation_weights,
    make_optimizer,
)
from ppe.model.yolov3 import build_model
from ppe.train.best import BestEpoch
from ppe.train.precision import (
    BF16_CPU_FLAGS,
    cpu_flags,
    float32_model,
    resolve_policy,
    training_policy,
)

SPEC = YoloSpec.default("yolov3_tiny", ("helmet", "head"), image_size=64)


def _dataset(images: int = 4) -> tf.data.Dataset:
    pixels = np.random.default_rng(0).random((images, 64, 64, 3), dtype=np.float32)
    boxes = tf.ragged.constant([[[0.1, 0.1, 0.5, 0.6]]] * images, ragged_rank=1, inner_shape=(4,))
    labels = tf.ragged.constant([[0]] * images)
    return (
        tf.data.Dataset.from_tensor_slices((pixels, boxes, labels))
        .map(lambda image, b, c: (image, encode_targets(b, c, SPEC, max_boxes=4)))
        .batch(2)
    )


def _weights(variables: list[keras.Variable]) -> list[np.ndarray]:
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_the_average_ramps_its_decay_over_the_first_steps() -> None:
    """avg_n = d_n avg_{n-1} + (1 - d_n) w_n with d_0 = 0 and d_n = min(decay, (1+n)/(10+n))."""
    variable = keras.Variable(np.ones((3,), np.float32), name="kernel")
    optimizer = make_optimizer(0.1, weight_decay=0.0, ema_decay=0.2)
    optimizer.build([variable])
    expected = np.zeros(3)
    for step in range(4):
        optimizer.apply_gradients([(tf.constant([1.0, -2.0, 0.5]), variable)])
        decay = 0.0 if step == 0 else min(0.2, (1 + step) / (10 + step))
        expected = decay * expected + (1 - decay) * variable.numpy()
        [average] = optimizer._model_variables_moving_average
        np.testing.assert_allclose(average.numpy(), expected, rtol=1e-6)
    # Step 1 used 2/11 (< 0.2), step 3 the configured 0.2: the ramp and its cap both acted.
    assert not np.allclose(average.numpy(), variable.numpy())


def test_bad_ema_decay_is_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match=r"train.ema_decay must be in \[0, 1\)"):
        make_optimizer(1e-3, ema_decay=1.0)
    with pytest.raises(ConfigError, match=r"train.ema_decay: Input should be less than 1"):
        load_config("smoke", ["train.ema_decay=1.5"])
    with pytest.raises(ConfigError, match=r"train.ema_decay: Input should be greater than"):
        load_config("smoke", ["train.ema_decay=-0.1"])
    assert load_config("smoke", ["train.ema_decay=0.999"]).train.ema_decay == 0.999


def test_validation_and_the_shipped_model_use_the_averaged_weights(tmp_path: Path) -> None:
    """EMA on, backbone frozen for the only epoch: scoring, validation and the result use EMA.

    The scorer records the weights it is shown (the test is about which weights are scored and
    shipped; ``ppe train`` scores with the real VOC mAP).
    """
    keras.utils.set_random_seed(0)
    detector = build_model(SPEC)
    trainer = YoloTrainer(detector, SPEC)
    optimizer = make_optimizer(5e-3, ema_decay=0.9)
    # Eager: the same train_step and optimizer code without a graph trace (minutes on 2 cores).
    trainer.compile(optimizer=optimizer, run_eagerly=True)
    scored: list[list[np.ndarray]] = []
    validated: list[list[np.ndarray]] = []
    raw: list[list[np.ndarray]] = []

    def averaged() -> list[keras.Variable]:
        # Every variable the optimizer averages (the frozen backbone's too).
        return list(optimizer._trainable_variables)

    def scorer(model: keras.Model) -> float:
        scored.append(_weights(averaged()))
        return float(len(scored))

    head = detector.get_layer("head_s16_output_conv")
    probe = keras.callbacks.LambdaCallback(
        on_test_batch_begin=lambda *_, **__: validated.append(_weights(head.weights)),
        on_epoch_end=lambda *_, **__: raw.append(_weights(averaged())),
    )
    callbacks = [
        FreezeBackbone(detector, 2),
        AveragedValidation(),
        BestEpoch(detector, scorer, tmp_path),
        probe,
    ]
    trainer.fit(
        _dataset(), validation_data=_dataset(), epochs=2, verbose=0, shuffle=False,
        callbacks=callbacks,
    )  # fmt: skip
    averages = [v.numpy() for v in optimizer._model_variables_moving_average]
    by_path = dict(zip((v.path for v in averaged()), averages, strict=True))
    # The best epoch's scored weights are the averages, not the raw weights of that epoch.
    assert not _same(scored[-1], raw[-1])
    assert _same(scored[-1], averages)
    # fit's validation pass saw the averaged head, and training went on from the raw weights.
    assert _same(validated[-1], [by_path[v.path] for v in head.weights])
    raw_by_path = dict(zip((v.path for v in averaged()), raw[-1], strict=True))
    assert not _same(validated[-1], [raw_by_path[v.path] for v in head.weights])
    # Shipped: the best (last) epoch's averages, frozen backbone included (finalize must cope
    # with fewer trainable weights than the optimizer averages).
    assert _same(_weights(averaged()), scored[-1])


def test_the_raw_weights_come_back_after_an_averaged_block() -> None:
    keras.utils.set_random_seed(0)
    detector = build_model(SPEC)
    trainer = YoloTrainer(detector, SPEC)
    trainer.compile(optimizer=make_optimizer(5e-3, ema_decay=0.5), run_eagerly=True)
    trainer.fit(_dataset(), epochs=1, verbose=0, shuffle=False)
    optimizer = trainer.optimizer
    optimizer._trainable_variables[0].assign_add(tf.ones_like(optimizer._trainable_variables[0]))
    before = _weights(optimizer._trainable_variables)
    with evaluation_weights(optimizer):
        inside = _weights(optimizer._trainable_variables)
    assert not _same(inside, before)
    assert _same(inside, [v.numpy() for v in optimizer._model_variables_moving_average])
    assert _same(_weights(optimizer._trainable_variables), before)


@pytest.fixture
def policy() -> Iterator[None]:
    previous = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(previous)


@pytest.mark.usefixtures("policy")
def test_a_bfloat16_step_trains_with_float32_heads_and_ships_float32() -> None:
    keras.config.set_dtype_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    detector = build_model(SPEC)
    hidden = detector.get_layer("backbone_conv1_conv")
    assert hidden.compute_dtype == "bfloat16" and hidden.kernel.dtype == "float32"
    assert all(output.dtype == "float32" for output in detector.outputs)
    trainer = YoloTrainer(detector, SPEC)
    trainer.compile(optimizer=make_optimizer(1e-3), run_eagerly=True)
    before = _weights(detector.trainable_weights)
    history = trainer.fit(_dataset(2), epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])
    assert not _same(before, _weights(detector.trainable_weights))
    shipped = float32_model(detector, SPEC)
    assert {layer.dtype_policy.name for layer in shipped.layers} == {"float32"}
    assert _same(shipped.get_weights(), detector.get_weights())


def test_auto_policy_follows_the_hardware(caplog: pytest.LogCaptureFixture) -> None:
    # Both kinds of CPU, whatever this machine is (CI machines differ: some have avx512_bf16).
    with caplog.at_level(logging.INFO, logger="ppe.train.precision"):
        assert resolve_policy("auto", gpus=0, flags={"avx2", "fma"}) == "float32"
        assert "train.mixed_precision=auto: float32 (no GPU and no CPU flag" in caplog.text
        caplog.clear()
        assert resolve_policy("auto", gpus=0, flags={"avx2", "amx_bf16"}) == "mixed_bfloat16"
        assert "mixed_bfloat16 (CPU flags amx_bf16)" in caplog.text
    # This machine's own flags, read from /proc/cpuinfo, pick the policy its flags call for.
    here = cpu_flags()
    expected = "mixed_bfloat16" if here & set(BF16_CPU_FLAGS) else "float32"
    found = sorted(here & set(BF16_CPU_FLAGS))
    assert resolve_policy("auto", gpus=0, flags=here) == expected, found
    assert resolve_policy("auto", gpus=1, flags=set()) == "mixed_float16"
    assert resolve_policy("bfloat16", gpus=0, flags=set()) == "mixed_bfloat16"
    assert resolve_policy("float16", gpus=0, flags=set()) == "mixed_float16"
    assert resolve_policy("none", gpus=1, flags=set(BF16_CPU_FLAGS)) == "float32"


@pytest.mark.usefixtures("policy")
def test_the_policy_holds_for_the_block_and_is_restored() -> None:
    keras.config.set_dtype_policy("float32")
    with training_policy("bfloat16") as chosen:
        assert chosen == keras.config.dtype_policy().name == "mixed_bfloat16"
        assert build_model(SPEC).get_layer("backbone_conv1_conv").compute_dtype == "bfloat16"
    assert keras.config.dtype_policy().name == "float32"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx512_bf16 amx_tile\n\n")
    assert cpu_flags(cpuinfo) == {"fpu", "sse", "avx512_bf16", "amx_tile"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_bad_precision_values_are_refused_naming_the_key() -> None:
    with pytest.raises(
        ConfigError,
        match=r"train.mixed_precision: Input should be 'none', 'float16', 'bfloat16' or 'auto'",
    ):
        load_config("smoke", ["train.mixed_precision=true"])
    with pytest.raises(ValueError, match=r"train.mixed_precision: 'fp8' is not one of"):
        resolve_policy("fp8", gpus=0, flags=set())
