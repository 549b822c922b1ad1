"""``model.fit``-ready YOLOv3 training wrapper.

:class:`YoloTrainer` wraps the inference model from :func:`ppe.model.yolov3.build_model` and
consumes batches ``(images, targets)``:

* ``images``: float32 ``(B, S, S, 3)`` RGB in [0, 1], letterboxed to ``S = spec.image_size``;
* ``targets``: the :func:`ppe.model.targets.encode_targets` dictionary after ``batch()``:
  ``{"stride_32": (B, g, g, A, 6), ..., "boxes": (B, max_boxes, 4)}``.

Weight decay is decoupled (AdamW, see :func:`make_optimizer`), not a ``kernel_regularizer``:
with Adam an L2 term in the loss is rescaled per weight by the adaptive step and decays far less
than intended, and keeping it out of the model leaves the saved inference model free of
training-only settings. Batch-norm parameters and biases are not decayed. If the wrapped model
does carry regularisation losses they are still added (scaled for the replicas).

Under ``tf.distribute`` each replica sums its per-image losses and divides by the GLOBAL batch
size (``tf.nn.compute_average_loss``), so gradients summed over replicas equal the gradient of
the global-batch mean. The reported metrics (``loss``, ``box_loss``, ``obj_loss``,
``cls_loss``) are per-image means over all replicas. Model outputs are cast to float32 before
the loss (mixed precision), and the optimizer's loss scaling is applied when Keras wraps it in a
``LossScaleOptimizer``. A non-finite loss is reported as is (for ``TerminateOnNaN``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import keras
import tensorflow as tf

from ppe.model.loss import DEFAULT_IGNORE_THRESHOLD, yolo_loss
from ppe.model.spec import YoloSpec

logger = logging.getLogger(__name__)

#: Variables matching these names are excluded from weight decay.
NO_DECAY_NAMES: tuple[str, ...] = ("gamma", "beta", "bias")
_PARTS: tuple[tuple[str, str], ...] = (
    ("total", "loss"),
    ("box", "box_loss"),
    ("obj", "obj_loss"),
    ("cls", "cls_loss"),
)


class AveragingAdamW(keras.optimizers.AdamW):  # type: ignore[misc]
    """AdamW keeping an exponential moving average (EMA) of the weights with a ramped decay.

    Keras's ``use_ema`` averages with a constant ``ema_momentum`` from the first step, so with a
    decay of 0.999 the average still holds 86% of the initial weights after 150 steps. Here the
    decay of step ``n`` is ``min(ema_momentum, (1 + n) / (10 + n))``, the ``num_updates`` form of
    ``tf.train.ExponentialMovingAverage``
    (https://www.tensorflow.org/api_docs/python/tf/train/ExponentialMovingAverage): short runs
    average over their recent steps, long runs reach the configured decay. The averages are
    optimizer variables, so ``BackupAndRestore`` checkpoints and restores them.
    """

    def _update_model_variables_moving_average(self, trainable_variables: list[Any]) -> None:
        step = keras.ops.cast(self.iterations, "float32")
        ramp = keras.ops.minimum(self.ema_momentum, (1.0 + step) / (10.0 + step))
        # The first step copies the weights (the averages start at zero).
        decay = keras.ops.where(keras.ops.equal(self.iterations, 0), 0.0, ramp)
        for variable, average in zip(
            trainable_variables, self._model_variables_moving_average, strict=True
        ):
            if average is not None:
                momentum = keras.ops.cast(decay, variable.dtype)
                average.assign(momentum * average + (1.0 - momentum) * variable)

    def finalize_variable_values(self, var_list: list[Any]) -> None:
        """Write the averages into every variable the optimizer averages.

        ``fit`` passes the model's trainable weights, which are fewer than the optimizer's while
        a backbone is frozen (:class:`FreezeBackbone`); the optimizer's own list always matches.
        """
        super().finalize_variable_values(self._trainable_variables)

    @contextlib.contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """Within the block the model's variables hold the averages; the raw weights after."""
        if not self.built:
            yield
            return
        variables = self._trainable_variables
        raw = [keras.ops.convert_to_numpy(variable) for variable in variables]
        self._overwrite_model_variables_with_average_value(variables)
        try:
            yield
        finally:
            for variable, value in zip(variables, raw, strict=True):
                variable.assign(value)


@contextlib.contextmanager
def evaluation_weights(optimizer: Any) -> Iterator[None]:
    """The weights to validate and ship: the optimizer's averages when it keeps them (EMA)."""
    if isinstance(optimizer, AveragingAdamW):
        with optimizer.averaged_weights():
            yield
    else:
        yield


def make_optimizer(
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3,
    weight_decay: float = 5e-4,
    peak_learning_rate: float | None = None,
    ema_decay: float = 0.0,
    **kwargs: Any,
) -> keras.optimizers.AdamW:
    """AdamW with decoupled weight decay on convolution kernels only.

    ``weight_decay`` is the fraction of every decayed weight removed by one optimizer step at the
    peak learning rate; the decay follows the learning-rate schedule (half the rate, half the
    decay), which is the schedule multiplier of Loshchilov & Hutter's AdamW
    (https://arxiv.org/abs/1711.05101, Algorithm 2). Keras's ``AdamW`` multiplies its
    ``weight_decay`` by the learning rate itself (``w -= w * weight_decay * lr``,
    https://keras.io/api/optimizers/adamw/), so it is given ``weight_decay / peak``: passing the
    configured value straight through would decay 1,000 times less at a 1e-3 learning rate.

    Args:
        learning_rate: a float or a Keras schedule.
        weight_decay: fraction of each kernel removed per step at the peak learning rate.
        peak_learning_rate: the schedule's largest value; needed when ``learning_rate`` is a
            schedule, and defaults to ``learning_rate`` when that is a float.
        ema_decay: decay of the exponential moving average of the weights (0: none); when on,
            the end of ``fit`` leaves the averages in the model and :func:`evaluation_weights`
            swaps them in for validation.
        **kwargs: passed to ``keras.optimizers.AdamW`` (e.g. ``clipnorm``).

    Returns:
        The optimizer; batch-norm ``gamma``/``beta`` and biases are excluded from the decay.

    Raises:
        ValueError: a schedule without ``peak_learning_rate``, a non-positive peak, or an
            ``ema_decay`` outside [0, 1).
    """
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"train.ema_decay must be in [0, 1) (0: off), got {ema_decay}")
    if peak_learning_rate is None:
        if not isinstance(learning_rate, int | float):
            raise ValueError("peak_learning_rate is required when learning_rate is a schedule")
        peak_learning_rate = float(learning_rate)
    if peak_learning_rate <= 0:
        raise ValueError(f"peak_learning_rate must be > 0, got {peak_learning_rate}")
    if ema_decay:
        kwargs = {**kwargs, "use_ema": True, "ema_momentum": ema_decay}
    optimizer = (AveragingAdamW if ema_decay else keras.optimizers.AdamW)(
        learning_rate=learning_rate, weight_decay=weight_decay / peak_learning_rate, **kwargs
    )
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY_NAMES))
    return optimizer


