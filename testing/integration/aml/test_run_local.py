"""``ppe aml build`` then ``ppe aml run-local`` twice on a fresh registry: the Azure ML job's
behaviour, not only its shape.

The second run's job is built with ``--gpu-nodes 2``, so its train node runs as two worker
processes with the ``TF_CONFIG`` Azure ML's TensorFlow distribution sets
(https://learn.microsoft.com/azure/machine-learning/how-to-train-tensorflow#distributed-training):
multi-worker training really runs, and the champion gate is checked on the same two runs (one
run fewer for the suite). Each node runs its component's command in a copy of the code snapshot
with Azure ML's substitution; the local registry stands in for the workspace's.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from testing.helpers import run_ppe

from ppe.config import load_config
from ppe.data.prepare import prepare_data
from ppe.gate import decide
from ppe.registry.local import LocalRegistry

pytestmark = [
    pytest.mark.heavy(200),
    pytest.mark.filterwarnings("ignore::marshmallow.warnings.RemovedInMarshmallow4Warning"),
]

NAME = "ppe-hardhat-yolov3"


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(path.relative_to(root).as_posix().encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def output(run: Path, node: str, name: str | None = None) -> Path:
    return run / "outputs" / node / (name or node)


def read(path: Path) -> Any:
    return json.loads(path.read_text())


class Runs:
    def __init__(self, root: Path, env_file: Path) -> None:
        self.root = root
        self.registry = root / "registry"
        self.data = prepare_data(load_config("smoke"), root / "prep")
        self.jobs: dict[str, Path] = {}
        # The first run's model only has to exist to be the champion: one epoch. The two-worker
        # run keeps the smoke profile's epochs, so its loss can be seen to fall.
        for label, nodes, epochs in (
            ("single", "1", ["--set", "train.epochs=1"]),
            ("two_workers", "2", []),
        ):
            job = root / label / "pipeline_job.yml"
            run_ppe(
                *("aml", "build", "--config", "smoke", "--gpu-nodes", nodes, *epochs),
                *("--env-file", str(env_file), "--out", str(job)),
                cwd=root,
            )
            self.jobs[label] = job

    def run_local(self, job: Path, run_id: str, registry: Path | None = None) -> Any:
        return run_ppe(
            *("aml", "run-local", "--job", str(job), "--input", f"data={self.data}"),
            *("--out", str(self.root / run_id), "--registry", str(registry or self.registry)),
            *("--run-id", run_id),
            cwd=self.root,
            timeout=900,
            check=False,
        )


@pytest.fixture(scope="module")
def runs(env_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    runs = Runs(tmp_path_factory.mktemp("run_local"), env_file)
    for job, run_id in ((runs.jobs["single"], "first"), (runs.jobs["two_workers"], "second")):
        result = runs.run_local(job, run_id)
        assert result.returncode == 0, result.stderr[-6000:]
        assert "Traceback" not in result.stderr
    return runs


def test_the_second_run_gates_against_the_first_runs_champion(runs: Runs) -> None:
    first, second = runs.root / "first", runs.root / "second"
    first_gate = read(output(first, "gate") / "gate.json")
    assert first_gate["promote"] is True and first_gate["champion_version"] is None
    assert read(output(first, "champion") / "champion.json")["version"] is None

    gate = read(output(second, "gate") / "gate.json")
    first_metrics = read(output(first, "evaluate") / "metrics.json")
    second_metrics = read(output(second, "evaluate") / "metrics.json")
    champion_metrics = read(output(second, "champion") / "evaluate" / "metrics.json")
    # The job found the registry's champion itself: the first run's model, version 1 ...
    assert gate["champion_version"] == 1
    assert gate["champion_model_hash"] == first_metrics["model_hash"]
    assert read(output(second, "champion") / "champion.json")["version"] == 1
    # ... re-evaluated on the second run's data, split and thresholds.
    assert gate["champion_score"] == champion_metrics["map50"]
    assert champion_metrics["data_hash"] == second_metrics["data_hash"] == gate["data_hash"]
    assert champion_metrics["thresholds"] == second_metrics["thresholds"]
    assert champion_metrics["model_hash"] == first_metrics["model_hash"]

    registry = LocalRegistry(runs.registry)
    versions = registry.list(NAME)
    assert [v.version for v in versions] == [1, 2]
    # AZUREML_ROOT_RUN_ID reached the register node as Azure ML sets it.
    assert [v.tags["run_id"] for v in versions] == ["first", "second"]
    # The champion moves only if the challenger beats the margin (the gate's own rule).
    margin = load_config("smoke").gate.margin
    expected = decide(second_metrics, champion_metrics, margin=margin).promote
    assert gate["promote"] is expected
    champion = registry.champion(NAME)
    assert champion is not None and champion.version == (2 if expected else 1)
    register = read(output(second, "register") / "register.json")
    assert register["promoted"] is expected and register["version"]["version"] == 2


def test_every_node_ran_with_its_outputs_and_the_environment_azure_ml_sets(runs: Runs) -> None:
    first = runs.root / "first"
    nodes = ("champion", "train", "evaluate", "gate", "register", "export", "report")
    assert sorted(p.name for p in (first / "outputs").iterdir()) == sorted(nodes)
    assert (output(first, "report") / "index.html").is_file()
    assert (output(first, "report") / "report.zip").is_file()
    assert (output(first, "export") / "model_int8.tflite").is_file()
    # The train node chose per-class thresholds on the val split (the chief, in the multi-worker
    # second run); the export node carried them to the edge.
    for run in (first, runs.root / "second"):
        chosen = output(run, "train") / "model" / "thresholds.json"
        assert (output(run, "export") / "thresholds.json").read_bytes() == chosen.read_bytes()
    # MLflow followed MLFLOW_TRACKING_URI (Azure ML sets it to the workspace in every job).
    assert (first / "mlflow.db").is_file()
    # Each node ran in its own copy of the code snapshot, whose config names the local registry.
    config = yaml.safe_load((first / "work" / "register" / "config.yaml").read_text())
    assert config["registry"]["backend"] == "local"
    snapshot = yaml.safe_load((runs.jobs["single"].parent / "code" / "config.yaml").read_text())
    assert snapshot["registry"]["backend"] == "azureml", "the job itself targets the workspace"


def test_two_workers_train_one_model_and_only_the_chief_writes_it(runs: Runs) -> None:
    first, second = runs.root / "first", runs.root / "second"
    logs = sorted(p.name for p in (second / "logs").iterdir())
    assert "train.0.log" in logs and "train.1.log" in logs
    for index in (0, 1):
        text = (second / "logs" / f"train.{index}.log").read_text()
        assert "TF_CONFIG names 2 workers: MultiWorkerMirroredStrategy" in text
    train = output(second, "train")
    summary = read(train / "train.json")
    assert summary["replicas"] == 2
    losses = summary["history"]["loss"]
    assert len(losses) >= 2 and losses[-1] < losses[0], losses
    # The same architecture as the single-process run's model.
    single = read(output(first, "train") / "model" / "model.json")
    double = read(train / "model" / "model.json")
    assert double["spec"] == single["spec"]
    # The non-chief worker (index 1) wrote only inside its scratch folder (TensorFlow has every
    # worker save, the others to temporary places:
    # https://www.tensorflow.org/tutorials/distribute/multi_worker_with_keras#model_saving_and_loading);
    # the chief has none and wrote the step's output.
    assert {p.name for p in (train / ".workers").iterdir()} == {"1"}
    assert read(train / ".workers" / "1" / "train.json")["replicas"] == 2
    # Only the chief recorded a tracking run.
    with sqlite3.connect(second / "mlflow.db") as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1


def test_a_node_failing_mid_graph_names_itself_and_leaves_the_registry_alone(
    runs: Runs, tmp_path: Path
) -> None:
    job_dir = tmp_path / "job"
    shutil.copytree(runs.jobs["single"].parent, job_dir)
    job = job_dir / "pipeline_job.yml"
    document = yaml.safe_load(job.read_text())
    train = document["jobs"]["train"]["component"]
    # A misspelt config key: ppe train refuses it before it imports TensorFlow (seconds sooner).
    train["command"] = train["command"].replace(
        "${{inputs.data}}", "${{inputs.data}} --set train.epoch=2"
    )
    job.write_text(yaml.safe_dump(document, sort_keys=False))
    registry = tmp_path / "registry"
    shutil.copytree(runs.registry, registry)
    before = tree_hash(registry)

    result = runs.run_local(job, "broken", registry=registry)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr.split("ends with:")[0]
    assert "node 'train' failed" in result.stderr
    assert "the later nodes did not run" in result.stderr
    assert "Fix the cause" in result.stderr
    assert tree_hash(registry) == before
    broken = runs.root / "broken"
    assert (broken / "logs" / "champion.log").is_file()  # the node before it did run
    assert not (broken / "logs" / "register.log").exists()


def test_a_pipeline_input_without_a_local_folder_is_refused(runs: Runs, tmp_path: Path) -> None:
    result = run_ppe(
        *("aml", "run-local", "--job", str(runs.jobs["single"])),
        *("--out", str(tmp_path / "out"), "--registry", str(tmp_path / "registry")),
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "pipeline input 'data' is 'azureml:ppe-hardhat-voc@latest'" in result.stderr
    assert "pass --input data=DIR" in result.stderr
    assert not (tmp_path / "registry").exists() and not (tmp_path / "out").exists()
