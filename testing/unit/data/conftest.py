"""Builders of tiny standard-layout VOC datasets for the data-layer unit tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ppe.data import voc

Obj = tuple[str, int, int, int, int]
VocFactory = Callable[..., Path]


def write_image(path: Path, width: int, height: int, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path)
    return path


@pytest.fixture
def make_voc(tmp_path: Path) -> VocFactory:
    """Return ``make(items, splits=None, name="voc")`` writing a clean VOC dataset.

    ``items`` maps an id to its objects ``(name, xmin, ymin, xmax, ymax)`` (pixels, 1-based
    inclusive) on a 64x48 PNG; ``splits`` maps split -> ids (default: everything in train).
    """

    def make(
        items: dict[str, Sequence[Obj]],
        splits: dict[str, list[str]] | None = None,
        name: str = "voc",
        size: tuple[int, int] = (64, 48),
    ) -> Path:
        root = tmp_path / name
        for index, (image_id, objects) in enumerate(sorted(items.items())):
            write_image(root / voc.IMAGES_DIR / f"{image_id}.png", *size, seed=index)
            voc.write_annotation(
                voc.VocAnnotation(
                    filename=f"{image_id}.png",
                    width=size[0],
                    height=size[1],
                    objects=tuple(voc.VocObject(*obj) for obj in objects),
                ),
                root / voc.ANNOTATIONS_DIR / f"{image_id}.xml",
            )
        splits = splits if splits is not None else {"train": sorted(items), "val": [], "test": []}
        for split, ids in splits.items():
            voc.write_split(root, split, ids)
        return root

    return make
