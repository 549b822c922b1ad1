"""``ppe train`` end to end on synthetic scenes: loss goes down, a kill resumes, bad input fails."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from testing.helpers import run_ppe

#: About this many seconds on 2 cores: scheduled first (testing/conftest.py).
pytestmark = pytest.mark.heavy(65)


def test_training_lowers_the_loss_and_writes_a_model(smoke_training: Path) -> None:
    summary = json.loads((smoke_training / "train.json").read_text())
    losses = summary["history"]["loss"]
    assert len(losses) == 3
    # Measured here: about 233 -> 140 -> 110 on the smoke scenes (random init, 3 epochs).
    assert losses[-1] < 0.75 * losses[0], losses
    assert summary["history"]["val_loss"][-1] < summary["history"]["val_loss"][0]
    model_dir = smoke_training / "model"
    assert (model_dir / "model.keras").is_file() and (model_dir / "model.json").is_file()
    meta = json.loads((model_dir / "model.json").read_text())
    dataset = json.loads((smoke_training / "dataset.json").read_text())
    assert json.dumps(meta).count(dataset["data_hash"]) >= 1
    assert (smoke_training / "config.yaml").is_file()
    assert list((smoke_training / "tensorboard").rglob("events.out.tfevents.*"))
    assert sorted(p.name for p in (smoke_training / "checkpoints").glob("epoch-*.weights.h5")) == [
        "epoch-001.weights.h5",
        "epoch-002.weights.h5",
        "epoch-003.weights.h5",
    ]
    # BackupAndRestore removes its state once training finished.
    assert not (smoke_training / "checkpoints" / "backup").exists()


#: A kill after epoch 1 leaves one epoch to resume (the watcher below kills within 0.2 s of the
#: first epoch's end; the second epoch, the best-epoch scoring and the model save take seconds).
RESUME_EPOCHS = 2


def test_the_shipped_epoch_is_the_best_by_validation_map(smoke_training: Path) -> None:
    history = json.loads((smoke_training / "train.json").read_text())["history"]
    scores = history["val_map50"]  # VOC mAP@0.5 on the val split after every epoch
    assert len(scores) == 3 and all(0.0 <= score <= 1.0 for score in scores)
    meta = json.loads((smoke_training / "model" / "model.json").read_text())["metadata"]
    assert meta["epoch"] == 1 + scores.index(max(scores))
    assert meta["val_map50"] == max(scores)
    best = json.loads((smoke_training / "checkpoints" / "best.json").read_text())
    assert best == {"epoch": meta["epoch"], "score": max(scores)}


def test_anchors_and_a_frozen_backbone_reach_the_trained_model(
    smoke_data: Path, smoke_training: Path, tmp_path: Path
) -> None:
    import numpy as np

    from ppe.model.bundle import load_model_dir

    anchors = [[60, 50], [8, 10], [20, 22], [14, 30], [40, 40], [100, 120]]
    out = tmp_path / "train"
    overrides = [
        f"model.anchors={anchors}",
        f"train.init_from={smoke_training / 'model'}",
        "train.freeze_backbone_epochs=1",
        "train.epochs=1",
    ]
    args = [arg for item in overrides for arg in ("--set", item)]
    run_ppe(
        "train", "--config", "smoke", *args, "--data", str(smoke_data), "--out", str(out),
        "--no-tracking", cwd=tmp_path,
    )  # fmt: skip
    spec = json.loads((out / "model" / "model.json").read_text())["spec"]
    assert spec["anchors"] == [[8, 10], [14, 30], [20, 22], [40, 40], [60, 50], [100, 120]]
    assert spec["masks"] == [[3, 4, 5], [0, 1, 2]]
    source, _, _ = load_model_dir(smoke_training / "model")
    trained, _, _ = load_model_dir(out / "model")
    for layer in trained.layers:
        same = all(
            np.array_equal(a, b)
            for a, b in zip(
                layer.get_weights(), source.get_layer(layer.name).get_weights(), strict=True
            )
        )
        # The backbone (kernels and batch-norm statistics) stayed frozen for the one epoch.
        assert same == layer.name.startswith("backbone_") or not layer.weights, layer.name


def test_a_killed_training_resumes_from_its_last_epoch(smoke_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "train"
    command = [
        sys.executable,
        "-m",
        "ppe",
        "train",
        "--config",
        "smoke",
        "--set",
        f"train.epochs={RESUME_EPOCHS}",
        "--data",
        str(smoke_data),
        "--out",
        str(out),
        "--no-tracking",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    state = out / "checkpoints" / "backup" / "training_metadata.json"
    deadline = time.monotonic() + 400
    try:
        while time.monotonic() < deadline:
            if state.is_file() and json.loads(state.read_text() or "{}").get("epoch", 0) >= 1:
                break
            if process.poll() is not None:
                pytest.fail("training ended before it could be interrupted")
            time.sleep(0.2)
        else:
            pytest.fail("no epoch finished within 400 s")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    done = json.loads(state.read_text())["epoch"]
    assert 1 <= done < RESUME_EPOCHS
    assert not (out / "train.json").exists()

    result = run_ppe(*command[3:], cwd=tmp_path)
    assert f"from the end of epoch {done}" in result.stderr
    summary = json.loads((out / "train.json").read_text())
    assert summary["resumed_from_epoch"] == done
    assert len(summary["history"]["loss"]) == RESUME_EPOCHS - done
    assert (out / "model" / "model.keras").is_file()


def test_resume_with_another_config_is_refused(smoke_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "train"
    (out / "checkpoints" / "backup").mkdir(parents=True)
    (out / "config.yaml").write_text("name: other\ntrain:\n  epochs: 9\n")
    result = run_ppe(
        "train",
        "--config",
        "smoke",
        "--data",
        str(smoke_data),
        "--out",
        str(out),
        "--no-tracking",
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1
    assert "holds an unfinished training made with another config" in result.stderr
    assert "use a new --out" in result.stderr


def test_training_on_a_folder_that_is_not_a_dataset_fails_clearly(tmp_path: Path) -> None:
    result = run_ppe(
        "train",
        "--config",
        "smoke",
        "--data",
        str(tmp_path / "missing"),
        "--out",
        str(tmp_path / "out"),
        "--no-tracking",
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "missing" in result.stderr


def test_bad_config_key_is_rejected_before_any_work(smoke_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_ppe(
        "train",
        "--config",
        "smoke",
        "--set",
        "train.epoch=2",
        "--data",
        str(smoke_data),
        "--out",
        str(out),
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1
    assert "unknown key 'train.epoch': did you mean 'train.epochs'?" in result.stderr
    assert not out.exists()


def test_a_bad_dataset_is_refused_before_tensorflow_is_imported(tmp_path: Path) -> None:
    # Importing TensorFlow costs seconds: the cheap checks (folder, splits, resume) come first.
    # A fresh interpreter, because this test process has imported TensorFlow already.
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from ppe.config import load_config\n"
        "from ppe.errors import PpeError\n"
        "from ppe.train.fit import train\n"
        "try:\n"
        "    train(load_config('smoke'), Path(sys.argv[1]), Path(sys.argv[2]))\n"
        "except PpeError as error:\n"
        "    print('refused:', error)\n"
        "print('imported:', sorted({'tensorflow', 'keras'} & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "missing"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "refused:" in result.stdout and "missing" in result.stdout
    assert "imported: []" in result.stdout
