"""ppe.viz: boxes land on the right pixels, captions, thresholds, grids, tables, bad input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from ppe.viz import (
    CLASS_COLOURS,
    PALETTE,
    class_colour,
    draw_boxes,
    draw_detections,
    image_grid,
    markdown_table,
    metrics_rows,
    to_pil,
)

HELMET = CLASS_COLOURS["helmet"]
HEAD = CLASS_COLOURS["head"]


def black(width: int = 120, height: int = 90) -> np.ndarray:
    return np.zeros((height, width, 3), dtype=np.uint8)


def pixel(image: Image.Image, x: int, y: int) -> tuple[int, int, int]:
    value = image.getpixel((x, y))
    assert isinstance(value, tuple)
    return (int(value[0]), int(value[1]), int(value[2]))


def test_box_outline_is_drawn_in_the_class_colour_and_the_inside_is_untouched() -> None:
    source = black()
    drawn = draw_boxes(source, [[30, 40, 80, 70]], ["helmet"], width=1)
    assert drawn.size == (120, 90)
    for x, y in [(30, 55), (80, 55), (55, 70), (45, 70)]:
        assert pixel(drawn, x, y) == HELMET
    assert pixel(drawn, 55, 55) == (0, 0, 0)  # inside the box
    assert pixel(drawn, 100, 80) == (0, 0, 0)  # far outside
    assert source.sum() == 0  # the input is not modified


def test_caption_sits_above_the_box_or_inside_at_the_top_edge() -> None:
    above = np.asarray(draw_boxes(black(), [[30, 40, 80, 70]], ["head"], width=1))
    # The caption's filled background is in the head colour, in the rows just above the box.
    assert (above[25:39, 31:40] == HEAD).all(axis=-1).any()
    at_top = np.asarray(draw_boxes(black(), [[30, 0, 80, 60]], ["head"], width=1))
    assert (at_top[2:14, 31:40] == HEAD).all(axis=-1).any()


def test_scores_below_the_threshold_are_not_drawn() -> None:
    drawn = draw_boxes(
        black(),
        [[10, 30, 40, 60], [60, 30, 100, 60]],
        ["helmet", "head"],
        [0.9, 0.1],
        score_threshold=0.5,
        width=1,
    )
    assert pixel(drawn, 10, 45) == HELMET
    assert pixel(drawn, 60, 45) == (0, 0, 0)
    assert pixel(drawn, 100, 45) == (0, 0, 0)


def test_dashed_outline_has_gaps() -> None:
    drawn = np.asarray(draw_boxes(black(200, 100), [[20, 50, 180, 90]], ["helmet"], dashed=True))
    bottom = (drawn[90, 20:180] == HELMET).all(axis=-1)
    assert bottom.any() and not bottom.all()


def test_no_boxes_returns_a_copy() -> None:
    source = Image.new("RGB", (32, 24), (9, 8, 7))
    drawn = draw_boxes(source, np.zeros((0, 4)), [])
    assert drawn is not source
    assert np.array_equal(np.asarray(drawn), np.asarray(source))


@dataclass(frozen=True)
class FakeDetection:
    label: str
    score: float
    box: tuple[float, float, float, float]


def test_draw_detections_uses_label_score_and_box() -> None:
    detections = [
        FakeDetection("head", 0.8, (5, 30, 50, 80)),
        FakeDetection("helmet", 0.2, (60, 30, 110, 80)),
    ]
    drawn = draw_detections(black(), detections, score_threshold=0.5, width=1)
    assert pixel(drawn, 5, 60) == HEAD
    assert pixel(drawn, 110, 60) == (0, 0, 0)


@pytest.mark.parametrize(
    ("boxes", "labels", "scores", "message"),
    [
        ([[1, 2, 3]], ["head"], None, r"must be \(N, 4\)"),
        ([[1, 2, 3, 4]], [], None, "1 boxes but 0 labels"),
        ([[1, 2, 3, 4]], ["head"], [0.1, 0.2], "1 boxes but 2 scores"),
        ([[10, 2, 3, 4]], ["head"], None, "inverted"),
    ],
)
def test_bad_boxes_are_rejected(
    boxes: list[list[float]], labels: list[str], scores: list[float] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        draw_boxes(black(), boxes, labels, scores)


def test_to_pil_accepts_gray_and_rejects_float_or_four_channels() -> None:
    assert to_pil(np.zeros((4, 5), dtype=np.uint8)).mode == "RGB"
    with pytest.raises(ValueError, match="uint8"):
        to_pil(np.zeros((4, 5, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        to_pil(np.zeros((4, 5, 4), dtype=np.uint8))


def test_class_colours_are_stable() -> None:
    assert class_colour("helmet") == HELMET
    assert class_colour("vest", ["helmet", "head", "vest"]) == PALETTE[2]
    assert class_colour("vest") == class_colour("vest")


def test_image_grid_layout_and_aspect() -> None:
    wide = Image.new("RGB", (100, 50), (255, 0, 0))
    tall = Image.new("RGB", (50, 100), (0, 0, 255))
    grid = image_grid([wide, tall, wide], columns=2, tile=(100, 100), padding=2)
    assert grid.size == (2 * 104, 2 * 104)
    # First tile: the wide image is centred vertically (white above it, red in the middle).
    assert pixel(grid, 52, 10) == (255, 255, 255)
    assert pixel(grid, 52, 52) == (255, 0, 0)
    # Second tile: the tall image is centred horizontally.
    assert pixel(grid, 104 + 10, 52) == (255, 255, 255)
    assert pixel(grid, 104 + 52, 52) == (0, 0, 255)
    # Third image on the second row; the fourth tile stays background.
    assert pixel(grid, 52, 104 + 52) == (255, 0, 0)
    assert pixel(grid, 104 + 52, 104 + 52) == (255, 255, 255)


def test_image_grid_defaults_and_errors() -> None:
    grid = image_grid([black(30, 20), black(10, 40)], columns=5, padding=0)
    assert grid.size == (2 * 30, 40)
    with pytest.raises(ValueError, match="at least one image"):
        image_grid([])
    with pytest.raises(ValueError, match="columns"):
        image_grid([black()], columns=0)


def test_markdown_table_formats_cells() -> None:
    table = markdown_table(
        [["keras", 0.123456, 1234567, None, True], ["a|b", 1500.5, 3, "x", False]],
        ["backend", "mAP", "bytes", "note", "ok"],
    )
    assert table.splitlines() == [
        "| backend | mAP | bytes | note | ok |",
        "| --- | ---: | ---: | ---: | ---: |",
        "| keras | 0.1235 | 1,234,567 | n/a | yes |",
        "| a\\|b | 1,500 | 3 | x | no |",
    ]
    with pytest.raises(ValueError, match="row 0 has 1 cells"):
        markdown_table([[1]], ["a", "b"])


def test_metrics_rows_follow_the_document_order() -> None:
    backends = {"keras": {"map50": 0.5, "latency_ms_p50": 20.0}, "litert_int8": {"map50": 0.4}}
    assert metrics_rows(backends, ["map50", "latency_ms_p50"]) == [
        ["keras", 0.5, 20.0],
        ["litert_int8", 0.4, None],
    ]
