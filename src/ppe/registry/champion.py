"""The ``champion`` step: the registry's champion, evaluated on this run's data.

The gate compares like with like only if both models are scored on the same data, split and
thresholds, so the champion is always re-evaluated on the run's data. On Azure ML the step runs
inside the pipeline job against the workspace's registry (``registry.backend: azureml``), so the
job finds its champion itself.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ppe.config import EvaluateConfig
from ppe.errors import PpeError
from ppe.registry.base import ModelRegistry
from ppe.run import layout
from ppe.run.documents import ChampionRecord

logger = logging.getLogger(__name__)


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
        PpeError: ``out_dir`` is not empty, or the download or evaluation failed.
    """
    from ppe.evaluate.detect import evaluate_model_dir

    if out_dir.exists() and any(out_dir.iterdir()):
        raise PpeError(f"{out_dir}: the champion step needs an absent or empty output folder")
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
