"""The dlib-style face chip from five keypoints (pure: synthetic arrays with known answers)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.ops.align import apply_affine
from pipeline.ops.face_chip import (
    DLIB_CHIP_PADDING,
    SCRFD_DLIB_TEMPLATE,
    chip_matrix,
    extract_chip,
    pyramid_levels,
)


def _face_keypoints(scale: float, angle_deg: float, centre: tuple[float, float]) -> np.ndarray:
    """The template's points as a face of ``scale`` px per unit, turned, placed at ``centre``."""
    a = np.radians(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return ((SCRFD_DLIB_TEMPLATE - 0.5) * scale) @ rot.T + np.asarray(centre)


def test_keypoints_land_on_the_padded_template() -> None:
    size = 64
    kps = _face_keypoints(180.0, 17.0, (300.0, 240.0))
    matrix = chip_matrix(kps, size)
    on_chip = apply_affine(kps, matrix)
    # the template in chip units, then dlib's layout: first and last pixel on the rect's edges
    units = (DLIB_CHIP_PADDING + SCRFD_DLIB_TEMPLATE) / (1 + 2 * DLIB_CHIP_PADDING) * size
    s = 180.0 * (1 + 2 * DLIB_CHIP_PADDING) / size  # image px per chip unit
    stretch = (size - 1) * s / (size * s - 1)
    expected = (size - 1) / 2 + stretch * (units - size / 2)
    np.testing.assert_allclose(on_chip, expected, atol=1e-4)


def test_pyramid_levels_keep_the_last_step_below_two() -> None:
    size = 32
    for face_px, levels in ((20.0, 0), (40.0, 0), (70.0, 1), (150.0, 2), (600.0, 4)):
        matrix = chip_matrix(_face_keypoints(face_px, 0.0, (400, 400)), size)
        assert pyramid_levels(matrix) == levels, face_px
        pixels_per_chip_pixel = 1 / np.hypot(matrix[0, 0], matrix[1, 0])
        assert pixels_per_chip_pixel / 2**levels <= 2.0


def test_chip_is_the_same_for_a_quarter_turned_photo() -> None:
    rng = np.random.default_rng(3)
    # a smooth random picture: bilinear sampling of it is well defined at any angle
    picture = cv2.GaussianBlur(rng.integers(0, 255, (400, 300, 3), dtype=np.uint8), (0, 0), 4)
    kps = _face_keypoints(160.0, 5.0, (150.0, 200.0))
    upright = extract_chip(picture, kps, 64)
    turned = np.ascontiguousarray(np.rot90(picture, k=-1))  # 90 degrees clockwise
    h = picture.shape[0]
    turned_kps = np.stack([h - 1 - kps[:, 1], kps[:, 0]], axis=1)
    chip = extract_chip(turned, turned_kps, 64)
    assert np.abs(chip.astype(int) - upright.astype(int)).mean() < 1.5


def test_large_faces_are_antialiased_not_aliased() -> None:
    # fine stripes (2 px period) average to grey; nearest-like sampling would keep stripes
    stripes = np.zeros((1200, 1200, 3), dtype=np.uint8)
    stripes[:, ::2] = 255
    kps = _face_keypoints(900.0, 0.0, (600.0, 600.0))
    chip = extract_chip(stripes, kps, 32)
    assert chip[8:24, 8:24].std() < 10
    assert abs(float(chip[8:24, 8:24].mean()) - 127.5) < 10
    naive = cv2.warpAffine(stripes, chip_matrix(kps, 32), (32, 32), flags=cv2.INTER_LINEAR)
    assert naive[8:24, 8:24].std() > 40


def test_outside_the_photo_is_black_and_tiny_footprints_do_not_fail() -> None:
    picture = np.full((100, 100, 3), 200, dtype=np.uint8)
    kps = _face_keypoints(80.0, 0.0, (0.0, 0.0))  # face centred on the corner
    chip = extract_chip(picture, kps, 32)
    assert chip[0, 0].max() == 0 and chip[31, 31].min() == 200
    far = _face_keypoints(10.0, 0.0, (-500.0, -500.0))
    assert extract_chip(picture, far, 32).max() == 0


@pytest.mark.parametrize("size", [32, 64])
def test_chip_shape_and_dtype(size: int) -> None:
    picture = np.zeros((50, 60, 3), dtype=np.uint8)
    chip = extract_chip(picture, _face_keypoints(30.0, 0.0, (30, 25)), size)
    assert chip.shape == (size, size, 3) and chip.dtype == np.uint8
