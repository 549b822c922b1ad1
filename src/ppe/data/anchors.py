"""Anchor boxes fitted to a dataset: k-means on box shapes with the IoU distance.

YOLOv3's anchors are (width, height) priors; each ground-truth box trains the anchor whose shape
overlaps it best, and the head predicts a size relative to that anchor. Darknet's anchors were
fitted to COCO; on other data (e.g. small heads seen from afar) fitting them to the dataset's own
boxes raises the mean best-anchor IoU, which is what the k-means here maximises (YOLO9000,
https://arxiv.org/abs/1612.08242, section "Dimension Clusters": distance ``1 - IoU`` of
box shapes with aligned centres, instead of Euclidean distance, which favours large boxes).

Shapes are measured as the network sees them: the image is letterboxed (its longer side scaled
to the input side, :mod:`ppe.model.preprocess`), so a box ``w x h`` pixels in a ``W x H`` image is
``w * S / max(W, H)`` wide at input side ``S``. Anchors are reported in pixels of a 416x416
input, the unit of :class:`ppe.model.spec.YoloSpec` (``model.anchors`` in the config), which
keeps their relative size at any input side. NumPy only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ppe.data.voc import Sample, load_split
from ppe.errors import DataError
from ppe.model.spec import ANCHOR_REFERENCE_SIZE

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnchorFit:
    """Anchors fitted to a set of box shapes.

    Attributes:
        anchors: ``(width, height)`` pairs in pixels of a 416x416 input, rounded to integers,
            sorted by area (smallest first), as ``model.anchors`` wants them.
        mean_iou: mean over boxes of the best IoU with one of ``anchors`` (shapes, centres
            aligned), in [0, 1].
        boxes: number of boxes fitted.
    """

    anchors: tuple[tuple[int, int], ...]
    mean_iou: float
    boxes: int

    def yaml(self) -> str:
        """The config snippet that selects these anchors."""
        pairs = ", ".join(f"[{w}, {h}]" for w, h in self.anchors)
        return f"model:\n  anchors: [{pairs}]\n"


def shape_iou(sizes: npt.ArrayLike, anchors: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """IoU of every box shape with every anchor shape, centres aligned.

    Args:
        sizes: ``(N, 2)`` positive ``(width, height)``.
        anchors: ``(K, 2)`` positive ``(width, height)`` in the same unit.

    Returns:
        float64 ``(N, K)``.
    """
    boxes = np.asarray(sizes, np.float64)[:, None, :]
    priors = np.asarray(anchors, np.float64)[None, :, :]
    intersection = np.prod(np.minimum(boxes, priors), axis=-1)
    union = np.prod(boxes, axis=-1) + np.prod(priors, axis=-1) - intersection
    result: npt.NDArray[np.float64] = intersection / union
    return result


def mean_best_iou(sizes: npt.ArrayLike, anchors: npt.ArrayLike) -> float:
    """Mean over boxes of the best shape IoU with any anchor (0 for no boxes)."""
    table = shape_iou(sizes, anchors)
    return float(table.max(axis=1).mean()) if table.size else 0.0


def letterboxed_sizes(samples: Sequence[Sample]) -> npt.NDArray[np.float64]:
    """Box ``(width, height)`` in pixels of a 416x416 letterboxed input, all boxes of ``samples``.

    Difficult boxes are included (they are trained on); degenerate boxes are left out.
    """
    sizes = []
    for sample in samples:
        if not len(sample.boxes):
            continue
        scale = ANCHOR_REFERENCE_SIZE / max(sample.width, sample.height)
        width = (sample.boxes[:, 2] - sample.boxes[:, 0]) * sample.width * scale
        height = (sample.boxes[:, 3] - sample.boxes[:, 1]) * sample.height * scale
        sizes.append(np.stack([width, height], axis=1).astype(np.float64))
    if not sizes:
        return np.zeros((0, 2), np.float64)
    stacked = np.concatenate(sizes)
    kept: npt.NDArray[np.float64] = stacked[(stacked > 0).all(axis=1)]
    return kept


def kmeans_anchors(
    sizes: npt.ArrayLike, count: int, *, seed: int = 0, restarts: int = 10, iterations: int = 300
) -> AnchorFit:
    """Cluster box shapes into ``count`` anchors with the ``1 - IoU`` distance.

    Each restart seeds the centres k-means++ style (the next centre drawn with probability
    proportional to its distance to the nearest chosen one), then alternates assignment to the
    nearest centre and the mean shape of each cluster until the assignment stops changing. The
    restart with the highest mean best IoU wins. Deterministic for a given ``seed``.

    Args:
        sizes: ``(N, 2)`` box ``(width, height)`` in pixels of a 416x416 input, ``N >= count``.
        count: number of anchors (6 for YOLOv3-tiny, 9 for YOLOv3).
        seed: random seed.
        restarts: independent initialisations.
        iterations: most assignment/update rounds per restart.

    Returns:
        The fit, anchors rounded to integer pixels (at least 1) and sorted by area.

    Raises:
        DataError: fewer distinct box shapes than ``count``.
    """
    boxes = np.asarray(sizes, np.float64).reshape(-1, 2)
    if count < 1:
        raise DataError(f"the anchor count must be at least 1, got {count}")
    distinct = len(np.unique(np.round(boxes, 3), axis=0))
    if distinct < count:
        raise DataError(
            f"{count} anchors need at least {count} distinct box shapes, the data has {distinct}; "
            "use a larger split or keep Darknet's anchors (model.anchors: null)"
        )
    rng = np.random.default_rng(seed)
    best: tuple[float, npt.NDArray[np.float64]] | None = None
    for _ in range(restarts):
        centres = boxes[[rng.integers(len(boxes))]]
        while len(centres) < count:
            distance = 1.0 - shape_iou(boxes, centres).max(axis=1)
            total = distance.sum()
            pick = rng.choice(len(boxes), p=distance / total) if total > 0 else 0
            centres = np.vstack([centres, boxes[pick]])
        assignment = np.full(len(boxes), -1)
        for _ in range(iterations):
            new_assignment = shape_iou(boxes, centres).argmax(axis=1)
            if np.array_equal(new_assignment, assignment):
                break
            assignment = new_assignment
            for cluster in range(count):
                members = boxes[assignment == cluster]
                if len(members):
                    centres[cluster] = members.mean(axis=0)
        score = mean_best_iou(boxes, centres)
        if best is None or score > best[0]:
            best = (score, centres.copy())
    assert best is not None
    rounded = np.maximum(np.round(best[1]), 1).astype(int)
    order = np.lexsort((rounded[:, 0], np.prod(rounded, axis=1)))
    anchors = tuple((int(w), int(h)) for w, h in rounded[order])
    return AnchorFit(anchors=anchors, mean_iou=mean_best_iou(boxes, anchors), boxes=len(boxes))


def dataset_anchors(
    root: Path, classes: Sequence[str], count: int, *, split: str = "train", seed: int = 0
) -> tuple[AnchorFit, npt.NDArray[np.float64]]:
    """Fit ``count`` anchors to the boxes of one split of a Pascal VOC dataset.

    Args:
        root: the VOC dataset folder.
        classes: class names (boxes of other classes are an error, as in training).
        count: number of anchors.
        split: the split to fit on (``train``: never fit on the data you evaluate on).
        seed: random seed of the k-means.

    Returns:
        The fit and the box sizes it was fitted on (416-pixel units), for comparisons.

    Raises:
        DataError: unreadable dataset, or too few boxes.
    """
    sizes = letterboxed_sizes(load_split(root, split, classes))
    fit = kmeans_anchors(sizes, count, seed=seed)
    logger.info(
        "%s/%s: %d boxes, %d anchors, mean best-anchor IoU %.3f",
        root,
        split,
        fit.boxes,
        count,
        fit.mean_iou,
    )
    return fit, sizes
