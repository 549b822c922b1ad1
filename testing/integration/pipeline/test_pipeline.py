"""``ppe pipeline run`` twice against one registry: the first model is promoted, a model that is
not better is not, and the report of each run opens in headless Chromium without errors.

The first run is the suite's shared smoke run (``smoke_run`` in testing/conftest.py), whose
training the training tests also read.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from testing.conftest import FIXTURES
from testing.helpers import CHROMIUM_ARGS, chromium_path, run_ppe

from ppe.config import load_config
from ppe.registry import get_registry
from ppe.run import graph
from ppe.run.documents import ClassThresholds
from ppe.run.layout import RunLayout

#: About this many seconds on 2 cores: scheduled first (testing/conftest.py).
pytestmark = pytest.mark.heavy(90)

if TYPE_CHECKING:
    from testing.conftest import SmokeRun


@pytest.fixture(scope="module")
def two_runs(smoke_run: SmokeRun) -> tuple[Path, Path, Path]:
    """The suite's shared smoke run (promoted: the registry was empty), then a second run."""
    # A margin no model can reach: the challenger is "not better" whatever it scores, so one
    # epoch of training is enough for it (the gate, registry and report are what is checked).
    second = run_ppe(
        *smoke_run.pipeline_args("second"),
        *("--set", "gate.margin=1.0", "--set", "train.epochs=1"),
        cwd=smoke_run.root,
        timeout=900,
    )
    assert "not promoted (champion kept)" in second.stderr
    return smoke_run.run_dir, smoke_run.runs / "second", smoke_run.registry


def test_first_run_is_promoted_and_every_step_wrote_its_folder(
    two_runs: tuple[Path, Path, Path],
) -> None:
    first, _, registry = two_runs
    for part in (
        "config.yaml",
        "data/Annotations",
        "train/model/model.keras",
        "train/model/thresholds.json",
        "evaluate/metrics.json",
        "champion/champion.json",
        "gate/gate.json",
        "register/register.json",
        "export/metrics.json",
        "export/model_int8.tflite",
        "report/index.html",
        "report/report.zip",
        "pipeline.json",
    ):
        assert (first / part).exists(), part
    assert (first / "data_check.txt").read_text().strip() == "clean"
    gate = json.loads((first / "gate" / "gate.json").read_text())
    assert gate["promote"] is True and gate["champion_score"] is None
    assert gate["champion_version"] is None
    champion = json.loads((first / "champion" / "champion.json").read_text())
    assert champion["version"] is None and not (first / "champion" / "model").exists()
    steps = json.loads((first / "pipeline.json").read_text())
    # The data step, then the graph's steps in the graph's order.
    assert list(steps["steps"]) == ["data", *graph.step_names()]
    assert list(steps["steps"]) == [
        "data",
        "champion",
        "train",
        "evaluate",
        "gate",
        "register",
        "export",
        "report",
    ]
    register = json.loads((first / "register" / "register.json").read_text())
    assert register["promoted"] is True and register["version"]["version"] == 1
    versions = get_registry(load_config("smoke"), root=registry).list("ppe-hardhat-yolov3")
    assert [v.version for v in versions] == [1, 2]
    assert versions[0].tags["run_id"] == "first" and versions[1].tags["run_id"] == "second"
    assert len(versions[0].tags["data_hash"]) == 64


def test_second_run_keeps_the_champion_and_says_why(two_runs: tuple[Path, Path, Path]) -> None:
    first, second, registry = two_runs
    gate = json.loads((second / "gate" / "gate.json").read_text())
    assert gate["promote"] is False
    assert "Not promoted" in gate["reason"]
    # The gate names the first run's model (version 1) and its score on the second run's data.
    assert gate["champion_version"] == 1
    first_metrics = json.loads((first / "evaluate" / "metrics.json").read_text())
    champion_metrics = json.loads((second / "champion" / "evaluate" / "metrics.json").read_text())
    second_metrics = json.loads((second / "evaluate" / "metrics.json").read_text())
    assert gate["champion_model_hash"] == first_metrics["model_hash"]
    assert gate["champion_score"] == champion_metrics["map50"]
    assert champion_metrics["data_hash"] == second_metrics["data_hash"] == gate["data_hash"]
    champion = get_registry(load_config("smoke"), root=registry).champion("ppe-hardhat-yolov3")
    assert champion is not None and champion.version == 1
    # Same data (same seed), same model: the champion's re-evaluation reproduces its score.
    assert champion_metrics["map50"] == pytest.approx(first_metrics["map50"], abs=1e-9)
    register = json.loads((second / "register" / "register.json").read_text())
    assert register["promoted"] is False and register["version"]["version"] == 2
    html = (second / "report" / "index.html").read_text()
    assert "Not promoted" in html and "champion_vs_challenger.png" in html


def test_report_zip_holds_the_page_and_its_plots(two_runs: tuple[Path, Path, Path]) -> None:
    _, second, _ = two_runs
    with zipfile.ZipFile(second / "report" / "report.zip") as bundle:
        names = set(bundle.namelist())
    assert "report/index.html" in names
    for plot in (
        "ground_truth.png",
        "detections.png",
        "ap.png",
        "pr_helmet.png",
        "pr_head.png",
        "champion_vs_challenger.png",
        "loss.png",
    ):
        assert f"report/{plot}" in names, plot
    assert any(name.startswith("report/sample_") for name in names)


