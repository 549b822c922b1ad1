"""Read and write the text files of the Cartucho/mAP tool, so anyone can cross-check our mAP.

Layout under a folder (the tool's ``input/``):

- ``ground-truth/<image id>.txt``: one line per box, ``<class> <left> <top> <right> <bottom>``,
  followed by `` difficult`` for VOC-difficult boxes;
- ``detection-results/<image id>.txt``: one line per detection,
  ``<class> <confidence> <left> <top> <right> <bottom>``; an empty file means no detections.

Coordinates are pixels, boxes are ``[xmin, ymin, xmax, ymax]`` = ``left top right bottom``. Class
names contain no whitespace. Both folders must hold the same image ids. Numbers are written in
the shortest form that reads back to the same float, so reading the files back and evaluating
gives exactly the same mAP. Images are read back in sorted id order, the order the tool uses
(it matters only for ties in confidence).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ppe.errors import DataError
from ppe.evaluate.voc_map import ImageDetections, ImageGroundTruth

logger = logging.getLogger(__name__)

GROUND_TRUTH_DIR = "ground-truth"
DETECTION_RESULTS_DIR = "detection-results"
DIFFICULT_MARK = "difficult"


@dataclass(frozen=True)
class CartuchoSet:
    """Ground truth and detections read from a Cartucho/mAP input folder.

    Attributes:
        image_ids: Image ids (file stems), in the tool's order (sorted file names).
        ground_truths: One entry per image id; pixel ``[xmin, ymin, xmax, ymax]`` boxes.
        detections: One entry per image id; pixel ``[xmin, ymin, xmax, ymax]`` boxes.
        class_names: The class-name list the labels index into.
    """

    image_ids: tuple[str, ...]
    ground_truths: tuple[ImageGroundTruth, ...]
    detections: tuple[ImageDetections, ...]
    class_names: tuple[str, ...]


def _number(value: float) -> str:
    """Shortest text that parses back to exactly ``value`` (integers without a decimal point)."""
    number = float(value)
    if not math.isfinite(number):
        raise DataError(f"cannot write the non-finite number {number!r} to a Cartucho file")
    if number.is_integer() and abs(number) < 2**53:
        return str(int(number))
    return repr(number)


def _check_image_id(image_id: str) -> None:
    if not image_id or "/" in image_id or "\\" in image_id or image_id in (".", ".."):
        raise DataError(f"image id {image_id!r} cannot be a file name; use the image's file stem")


def write_cartucho(
    folder: Path,
    image_ids: Sequence[str],
    ground_truths: Sequence[ImageGroundTruth],
    detections: Sequence[ImageDetections],
    class_names: Sequence[str],
) -> Path:
    """Write ``ground-truth/`` and ``detection-results/`` under ``folder``.

    Args:
        folder: Output folder (created); existing files of the same image ids are overwritten.
        image_ids: One id per image (the file stem), unique.
        ground_truths: Per image, pixel ``[xmin, ymin, xmax, ymax]`` boxes, labels, difficult flags.
        detections: Per image, pixel ``[xmin, ymin, xmax, ymax]`` boxes, scores and labels.
        class_names: Names for the class indices; no whitespace allowed.

    Returns:
        ``folder``.

    Raises:
        DataError: Mismatched lengths, duplicate or unusable image ids, class names with spaces.
    """
    if not len(image_ids) == len(ground_truths) == len(detections):
        raise DataError(
            f"{len(image_ids)} image ids, {len(ground_truths)} ground truths and "
            f"{len(detections)} detection lists; give one of each per image"
        )
    if len(set(image_ids)) != len(image_ids):
        raise DataError("image ids must be unique: each becomes a file name")
    for name in class_names:
        if not name or any(ch.isspace() for ch in name):
            raise DataError(f"class name {name!r}: the Cartucho format needs names without spaces")
    gt_dir = folder / GROUND_TRUTH_DIR
    dr_dir = folder / DETECTION_RESULTS_DIR
    gt_dir.mkdir(parents=True, exist_ok=True)
    dr_dir.mkdir(parents=True, exist_ok=True)
    for image_id, truth, found in zip(image_ids, ground_truths, detections, strict=True):
        _check_image_id(image_id)
        lines = []
        for box, label, difficult in zip(truth.boxes, truth.labels, truth.difficult, strict=True):
            fields = [class_names[int(label)], *(_number(v) for v in box)]
            if difficult:
                fields.append(DIFFICULT_MARK)
            lines.append(" ".join(fields))
        (gt_dir / f"{image_id}.txt").write_text("".join(f"{x}\n" for x in lines), "utf-8")
        lines = [
            " ".join([class_names[int(label)], _number(score), *(_number(v) for v in box)])
            for box, score, label in zip(found.boxes, found.scores, found.labels, strict=True)
        ]
        (dr_dir / f"{image_id}.txt").write_text("".join(f"{x}\n" for x in lines), "utf-8")
    logger.info("wrote Cartucho/mAP files for %d images under %s", len(image_ids), folder)
    return folder


def _parse_float(text: str, path: Path, line_number: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path}:{line_number}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path}:{line_number}: {text!r} is not a finite number")
    return value


def _class_index(
    name: str, class_index: dict[str, int], fixed: bool, path: Path, line_number: int
) -> int:
    if name not in class_index:
        if fixed:
            raise DataError(
                f"{path}:{line_number}: unknown class {name!r}; expected one of "
                f"{', '.join(class_index)} (or read without class_names to discover them)"
            )
        class_index[name] = len(class_index)
    return class_index[name]


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if fields:
            out.append((number, fields))
    return out


def read_cartucho(folder: Path, class_names: Sequence[str] | None = None) -> CartuchoSet:
    """Read ``ground-truth/`` and ``detection-results/`` from ``folder``.

    A ground-truth line is difficult when it has a sixth field ``difficult`` (the tool itself
    accepts the word anywhere on the line; we require it last and reject anything else).

    Args:
        folder: The folder holding both sub-folders.
        class_names: The class-name list; None discovers the names and sorts them.

    Returns:
        A :class:`CartuchoSet` in sorted image-id order, boxes as pixel
        ``[xmin, ymin, xmax, ymax]``.

    Raises:
        DataError: Missing folders, ids present in only one folder, malformed lines or unknown
            class names; the message names the file and line.
    """
    gt_dir = folder / GROUND_TRUTH_DIR
    dr_dir = folder / DETECTION_RESULTS_DIR
    for sub in (gt_dir, dr_dir):
        if not sub.is_dir():
            raise DataError(
                f"{sub}: no such folder; a Cartucho/mAP input needs both "
                f"{GROUND_TRUTH_DIR}/ and {DETECTION_RESULTS_DIR}/"
            )
    gt_ids = {p.stem for p in gt_dir.glob("*.txt")}
    dr_ids = {p.stem for p in dr_dir.glob("*.txt")}
    if gt_ids != dr_ids:
        only_gt = sorted(gt_ids - dr_ids)[:5]
        only_dr = sorted(dr_ids - gt_ids)[:5]
        raise DataError(
            f"{folder}: ground-truth and detection-results must hold the same image ids; "
            f"only in ground-truth: {only_gt}, only in detection-results: {only_dr} "
            "(write an empty detection file for an image without detections)"
        )
    # Sorted by file name, as the tool globs and sorts them (differs from sorting stems when an
    # id contains characters below '.').
    image_ids = sorted(gt_ids, key=lambda stem: f"{stem}.txt")
    fixed = class_names is not None
    class_index: dict[str, int] = {name: i for i, name in enumerate(class_names or ())}

    raw_gt = []
    for image_id in image_ids:
        path = gt_dir / f"{image_id}.txt"
        boxes, names, flags = [], [], []
        for number, fields in _lines(path):
            difficult = len(fields) == 6 and fields[5] == DIFFICULT_MARK
            if len(fields) != 5 and not difficult:
                raise DataError(
                    f"{path}:{number}: expected '<class> <left> <top> <right> <bottom>"
                    f"[ difficult]', got {' '.join(fields)!r}"
                )
            names.append(fields[0])
            boxes.append([_parse_float(v, path, number) for v in fields[1:5]])
            flags.append(difficult)
            _class_index(fields[0], class_index, fixed, path, number)
        raw_gt.append((boxes, names, flags))

    raw_dr = []
    for image_id in image_ids:
        path = dr_dir / f"{image_id}.txt"
        boxes, names, scores = [], [], []
        for number, fields in _lines(path):
            if len(fields) != 6:
                raise DataError(
                    f"{path}:{number}: expected '<class> <confidence> <left> <top> <right> "
                    f"<bottom>', got {' '.join(fields)!r}"
                )
            names.append(fields[0])
            scores.append(_parse_float(fields[1], path, number))
            boxes.append([_parse_float(v, path, number) for v in fields[2:6]])
            _class_index(fields[0], class_index, fixed, path, number)
        raw_dr.append((boxes, names, scores))

    final_names = tuple(class_index) if fixed else tuple(sorted(class_index))
    remap = {name: i for i, name in enumerate(final_names)}

    ground_truths = tuple(
        ImageGroundTruth(
            np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
            [remap[n] for n in names],
            flags,
        )
        for boxes, names, flags in raw_gt
    )
    detections = tuple(
        ImageDetections(
            np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
            scores,
            [remap[n] for n in names],
        )
        for boxes, names, scores in raw_dr
    )
    logger.info(
        "read Cartucho/mAP files for %d images (%d classes) from %s",
        len(image_ids),
        len(final_names),
        folder,
    )
    return CartuchoSet(tuple(image_ids), ground_truths, detections, final_names)