#: Layer-name prefix of the backbone (see :mod:`ppe.model.yolov3`); the neck and heads follow it.
BACKBONE_PREFIX = "backbone_"


def backbone_layers(detector: keras.Model) -> list[keras.layers.Layer]:
    """The detector's backbone layers that hold weights (convolutions and batch norms)."""
    return [
        layer
        for layer in detector.layers
        if layer.name.startswith(BACKBONE_PREFIX) and layer.weights
    ]


class FreezeBackbone(keras.callbacks.Callback):  # type: ignore[misc]
    """Keep the backbone frozen for the first ``epochs`` epochs of ``fit``, then train it.

    Frozen means not trainable: no gradient, no weight decay, and batch norm in inference mode
    (its moving statistics stay those of the pretrained weights). At each change the training
    function is rebuilt, as Keras requires when ``trainable`` changes during ``fit``
    (https://keras.io/api/layers/base_layer/#trainable-property). The epoch index comes from
    ``fit``, so a run resumed by ``BackupAndRestore`` freezes exactly the epochs it should.

    Args:
        detector: the inference model that the trainer wraps.
        epochs: number of leading epochs with a frozen backbone (0: never frozen).
    """

    def __init__(self, detector: keras.Model, epochs: int) -> None:
        super().__init__()
        self.detector = detector
        self.epochs = int(epochs)
        self.layers = backbone_layers(detector)
        if epochs and not self.layers:
            raise ValueError(f"{detector.name} has no layer named {BACKBONE_PREFIX}*")

    def _set(self, trainable: bool) -> bool:
        changed = any(layer.trainable != trainable for layer in self.layers)
        for layer in self.layers:
            layer.trainable = trainable
        return changed

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Freeze before the first step (the epoch callbacks then keep the state right)."""
        optimizer = self.model.optimizer
        if self.epochs and optimizer is not None and not optimizer.built:
            # Slots for every variable, frozen ones included, so that unfreezing finds them.
            optimizer.build(self.model.trainable_variables)
        if self.epochs and self._set(False):
            self.model.make_train_function(force=True)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Freeze or unfreeze for ``epoch`` (0-based) and rebuild the step if that changed."""
        if self._set(epoch >= self.epochs):
            logger.info(
                "epoch %d: backbone %s",
                epoch + 1,
                "trainable" if epoch >= self.epochs else "frozen",
            )
            self.model.make_train_function(force=True)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Leave the backbone trainable (the saved model carries no training-only state)."""
        self._set(True)


class AveragedValidation(keras.callbacks.Callback):  # type: ignore[misc]
    """Run ``fit``'s validation passes on the EMA weights (see :func:`evaluation_weights`)."""

    def __init__(self) -> None:
        super().__init__()
        self._stack = contextlib.ExitStack()

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Swap the averages in."""
        self._stack.enter_context(evaluation_weights(self.model.optimizer))

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        """Put the raw weights back for the next training step."""
        self._stack.close()


class YoloTrainer(keras.Model):  # type: ignore[misc]
    """Trains an inference model with the YOLOv3 loss through ``compile``/``fit``/``evaluate``.

    Create and compile it inside ``strategy.scope()`` when distributing. Only the wrapped
    ``detector`` is meant to be saved (:func:`ppe.model.bundle.save_model_dir`); the trainer
    itself is a training harness.

    Args:
        detector: model from :func:`ppe.model.yolov3.build_model` for ``spec``.
        spec: its spec.
        ignore_threshold: see :func:`ppe.model.loss.scale_loss`.
        **kwargs: passed to ``keras.Model``.
    """

    def __init__(
        self,
        detector: keras.Model,
        spec: YoloSpec,
        ignore_threshold: float = DEFAULT_IGNORE_THRESHOLD,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.detector = detector
        self.spec = spec
        self.ignore_threshold = float(ignore_threshold)
        self._trackers = {part: keras.metrics.Mean(name=name) for part, name in _PARTS}

    def call(self, inputs: tf.Tensor, training: bool = False) -> list[tf.Tensor]:
        """Raw head outputs of the wrapped detector (see ``build_model``)."""
        outputs: list[tf.Tensor] = self.detector(inputs, training=training)
        return outputs

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        """The loss trackers, reset by Keras at the start of every epoch."""
        return list(self._trackers.values())

    def _loss_parts(self, data: Any, training: bool) -> dict[str, tf.Tensor]:
        images, targets, _ = keras.utils.unpack_x_y_sample_weight(data)
        if targets is None:
            raise ValueError("YoloTrainer batches must be (images, targets) pairs")
        outputs = self(images, training=training)
        return yolo_loss(outputs, targets, self.spec, self.ignore_threshold)

    def _objective(self, parts: dict[str, tf.Tensor]) -> tf.Tensor:
        # Sum over this replica's images divided by the global batch size.
        loss = tf.nn.compute_average_loss(parts["total"])
        if self.detector.losses:
            loss += tf.nn.scale_regularization_loss(tf.add_n(self.detector.losses))
        return loss

    def _multi_worker(self) -> bool:
        return isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy)

    def _update_metrics(self, parts: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        for part, tracker in self._trackers.items():
            tracker.update_state(parts[part])
        results = {tracker.name: tracker.result() for tracker in self._trackers.values()}
        if self._multi_worker():
            # Keras 3 reduces each replica's logs across workers with a MEAN over axis 0, which
            # a scalar does not have (keras-team/keras#20585): hand it a length-1 vector.
            return {name: tf.reshape(value, (1,)) for name, value in results.items()}
        return results

    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
        """Skip Keras's symbolic build under multi-worker training when everything is built.

        Keras 3 first reduces a per-replica input batch eagerly, which fails under
        ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585); :func:`ppe.train.train` builds
        the model and the optimizer before ``fit``, so there is nothing left to build.
        """
        built = all(layer.built for layer in self._flatten_layers()) and (
            self.optimizer is None or self.optimizer.built
        )
        if self._multi_worker() and built:
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        """One optimisation step on a batch ``(images, targets)``; returns the metric values."""
        with tf.GradientTape() as tape:
            parts = self._loss_parts(data, training=True)
            loss = self._objective(parts)
            scaled_loss = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return self._update_metrics(parts)

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        """Loss parts on a validation batch ``(images, targets)`` (inference-mode batch norm)."""
        return self._update_metrics(self._loss_parts(data, training=False))
