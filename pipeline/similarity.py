"""Cosine similarity of embeddings and its mapping to the reference APIs' 0-100 confidence.

The reference APIs (Tencent YouTu/IAI, Baidu) return a similarity "confidence" in [0, 100] and
call two faces the same person at a threshold (Tencent's ``FaceMatchThreshold`` defaults to 60).
facepipe maps the cosine of two L2-normalised ArcFace embeddings to that scale with a
piecewise-linear, strictly increasing curve through fixed knots:

========================  ==========
cosine                    confidence
========================  ==========
-1.0                      0
0.0                       5
``MATCH_COSINE`` (0.30)   60
0.80                      98
1.0                       100
========================  ==========

so that unrelated faces (cosine around 0) sit near 0, the measured match threshold lands exactly on
the round confidence :data:`DEFAULT_MATCH_CONFIDENCE` (60, Tencent's default), and clear genuine
pairs (cosine 0.8 and above) sit near 100. ``MATCH_COSINE`` was chosen from genuine/impostor
scores measured with ``bench/accuracy.py`` on the labelled photos (see the README's benchmark
section for the false-accept rate it corresponds to). Because the curve is strictly increasing,
:func:`cosine_from_confidence` is its exact inverse, so a threshold given in confidence units
translates into a cosine bound a vector index can use directly.
"""

from __future__ import annotations

from typing import overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pipeline.errors import ErrorCode, FacepipeError

MATCH_COSINE = 0.30
"""Cosine at which two faces are called the same person by default (measured, see module doc)."""

DEFAULT_MATCH_CONFIDENCE = 60.0
"""Confidence (0-100) that :data:`MATCH_COSINE` maps to: the default match threshold."""

_COSINE_KNOTS = np.array([-1.0, 0.0, MATCH_COSINE, 0.80, 1.0], dtype=np.float64)
_CONFIDENCE_KNOTS = np.array([0.0, 5.0, DEFAULT_MATCH_CONFIDENCE, 98.0, 100.0], dtype=np.float64)

# Zero vectors have no direction; anything below this norm counts as zero.
_MIN_NORM = 1e-12


def _as_matrix(x: ArrayLike, name: str) -> NDArray[np.float32]:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[np.newaxis, :]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER,
            f"{name} must be a vector or a 2-D array of vectors, got shape {arr.shape}",
        )
    return arr


def _normalised(arr: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    # A zero vector stays zero, so its cosine with anything is 0 rather than NaN.
    return np.divide(arr, norms, out=np.zeros_like(arr), where=norms > _MIN_NORM)


def cosine_matrix(a: ArrayLike, b: ArrayLike) -> NDArray[np.float32]:
    """Cosine similarity of every row of ``a`` (n, d) with every row of ``b`` (m, d): (n, m).

    Inputs need not be normalised (they are normalised here, without modifying them); a 1-D
    input counts as one row. A zero vector has cosine 0 with everything. Raises
    ``ILLEGAL_PARAMETER`` when the dimensions differ.
    """
    ma, mb = _as_matrix(a, "a"), _as_matrix(b, "b")
    if ma.shape[1] != mb.shape[1]:
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER,
            f"embedding dimensions differ: {ma.shape[1]} and {mb.shape[1]}",
        )
    sims = _normalised(ma) @ _normalised(mb).T
    # Rounding can push |cos| a hair past 1 for identical vectors.
    return np.clip(sims, -1.0, 1.0).astype(np.float32, copy=False)


def cosine(a: ArrayLike, b: ArrayLike) -> float:
    """Cosine similarity of two vectors, in [-1, 1] (0 when either is a zero vector)."""
    va, vb = np.asarray(a), np.asarray(b)
    if va.ndim != 1 or vb.ndim != 1:
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER,
            f"cosine takes two vectors, got shapes {va.shape} and {vb.shape}",
        )
    return float(cosine_matrix(va, vb)[0, 0])


@overload
def confidence_from_cosine(cos: float) -> float: ...
@overload
def confidence_from_cosine(cos: NDArray[np.floating]) -> NDArray[np.float64]: ...
def confidence_from_cosine(cos: float | NDArray[np.floating]) -> float | NDArray[np.float64]:
    """Map cosine similarity to the 0-100 confidence (see the module doc for the curve).

    Strictly increasing on [-1, 1]; values outside are clamped to 0 / 100. Scalars give a
    ``float``, arrays an array of the same shape.
    """
    mapped = np.interp(np.asarray(cos, dtype=np.float64), _COSINE_KNOTS, _CONFIDENCE_KNOTS)
    if np.ndim(mapped) == 0:
        return float(mapped)
    return mapped


@overload
def cosine_from_confidence(conf: float) -> float: ...
@overload
def cosine_from_confidence(conf: NDArray[np.floating]) -> NDArray[np.float64]: ...
def cosine_from_confidence(conf: float | NDArray[np.floating]) -> float | NDArray[np.float64]:
    """The cosine whose confidence is ``conf``: the exact inverse of :func:`confidence_from_cosine`.

    Confidences outside [0, 100] are clamped to cosine -1 / 1. Use it to turn a threshold given
    in confidence units (``Settings.match_threshold``) into a cosine bound.
    """
    mapped = np.interp(np.asarray(conf, dtype=np.float64), _CONFIDENCE_KNOTS, _COSINE_KNOTS)
    if np.ndim(mapped) == 0:
        return float(mapped)
    return mapped


def is_match(cos: float, threshold: float = DEFAULT_MATCH_CONFIDENCE) -> bool:
    """True when the cosine's confidence reaches ``threshold`` (confidence units, 0-100)."""
    return confidence_from_cosine(cos) >= threshold
