"""Letterbox geometry and the inverse box mapping."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ppe.model.preprocess import PAD_VALUE, LetterboxTransform, letterbox, resize_for_letterbox


def test_wide_image_is_centred_vertically_with_grey_padding() -> None:
    image = np.full((50, 200, 3), 255, np.uint8)
    result, transform = letterbox(image, 64)
    assert result.shape == (64, 64, 3) and result.dtype == np.float32
    assert (transform.resized_width, transform.resized_height) == (64, 16)
    assert (transform.offset_x, transform.offset_y) == (0, 24)
    assert np.all(result[:24] == PAD_VALUE) and np.all(result[40:] == PAD_VALUE)
    np.testing.assert_allclose(result[24:40], 1.0)


def test_same_size_image_is_only_scaled_to_unit_range() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    result, transform = letterbox(image, 32)
    np.testing.assert_array_equal(result, image.astype(np.float32) / 255)
    np.testing.assert_allclose(
        transform.to_letterbox(np.array([0.1, 0.2, 0.3, 0.4])), [0.1, 0.2, 0.3, 0.4], rtol=1e-6
    )


def test_box_follows_the_image_content() -> None:
    # A white rectangle on black; its letterboxed box must cover the white pixels.
    image = np.zeros((120, 300, 3), np.uint8)
    image[30:90, 60:150] = 255
    result, transform = letterbox(image, 96)
    box = transform.to_letterbox(np.array([60 / 300, 30 / 120, 150 / 300, 90 / 120])) * 96
    white = np.argwhere(result[..., 0] > 0.9)
    (top, left), (bottom, right) = white.min(axis=0), white.max(axis=0) + 1
    np.testing.assert_allclose([left, top, right, bottom], box, atol=1.0)


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(1, 2000),
    height=st.integers(1, 2000),
    size=st.sampled_from([32, 64, 416, 608]),
    corners=st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4),
)
def test_round_trip_to_original_pixels(
    width: int, height: int, size: int, corners: list[float]
) -> None:
    xs, ys = sorted(corners[:2]), sorted(corners[2:])
    box = np.array([xs[0], ys[0], xs[1], ys[1]])
    transform = LetterboxTransform.for_image(width, height, size)
    assert transform.offset_x >= 0 and transform.offset_x + transform.resized_width <= size
    assert transform.offset_y >= 0 and transform.offset_y + transform.resized_height <= size
    assert max(transform.resized_width, transform.resized_height) == size
    letterboxed = transform.to_letterbox(box)
    assert np.all(letterboxed >= -1e-6) and np.all(letterboxed <= 1 + 1e-6)
    pixels = transform.to_original(letterboxed)
    expected = box * [width, height, width, height]
    np.testing.assert_allclose(pixels, expected, atol=1e-3 * max(width, height))


@pytest.mark.parametrize(
    ("shape", "interpolation"),
    [
        ((480, 640, 3), cv2.INTER_LINEAR),
        ((1080, 1920, 3), cv2.INTER_AREA),
        ((50, 30, 3), cv2.INTER_LINEAR),
    ],
)
def test_resize_averages_areas_only_when_shrinking_below_half(
    shape: tuple[int, int, int], interpolation: int
) -> None:
    # A one-pixel checkerboard: bilinear sampling at 1/4.6 scale would alias it into stripes;
    # area averaging turns it into flat grey, as it should for a 1080p camera frame.
    image = np.zeros(shape, np.uint8)
    image[::2, ::2] = 255
    image[1::2, 1::2] = 255
    resized, transform = resize_for_letterbox(image, 416)
    target = (transform.resized_width, transform.resized_height)
    assert resized.shape == (target[1], target[0], 3)
    np.testing.assert_array_equal(resized, cv2.resize(image, target, interpolation=interpolation))
    if interpolation == cv2.INTER_AREA:
        assert float(resized.std()) < 5.0


def test_rejects_non_rgb_uint8() -> None:
    with pytest.raises(ValueError, match="uint8"):
        letterbox(np.zeros((10, 10, 3), np.float32), 32)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        letterbox(np.zeros((10, 10), np.uint8), 32)
