"""Keep the epoch with the best validation mAP@0.5 and ship it instead of the last one.

After every epoch :class:`BestEpoch` scores the detector on the validation split with the same
detection settings and mAP as ``ppe evaluate`` (:mod:`ppe.evaluate`), adds ``val_map50`` to the
epoch's logs (so the history, TensorBoard and MLflow record it), and saves the weights when the
score improves (``checkpoints/best.weights.h5`` plus ``best.json``, so a resumed run still knows
its best). When training ends the best weights are loaded back into the detector.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ppe.config import EvaluateConfig
from ppe.model.spec import YoloSpec

logger = logging.getLogger(__name__)

BEST_WEIGHTS = Path("checkpoints") / "best.weights.h5"
BEST_RECORD = Path("checkpoints") / "best.json"

#: Scores a detector (higher is better); :func:`map50_scorer` builds the real one.
Scorer = Callable[[keras.Model], float]


def map50_scorer(spec: YoloSpec, samples: Sequence[Any], settings: EvaluateConfig) -> Scorer:
    """VOC mAP@0.5 of a detector on ``samples`` (``ppe.data.voc.Sample``), as ``ppe evaluate``.

    An undefined mAP (no ground truth) scores ``-inf`` so it never wins.
    """
    from ppe.evaluate.detect import detect_split
    from ppe.evaluate.voc_map import evaluate_voc_map

    def score(detector: keras.Model) -> float:
        def predict(batch: Any) -> list[Any]:
            # A plain call, not predict_on_batch: it also works in the cross-replica context of
            # a multi-worker strategy, whose predict wants a sharded tf.data input.
            return [np.asarray(output) for output in detector(batch, training=False)]

        found = detect_split(predict, spec, samples, settings)
        result = evaluate_voc_map(
            found.ground_truths, found.detections, spec.class_names, settings.iou_threshold
        )
        return result.map50 if math.isfinite(result.map50) else -math.inf

    return score


class BestEpoch(keras.callbacks.Callback):  # type: ignore[misc]
    """Score every epoch, keep the best weights, restore them at the end of ``fit``.

    Args:
        detector: the inference model the trainer wraps (scored and restored).
        scorer: maps the detector to a score, higher is better (e.g. :func:`map50_scorer`).
        out_dir: the training folder; the best weights and their record go under
            ``checkpoints/``.
        resume: True when ``fit`` resumes an interrupted run (its best record is kept);
            otherwise a record left by an earlier run in ``out_dir`` is deleted.
        log_key: name of the score in the epoch logs.
    """

    def __init__(
        self,
        detector: keras.Model,
        scorer: Scorer,
        out_dir: Path,
        *,
        resume: bool = False,
        log_key: str = "val_map50",
    ) -> None:
        super().__init__()
        self.detector = detector
        self.scorer = scorer
        self.weights_path = out_dir / BEST_WEIGHTS
        self.record_path = out_dir / BEST_RECORD
        self.log_key = log_key
        self.resume = resume
        self.best_epoch = 0
        self.best_score = -math.inf

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Pick up the best of an interrupted run, or forget an earlier run's."""
        if not self.resume:
            self.record_path.unlink(missing_ok=True)
            self.weights_path.unlink(missing_ok=True)
        elif self.record_path.is_file() and self.weights_path.is_file():
            record = json.loads(self.record_path.read_text(encoding="utf-8"))
            self.best_epoch, self.best_score = int(record["epoch"]), float(record["score"])

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Score the epoch; save the weights when it is the best so far.

        With an EMA of the weights (``train.ema_decay``) the averages are scored and saved.
        """
        from ppe.model.training import evaluation_weights

        trainer = getattr(self, "model", None)
        with evaluation_weights(getattr(trainer, "optimizer", None)):
            score = float(self.scorer(self.detector))
            if score > self.best_score:
                self.best_epoch, self.best_score = epoch + 1, score
                self.weights_path.parent.mkdir(parents=True, exist_ok=True)
                self.detector.save_weights(str(self.weights_path))
                self.record_path.write_text(
                    json.dumps({"epoch": self.best_epoch, "score": score}), encoding="utf-8"
                )
        if logs is not None:
            logs[self.log_key] = score
        logger.info(
            "epoch %d: %s %.4f (best %.4f at epoch %d)",
            epoch + 1,
            self.log_key,
            score,
            self.best_score,
            self.best_epoch,
        )

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Load the best epoch's weights into the detector."""
        if self.best_epoch and self.weights_path.is_file():
            self.detector.load_weights(str(self.weights_path))
            logger.info(
                "keeping epoch %d (%s %.4f)", self.best_epoch, self.log_key, self.best_score
            )
