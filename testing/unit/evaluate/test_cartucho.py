"""Cartucho/mAP text files: exact format, round trip to the same mAP, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ppe.errors import DataError
from ppe.evaluate.cartucho import read_cartucho, write_cartucho
from ppe.evaluate.voc_map import ImageDetections, ImageGroundTruth, evaluate_voc_map

CLASSES = ["helmet", "head"]


def random_set(
    seed: int, num_images: int = 40
) -> tuple[list[str], list[ImageGroundTruth], list[ImageDetections]]:
    rng = np.random.default_rng(seed)
    ids, truths, found = [], [], []
    for i in range(num_images):
        n_gt = int(rng.integers(0, 5))
        xy = rng.uniform(0, 300, size=(n_gt, 2))
        wh = rng.uniform(5, 80, size=(n_gt, 2))
        gt_boxes = np.concatenate([xy, xy + wh], axis=1)
        truths.append(ImageGroundTruth(gt_boxes, rng.integers(0, 2, n_gt), rng.random(n_gt) < 0.15))
        n_det = int(rng.integers(0, 7))
        jitter = rng.normal(0, 6, size=(n_det, 4))
        base = gt_boxes[rng.integers(0, n_gt, n_det)] if n_gt else rng.uniform(0, 300, (n_det, 4))
        moved = base + jitter
        det_boxes = np.column_stack(
            [
                np.minimum(moved[:, 0], moved[:, 2]),
                np.minimum(moved[:, 1], moved[:, 3]),
                np.maximum(moved[:, 0], moved[:, 2]),
                np.maximum(moved[:, 1], moved[:, 3]),
            ]
        ).reshape(-1, 4)
        scores = np.round(rng.random(n_det), 2)  # rounded: many ties
        found.append(ImageDetections(det_boxes, scores, rng.integers(0, 2, n_det)))
        ids.append(f"img_{i:03d}")
    return ids, truths, found


def test_files_have_the_cartucho_format(tmp_path: Path) -> None:
    write_cartucho(
        tmp_path,
        ["a", "b"],
        [
            ImageGroundTruth([[10, 20, 30, 40], [1.5, 2.25, 3.125, 4.0]], [0, 1], [False, True]),
            ImageGroundTruth([], []),
        ],
        [ImageDetections([[11, 21, 31, 41]], [0.875], [0]), ImageDetections([], [], [])],
        CLASSES,
    )
    assert (tmp_path / "ground-truth" / "a.txt").read_text() == (
        "helmet 10 20 30 40\nhead 1.5 2.25 3.125 4 difficult\n"
    )
    assert (tmp_path / "detection-results" / "a.txt").read_text() == "helmet 0.875 11 21 31 41\n"
    assert (tmp_path / "ground-truth" / "b.txt").read_text() == ""
    assert (tmp_path / "detection-results" / "b.txt").read_text() == ""  # empty file allowed


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_trip_gives_the_same_map(tmp_path: Path, seed: int) -> None:
    ids, truths, found = random_set(seed)
    before = evaluate_voc_map(truths, found, CLASSES)
    write_cartucho(tmp_path, ids, truths, found, CLASSES)
    back = read_cartucho(tmp_path, CLASSES)
    assert back.image_ids == tuple(ids)
    for original, read in zip(truths, back.ground_truths, strict=True):
        np.testing.assert_array_equal(original.boxes, read.boxes)  # exact floats
        np.testing.assert_array_equal(original.difficult, read.difficult)
    after = evaluate_voc_map(back.ground_truths, back.detections, back.class_names)
    assert after.map50 == before.map50
    assert after.ap == before.ap
    assert 0.0 < before.map50 < 1.0


def test_class_names_are_discovered_and_sorted_without_a_list(tmp_path: Path) -> None:
    (tmp_path / "ground-truth").mkdir()
    (tmp_path / "detection-results").mkdir()
    (tmp_path / "ground-truth" / "x.txt").write_text("person 0 0 9 9\nbed 5 5 20 20 difficult\n")
    (tmp_path / "detection-results" / "x.txt").write_text("bed 0.5 5 5 20 20\n\n")
    data = read_cartucho(tmp_path)
    assert data.class_names == ("bed", "person")
    assert data.ground_truths[0].labels.tolist() == [1, 0]
    assert data.ground_truths[0].difficult.tolist() == [False, True]
    result = evaluate_voc_map(data.ground_truths, data.detections, data.class_names)
    assert result.ap == {"bed": None, "person": 0.0}
    assert result["bed"].num_ignored == 1


def test_images_are_read_in_the_tools_file_name_order(tmp_path: Path) -> None:
    # The tool sorts file names: "a-b.txt" < "a.txt" because '-' sorts before '.'.
    for sub in ("ground-truth", "detection-results"):
        (tmp_path / sub).mkdir()
        for stem in ("a", "a-b", "b"):
            (tmp_path / sub / f"{stem}.txt").write_text("")
    assert read_cartucho(tmp_path, CLASSES).image_ids == ("a-b", "a", "b")


@pytest.mark.parametrize(
    ("folder", "name", "text", "match"),
    [
        ("ground-truth", "a.txt", "helmet 1 2 3\n", r"a\.txt:1: expected '<class> <left>"),
        ("ground-truth", "a.txt", "helmet 1 2 3 4 hard\n", r"a\.txt:1: expected"),
        ("detection-results", "a.txt", "helmet 0.5 1 2 3 x\n", r"a\.txt:1: 'x' is not a number"),
        ("detection-results", "a.txt", "\nvest 0.5 1 2 3 4\n", r"a\.txt:2: unknown class 'vest'"),
        ("detection-results", "b.txt", "", r"only in detection-results: \['b'\]"),
    ],
)
def test_malformed_files_name_the_file_and_line(
    tmp_path: Path, folder: str, name: str, text: str, match: str
) -> None:
    write_cartucho(
        tmp_path, ["a"], [ImageGroundTruth([], [])], [ImageDetections([], [], [])], CLASSES
    )
    (tmp_path / folder / name).write_text(text)
    with pytest.raises(DataError, match=match):
        read_cartucho(tmp_path, CLASSES)


def test_missing_folder_and_bad_names_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such folder"):
        read_cartucho(tmp_path)
    with pytest.raises(DataError, match="without spaces"):
        write_cartucho(tmp_path, [], [], [], ["hard hat"])
    with pytest.raises(DataError, match="cannot be a file name"):
        write_cartucho(
            tmp_path, ["../x"], [ImageGroundTruth([], [])], [ImageDetections([], [], [])], CLASSES
        )
