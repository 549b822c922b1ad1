"""The ``tf.data`` input pipeline: decode, augment, letterbox and encode YOLO targets.

Geometry matches :func:`ppe.model.preprocess.letterbox` (used at evaluation and on the edge): the
image is scaled by ``min(S / width, S / height)``, centred on an ``S x S`` canvas filled with 0.5,
and pixel values are float32 in [0, 1]. Training adds a random flip, scale and translation jitter
(one projective resample, so boxes stay exact) and colour jitter.

Boxes everywhere in this module are float32 ``[xmin, ymin, xmax, ymax]`` normalised to [0, 1]
of the image they belong to (the source image before letterboxing, the canvas after).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from ppe.config import AugmentConfig, TrainConfig
from ppe.data.voc import Sample
from ppe.model.spec import YoloSpec
from ppe.model.targets import encode_targets

logger = logging.getLogger(__name__)

PAD_VALUE = 0.5
#: A box survives augmentation if this share of its area is still inside the canvas.
MIN_VISIBLE_FRACTION = 0.4
#: Decoded images are cached in memory when they fit in this many bytes (uint8 RGB).
CACHE_BUDGET_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class PipelineSpec:
    """How one split is turned into batches.

    Attributes:
        batch_size: global batch size (divided across replicas by ``tf.distribute``).
        training: shuffle, repeat and augment when True.
        augment: augmentation ranges (used only when ``training``).
        max_boxes: boxes kept per image (the rest are dropped with a warning).
        shuffle_buffer: shuffle buffer size in images.
        seed: seed of shuffling and augmentation.
        positive_anchor_iou: more positive anchors per box (see
            :func:`ppe.model.targets.encode_targets`); ``None``: the best anchor only.
    """

    batch_size: int
    training: bool
    augment: AugmentConfig
    max_boxes: int = 100
    shuffle_buffer: int = 1024
    seed: int = 0
    positive_anchor_iou: float | None = None

    @classmethod
    def from_train(
        cls, train: TrainConfig, *, training: bool, seed: int | None = None
    ) -> PipelineSpec:
        """The pipeline a profile's ``train`` section asks for (``seed`` overrides its seed)."""
        return cls(
            batch_size=train.batch_size,
            training=training,
            augment=train.augment,
            max_boxes=train.max_boxes,
            shuffle_buffer=train.shuffle_buffer,
            seed=train.seed if seed is None else seed,
            positive_anchor_iou=train.positive_anchor_iou,
        )


