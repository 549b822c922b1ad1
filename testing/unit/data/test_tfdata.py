"""tf.data pipeline: letterbox geometry as in evaluation and on the edge, targets, augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ppe.config import AugmentConfig, TrainConfig
from ppe.data.tfdata import PipelineSpec, build_dataset
from ppe.data.voc import Sample
from ppe.model.preprocess import letterbox
from ppe.model.spec import YoloSpec

SPEC = YoloSpec.default("yolov3_tiny", ("helmet", "head"), 64)


def _sample(tmp_path: Path, width: int, height: int) -> Sample:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    path = tmp_path / f"img_{width}x{height}.png"
    Image.fromarray(pixels).save(path)
    boxes = np.array([[0.1, 0.2, 0.5, 0.9], [0.6, 0.1, 0.95, 0.4]], dtype=np.float32)
    return Sample(
        image_id=path.stem,
        image_path=path,
        width=width,
        height=height,
        boxes=boxes,
        labels=np.array([0, 1], dtype=np.int32),
        difficult=np.zeros(2, dtype=bool),
        pixel_boxes=boxes * np.array([width, height, width, height], dtype=np.float32),
    )


@pytest.mark.parametrize(("width", "height"), [(100, 60), (37, 91), (64, 64)])
def test_evaluation_pipeline_letterboxes_like_the_edge(
    tmp_path: Path, width: int, height: int
) -> None:
    sample = _sample(tmp_path, width, height)
    dataset = build_dataset([sample], SPEC, PipelineSpec(1, False, AugmentConfig()))
    images, targets = next(iter(dataset))
    expected_image, transform = letterbox(
        np.asarray(Image.open(sample.image_path)), SPEC.image_size
    )
    # Same placement: the padding (0.5) covers exactly the same pixels.
    pad_tf = np.isclose(images.numpy()[0], 0.5, atol=1e-6).all(axis=-1)
    pad_np = np.isclose(expected_image, 0.5, atol=1e-6).all(axis=-1)
    assert (pad_tf != pad_np).mean() < 0.01
    assert np.abs(images.numpy()[0] - expected_image).mean() < 0.08
    # Same box mapping, exactly.
    boxes = targets["boxes"].numpy()[0]
    kept = boxes[np.any(boxes > 0, axis=-1)]
    np.testing.assert_allclose(
        np.sort(kept, axis=0), np.sort(transform.to_letterbox(sample.boxes), axis=0), atol=1e-5
    )


def test_training_pipeline_batches_augments_and_repeats(tmp_path: Path) -> None:
    samples = [_sample(tmp_path, 80 + i, 64) for i in range(3)]
    spec = PipelineSpec(2, True, AugmentConfig(), seed=3)
    first = [batch for _, batch in zip(range(4), build_dataset(samples, SPEC, spec), strict=False)]
    assert len(first) == 4  # repeats forever
    images, targets = first[0]
    assert images.shape == (2, 64, 64, 3)
    assert set(targets) == {"stride_32", "stride_16", "boxes"}
    assert targets["stride_32"].shape == (2, 2, 2, 3, 6)
    assert float(images.numpy().min()) >= 0.0 and float(images.numpy().max()) <= 1.0
    again = [batch for _, batch in zip(range(4), build_dataset(samples, SPEC, spec), strict=False)]
    np.testing.assert_array_equal(first[0][0].numpy(), again[0][0].numpy())  # seeded


def test_empty_split_is_refused() -> None:
    with pytest.raises(ValueError, match="no images"):
        build_dataset([], SPEC, PipelineSpec(1, False, AugmentConfig()))


def test_pipeline_from_train_section_carries_its_settings_to_the_targets(tmp_path: Path) -> None:
    train = TrainConfig(
        batch_size=2, max_boxes=5, shuffle_buffer=7, seed=11, positive_anchor_iou=0.05
    )
    spec = PipelineSpec.from_train(train, training=False)
    assert spec == PipelineSpec(2, False, train.augment, 5, 7, 11, 0.05)
    assert PipelineSpec.from_train(train, training=True, seed=3).seed == 3
    samples = [_sample(tmp_path, 64, 64)]

    def positives(pipeline: PipelineSpec) -> float:
        _, targets = next(iter(build_dataset(samples, SPEC, pipeline)))
        assert targets["boxes"].shape == (1, pipeline.max_boxes, 4)
        return float(sum(targets[key].numpy()[..., 4].sum() for key in ("stride_32", "stride_16")))

    # Two boxes: one positive each with the best anchor only, more with a low threshold.
    assert positives(PipelineSpec.from_train(TrainConfig(batch_size=1), training=False)) == 2
    assert positives(spec) > 2
