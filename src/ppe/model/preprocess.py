"""Letterbox preprocessing and the inverse box mapping. NumPy and Pillow only (no TensorFlow).

Geometry, which the TensorFlow training pipeline replicates exactly (``W, H`` = original image
width and height, ``S`` = network input size):

* ``scale = min(S / W, S / H)``;
* resized size ``new_w = floor(W * scale + 0.5)``, ``new_h = floor(H * scale + 0.5)``, each at
  least 1 and at most ``S``;
* offsets ``offset_x = (S - new_w) // 2``, ``offset_y = (S - new_h) // 2`` (the image is centred;
  an odd leftover pixel goes to the right/bottom);
* padding value 0.5 (mid grey) in [0, 1] units, as Darknet pads.

A box normalised to the original image maps to the letterboxed input as
``x' = (x * new_w + offset_x) / S`` and ``y' = (y * new_h + offset_y) / S``. Only the geometry,
not the resampling kernel, is the shared contract. Pixels are resampled with OpenCV: bilinear
(``INTER_LINEAR``, the plain bilinear sampling the training pipeline also uses) down to half size,
and area averaging (``INTER_AREA``) below that, where bilinear sampling would alias (a 1080p
camera frame into 416 px). OpenCV's resize takes about 0.2 ms for a 640x480 frame on one core,
an eighth of Pillow's anti-aliasing bilinear filter; at 60 frames/s that matters on the edge.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np

logger = logging.getLogger(__name__)

#: Value of the letterbox border in [0, 1] pixel units.
PAD_VALUE = 0.5
#: Below this scale factor the resize averages areas instead of sampling bilinearly.
AREA_BELOW_SCALE = 0.5


@dataclass(frozen=True)
class LetterboxTransform:
    """Where the original image sits inside the square letterboxed input.

    Attributes:
        original_width: original image width ``W`` in pixels.
        original_height: original image height ``H`` in pixels.
        size: network input side ``S`` in pixels.
        resized_width: width ``new_w`` of the resized image inside the input.
        resized_height: height ``new_h`` of the resized image inside the input.
        offset_x: left padding in pixels.
        offset_y: top padding in pixels.
    """

    original_width: int
    original_height: int
    size: int
    resized_width: int
    resized_height: int
    offset_x: int
    offset_y: int

    @classmethod
    def for_image(cls, width: int, height: int, size: int) -> LetterboxTransform:
        """Compute the letterbox geometry of a ``width x height`` image in a ``size`` square.

        Raises:
            ValueError: a dimension is not positive.
        """
        if width < 1 or height < 1 or size < 1:
            raise ValueError(
                f"image and input sizes must be positive, got {width}x{height} -> {size}"
            )
        scale = min(size / width, size / height)
        resized_width = min(size, max(1, math.floor(width * scale + 0.5)))
        resized_height = min(size, max(1, math.floor(height * scale + 0.5)))
        return cls(
            original_width=width,
            original_height=height,
            size=size,
            resized_width=resized_width,
            resized_height=resized_height,
            offset_x=(size - resized_width) // 2,
            offset_y=(size - resized_height) // 2,
        )

    def _factors(self) -> tuple[np.ndarray, np.ndarray]:
        gain = np.array(
            [self.resized_width, self.resized_height] * 2, dtype=np.float64
        ) / np.float64(self.size)
        shift = np.array([self.offset_x, self.offset_y] * 2, dtype=np.float64) / np.float64(
            self.size
        )
        return gain, shift

    def to_letterbox(self, boxes: np.ndarray) -> np.ndarray:
        """Map boxes normalised to the original image into the letterboxed input.

        Args:
            boxes: ``(..., 4)`` ``[xmin, ymin, xmax, ymax]`` normalised to [0, 1] of the
                original image.

        Returns:
            float32 ``(..., 4)`` ``[xmin, ymin, xmax, ymax]`` normalised to [0, 1] of the
            ``size x size`` input.
        """
        gain, shift = self._factors()
        mapped: np.ndarray = (np.asarray(boxes, dtype=np.float64) * gain + shift).astype(np.float32)
        return mapped

    def to_original(self, boxes: np.ndarray, *, clip: bool = True) -> np.ndarray:
        """Map boxes from the letterboxed input back to original image pixels.

        Args:
            boxes: ``(..., 4)`` ``[xmin, ymin, xmax, ymax]`` normalised to [0, 1] of the input
                (what :func:`ppe.model.decode.detect` returns).
            clip: clip to the image (``[0, W]`` and ``[0, H]``).

        Returns:
            float32 ``(..., 4)`` ``[xmin, ymin, xmax, ymax]`` in original pixels.
        """
        gain, shift = self._factors()
        normalised = (np.asarray(boxes, dtype=np.float64) - shift) / gain
        pixels = normalised * np.array(
            [self.original_width, self.original_height] * 2, dtype=np.float64
        )
        if clip:
            upper = np.array([self.original_width, self.original_height] * 2, dtype=np.float64)
            pixels = np.clip(pixels, 0.0, upper)
        result: np.ndarray = pixels.astype(np.float32)
        return result


def resize_for_letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, LetterboxTransform]:
    """Resize an image to the part of the ``size`` square it will cover, keeping its aspect.

    Args:
        image: uint8 ``(H, W, 3)`` RGB.
        size: side of the square network input in pixels.

    Returns:
        uint8 ``(new_h, new_w, 3)`` RGB (``image`` itself when no resize is needed) and the
        :class:`LetterboxTransform` that places it.

    Raises:
        ValueError: ``image`` is not uint8 ``(H, W, 3)``.
    """
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(
            f"letterbox expects a uint8 (H, W, 3) RGB image, got {array.dtype} {array.shape}; "
            "convert with PIL.Image.convert('RGB') first"
        )
    height, width = array.shape[:2]
    transform = LetterboxTransform.for_image(width, height, size)
    target = (transform.resized_width, transform.resized_height)
    if target == (width, height):
        return array, transform
    shrink = min(transform.resized_width / width, transform.resized_height / height)
    interpolation = cv2.INTER_AREA if shrink < AREA_BELOW_SCALE else cv2.INTER_LINEAR
    resized: np.ndarray = cv2.resize(
        np.ascontiguousarray(array), target, interpolation=interpolation
    )
    return resized, transform


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, LetterboxTransform]:
    """Resize keeping the aspect ratio and centre the result on a mid-grey square.

    Args:
        image: uint8 ``(H, W, 3)`` RGB.
        size: side of the square network input in pixels.

    Returns:
        float32 ``(size, size, 3)`` RGB in [0, 1] and the :class:`LetterboxTransform`.

    Raises:
        ValueError: ``image`` is not uint8 ``(H, W, 3)``.
    """
    resized, transform = resize_for_letterbox(image, size)
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.float32)
    top, left = transform.offset_y, transform.offset_x
    canvas[top : top + transform.resized_height, left : left + transform.resized_width] = (
        resized.astype(np.float32) / np.float32(255.0)
    )
    return canvas, transform