def _pad_annotations(
    samples: Sequence[Sample], max_boxes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack per-image boxes into fixed-size arrays.

    Returns:
        boxes ``(M, max_boxes, 4)`` float32, labels ``(M, max_boxes)`` int32 (-1 = padding) and
        counts ``(M,)`` int32.
    """
    boxes = np.zeros((len(samples), max_boxes, 4), dtype=np.float32)
    labels = np.full((len(samples), max_boxes), -1, dtype=np.int32)
    counts = np.zeros((len(samples),), dtype=np.int32)
    for index, sample in enumerate(samples):
        count = len(sample.labels)
        if count > max_boxes:
            logger.warning(
                "%s has %d boxes; keeping the first %d (raise train.max_boxes to keep all)",
                sample.image_path,
                count,
                max_boxes,
            )
            count = max_boxes
        boxes[index, :count] = np.asarray(sample.boxes, dtype=np.float32)[:count]
        labels[index, :count] = np.asarray(sample.labels, dtype=np.int32)[:count]
        counts[index] = count
    return boxes, labels, counts


def _decode(path: tf.Tensor) -> tf.Tensor:
    """Read a JPEG or PNG file into a uint8 ``(H, W, 3)`` tensor."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def _color_jitter(image: tf.Tensor, augment: AugmentConfig, seed: tf.Tensor) -> tf.Tensor:
    """Random hue, saturation and brightness on a float ``(H, W, 3)`` image in [0, 1]."""
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    if augment.hue > 0:
        delta = tf.random.stateless_uniform([], seeds[0], -augment.hue, augment.hue)
        image = tf.image.adjust_hue(image, delta)
    if augment.saturation > 0:
        factor = tf.random.stateless_uniform(
            [], seeds[1], 1.0 - augment.saturation, 1.0 + augment.saturation
        )
        image = tf.image.adjust_saturation(image, factor)
    if augment.brightness > 0:
        factor = tf.random.stateless_uniform(
            [], seeds[2], 1.0 - augment.brightness, 1.0 + augment.brightness
        )
        image = image * factor
    return tf.clip_by_value(image, 0.0, 1.0)


def _place(
    image: tf.Tensor,
    boxes: tf.Tensor,
    size: int,
    scale_factor: tf.Tensor,
    shift: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Letterbox ``image`` onto a ``size x size`` canvas, scaled and shifted.

    Args:
        image: float32 ``(H, W, 3)`` in [0, 1].
        boxes: float32 ``(N, 4)`` normalised to the source image.
        size: canvas side in pixels.
        scale_factor: multiplier on the letterbox scale (1.0 = plain letterbox).
        shift: ``(2,)`` offset of the placed image from the centred position, in canvas pixels.

    Returns:
        The canvas ``(size, size, 3)`` and the boxes normalised to the canvas ``(N, 4)``.
    """
    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    canvas = tf.constant(float(size))
    scale = tf.minimum(canvas / width, canvas / height) * scale_factor
    # Same rounding as ppe.model.preprocess.letterbox: whole-pixel resized size and offsets.
    resized_w = tf.maximum(1.0, tf.floor(width * scale + 0.5))
    resized_h = tf.maximum(1.0, tf.floor(height * scale + 0.5))
    scale_x, scale_y = resized_w / width, resized_h / height
    offset_x = tf.floor((canvas - resized_w) / 2.0) + tf.round(shift[0])
    offset_y = tf.floor((canvas - resized_h) / 2.0) + tf.round(shift[1])
    # Output pixel (x, y) samples input pixel ((x - offset_x) / scale_x, (y - offset_y) / scale_y).
    transform = tf.stack(
        [
            1.0 / scale_x,
            0.0,
            -offset_x / scale_x,
            0.0,
            1.0 / scale_y,
            -offset_y / scale_y,
            0.0,
            0.0,
        ]
    )
    placed = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[tf.newaxis],
        transforms=transform[tf.newaxis],
        output_shape=tf.constant([size, size], tf.int32),
        fill_value=tf.constant(PAD_VALUE, tf.float32),
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )[0]
    pixels = boxes * tf.stack([width, height, width, height])
    gains = tf.stack([scale_x, scale_y, scale_x, scale_y])
    placed_boxes = (pixels * gains + tf.stack([offset_x, offset_y, offset_x, offset_y])) / canvas
    return placed, placed_boxes


def _keep_visible(
    boxes: tf.Tensor, labels: tf.Tensor, min_side: float
) -> tuple[tf.Tensor, tf.Tensor]:
    """Clip canvas-normalised boxes to [0, 1] and drop those mostly outside or too small."""
    clipped = tf.clip_by_value(boxes, 0.0, 1.0)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    clipped_w = clipped[:, 2] - clipped[:, 0]
    clipped_h = clipped[:, 3] - clipped[:, 1]
    visible = clipped_w * clipped_h
    keep = (
        (visible >= MIN_VISIBLE_FRACTION * area) & (clipped_w >= min_side) & (clipped_h >= min_side)
    )
    return tf.boolean_mask(clipped, keep), tf.boolean_mask(labels, keep)


def _prepare(
    image_u8: tf.Tensor,
    boxes: tf.Tensor,
    labels: tf.Tensor,
    seed: tf.Tensor,
    size: int,
    spec: PipelineSpec,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Augment (when training) and letterbox one image; returns canvas, boxes, labels."""
    image = tf.image.convert_image_dtype(image_u8, tf.float32)
    augment = spec.augment
    if spec.training:
        seeds = tf.random.experimental.stateless_split(seed, num=5)
        if augment.horizontal_flip:
            flip = tf.random.stateless_uniform([], seeds[0]) < 0.5
            image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
            flipped = tf.stack([1.0 - boxes[:, 2], boxes[:, 1], 1.0 - boxes[:, 0], boxes[:, 3]], 1)
            boxes = tf.where(flip, flipped, boxes)
        image = _color_jitter(image, augment, seeds[1])
        scale_factor = tf.random.stateless_uniform(
            [], seeds[2], 1.0 - augment.scale_jitter, 1.0 + augment.scale_jitter
        )
        limit = augment.translate * size
        shift = tf.random.stateless_uniform([2], seeds[3], -limit, limit)
    else:
        scale_factor = tf.constant(1.0)
        shift = tf.zeros([2])
    canvas, placed = _place(image, boxes, size, scale_factor, shift)
    placed, labels = _keep_visible(placed, labels, min_side=2.0 / size)
    return canvas, placed, labels


def build_dataset(samples: Sequence[Sample], model_spec: YoloSpec, spec: PipelineSpec) -> Any:
    """Build a batched ``tf.data.Dataset`` of ``(images, targets)`` for ``YoloTrainer.fit``.

    Args:
        samples: the split, from :func:`ppe.data.voc.load_split`.
        model_spec: the model's input size, anchors and classes.
        spec: batching, shuffling and augmentation.

    Returns:
        A dataset of ``(images (B, S, S, 3) float32 in [0, 1], targets)`` where ``targets`` is
        what :func:`ppe.model.targets.encode_targets` returns, batched. Training datasets repeat
        forever (pass ``steps_per_epoch``); evaluation datasets are finite.

    Raises:
        ValueError: ``samples`` is empty.
    """
    if not samples:
        raise ValueError("the split has no images")
    size = model_spec.image_size
    boxes, labels, counts = _pad_annotations(samples, spec.max_boxes)
    paths = [str(sample.image_path) for sample in samples]
    pixels = sum(int(sample.width) * int(sample.height) * 3 for sample in samples)

    dataset = tf.data.Dataset.from_tensor_slices((paths, boxes, labels, counts))
    dataset = dataset.map(
        lambda path, b, lab, n: (_decode(path), b[:n], lab[:n]),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if pixels <= CACHE_BUDGET_BYTES:
        dataset = dataset.cache()
    if spec.training:
        dataset = dataset.shuffle(
            min(spec.shuffle_buffer, len(samples)), seed=spec.seed, reshuffle_each_iteration=True
        )
        dataset = dataset.repeat()
    # One stateless seed per element: reproducible augmentation whatever the thread schedule.
    seeds = tf.data.Dataset.random(seed=spec.seed).batch(2)
    dataset = tf.data.Dataset.zip((dataset, seeds))

    def prepare(
        element: tuple[tf.Tensor, tf.Tensor, tf.Tensor], seed: tf.Tensor
    ) -> tuple[tf.Tensor, Any]:
        image_u8, box, label = element
        canvas, placed, kept = _prepare(image_u8, box, label, seed, size, spec)
        return canvas, encode_targets(
            placed, kept, model_spec, spec.max_boxes, spec.positive_anchor_iou
        )

    dataset = dataset.map(
        prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not spec.training
    )
    dataset = dataset.batch(spec.batch_size, drop_remainder=spec.training)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def steps_for(num_images: int, batch_size: int) -> int:
    """Batches needed to see every image once (at least 1)."""
    return max(1, math.ceil(num_images / batch_size))
