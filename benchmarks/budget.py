"""Train a detector for a fixed wall-clock budget with the project's own training pieces.

The same path as ``ppe train`` (``ppe.data.tfdata.build_dataset`` with augmentation,
``ppe.model.training.YoloTrainer``, AdamW from ``make_optimizer``) and the same recipe (a profile's
``train`` section: batch, peak rate, warm-up epochs, weight decay, EMA, frozen-backbone epochs,
augmentation), with two differences that a
time budget needs: a Keras callback stops training when the budget is spent (checked after every
step, tracing and compilation included), and the learning rate follows the budget instead of an
epoch count: a linear warm-up over the first steps, then a cosine decay to 1% of the peak over the
remaining wall-clock time.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ppe.config import TrainConfig

logger = logging.getLogger("benchmarks.budget")


@dataclass
class BudgetRun:
    """What a budgeted training did.

    Attributes:
        budget_s: the wall-clock budget.
        wall_s: seconds from the start of ``fit`` to the stop (tracing included).
        cpu_s: process CPU seconds over the same span (all threads).
        steps: optimisation steps taken.
        images: training images seen (``steps * batch_size``).
        epochs: ``images / train images``.
        images_per_second: ``images / wall_s``.
        batch_size: batch size.
        peak_learning_rate: learning rate after warm-up.
        warmup_steps: steps of linear warm-up (the recipe's warm-up epochs).
        final_loss: mean loss of the last (possibly partial) epoch.
        losses: mean loss of each epoch.
    """

    budget_s: float
    wall_s: float = 0.0
    cpu_s: float = 0.0
    steps: int = 0
    images: int = 0
    epochs: float = 0.0
    images_per_second: float = 0.0
    batch_size: int = 0
    peak_learning_rate: float = 0.0
    final_loss: float | None = None
    losses: list[float] = field(default_factory=list)
    warmup_steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible summary."""
        return {
            "budget_s": round(self.budget_s, 1),
            "wall_s": round(self.wall_s, 1),
            "cpu_s": round(self.cpu_s, 1),
            "steps": self.steps,
            "images": self.images,
            "epochs": round(self.epochs, 2),
            "images_per_second": round(self.images_per_second, 2),
            "batch_size": self.batch_size,
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
            "final_loss": None if self.final_loss is None else round(self.final_loss, 4),
            "epoch_losses": [round(value, 4) for value in self.losses],
        }


def budget_learning_rate(
    step: int, elapsed_s: float, budget_s: float, peak: float, warmup_steps: int
) -> float:
    """Learning rate for a time-budgeted run.

    Args:
        step: optimisation steps done so far.
        elapsed_s: wall-clock seconds since training started.
        budget_s: the whole budget.
        peak: learning rate at the end of the warm-up.
        warmup_steps: steps of linear warm-up from 1% of ``peak``.

    Returns:
        The warm-up value while ``step < warmup_steps``, then a cosine decay from ``peak`` to
        ``0.01 * peak`` as ``elapsed_s`` goes to ``budget_s``.
    """
    floor = 0.01 * peak
    if step < warmup_steps:
        return floor + (peak - floor) * step / max(1, warmup_steps)
    fraction = min(1.0, max(0.0, elapsed_s / max(budget_s, 1e-9)))
    return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * fraction))


