"""The local registry across processes; `ppe gate` -> `ppe register` -> `ppe models` end to end."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from testing.helpers import evaluation_metrics

from ppe.cli import main
from ppe.registry.local import LocalRegistry

NAME = "ppe-hardhat-yolov3"

WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from ppe.registry.local import LocalRegistry

    root, model, start, worker, count = sys.argv[1:6]
    registry = LocalRegistry(Path(root))
    while not Path(start).exists():  # start together
        time.sleep(0.005)
    for i in range(int(count)):
        tags = {"worker": worker, "i": str(i)}
        version = registry.register(Path(model), "ppe-hardhat-yolov3", tags=tags)
        registry.set_champion("ppe-hardhat-yolov3", version.version)
        print(version.version, flush=True)
    """
)


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(path.relative_to(root).as_posix().encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def make_model(folder: Path, content: str = "weights") -> Path:
    folder.mkdir(parents=True)
    (folder / "model.weights.h5").write_text(content)
    return folder


def test_concurrent_registers_get_distinct_versions_and_a_consistent_champion(
    tmp_path: Path,
) -> None:
    root = tmp_path / "registry"
    model = make_model(tmp_path / "model")
    start = tmp_path / "start"
    workers, per_worker = 3, 4
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                str(root),
                str(model),
                str(start),
                str(w),
                str(per_worker),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    time.sleep(1.0)  # let every interpreter reach the start line
    start.touch()
    outputs = [p.communicate(timeout=120) for p in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
    got = sorted(int(line) for out, _ in outputs for line in out.split())
    total = workers * per_worker
    assert got == list(range(1, total + 1))  # distinct versions, no gaps

    registry = LocalRegistry(root)
    versions = registry.list(NAME)  # re-validates the whole folder: index and meta consistent
    assert [v.version for v in versions] == list(range(1, total + 1))
    index = json.loads((root / NAME / "index.json").read_text())
    assert index["versions"] == list(range(1, total + 1))
    champions = [v for v in versions if v.champion]
    assert len(champions) == 1 and champions[0].version == index["champion"]
    assert sorted((v.tags["worker"], v.tags["i"]) for v in versions) == sorted(
        (str(w), str(i)) for w in range(workers) for i in range(per_worker)
    )
    hidden = {p.name for p in (root / NAME).iterdir() if p.name.startswith(".")}
    assert hidden == {".lock"}  # no staging folders or temporary index files left behind


def metrics(map50: float, model_hash: str) -> dict[str, Any]:
    return evaluation_metrics(map50, data_hash="data-1", model_hash=model_hash)


def run_step(
    tmp_path: Path, run: str, map50: float, champion_metrics: Path | None, root: Path
) -> tuple[Path, Path]:
    folder = tmp_path / run
    model = make_model(folder / "model", f"weights of {run}")
    metrics_path = folder / "metrics.json"
    metrics_path.write_text(json.dumps(metrics(map50, f"hash-{run}")))
    gate = folder / "gate.json"
    args = ["gate", "--challenger", str(metrics_path), "--out", str(gate), "--config", "smoke"]
    if champion_metrics is not None:
        args += ["--champion", str(champion_metrics)]
    assert main(args) == 0
    status = main(
        [
            "register",
            "--model",
            str(model),
            "--gate",
            str(gate),
            "--metrics",
            str(metrics_path),
            "--run-id",
            run,
            "--git-commit",
            "abc123",
            "--config",
            "smoke",
            "--set",
            f"registry.root={root}",
        ]
    )
    assert status == 0
    return metrics_path, gate


def test_gate_register_models_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "registry"
    common = ["--config", "smoke", "--set", f"registry.root={root}"]
    first_metrics, first_gate = run_step(tmp_path, "run1", 0.40, None, root)
    assert json.loads(first_gate.read_text())["promote"] is True
    # A worse challenger is registered (traceable) but does not take the champion marker.
    _, second_gate = run_step(tmp_path, "run2", 0.39, first_metrics, root)
    assert json.loads(second_gate.read_text())["promote"] is False
    # A better one does.
    _, third_gate = run_step(tmp_path, "run3", 0.45, first_metrics, root)
    assert json.loads(third_gate.read_text())["promote"] is True

    capsys.readouterr()
    assert main(["models", "list", *common]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(v["version"], v["champion"]) for v in listed] == [(1, False), (2, False), (3, True)]
    tags = listed[1]["tags"]
    assert tags == {
        "map50": "0.390000",
        "data_hash": "data-1",
        "config_hash": tags["config_hash"],
        "git_commit": "abc123",
        "run_id": "run2",
    }
    assert len(tags["config_hash"]) == 16
    assert listed[1]["properties"]["gate_promote"] == "false"
    assert listed[2]["properties"]["model_hash"] == "hash-run3"

    assert main(["models", "show", "--version", "2", *common]) == 0
    assert json.loads(capsys.readouterr().out)["tags"]["run_id"] == "run2"
    assert main(["models", "download", "--champion", "--dest", str(tmp_path / "dl"), *common]) == 0
    assert (tmp_path / "dl" / "model.weights.h5").read_text() == "weights of run3"


def test_register_refuses_a_promotion_against_a_stale_champion(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    first_metrics, _ = run_step(tmp_path, "run1", 0.40, None, root)
    # Two runs gated against run1; run2 registers first and becomes champion.
    run_step(tmp_path, "run2", 0.50, first_metrics, root)
    folder = tmp_path / "run3"
    model = make_model(folder / "model")
    metrics_path = folder / "metrics.json"
    metrics_path.write_text(json.dumps(metrics(0.45, "hash-run3")))
    gate = folder / "gate.json"
    assert (
        main(
            [
                "gate",
                "--challenger",
                str(metrics_path),
                "--champion",
                str(first_metrics),
                "--out",
                str(gate),
                "--config",
                "smoke",
            ]
        )
        == 0
    )
    before = tree_hash(root)
    status = main(
        [
            "register",
            "--model",
            str(model),
            "--gate",
            str(gate),
            "--metrics",
            str(metrics_path),
            "--config",
            "smoke",
            "--set",
            f"registry.root={root}",
        ]
    )
    assert status == 1
    assert tree_hash(root) == before
    assert LocalRegistry(root).champion(NAME).version == 2  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["corrupt-index", "version-folder-deleted"])
def test_damaged_registry_fails_the_cli_and_changes_nothing(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "registry"
    first_metrics, _ = run_step(tmp_path, "run1", 0.40, None, root)
    run_step(tmp_path, "run2", 0.30, first_metrics, root)
    if kind == "corrupt-index":
        (root / NAME / "index.json").write_text("{oops")
        expected = "index.json: not valid JSON"
    else:
        shutil.rmtree(root / NAME / "2")
        expected = "listed in index.json but missing"
    before = tree_hash(root)
    common = ["--config", "smoke", "--set", f"registry.root={root}"]
    for args in (
        ["models", "list", *common],
        ["models", "show", "--version", "1", *common],
        ["models", "download", "--champion", "--dest", str(tmp_path / "dl"), *common],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "ppe", *args], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 1, result.stderr
        assert expected in result.stderr and "Fix:" in result.stderr
        assert "Traceback" not in result.stderr
        assert tree_hash(root) == before
    # And through register (in-process to keep the test quick).
    model = make_model(tmp_path / "new-model")
    gate = tmp_path / "run2" / "gate.json"
    metrics_path = tmp_path / "run2" / "metrics.json"
    assert (
        main(
            [
                "register",
                "--model",
                str(model),
                "--gate",
                str(gate),
                "--metrics",
                str(metrics_path),
                *common,
            ]
        )
        == 1
    )
    assert tree_hash(root) == before


def test_azureml_backend_without_workspace_settings_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    for key in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AML_WORKSPACE"):
        monkeypatch.delenv(key, raising=False)
    status = main(["models", "list", "--config", "smoke", "--set", "registry.backend=azureml"])
    assert status == 1
    assert "AZURE_SUBSCRIPTION_ID" in caplog.text and "not set" in caplog.text
