"""MLflow tracking of a training run: one run per training output folder, resumed with it.

The tracking URI: the config's ``tracking.uri``, else ``MLFLOW_TRACKING_URI`` (Azure ML sets it to
the workspace in every job), else the embedded SQLite store (resolved by the command line). MLflow
is imported only when a tracker is created.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ppe.config import Config
from ppe.errors import PpeError
from ppe.run.layout import CONFIG_FILE, TRAIN_SUMMARY_FILE

RUN_STATE_FILE = "run_state.json"


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[prefix] = value


def _sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of an embedded ``sqlite:///`` store, else None."""
    prefix = "sqlite:///"
    return Path(tracking_uri.removeprefix(prefix)) if tracking_uri.startswith(prefix) else None


def check_store(mlflow: Any, tracking_uri: str) -> None:
    """Open the tracking store once, turning a schema from another MLflow into a clear error."""
    from mlflow.exceptions import MlflowException

    try:
        mlflow.MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)
    except MlflowException as error:
        if "schema" not in str(error):
            raise
        where = tracking_uri
        database = _sqlite_file(tracking_uri)
        if database is not None:
            where = f"{database} (move it aside to start a new one: mv {database} {database}.old)"
        raise PpeError(
            f"the MLflow tracking store {where} has a database schema that MLflow "
            f"{mlflow.__version__} cannot use ({str(error).split('. ')[0]}). An older store can "
            f"be migrated with `mlflow db upgrade {tracking_uri}`; one written by a newer MLflow "
            "cannot be opened by this one. Or set tracking.uri (or MLFLOW_TRACKING_URI) to "
            "another store."
        ) from error


class MlflowTracker:
    """MLflow run for one training output folder; a resumed training continues the same run."""

    def __init__(self, tracking_uri: str, experiment: str, out_dir: Path) -> None:
        import mlflow

        self._mlflow = mlflow
        mlflow.set_tracking_uri(tracking_uri)
        check_store(mlflow, tracking_uri)
        database = _sqlite_file(tracking_uri)
        if database is not None and mlflow.get_experiment_by_name(experiment) is None:
            # Keep artifacts beside the database instead of in the current directory.
            mlflow.create_experiment(
                experiment, artifact_location=(database.parent / "mlartifacts").resolve().as_uri()
            )
        mlflow.set_experiment(experiment)
        state_path = out_dir / RUN_STATE_FILE
        run_id = None
        if state_path.is_file():
            run_id = json.loads(state_path.read_text()).get("mlflow_run_id")
        self.run = mlflow.start_run(run_id=run_id, run_name=out_dir.name)
        state_path.write_text(json.dumps({"mlflow_run_id": self.run.info.run_id}))

    @property
    def run_id(self) -> str:
        """The MLflow run id."""
        return str(self.run.info.run_id)

    def log_start(self, config: Config, tags: Mapping[str, str]) -> None:
        """Record the config (as parameters and as a file) and the run's tags."""
        params: dict[str, Any] = {}
        _flatten("", config.to_dict(), params)
        existing = self._mlflow.get_run(self.run_id).data.params
        self._mlflow.log_params({k: v for k, v in params.items() if k not in existing})
        self._mlflow.set_tags(dict(tags))
        self._mlflow.log_text(config.to_yaml(), CONFIG_FILE)

    def callback(self) -> Any:
        """A Keras callback that logs each epoch's finite metrics."""
        import keras

        mlflow = self._mlflow

        class Logger(keras.callbacks.Callback):  # type: ignore[misc]
            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                metrics = {k: float(v) for k, v in (logs or {}).items() if _is_number(v)}
                mlflow.log_metrics(metrics, step=epoch + 1)

        return Logger()

    def finish(self, status: str, summary: Mapping[str, Any]) -> None:
        """Log the summary and end the run with ``status``."""
        self._mlflow.log_dict(dict(summary), TRAIN_SUMMARY_FILE)
        self._mlflow.end_run(status=status)


def _is_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
