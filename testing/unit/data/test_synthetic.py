from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ppe.config import SplitConfig, SynthConfig
from ppe.data import voc
from ppe.data.check import check_dataset
from ppe.data.synthetic import render_scene, synthesize
from ppe.errors import DataError

CLASSES = ["helmet", "head"]
SMALL = SynthConfig(num_images=24, width=160, height=128, max_people=4, seed=5)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    split = SplitConfig()
    first = synthesize(tmp_path / "a", SMALL, split, CLASSES)
    second = synthesize(tmp_path / "b", SMALL, split, CLASSES)
    other = synthesize(tmp_path / "c", SMALL.model_copy(update={"seed": 6}), split, CLASSES)
    assert first.hash == second.hash == voc.dataset_hash(tmp_path / "b")
    assert other.hash != first.hash
    assert first.images_per_split == {"train": 16, "val": 4, "test": 4}  # round(24 * 0.15) = 4


def test_written_dataset_is_clean_with_boxes_inside(tmp_path: Path) -> None:
    report = synthesize(tmp_path / "s", SMALL, SplitConfig(), CLASSES)
    assert check_dataset(tmp_path / "s", CLASSES) == []
    samples = [s for split in voc.SPLITS for s in voc.load_split(tmp_path / "s", split, CLASSES)]
    assert len(samples) == 24
    assert all(sample.labels.size >= 1 for sample in samples)
    boxes = np.concatenate([sample.boxes for sample in samples])
    assert boxes.min() >= 0.0 and boxes.max() <= 1.0
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    labels = np.concatenate([sample.labels for sample in samples])
    assert set(labels.tolist()) == {0, 1}
    assert report.objects_per_class == {
        "helmet": int((labels == 0).sum()),
        "head": int((labels == 1).sum()),
    }
    assert all(sample.image_path.suffix == ".jpg" for sample in samples)


def test_scene_objects_sizes_and_visibility() -> None:
    synth = SynthConfig(width=320, height=256, max_people=5, min_head_size=0.08, max_head_size=0.22)
    heights = []
    for index in range(40):
        scene = render_scene(np.random.default_rng([0, index]), synth)
        assert scene.image.size == (320, 256) and scene.image.mode == "RGB"
        for obj in scene.objects:
            xmin, ymin, xmax, ymax = obj.box
            assert 1 <= xmin < xmax <= 320 and 1 <= ymin < ymax <= 256
            assert obj.visible_fraction >= 0.4
            if not obj.truncated and obj.visible_fraction > 0.99:
                heights.append(ymax - ymin + 1)
    # Unhidden heads are as tall as configured (box height = head size x image height).
    assert min(heights) >= 0.08 * 256 - 2 and max(heights) <= 0.22 * 256 + 2


@pytest.mark.parametrize("head_fraction", [0.0, 0.4, 1.0])
def test_class_balance_follows_head_fraction(head_fraction: float) -> None:
    synth = SynthConfig(width=160, height=128, max_people=5, head_fraction=head_fraction)
    counts: Counter[str] = Counter()
    for index in range(80):
        counts.update(
            obj.name for obj in render_scene(np.random.default_rng([1, index]), synth).objects
        )
    total = counts["head"] + counts["helmet"]
    assert total > 150
    assert abs(counts["head"] / total - head_fraction) < 0.08, counts


def test_classes_must_include_helmet_and_head(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing head.*model\.classes"):
        synthesize(tmp_path / "x", SMALL, SplitConfig(), ["helmet", "person"])
    assert not (tmp_path / "x").exists()
