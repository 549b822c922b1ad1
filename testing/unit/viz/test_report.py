"""The report: typed inputs, the bootstrap interval, the operating point and the paired gate."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from testing.unit.evaluate.evaluation_cases import split_of, write_eval

from ppe.errors import DocumentError
from ppe.evaluate.voc_map import ImageDetections, ImageGroundTruth
from ppe.gate import run_gate
from ppe.report import ReportInputs, build_report
from ppe.report.build import CLASS_COLOURS
from ppe.run import layout

# Sample image 0: a helmet box found at 0.9, and a head detection at 0.3 on empty ground.
HELMET_BOX = [11.0, 11.0, 50.0, 50.0]
LOW_HEAD = [71.0, 11.0, 110.0, 50.0]


def _rgb(colour: str) -> tuple[int, int, int]:
    return (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))


def _data(folder: Path, count: int) -> Path:
    images = folder / "JPEGImages"
    images.mkdir(parents=True)
    for index in range(count):
        Image.new("RGB", (160, 120)).save(images / f"img{index:04d}.png")
    return folder


def _split(count: int, found_helmets: int) -> tuple[list[ImageGroundTruth], list[ImageDetections]]:
    truths = [ImageGroundTruth([HELMET_BOX], [0]) for _ in range(count)]
    found = [
        ImageDetections([HELMET_BOX, LOW_HEAD], [0.9, 0.3], [0, 1])
        if index < found_helmets
        else ImageDetections([LOW_HEAD], [0.3], [1])
        for index in range(count)
    ]
    return truths, found


@pytest.fixture
def run(tmp_path: Path) -> ReportInputs:
    evaluate = tmp_path / "evaluate"
    write_eval(evaluate, split_of(*_split(20, 15)), operating=([0.4, 0.5], "edge 0.4, head 0.5"))
    champion_eval = tmp_path / "champion-eval"
    write_eval(champion_eval, split_of(*_split(20, 12)))
    gate = tmp_path / "gate"
    run_gate(
        layout.metrics_file(evaluate),
        layout.metrics_file(champion_eval),
        layout.gate_file(gate),
        margin=0.005,
    )
    return ReportInputs(evaluate=evaluate, gate=gate, data=_data(tmp_path / "data", 20))


def test_report_shows_interval_operating_point_and_paired_gate(
    run: ReportInputs, tmp_path: Path
) -> None:
    index = build_report(run, tmp_path / "report", "r1")
    page = index.read_text()
    assert "95% interval (percentile bootstrap over images, 1000 resamples)" in page
    assert "edge 0.4, head 0.5" in page  # where the operating thresholds come from
    assert "paired 95% interval (20 images)" in page
    assert "Paired bootstrap over the same 20 images" in page  # the gate's reason
    for plot in ("detections.png", "confusion.png", "ap.png", "pr_helmet.png"):
        assert (tmp_path / "report" / plot).is_file() and f'src="{plot}"' in page
    with zipfile.ZipFile(layout.report_zip(tmp_path / "report")) as bundle:
        assert "report/confusion.png" in bundle.namelist()
    # The per-class table counts at the operating thresholds: 15 of 20 helmets, the 0.3 head
    # detections are all below head's 0.5 (no false positives, no head boxes to miss).
    assert "<td>helmet</td><td>0.7500</td>" in page
    assert "<td>0.4</td><td>15</td><td>0</td><td>5</td>" in page
    assert "<td>0.5</td><td>0</td><td>0</td><td>0</td>" in page


def test_sample_images_draw_only_detections_at_the_operating_thresholds(
    run: ReportInputs, tmp_path: Path
) -> None:
    build_report(run, tmp_path / "report", "r1")
    sample = np.asarray(Image.open(tmp_path / "report" / "sample_img0000.png").convert("RGB"))
    helmet, head = _rgb(CLASS_COLOURS[0]), _rgb(CLASS_COLOURS[1])
    # Pillow draws the box outline on its corner pixels (1-based VOC box, drawn as given).
    assert tuple(sample[50, 30]) == helmet  # bottom edge of the 0.9 helmet box
    assert not (sample == head).all(axis=2).any()  # the 0.3 head detection is not drawn


def test_report_refuses_an_untyped_curves_file(run: ReportInputs, tmp_path: Path) -> None:
    # The old untyped form ({"helmet": {...}}) is not the PrCurves document.
    layout.curves_file(run.evaluate).write_text('{"helmet": {"precision": [], "recall": []}}')
    with pytest.raises(DocumentError, match=r"pr_curves\.json.*re-run `ppe evaluate`"):
        build_report(run, tmp_path / "report", "r1")
    assert not (tmp_path / "report").exists()  # nothing half-written


def test_report_without_an_operating_point_says_so(tmp_path: Path) -> None:
    evaluate = tmp_path / "evaluate"
    write_eval(evaluate, split_of(*_split(4, 2)))  # no operating thresholds given
    index = build_report(ReportInputs(evaluate=evaluate), tmp_path / "report", "r0")
    page = index.read_text()
    assert "has no operating point (re-run `ppe evaluate` to get one)" in page
    assert not (tmp_path / "report" / "confusion.png").exists()
    assert "<td>helmet</td><td>0.5000</td>" in page
