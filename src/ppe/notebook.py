"""What the walkthrough notebooks share: their folders, a quiet notebook mode, and step reuse.

A notebook calls :func:`start` once. Steps that take minutes (data, training, export) run through
:func:`reuse_or_run`, which reuses an earlier output only when the hashes of its inputs (data,
config, model) are the ones it was made from, and says which it reused or why it ran again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import warnings
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from ppe.config import Config, load_config

logger = logging.getLogger(__name__)

# Photos of testing/fixtures/hardhat_sample the notebooks display, chosen on purpose: site scenes
# with hard hats and no photo of a recognisable public person.
SHOWCASE_PHOTOS = (
    "hard_hat_workers22",
    "hard_hat_workers18",
    "hard_hat_workers157",
    "hard_hat_workers126",
    "hard_hat_workers25",
    "hard_hat_workers26",
    "hard_hat_workers205",
    "hard_hat_workers5",
)
RECORDS_DIR = "reuse"  # RUN/reuse/<step>.json: the input hashes each reused output was made from
# Third-party loggers that report progress at INFO/WARNING level in a notebook and teach nothing.
QUIET_LOGGERS = (
    "absl",
    "tensorflow",
    "h5py",
    "matplotlib",
    "PIL",
    "urllib3",
    "azure",
    "mlflow",
    "alembic",
    "numexpr",
    # azure.ai.ml sets its own logger to INFO with a stderr handler when imported; this child's
    # explicit level still holds then and silences its "This is an experimental class" notes.
    "azure.ai.ml._utils._experimental",
)
# Warnings that libraries emit on every call with nothing for the reader to do.
QUIET_WARNINGS = (
    r".*Protobuf gencode version.*",
    r".*`build\(\)` was called on layer.*",
    r".*Compiled the loaded model, but the compiled metrics.*",
)


@dataclass(frozen=True)
class Tour:
    """The folders and config one notebook works with."""

    root: Path  # the repository
    outputs: Path  # outputs/ (or PPE_NOTEBOOK_OUTPUTS)
    run: Path  # outputs/notebooks/<profile>/, shared by the notebooks
    tracking_uri: str  # the MLflow store `ppe train` uses by default
    config: Config


@dataclass(frozen=True)
class StepOutcome:
    """Whether :func:`reuse_or_run` reused an output or made it, and why."""

    step: str
    folder: Path
    reused: bool
    reason: str

    def line(self) -> str:
        """One sentence for the notebook."""
        verb = "reused" if self.reused else "ran"
        return f"{self.step}: {verb} ({self.reason}) -> {self.folder.name}/"


def quiet(environ: MutableMapping[str, str] | None = None) -> None:
    """Notebook mode: WARNING-level logging, third-party progress lines and notes filtered out.

    Args:
        environ: the environment to set TensorFlow's and tqdm's switches in (default os.environ);
            it must be set before TensorFlow is imported to take effect.
    """
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("TQDM_DISABLE", "1")
    env.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # mlflow resets its logger on import
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("ppe").setLevel(logging.WARNING)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def find_root(start: Path) -> Path:
    """The repository root: the first of ``start`` and its parents holding ``pyproject.toml``.

    Raises:
        FileNotFoundError: no parent holds one (the notebook runs outside a clone).
    """
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    raise FileNotFoundError(
        f"no pyproject.toml in {start} or its parents: start Jupyter inside the repository clone"
    )


def start(profile: str, environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Tour:
    """Quiet the notebook, resolve its folders (``PPE_NOTEBOOK_OUTPUTS``) and load the profile."""
    env = os.environ if environ is None else environ
    quiet()
    root = find_root((cwd or Path.cwd()).resolve())
    outputs = Path(env.get("PPE_NOTEBOOK_OUTPUTS") or root / "outputs").resolve()
    config = load_config(profile)
    run = outputs / "notebooks" / config.name
    run.mkdir(parents=True, exist_ok=True)
    return Tour(root, outputs, run, f"sqlite:///{outputs / 'mlflow.db'}", config)


def section_hash(config: Config, *sections: str) -> str:
    """sha256 (first 16 hex) of some sections of the resolved config (e.g. data and model)."""
    data = config.to_dict()
    canonical = json.dumps({name: data[name] for name in sections}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def reuse_or_run(
    step: str,
    folder: Path,
    inputs: Mapping[str, str],
    make: Callable[[], object],
    records: Path,
) -> StepOutcome:
    """Reuse ``folder`` if it was made from exactly ``inputs``, otherwise (re)make it.

    Args:
        step: the step's name, for the record file and the message.
        folder: the step's output folder; deleted before it is made again.
        inputs: input name -> content hash (``data``, ``config``, ``model`` ...).
        make: writes ``folder``; its record is written only after it returns.
        records: where ``<step>.json`` records the inputs of the current output.
    """
    record = records / f"{step}.json"
    wanted = dict(sorted(inputs.items()))
    previous: dict[str, str] | None = None
    if record.is_file():
        previous = json.loads(record.read_text(encoding="utf-8"))
    if folder.is_dir() and previous == wanted:
        reason = ", ".join(f"{name} {value[:12]}" for name, value in wanted.items())
        outcome = StepOutcome(step, folder, True, f"same inputs: {reason}")
        logger.info(outcome.line())
        return outcome
    if not folder.is_dir():
        reason = "no earlier output"
    elif previous is None:
        reason = "the earlier output has no record of its inputs"
    else:
        changed = [
            f"{name} {str(previous.get(name))[:12]} -> {value[:12]}"
            for name, value in wanted.items()
            if previous.get(name) != value
        ]
        reason = "changed " + ", ".join(changed)
    record.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    make()
    records.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(wanted, indent=1) + "\n", encoding="utf-8")
    outcome = StepOutcome(step, folder, False, reason)
    logger.info(outcome.line())
    return outcome


def ensure_data(tour: Tour) -> StepOutcome:
    """The run's dataset (``RUN/data``), made by the pipeline's data step unless reusable."""
    from ppe.data.prepare import prepare_data

    config = tour.config
    return reuse_or_run(
        "data",
        tour.run / "data",
        {"config.data": section_hash(config, "data", "model")},
        lambda: prepare_data(config, tour.run),
        tour.run / RECORDS_DIR,
    )


def ensure_model(tour: Tour) -> StepOutcome:
    """The trained model (``RUN/train``), reused only for the same data and config."""
    from ppe.data.voc import dataset_hash
    from ppe.train import train

    ensure_data(tour)
    data = tour.run / "data"
    return reuse_or_run(
        "train",
        tour.run / "train",
        {"data": dataset_hash(data), "config": tour.config.hash()},
        lambda: train(
            tour.config, data, tour.run / "train", environ={}, tracking_uri=tour.tracking_uri
        ),
        tour.run / RECORDS_DIR,
    )


def ensure_export(tour: Tour, num_threads: int = 2) -> StepOutcome:
    """The LiteRT export (``RUN/export``), reused only for the same model, data and config."""
    from ppe.data.voc import dataset_hash
    from ppe.evaluate.detect import model_hash
    from ppe.export import export_model_dir

    ensure_model(tour)
    data, model = tour.run / "data", tour.run / "train" / "model"
    return reuse_or_run(
        "export",
        tour.run / "export",
        {"data": dataset_hash(data), "config": tour.config.hash(), "model": model_hash(model)},
        lambda: export_model_dir(
            model, data, tour.run / "export", tour.config, num_threads=num_threads
        ),
        tour.run / RECORDS_DIR,
    )
