"""The ``champion`` step: the registry's champion, evaluated on this run's data.

The gate compares like with like only if both models are scored on the same data, split and
thresholds, so the champion is always re-evaluated on the run's data. On Azure ML the step runs
inside the pipeline job against the workspace's registry (``registry.backend: azureml``), so the
job finds its champion itself. As the graph's first step it also checks, before any training,
that the run's data has the split the evaluate step scores on.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ppe.config import EvaluateConfig
from ppe.data.voc import read_split_ids
from ppe.errors import PpeError
from ppe.registry.base import ModelRegistry
from ppe.run import layout
from ppe.run.documents import ChampionRecord

logger = logging.getLogger(__name__)


def check_evaluation_split(data_dir: Path, split: str) -> None:
    """Refuse data whose evaluation split is empty, before the graph trains on it.

    The evaluate step scores the challenger (and this step the champion) on ``split``; a dataset
    imported with its own ``train/`` and ``val/`` folders has an empty ``test`` split, and
    without this check the run would train for hours and then fail at evaluation.

    Raises:
        PpeError: ``split`` lists no image (names the dataset, the key and the two fixes).
        DataError: the split file is missing.
    """
    if not read_split_ids(data_dir, split):
        raise PpeError(
            f"{data_dir}: evaluate.split is {split!r} but ImageSets/Main/{split}.txt lists no "
            "image, so the evaluate step would fail after training; score on another split "
            "(e.g. --set evaluate.split=val, the split the best epoch and the per-class "
            "thresholds are chosen on, so its mAP is optimistic) or give the dataset a test "
            "split (a test/ folder, or `ppe data import --resplit`, which splits by data.split, "
            "then data.source=voc with data.path at its output)"
        )


def resolve_champion(
    registry: ModelRegistry,
    name: str,
    backend: str,
    data_dir: Path,
    out_dir: Path,
    settings: EvaluateConfig,
) -> ChampionRecord:
    """Find the champion of ``name``, download it and evaluate it on ``data_dir``.

    Writes ``champion.json`` last (after ``model/`` and ``evaluate/`` when there is a champion),
    so a reader that finds it finds everything.

    Args:
        registry: The model registry.
        name: The model name.
        backend: The registry backend's name (recorded).
        data_dir: The run's Pascal VOC dataset.
        out_dir: The step's output folder (absent or empty).
        settings: The evaluation settings (the same the challenger is scored with).

    Returns:
        The record written to ``out_dir/champion.json``.

    Raises:
        PpeError: ``out_dir`` is not empty, the evaluation split is empty
            (:func:`check_evaluation_split`), or the download or evaluation failed.
    """
    from ppe.evaluate.detect import evaluate_model_dir

    if out_dir.exists() and any(out_dir.iterdir()):
        raise PpeError(f"{out_dir}: the champion step needs an absent or empty output folder")
    check_evaluation_split(data_dir, settings.split)
    out_dir.mkdir(parents=True, exist_ok=True)
    champion = registry.champion(name)
    if champion is None:
        logger.info("%s has no champion yet: this run's model will be the first", name)
        record = ChampionRecord(model_name=name, version=None, model_hash=None, registry=backend)
    else:
        model_dir = layout.champion_model_dir(out_dir)
        registry.download(name, champion.version, model_dir)
        metrics = evaluate_model_dir(
            model_dir, data_dir, layout.champion_evaluate_dir(out_dir), settings
        )
        logger.info(
            "champion %s version %d: mAP@0.5 %s on this run's data",
            name,
            champion.version,
            metrics.map50,
        )
        record = ChampionRecord(
            model_name=name,
            version=champion.version,
            model_hash=metrics.model_hash,
            registry=backend,
        )
    record.write(layout.champion_file(out_dir))
    return record
