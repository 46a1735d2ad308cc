"""dlib's face chip, reproduced from SCRFD's five keypoints (pure NumPy/OpenCV).

dlib's age and gender networks were trained on ``extract_image_chip(get_face_chip_details(
shape, size, padding=0.2))``: a similarity transform puts dlib's 5-point shape (eye corners and
the base of the nose) on a fixed template in a unit face square, padded by 0.2 on each side,
and the chip is sampled from an image pyramid so that a large face is not aliased into a
32x32 chip. SCRFD gives other points (eye centres, nose tip, mouth corners), so facepipe uses
a template of *SCRFD's* points in dlib's unit face square, measured on lfw-dev by mapping
SCRFD's keypoints through dlib's own chip transform (``bench/attributes.py --fit-template``;
the figures are in docs/attributes.md), and then follows dlib's geometry and
pyramid sampling.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import NDArray

from pipeline.ops.align import similarity_transform
from pipeline.ops.cvtypes import u8

DLIB_CHIP_PADDING = 0.2
"""dlib's default ``get_face_chip_details`` padding, the one the attribute models saw."""

SCRFD_DLIB_TEMPLATE = np.array(
    [
        [0.2322, 0.2137],  # left eye centre (image left)
        [0.7652, 0.2157],  # right eye centre
        [0.4948, 0.5218],  # nose tip
        [0.2677, 0.7840],  # left mouth corner
        [0.7280, 0.7854],  # right mouth corner
    ],
    dtype=np.float64,
)
"""SCRFD's 5 keypoints in dlib's unit face square (before padding): the mean, over 3,033
lfw-dev faces (two photos per identity), of SCRFD-500M's keypoints mapped through dlib's chip
transform of the same face (dlib HOG detector + ``shape_predictor_5_face_landmarks``)."""

DLIB_MEAN_FACE_TEMPLATE = np.array(
    [
        [0.225492, 0.215990],  # mean of dlib's 68-point mean face points 36-41
        [0.754761, 0.215990],  # points 42-47
        [0.490127, 0.515625],  # point 30, the nose tip
        [0.254149, 0.780233],  # point 48
        [0.726104, 0.780233],  # point 54
    ],
    dtype=np.float64,
)
"""The same five points read off dlib's 68-point mean face (``interpolation.h``), the analytic
alternative to :data:`SCRFD_DLIB_TEMPLATE`; kept for the bench's alignment comparison."""


def chip_matrix(
    keypoints: NDArray[np.floating],
    size: int,
    padding: float = DLIB_CHIP_PADDING,
    template: NDArray[np.floating] = SCRFD_DLIB_TEMPLATE,
) -> NDArray[np.float64]:
    """2x3 matrix taking image pixels to chip pixels, as dlib lays a chip out.

    The similarity puts ``keypoints`` on ``(padding + template) / (1 + 2 padding) * size``;
    dlib then samples its ``size`` pixels so that the first and last sit on the edges of a
    ``size * scale - 1`` wide box around the chip's centre, which stretches the chip by
    ``(size - 1) * s / (size * s - 1)`` (``s`` image pixels per chip unit) about that centre.
    """
    dst = (padding + np.asarray(template, dtype=np.float64)) / (1.0 + 2.0 * padding) * size
    to_chip = similarity_transform(keypoints, dst)
    chip_units_per_pixel = math.hypot(to_chip[0, 0], to_chip[1, 0])
    s = 1.0 / max(chip_units_per_pixel, 1e-9)
    stretch = (size - 1) * s / max(size * s - 1.0, 1e-9)
    centre_in, centre_out = size / 2.0, (size - 1) / 2.0
    matrix = stretch * to_chip
    matrix[:, 2] += centre_out - stretch * centre_in
    return matrix


def pyramid_levels(matrix: NDArray[np.floating]) -> int:
    """How many 2:1 pyramid steps dlib takes before bilinear sampling: while a step still
    leaves more image pixels than chip pixels across the face (so the last bilinear step
    shrinks by less than 2 and never skips pixels)."""
    pixels_per_chip_pixel = 1.0 / max(math.hypot(matrix[0, 0], matrix[1, 0]), 1e-9)
    levels = 0
    while pixels_per_chip_pixel / 2.0 ** (levels + 1) > 1.0:
        levels += 1
    return levels


def extract_chip(
    pixels: NDArray[np.uint8],
    keypoints: NDArray[np.floating],
    size: int,
    padding: float = DLIB_CHIP_PADDING,
    template: NDArray[np.floating] = SCRFD_DLIB_TEMPLATE,
) -> NDArray[np.uint8]:
    """The ``size x size`` dlib-style chip of one face (same channel order as ``pixels``).

    Only the chip's footprint (plus the pyramid filter's reach) is cut out and pyramided, so
    the cost depends on the face's size, not the photo's. Outside the photo is black, as in
    dlib.
    """
    matrix = chip_matrix(keypoints, size, padding, template)
    levels = pyramid_levels(matrix)
    factor = float(2**levels)
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    footprint = corners @ inverse[:, :2].T + inverse[:, 2]
    reach = 4.0 * factor
    height, width = pixels.shape[:2]
    x0 = int(max(0, math.floor(footprint[:, 0].min() - reach)))
    y0 = int(max(0, math.floor(footprint[:, 1].min() - reach)))
    x1 = int(min(width, math.ceil(footprint[:, 0].max() + reach)))
    y1 = int(min(height, math.ceil(footprint[:, 1].max() + reach)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.zeros((size, size, *pixels.shape[2:]), dtype=np.uint8)
    source = pixels[y0:y1, x0:x1]
    for _ in range(levels):
        if min(source.shape[:2]) < 2:
            break
        source = u8(cv2.pyrDown(source))
    # chip = M (origin + factor * p_down)  =>  linear part scaled, shift moved to the crop
    local = matrix.copy()
    local[:, 2] = matrix[:, :2] @ np.array([x0, y0], dtype=np.float64) + matrix[:, 2]
    local[:, :2] = matrix[:, :2] * factor
    return u8(
        cv2.warpAffine(
            source,
            local,
            (size, size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
    )
