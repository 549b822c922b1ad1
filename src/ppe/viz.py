"""Pictures and tables for people: boxes drawn on images, image grids and Markdown tables.

The notebooks use these to show datasets, detections and metrics; nothing in the pipeline depends
on them. Only NumPy and Pillow are needed (no TensorFlow, no Matplotlib).

Boxes here are **pixel** boxes ``[xmin, ymin, xmax, ymax]`` on the image they are drawn on: the
values of a VOC annotation (``Sample.pixel_boxes``, 1-based inclusive) or of an edge detection
(``Detection.box``, continuous pixels) can both be passed as they are, since the half-pixel
difference between the two conventions is invisible in a drawing. Normalised boxes (in [0, 1])
must be scaled first, e.g. with :func:`ppe.data.voc.pixel_box`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageDraw, ImageFont

logger = logging.getLogger(__name__)

#: Colours by class index (colour-blind friendly, the report's palette); cycled for more classes.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (27, 158, 119),
    (217, 95, 2),
    (117, 112, 179),
    (231, 41, 138),
    (102, 166, 30),
    (230, 171, 2),
)
#: The colour of the classes the PPE detector knows, so every picture agrees.
CLASS_COLOURS: dict[str, tuple[int, int, int]] = {"helmet": PALETTE[0], "head": PALETTE[1]}


class LabelledBox(Protocol):
    """Anything with a class ``label``, a ``score`` and a pixel ``box`` (an edge detection)."""

    @property
    def label(self) -> str:
        """Class name."""
        ...

    @property
    def score(self) -> float:
        """Confidence in [0, 1]."""
        ...

    @property
    def box(self) -> Sequence[float]:
        """``[xmin, ymin, xmax, ymax]`` in pixels."""
        ...


def class_colour(name: str, classes: Sequence[str] = ()) -> tuple[int, int, int]:
    """The drawing colour of a class.

    Args:
        name: Class name.
        classes: All class names in order; a class that is neither ``helmet`` nor ``head`` takes
            the palette colour of its index here (or of a stable hash of its name when absent).

    Returns:
        An RGB triple.
    """
    if name in CLASS_COLOURS:
        return CLASS_COLOURS[name]
    if name in classes:
        return PALETTE[list(classes).index(name) % len(PALETTE)]
    return PALETTE[sum(name.encode()) % len(PALETTE)]


def to_pil(image: Image.Image | np.ndarray) -> Image.Image:
    """A new RGB Pillow image from a Pillow image or a uint8 ``(H, W, 3)`` / ``(H, W)`` array.

    Raises:
        ValueError: The array is not uint8 or not 2-D / 3-channel.
    """
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8, got {array.dtype}")
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3):
        return Image.fromarray(array).convert("RGB")
    raise ValueError(f"image arrays must be (H, W) or (H, W, 3), got shape {array.shape}")


def draw_boxes(
    image: Image.Image | np.ndarray,
    boxes: Sequence[Sequence[float]] | np.ndarray,
    labels: Sequence[str],
    scores: Sequence[float] | np.ndarray | None = None,
    *,
    classes: Sequence[str] = (),
    score_threshold: float = 0.0,
    width: int = 2,
    dashed: bool = False,
) -> Image.Image:
    """Draw labelled boxes on a copy of an image.

    Args:
        image: The picture (Pillow image or uint8 array); it is not modified.
        boxes: ``(N, 4)`` pixel boxes ``[xmin, ymin, xmax, ymax]`` on ``image``.
        labels: ``N`` class names.
        scores: ``N`` confidences, written after the name; None for ground truth.
        classes: All class names, for colours of classes other than helmet and head.
        score_threshold: Boxes scoring below it are not drawn (only with ``scores``).
        width: Line width in pixels.
        dashed: Dashed outlines (to tell ground truth from predictions on one picture).

    Returns:
        A new RGB image with the boxes and their captions.

    Raises:
        ValueError: The boxes are not ``(N, 4)``, the lengths disagree, or a box is inverted.
    """
    canvas = to_pil(image)
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        array = array.reshape(0, 4)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) [xmin, ymin, xmax, ymax], got {array.shape}")
    if len(labels) != len(array):
        raise ValueError(f"{len(array)} boxes but {len(labels)} labels")
    score_values = None if scores is None else [float(value) for value in scores]
    if score_values is not None and len(score_values) != len(array):
        raise ValueError(f"{len(array)} boxes but {len(score_values)} scores")
    inverted = np.flatnonzero((array[:, 2] < array[:, 0]) | (array[:, 3] < array[:, 1]))
    if inverted.size:
        raise ValueError(
            f"box {inverted[0]} {array[inverted[0]].tolist()} is inverted: xmax < xmin or "
            "ymax < ymin (boxes are [xmin, ymin, xmax, ymax])"
        )
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for index, (box, label) in enumerate(zip(array.tolist(), labels, strict=True)):
        score = None if score_values is None else score_values[index]
        if score is not None and score < score_threshold:
            continue
        colour = class_colour(label, classes)
        x0, y0, x1, y1 = box
        if dashed:
            _dashed_rectangle(draw, (x0, y0, x1, y1), colour, width)
        else:
            draw.rectangle((x0, y0, x1, y1), outline=colour, width=width)
        caption = label if score is None else f"{label} {score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
        text_w, text_h = right - left, bottom - top
        text_y = y0 - text_h - 3 if y0 - text_h - 3 >= 0 else y0 + width
        draw.rectangle((x0, text_y, x0 + text_w + 3, text_y + text_h + 2), fill=colour)
        draw.text((x0 + 2 - left, text_y + 1 - top), caption, fill=(255, 255, 255), font=font)
    return canvas


def _dashed_rectangle(
    draw: ImageDraw.ImageDraw,
    box: tuple[float, float, float, float],
    colour: tuple[int, int, int],
    width: int,
    dash: int = 5,
) -> None:
    """Outline ``box`` with dashes of ``dash`` pixels and gaps of the same length."""
    x0, y0, x1, y1 = box
    for start in np.arange(x0, x1, 2 * dash):
        end = min(start + dash, x1)
        draw.line([(start, y0), (end, y0)], fill=colour, width=width)
        draw.line([(start, y1), (end, y1)], fill=colour, width=width)
    for start in np.arange(y0, y1, 2 * dash):
        end = min(start + dash, y1)
        draw.line([(x0, start), (x0, end)], fill=colour, width=width)
        draw.line([(x1, start), (x1, end)], fill=colour, width=width)


def draw_detections(
    image: Image.Image | np.ndarray,
    detections: Iterable[LabelledBox],
    *,
    score_threshold: float = 0.0,
    classes: Sequence[str] = (),
    width: int = 2,
) -> Image.Image:
    """Draw detections (e.g. ``DetectionResult.detections`` of the edge runtime) on an image.

    Args:
        image: The picture the detections were made on.
        detections: Objects with ``label``, ``score`` and a pixel ``box`` ``[xmin, ymin, xmax,
            ymax]``.
        score_threshold: Detections below it are left out.
        classes: All class names (colours of classes other than helmet and head).
        width: Line width in pixels.

    Returns:
        A new RGB image.
    """
    items = list(detections)
    return draw_boxes(
        image,
        [list(item.box) for item in items],
        [item.label for item in items],
        [item.score for item in items],
        classes=classes,
        score_threshold=score_threshold,
        width=width,
    )


def image_grid(
    images: Sequence[Image.Image | np.ndarray],
    columns: int = 3,
    *,
    tile: tuple[int, int] | None = None,
    padding: int = 4,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """Lay images out on a grid, each scaled (aspect kept) and centred in a tile.

    Args:
        images: The pictures, in reading order.
        columns: Tiles per row (fewer when there are fewer images).
        tile: ``(width, height)`` of a tile; default: the largest image's size.
        padding: Pixels around every tile.
        background: Fill colour of the gaps.

    Returns:
        One RGB image.

    Raises:
        ValueError: No images, or a non-positive ``columns`` or tile size.
    """
    if not images:
        raise ValueError("image_grid needs at least one image")
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    pictures = [to_pil(image) for image in images]
    tile_w, tile_h = tile or (
        max(picture.width for picture in pictures),
        max(picture.height for picture in pictures),
    )
    if tile_w < 1 or tile_h < 1:
        raise ValueError(f"tile size must be positive, got {(tile_w, tile_h)}")
    columns = min(columns, len(pictures))
    rows = math.ceil(len(pictures) / columns)
    grid = Image.new(
        "RGB",
        (columns * (tile_w + 2 * padding), rows * (tile_h + 2 * padding)),
        background,
    )
    for index, picture in enumerate(pictures):
        scale = min(tile_w / picture.width, tile_h / picture.height)
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        fitted = (
            picture.resize(size, Image.Resampling.BILINEAR) if size != picture.size else picture
        )
        row, column = divmod(index, columns)
        left = column * (tile_w + 2 * padding) + padding + (tile_w - size[0]) // 2
        top = row * (tile_h + 2 * padding) + padding + (tile_h - size[1]) // 2
        grid.paste(fitted, (left, top))
    return grid


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A GitHub-flavoured Markdown table.

    Floats are written with four decimals (thousands separators from 1000 up), integers with
    thousands separators, None as ``n/a``, booleans as yes/no; ``|`` in text is escaped.

    Args:
        rows: The cells, one sequence per row.
        header: Column titles.

    Returns:
        The table text (first column left-aligned, the others right-aligned).

    Raises:
        ValueError: A row has a different number of cells than the header.
    """
    for number, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"row {number} has {len(row)} cells, the header {len(header)}")
    lines = [
        "| " + " | ".join(_cell(title) for title in header) + " |",
        "|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|",
    ]
    lines.extend("| " + " | ".join(_cell(value) for value in row) + " |" for row in rows)
    return "\n".join(lines)


def metrics_rows(
    backends: Mapping[str, Mapping[str, Any]], columns: Sequence[str]
) -> list[list[Any]]:
    """Rows for :func:`markdown_table` from a ``{name: {column: value}}`` document.

    Args:
        backends: E.g. the ``backends`` of ``export/metrics.json``.
        columns: Keys to take from each entry (missing keys give ``n/a``).

    Returns:
        ``[name, value, ...]`` per entry, in the document's order.
    """
    return [[name, *(entry.get(column) for column in columns)] for name, entry in backends.items()]
