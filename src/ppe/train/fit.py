"""The fit loop: ``model.fit`` under a ``tf.distribute`` strategy, resumable, tracked with MLflow.

The strategy comes from :mod:`ppe.train.distribution`, the tracking from :mod:`ppe.train.tracking`.

The same function runs on a laptop and on the Azure ML GPU cluster: the strategy comes from the
environment (``TF_CONFIG`` set by Azure ML's TensorFlow distribution -> multi-worker; several
local GPUs -> mirrored; otherwise the default strategy).

Output folder (``--out``)::

    config.yaml            the resolved config
    dataset.json           the dataset content hash and split sizes
    checkpoints/backup/    BackupAndRestore state (weights, optimizer, epoch): resume after a kill
    checkpoints/epoch-NNN.weights.h5
    checkpoints/best.weights.h5, best.json   the best epoch by validation mAP@0.5 (shipped)
    tensorboard/           TensorBoard event files
    model/                 the trained model folder (model.keras, saved_model/, model.json, and
                           thresholds.json: per-class score thresholds chosen on the val split)
    train.json             summary: epochs, losses, images/s, hashes, MLflow run id
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ppe.config import Config
from ppe.errors import PpeError
from ppe.run.documents import DatasetRecord, TrainingSummary
from ppe.run.layout import CONFIG_FILE, THRESHOLDS_FILE, dataset_file, train_summary_file
from ppe.run.layout import model_dir as trained_model_dir
from ppe.train.distribution import select_strategy, worker_role
from ppe.train.precision import float32_model, training_policy
from ppe.train.tracking import MlflowTracker

logger = logging.getLogger(__name__)

BACKUP_DIR = Path("checkpoints") / "backup"


@dataclass
class TrainResult:
    """What a training run produced."""

    model_dir: Path
    epochs: int
    resumed_from_epoch: int
    history: dict[str, list[float]] = field(default_factory=dict)
    images_per_second: float = 0.0
    mlflow_run_id: str | None = None


def _learning_rate(config: Config, steps_per_epoch: int) -> Any:
    """Linear warm-up to ``train.learning_rate`` then cosine decay to 1% of it."""
    import keras

    total = max(1, config.train.epochs * steps_per_epoch)
    warmup = min(total - 1, config.train.warmup_epochs * steps_per_epoch)
    peak = config.train.learning_rate
    if warmup <= 0:
        return keras.optimizers.schedules.CosineDecay(peak, decay_steps=total, alpha=0.01)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak * 0.01,
        decay_steps=total - warmup,
        alpha=0.01,
        warmup_target=peak,
        warmup_steps=warmup,
    )


def _make_callbacks(
    out_dir: Path, config: Config, tracker: MlflowTracker | None
) -> tuple[list[Any], Any]:
    import keras

    guard = _finite_loss_guard(config)
    callbacks: list[Any] = [
        guard,
        keras.callbacks.BackupAndRestore(str(out_dir / BACKUP_DIR), save_freq="epoch"),
        keras.callbacks.ModelCheckpoint(
            str(out_dir / "checkpoints" / "epoch-{epoch:03d}.weights.h5"), save_weights_only=True
        ),
        keras.callbacks.TensorBoard(str(out_dir / "tensorboard"), update_freq="epoch"),
    ]
    if tracker is not None:
        callbacks.append(tracker.callback())
    return callbacks, guard


def _finite_loss_guard(config: Config) -> Any:
    """A Keras callback that stops at the first non-finite loss and keeps the reason in ``failure``.

    Keras is imported here rather than at module level so that ``ppe --help`` stays fast.
    """
    import keras

    class Guard(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.failure: str | None = None
            self.epoch = 0

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.epoch = epoch

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.failure = (
                    f"training loss became {float(loss)} at epoch {self.epoch + 1}, batch "
                    f"{batch + 1}: lower train.learning_rate (now "
                    f"{config.train.learning_rate:g}) or check the boxes with `ppe data check`"
                )
                self.model.stop_training = True

    return Guard()


def initial_model(spec: Any, init_from: Path | None) -> Any:
    """The detector for ``spec`` before training: ``init_from``'s weights where they fit.

    Backbone, neck and every layer whose shape matches are copied from the model folder
    ``init_from`` (``train.init_from``); outputs that start fresh get score priors and the
    source's box rows where its anchors match (:func:`ppe.model.heads.init_head`); outputs copied
    whole from a source with other anchors keep predicting its box sizes
    (:func:`ppe.model.heads.reanchor_box_rows`).
    """
    from ppe.model.bundle import load_model_dir
    from ppe.model.darknet_weights import transfer
    from ppe.model.heads import init_head, reanchor_box_rows
    from ppe.model.yolov3 import build_model

    model = build_model(spec)
    source, source_spec, new_outputs = None, None, list(spec.strides)
    if init_from is not None:
        source, source_spec, _ = load_model_dir(init_from)
        report = transfer(source, model)
        logger.info("initialised from %s: %s", init_from, report)
        new_outputs = [s for s in spec.strides if f"head_s{s}_output_conv" not in report.copied]
        copied = [s for s in spec.strides if s not in new_outputs]
        reanchor_box_rows(model, spec, source_spec, copied)
    init_head(model, spec, source=source, source_spec=source_spec, strides=new_outputs)
    return model


def _check_resume(out_dir: Path, config: Config) -> None:
    """Refuse to resume a checkpoint that was made with another config."""
    saved = out_dir / CONFIG_FILE
    if not (out_dir / BACKUP_DIR).exists() or not saved.is_file():
        return
    import yaml

    from ppe.config import config_from_mapping

    previous = config_from_mapping(yaml.safe_load(saved.read_text()), label=str(saved))
    if previous.hash() != config.hash():
        raise PpeError(
            f"{out_dir} holds an unfinished training made with another config "
            f"(hash {previous.hash()} vs {config.hash()}): use a new --out, or delete "
            f"{out_dir / BACKUP_DIR} to start over"
        )


def train(
    config: Config,
    data_dir: Path,
    out_dir: Path,
    *,
    environ: Mapping[str, str] | None = None,
    tracking_uri: str | None = None,
) -> TrainResult:
    """Train the detector on a Pascal VOC dataset and write a model folder.

    Args:
        config: the resolved config (model, train and tracking sections are used).
        data_dir: a Pascal VOC folder with ``train`` and ``val`` splits.
        out_dir: the training output folder (see the module docstring); re-running with the same
            folder resumes an interrupted training from its last epoch.
        environ: process environment for the distribution strategy (default: none).
        tracking_uri: MLflow tracking URI; None disables MLflow tracking.

    Returns:
        The :class:`TrainResult`.

    Raises:
        PpeError: bad data, a config that differs from the unfinished run's, or a non-finite loss.
    """
    from ppe.data.voc import dataset_hash, load_split

    is_chief, worker_index = worker_role(environ or {})
    if not is_chief:
        # Non-chief workers keep their own state; the chief's folder is the result.
        out_dir = out_dir / ".workers" / str(worker_index)
        tracking_uri = None
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_resume(out_dir, config)
    config.save(out_dir / CONFIG_FILE)
    classes = list(config.model.classes)
    train_samples = load_split(data_dir, "train", classes)
    val_samples = load_split(data_dir, "val", classes)
    if not train_samples:
        raise PpeError(
            f"{data_dir}: the train split is empty; add images to ImageSets/Main/train.txt"
        )
    data_hash = dataset_hash(data_dir)
    DatasetRecord(
        data_hash=data_hash,
        path=str(data_dir),
        train=len(train_samples),
        val=len(val_samples),
    ).write(dataset_file(out_dir))
    resumed_from = _backup_epoch(out_dir)
    if resumed_from:
        logger.info("resuming %s from the end of epoch %d", out_dir, resumed_from)

    # TensorFlow only now: a bad folder, split or resume is refused in well under a second.
    import keras

    keras.utils.set_random_seed(config.train.seed)
    strategy = select_strategy(environ or {})
    with training_policy(config.train.mixed_precision):
        return _train(
            config,
            _Run(data_dir, out_dir, strategy, is_chief, tracking_uri, resumed_from, data_hash),
            train_samples,
            val_samples,
        )


@dataclass(frozen=True)
class _Run:
    """Where and how :func:`_train` runs (decided by :func:`train`)."""

    data_dir: Path
    out_dir: Path
    strategy: Any
    is_chief: bool
    tracking_uri: str | None
    resumed_from: int
    data_hash: str


def _train(
    config: Config, run: _Run, train_samples: list[Any], val_samples: list[Any]
) -> TrainResult:
    """:func:`train` under the run's dtype policy, from the model to the summary."""
    import tensorflow as tf

    from ppe.data.tfdata import PipelineSpec, build_dataset, steps_for
    from ppe.evaluate.detect import write_class_thresholds
    from ppe.model.bundle import save_model_dir
    from ppe.model.spec import YoloSpec
    from ppe.model.training import (
        AveragedValidation,
        FreezeBackbone,
        YoloTrainer,
        make_optimizer,
    )
    from ppe.train.best import BestEpoch, map50_scorer

    data_dir, out_dir, strategy = run.data_dir, run.out_dir, run.strategy
    is_chief, tracking_uri, resumed_from, data_hash = (
        run.is_chief,
        run.tracking_uri,
        run.resumed_from,
        run.data_hash,
    )
    classes = list(config.model.classes)
    spec = YoloSpec.default(
        config.model.architecture, classes, config.model.image_size, anchors=config.model.anchors
    )
    batch = config.train.batch_size
    steps = config.train.steps_per_epoch or steps_for(len(train_samples), batch)
    train_ds = build_dataset(
        train_samples, spec, PipelineSpec.from_train(config.train, training=True)
    )
    val_ds = (
        build_dataset(val_samples, spec, PipelineSpec.from_train(config.train, training=False))
        if val_samples
        else None
    )

    with strategy.scope():
        model = initial_model(spec, config.train.init_from)
        trainer = YoloTrainer(model, spec, ignore_threshold=config.train.ignore_threshold)
        optimizer = make_optimizer(
            _learning_rate(config, steps),
            weight_decay=config.train.weight_decay,
            peak_learning_rate=config.train.learning_rate,
            ema_decay=config.train.ema_decay,
            global_clipnorm=10.0,
        )
        trainer.compile(optimizer=optimizer, jit_compile=config.train.jit_compile)
        # BackupAndRestore restores into a built model: build it with one dummy batch, and the
        # optimizer's slots (multi-worker training skips Keras's own build, see YoloTrainer).
        trainer(tf.zeros((1, spec.image_size, spec.image_size, 3)))
        optimizer.build(trainer.trainable_variables)

    tracker = (
        MlflowTracker(tracking_uri, config.tracking.experiment, out_dir) if tracking_uri else None
    )
    if tracker is not None:
        tracker.log_start(config, {"data_hash": data_hash, "config_hash": config.hash()})
    callbacks, guard = _make_callbacks(out_dir, config, tracker)
    if config.train.freeze_backbone_epochs:
        callbacks.insert(1, FreezeBackbone(model, config.train.freeze_backbone_epochs))
    if config.train.ema_decay:
        callbacks.insert(1, AveragedValidation())  # val losses of the averaged weights
    best = (
        BestEpoch(
            model,
            map50_scorer(spec, val_samples, config.evaluate),
            out_dir,
            resume=resumed_from > 0,
        )
        # Every worker scores: the same work in the same order keeps multi-worker collective
        # ops in step (a non-chief worker's folder is scratch).
        if val_samples
        else None
    )
    if best is not None:
        callbacks.insert(1, best)  # before History and MLflow, which record its val_map50
    started = time.perf_counter()
    status = "FAILED"
    try:
        history = trainer.fit(
            train_ds,
            epochs=config.train.epochs,
            steps_per_epoch=steps,
            validation_data=val_ds,
            callbacks=callbacks,
            shuffle=False,  # the tf.data pipeline shuffles
            verbose=1 if os.isatty(2) else 2,
        )
        if guard.failure:
            raise PpeError(guard.failure)
        status = "FINISHED"
    finally:
        elapsed = time.perf_counter() - started
        if tracker is not None:
            tracker.finish(status, {"status": status, "seconds": elapsed})
    epochs_run = config.train.epochs - resumed_from
    images_per_second = epochs_run * steps * batch / max(elapsed, 1e-9)
    history_dict = {k: [float(v) for v in values] for k, values in history.history.items()}
    model_dir = trained_model_dir(out_dir)
    save_model_dir(
        float32_model(model, spec),
        spec,
        model_dir,
        metadata={
            "config_hash": config.hash(),
            "data_hash": data_hash,
            "epochs": config.train.epochs,
            # The epoch shipped: the best by validation mAP@0.5 (the last without a val split).
            "epoch": best.best_epoch if best is not None else config.train.epochs,
            "val_map50": (
                best.best_score if best is not None and math.isfinite(best.best_score) else None
            ),
            "mlflow_run_id": tracker.run_id if tracker else None,
        },
    )
    if is_chief and val_samples:
        # The edge applies these per-class thresholds (thresholds.json next to its .tflite); one
        # detection pass over the validation split chooses them, never over the scored split.
        write_class_thresholds(model_dir, data_dir, config.evaluate, split="val")
    elif is_chief:
        logger.warning(
            "%s: no val split, so no per-class thresholds (%s): the edge applies "
            "edge.score_threshold to every class",
            data_dir,
            THRESHOLDS_FILE,
        )
    TrainingSummary(
        epochs=config.train.epochs,
        resumed_from_epoch=resumed_from,
        steps_per_epoch=steps,
        batch_size=batch,
        seconds=round(elapsed, 2),
        images_per_second=round(images_per_second, 2),
        history=history_dict,
        data_hash=data_hash,
        config_hash=config.hash(),
        mlflow_run_id=tracker.run_id if tracker else None,
        replicas=strategy.num_replicas_in_sync,
        tensorflow=tf.__version__,
    ).write(train_summary_file(out_dir))
    logger.info(
        "trained %d epochs (%.1f images/s); model folder: %s",
        epochs_run,
        images_per_second,
        model_dir,
    )
    return TrainResult(
        model_dir=model_dir,
        epochs=config.train.epochs,
        resumed_from_epoch=resumed_from,
        history=history_dict,
        images_per_second=images_per_second,
        mlflow_run_id=tracker.run_id if tracker else None,
    )


def _backup_epoch(out_dir: Path) -> int:
    """Epochs already completed according to the BackupAndRestore state (0 if none)."""
    backup = out_dir / BACKUP_DIR
    path = backup / "training_metadata.json"
    if not path.is_file():
        return 0
    try:
        return max(0, int(json.loads(path.read_text()).get("epoch", 0)))
    except (ValueError, json.JSONDecodeError):
        return 0
