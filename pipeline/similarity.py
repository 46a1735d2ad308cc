"""Cosine similarity of embeddings and the 0-100 confidence scales the protocols answer on.

facepipe's confidence is calibrated per recognizer model to the Tencent 3.0 scale (each 10
points a tenfold lower false accept rate per comparison: 40 / 50 / 60 / 70 at FAR 1e-3 / 1e-4 /
1e-5 / 1e-6): see :mod:`pipeline.calibration` for how it is measured. This module holds the
cosine functions, the mapping to and from confidence for a model id, the default thresholds with
what they mean, and the vendors' scales as pure functions for the compatibility routes:

* Tencent (YouTu / IAI): the confidence itself (:func:`tencent_score`).
* Baidu v2: 80 is "same person" (the only anchor Baidu publishes) = facepipe's verify default
  50 (FAR 1e-4). :func:`baidu_score` keeps Tencent's ten points per decade around it (Baidu 70 /
  80 / 90 = FAR 1e-3 / 1e-4 / 1e-5) and squeezes the ends into [0, 100] with straight ramps;
  :func:`confidence_from_baidu_score` is its exact inverse, for thresholds given on Baidu's scale.

Because each mapping is piecewise linear and strictly increasing, the inverses are exact: a
threshold on any scale becomes a cosine bound a vector index can use.
"""

from __future__ import annotations

from typing import overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pipeline.calibration import Calibration, calibration_for
from pipeline.errors import ErrorCode, FacepipeError

DEFAULT_MATCH_CONFIDENCE = 50.0
"""verify / compare: "same person" at FAR 1e-4 per comparison (Tencent: "above 50 is generally
the same person"; Baidu's 80)."""

DEFAULT_FACE_MATCH_CONFIDENCE = 60.0
"""FaceMatchThreshold (a new face must resemble the person's enrolled faces): Tencent IAI's
default 60, FAR 1e-5 per comparison."""

DEFAULT_IDENTIFY_CONFIDENCE = 70.0
"""identify / re-identify match: FAR 1e-6 per comparison, so about 1% of strangers are matched
to someone in a gallery of 10,000 persons (fused templates; Tencent's 1:N table: 1% at 70
for 10k faces)."""

BAIDU_SAME_PERSON = 80.0
"""Baidu v2's recommended "same person" score."""

# (Tencent confidence, Baidu score): ten points per decade of FAR in the middle, ramps at the ends
_TENCENT_KNOTS = np.array([0.0, 20.0, 65.0, 100.0])
_BAIDU_KNOTS = np.array([0.0, 50.0, 95.0, 100.0])

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
    unit: NDArray[np.float32] = np.divide(
        arr, norms, out=np.zeros_like(arr), where=norms > _MIN_NORM
    )
    return unit


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
    sims: NDArray[np.float32] = _normalised(ma) @ _normalised(mb).T
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


def calibration(model_id: str | None = None, calibration_dir: str | None = None) -> Calibration:
    """The calibration of ``model_id`` (default pack's when None), from ``calibration_dir``
    first (``Settings.calibration_dir``), then the shipped ones."""
    return calibration_for(model_id, calibration_dir)


@overload
def confidence_from_cosine(
    cos: float, model_id: str | None = None, calibration_dir: str | None = None
) -> float: ...
@overload
def confidence_from_cosine(
    cos: NDArray[np.floating], model_id: str | None = None, calibration_dir: str | None = None
) -> NDArray[np.float64]: ...
def confidence_from_cosine(
    cos: float | NDArray[np.floating],
    model_id: str | None = None,
    calibration_dir: str | None = None,
) -> float | NDArray[np.float64]:
    """Confidence 0-100 (Tencent 3.0 scale) of a cosine under ``model_id``'s calibration.

    Strictly increasing on [-1, 1]; values outside are clamped to 0 / 100. Scalars give a
    ``float``, arrays an array of the same shape.
    """
    return calibration(model_id, calibration_dir).confidence(cos)


@overload
def cosine_from_confidence(
    conf: float, model_id: str | None = None, calibration_dir: str | None = None
) -> float: ...
@overload
def cosine_from_confidence(
    conf: NDArray[np.floating], model_id: str | None = None, calibration_dir: str | None = None
) -> NDArray[np.float64]: ...
def cosine_from_confidence(
    conf: float | NDArray[np.floating],
    model_id: str | None = None,
    calibration_dir: str | None = None,
) -> float | NDArray[np.float64]:
    """The cosine whose confidence is ``conf``: the exact inverse of :func:`confidence_from_cosine`.

    Confidences outside [0, 100] are clamped to cosine -1 / 1. Use it to turn a threshold given
    in confidence units into a cosine bound.
    """
    return calibration(model_id, calibration_dir).cosine(conf)


def is_match(
    cos: float, threshold: float = DEFAULT_MATCH_CONFIDENCE, model_id: str | None = None
) -> bool:
    """True when the cosine's confidence reaches ``threshold`` (confidence units, 0-100)."""
    return confidence_from_cosine(cos, model_id) >= threshold


# --- the vendors' scales (pure; for the compatibility routes) ---


def _clamped(value: float | NDArray[np.floating]) -> NDArray[np.float64]:
    return np.clip(np.asarray(value, dtype=np.float64), 0.0, 100.0)


def _out(value: NDArray[np.float64]) -> float | NDArray[np.float64]:
    return float(value) if np.ndim(value) == 0 else value


def tencent_score(confidence: float | NDArray[np.floating]) -> float | NDArray[np.float64]:
    """Tencent YouTu / IAI score of a facepipe confidence: the same scale (clamped to 0-100)."""
    return _out(_clamped(confidence))


def baidu_score(confidence: float | NDArray[np.floating]) -> float | NDArray[np.float64]:
    """Baidu v2 score (80 = same person) of a facepipe confidence (50 = FAR 1e-4)."""
    return _out(np.interp(_clamped(confidence), _TENCENT_KNOTS, _BAIDU_KNOTS))


def confidence_from_baidu_score(
    score: float | NDArray[np.floating],
) -> float | NDArray[np.float64]:
    """facepipe confidence of a Baidu v2 score: the exact inverse of :func:`baidu_score`."""
    return _out(np.interp(_clamped(score), _BAIDU_KNOTS, _TENCENT_KNOTS))