def fit_for_budget(
    model: Any,
    spec: Any,
    samples: Sequence[Any],
    *,
    budget_s: float,
    recipe: TrainConfig,
    seed: int = 0,
    callbacks: Sequence[Any] = (),
    warmup_steps: int | None = None,
) -> BudgetRun:
    """Train ``model`` (in place) on ``samples`` until ``budget_s`` wall-clock seconds are spent.

    Args:
        model: inference model from :func:`ppe.model.yolov3.build_model` (possibly pretrained).
        spec: its :class:`ppe.model.spec.YoloSpec`.
        samples: training samples from :func:`ppe.data.voc.load_split` (boxes normalised
            ``[xmin, ymin, xmax, ymax]`` in [0, 1]).
        budget_s: wall-clock budget in seconds.
        recipe: the ``train`` section of a profile: batch size, peak learning rate, warm-up
            epochs, weight decay, EMA, frozen-backbone epochs, augmentation, loss and pipeline
            settings (the epoch count and the seed are the budget's).
        seed: seed of shuffling and augmentation.
        callbacks: more Keras callbacks for ``fit`` (after the budget's own).
        warmup_steps: steps of linear warm-up; default: the recipe's warm-up epochs.

    Returns:
        The :class:`BudgetRun` summary.

    Raises:
        RuntimeError: the loss became non-finite.
    """
    import keras

    from ppe.data.tfdata import PipelineSpec, build_dataset, steps_for
    from ppe.model.training import FreezeBackbone, YoloTrainer, make_optimizer

    batch_size, peak_learning_rate = recipe.batch_size, recipe.learning_rate
    pipeline = PipelineSpec.from_train(recipe, training=True, seed=seed)
    dataset = build_dataset(samples, spec, pipeline)
    steps_per_epoch = steps_for(len(samples), batch_size)
    if warmup_steps is None:
        warmup_steps = recipe.warmup_epochs * steps_per_epoch
    trainer = YoloTrainer(model, spec, ignore_threshold=recipe.ignore_threshold)
    optimizer = make_optimizer(
        peak_learning_rate * 0.01,
        weight_decay=recipe.weight_decay,
        peak_learning_rate=peak_learning_rate,  # the rate is raised per step below
        ema_decay=recipe.ema_decay,
        global_clipnorm=10.0,
    )
    trainer.compile(optimizer=optimizer, jit_compile=recipe.jit_compile)
    run = BudgetRun(budget_s=budget_s, batch_size=batch_size, peak_learning_rate=peak_learning_rate)

    class Budget(keras.callbacks.Callback):  # type: ignore[misc]
        """Sets the learning rate per step and stops when the budget is spent."""

        def __init__(self) -> None:
            super().__init__()
            self.started = 0.0
            self.cpu_started = 0.0
            self.steps = 0
            self.failure: str | None = None

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            self.started = time.perf_counter()
            self.cpu_started = time.process_time()

        def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            elapsed = time.perf_counter() - self.started
            self.model.optimizer.learning_rate = budget_learning_rate(
                self.steps, elapsed, budget_s, peak_learning_rate, warmup_steps
            )

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            self.steps += 1
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.failure = f"loss became {float(loss)} at step {self.steps}"
                self.model.stop_training = True
            if time.perf_counter() - self.started >= budget_s:
                self.model.stop_training = True

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            loss = (logs or {}).get("loss")
            if loss is not None:
                run.losses.append(float(loss))
                logger.info(
                    "epoch %d: loss %.4f, %d steps, %.0f of %.0f s",
                    epoch + 1,
                    float(loss),
                    self.steps,
                    time.perf_counter() - self.started,
                    budget_s,
                )

    budget = Budget()
    every: list[Any] = [budget]
    if recipe.freeze_backbone_epochs:
        every.append(FreezeBackbone(model, recipe.freeze_backbone_epochs))
    every += list(callbacks)
    # More epochs than the budget can hold (1000 steps a second); the callback ends training.
    max_epochs = max(1, math.ceil(budget_s * 1000 / steps_per_epoch))
    trainer.fit(
        dataset,
        epochs=max_epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=every,
        shuffle=False,
        verbose=0,
    )
    if budget.failure:
        raise RuntimeError(f"training diverged: {budget.failure}")
    run.wall_s = time.perf_counter() - budget.started
    run.cpu_s = time.process_time() - budget.cpu_started
    run.steps = budget.steps
    run.images = budget.steps * batch_size
    run.epochs = run.images / max(1, len(samples))
    run.images_per_second = run.images / max(run.wall_s, 1e-9)
    run.final_loss = run.losses[-1] if run.losses else None
    run.warmup_steps = warmup_steps
    logger.info(
        "trained %d steps (%.1f epochs) in %.0f s (%.1f images/s), final loss %s",
        run.steps,
        run.epochs,
        run.wall_s,
        run.images_per_second,
        "n/a" if run.final_loss is None else f"{run.final_loss:.4f}",
    )
    return run