def test_report_opens_in_chromium_without_errors(
    two_runs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    _, second, _ = two_runs
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), args=list(CHROMIUM_ARGS)
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on(
            "console",
            lambda message: errors.append(message.text) if message.type == "error" else None,
        )
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto((second / "report" / "index.html").as_uri())
        page.wait_for_load_state("load")
        broken = page.evaluate(
            "Array.from(document.images)"
            ".filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
        )
        count = page.evaluate("document.images.length")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert broken == []
    assert count >= 8
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_evaluate_refuses_a_folder_that_is_not_a_model(
    two_runs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    first, _, _ = two_runs
    not_a_model = tmp_path / "not_a_model"
    not_a_model.mkdir()
    (not_a_model / "notes.txt").write_text("hello")
    out = tmp_path / "evaluate"
    result = run_ppe(
        "evaluate",
        "--config",
        "smoke",
        "--model",
        str(not_a_model),
        "--data",
        str(first / "data"),
        "--out",
        str(out),
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "not_a_model" in result.stderr
    assert not out.exists()


def test_evaluate_refuses_an_empty_split(two_runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    import shutil

    first, _, _ = two_runs
    data = tmp_path / "data"
    shutil.copytree(first / "data", data)
    (data / "ImageSets" / "Main" / "test.txt").write_text("")
    out = tmp_path / "evaluate"
    result = run_ppe(
        "evaluate",
        "--config",
        "smoke",
        "--model",
        str(first / "train" / "model"),
        "--data",
        str(data),
        "--out",
        str(out),
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "split 'test' has no images" in result.stderr
    assert not out.exists()


def test_a_dataset_without_the_evaluation_split_stops_before_training(tmp_path: Path) -> None:
    """The real photos come with train/ and val/ folders only: the import keeps them, so the
    test split that the hardhat profile scores on is empty. The graph's first step says so at
    once, instead of the evaluate step failing after the whole training."""
    import shutil

    source = tmp_path / "photos"
    shutil.copytree(FIXTURES / "hardhat_sample", source)
    train = source / "images" / "train"
    train.mkdir()
    for image in sorted((source / "images" / "val").iterdir())[:8]:
        image.rename(train / image.name)
    runs, registry = tmp_path / "runs", tmp_path / "registry"
    result = run_ppe(
        *("pipeline", "run", "--config", "hardhat", "--out", str(runs), "--run-id", "r1"),
        *("--set", f"data.path={source}", "--set", f"registry.root={registry}"),
        *("--set", "train.init_from=null", "--no-tracking"),
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "evaluate.split is 'test' but ImageSets/Main/test.txt lists no image" in result.stderr
    assert "--set evaluate.split=val" in result.stderr
    # Nothing was trained or registered.
    assert not RunLayout(runs / "r1").port("train").exists()
    assert get_registry(load_config("hardhat"), root=registry).list("ppe-hardhat-yolov3") == []


def test_cartucho_files_reproduce_the_reported_map(two_runs: tuple[Path, Path, Path]) -> None:
    from ppe.evaluate.cartucho import read_cartucho
    from ppe.evaluate.voc_map import evaluate_voc_map

    first, _, _ = two_runs
    metrics = json.loads((first / "evaluate" / "metrics.json").read_text())
    files = read_cartucho(first / "evaluate", metrics["classes"])
    again = evaluate_voc_map(files.ground_truths, files.detections, metrics["classes"])
    # Cartucho orders images by file name, so score ties may break differently: 1e-4 at most.
    assert again.map50 == pytest.approx(metrics["map50"], abs=1e-4)
    assert metrics["thresholds"]["score_threshold"] == 0.01
    assert metrics["counts"]["images"] == len(files.ground_truths)


def test_export_metrics_list_every_backend(two_runs: tuple[Path, Path, Path]) -> None:
    first, _, _ = two_runs
    export = json.loads((first / "export" / "metrics.json").read_text())
    assert set(export["backends"]) == {"keras", "litert_fp32", "litert_int8"}
    for entry in export["backends"].values():
        assert {"map50", "latency_ms_p50", "latency_ms_p95", "speedup_vs_keras"} <= set(entry)
    # fp32 LiteRT runs the same graph as Keras: its mAP matches closely.
    assert export["backends"]["litert_fp32"]["map50"] == pytest.approx(
        export["backends"]["keras"]["map50"], abs=0.02
    )
    assert (first / "export" / "labels.txt").read_text().split() == ["helmet", "head"]
    # The train step chose per-class thresholds on the val split; the export carries them to the
    # edge unchanged, and the evaluation's operating point applies them.
    chosen = ClassThresholds.read(first / "export" / "thresholds.json")
    assert chosen.split == "val" and set(chosen.thresholds) == {"helmet", "head"}
    model_copy = first / "train" / "model" / "thresholds.json"
    assert (first / "export" / "thresholds.json").read_bytes() == model_copy.read_bytes()
    evaluated = json.loads((first / "evaluate" / "metrics.json").read_text())
    assert "thresholds.json (chosen on the val split" in evaluated["operating_point"]["source"]


def test_export_writes_the_configured_output_layout(
    two_runs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    first, _, _ = two_runs
    default = load_config("smoke").export.output_layout
    assert default == "raw"
    assert json.loads((first / "export" / "model.json").read_text())["output_layout"] == default
    # export.output_layout is a real setting: split files, which the runtime scores as such.
    out = tmp_path / "export"
    run_ppe(
        *("export", "--config", "smoke", "--set", "export.output_layout=split"),
        *("--model", str(first / "train" / "model"), "--data", str(first / "data")),
        *("--out", str(out)),
        cwd=tmp_path,
    )
    assert json.loads((out / "model.json").read_text())["output_layout"] == "split"
    backends = json.loads((out / "metrics.json").read_text())["backends"]
    assert backends["litert_fp32"]["map50"] == pytest.approx(backends["keras"]["map50"], abs=0.02)
