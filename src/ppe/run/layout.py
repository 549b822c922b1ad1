"""The run layout: every folder and file name a pipeline run writes, named once.

A step writes one output folder, named after the step; the documents inside it have fixed file
names. The local runner puts each step's folder under the run folder; on Azure ML each is the
node's output folder. A local run folder ``<out>/<run id>/`` therefore holds::

    config.yaml            the resolved config every step reads
    data/                  the dataset (synthesised or imported; a VOC folder is used in place)
    data_check.txt         the data check's verdict
    train/                 model/, train.json, dataset.json, checkpoints, TensorBoard logs
    champion/              champion.json; if there is a champion: model/ and evaluate/
    evaluate/              metrics.json, pr_curves.json, outcomes.json, ground-truth/,
                           detection-results/
    gate/gate.json         champion vs challenger decision
    register/register.json the registered version and whether it became champion
    export/                LiteRT models, labels.txt, model.json, metrics.json
    report/                index.html, the plots and report.zip
    pipeline.json          the steps, their durations and outcome

Standard library only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

# Files in the run folder (local runner) and in the code snapshot (Azure ML).
CONFIG_FILE = "config.yaml"
DATA_CHECK_FILE = "data_check.txt"
PIPELINE_FILE = "pipeline.json"
DATA_DIR = "data"

# Files inside step output folders.
MODEL_DIR = "model"
METRICS_FILE = "metrics.json"
CURVES_FILE = "pr_curves.json"
OUTCOMES_FILE = "outcomes.json"
THRESHOLDS_FILE = "thresholds.json"
TRAIN_SUMMARY_FILE = "train.json"
DATASET_FILE = "dataset.json"
CHAMPION_FILE = "champion.json"
CHAMPION_EVALUATE_DIR = "evaluate"
GATE_FILE = "gate.json"
REGISTER_FILE = "register.json"
REPORT_INDEX = "index.html"
REPORT_ZIP = "report.zip"
LABELS_FILE = "labels.txt"
MODEL_JSON = "model.json"
MODEL_KERAS = "model.keras"


def new_run_id(now: datetime | None = None) -> str:
    """A sortable run id from the UTC time, e.g. ``20261123-141502`` (a run folder's name)."""
    return (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")


def model_dir(train_dir: Path) -> Path:
    """The trained model folder inside the train step's output."""
    return train_dir / MODEL_DIR


def metrics_file(evaluate_dir: Path) -> Path:
    """``metrics.json`` of an evaluation (or export) folder."""
    return evaluate_dir / METRICS_FILE


def curves_file(evaluate_dir: Path) -> Path:
    """``pr_curves.json`` of an evaluation folder."""
    return evaluate_dir / CURVES_FILE


def outcomes_file(evaluate_dir: Path) -> Path:
    """``outcomes.json`` of an evaluation folder (per-detection outcomes, for resampling)."""
    return evaluate_dir / OUTCOMES_FILE


def thresholds_file(model_folder: Path) -> Path:
    """``thresholds.json`` of a model folder (or an export folder): per-class score thresholds."""
    return model_folder / THRESHOLDS_FILE


def train_summary_file(train_dir: Path) -> Path:
    """``train.json`` of the train step's output."""
    return train_dir / TRAIN_SUMMARY_FILE


def dataset_file(train_dir: Path) -> Path:
    """``dataset.json`` of the train step's output (data hash, path, split sizes)."""
    return train_dir / DATASET_FILE


def champion_file(champion_dir: Path) -> Path:
    """``champion.json`` of the champion step's output."""
    return champion_dir / CHAMPION_FILE


def champion_model_dir(champion_dir: Path) -> Path:
    """The champion's model folder, downloaded from the registry."""
    return champion_dir / MODEL_DIR


def champion_evaluate_dir(champion_dir: Path) -> Path:
    """The champion's evaluation on the run's data."""
    return champion_dir / CHAMPION_EVALUATE_DIR


def gate_file(gate_dir: Path) -> Path:
    """``gate.json`` of the gate step's output."""
    return gate_dir / GATE_FILE


def register_file(register_dir: Path) -> Path:
    """``register.json`` of the register step's output."""
    return register_dir / REGISTER_FILE


def report_index(report_dir: Path) -> Path:
    """The report page."""
    return report_dir / REPORT_INDEX


def report_zip(report_dir: Path) -> Path:
    """The zipped report, inside the report folder."""
    return report_dir / REPORT_ZIP


class RunLayout:
    """The folders of one local run: ``<run>/<step output>/`` plus the run-level files."""

    def __init__(self, run_dir: Path) -> None:
        """Name the folders of the run in ``run_dir``."""
        self.run_dir = run_dir

    def port(self, name: str) -> Path:
        """The folder of a graph input or step output (``data``, ``train``, ``gate``...)."""
        return self.run_dir / name

    @property
    def config(self) -> Path:
        """The resolved config of the run."""
        return self.run_dir / CONFIG_FILE

    @property
    def data_check(self) -> Path:
        """The data check's verdict."""
        return self.run_dir / DATA_CHECK_FILE

    @property
    def pipeline(self) -> Path:
        """The step durations and outcome."""
        return self.run_dir / PIPELINE_FILE
