"""The match threshold of a re-identification job and its summary of expected false matches.

A re-identification job searches faces of mostly unknown people: every enrolled face is one
more chance for a stranger to be matched. The job takes either

* ``match_threshold``: a confidence (Tencent 3.0 scale, 0-100), or
* ``false_match_rate``: the share of strangers' faces the caller accepts to see matched to
  someone (the FPIR); the threshold is then derived from the gallery's size when a chunk
  searches (``pipeline.calibration.confidence_for_false_match_rate``; the gallery's size is its
  persons when identify ranks fused person templates, its faces when it ranks best faces),

and neither means ``Settings.identify_match_threshold`` (70: FAR 1e-6 per comparison). Every
candidate is still recorded (top-N); the threshold decides which faces count as *matched*.
The summary says how many matched faces to expect to be false: ``faces * (1 - (1 - FAR)^G)``
for G gallery comparisons, the count if every searched face were a stranger (an upper bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import psycopg

from pipeline.calibration import (
    confidence_for_false_match_rate,
    expected_false_matches,
    far_from_confidence,
)
from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.validation import validate_threshold

GALLERY_COUNT_CAP = 100_000_000


def reid_params(match_threshold: float | None, false_match_rate: float | None) -> dict[str, float]:
    """The job parameters for a threshold or a target false-match rate (at most one)."""
    if match_threshold is not None and false_match_rate is not None:
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER, "give a match threshold or a false match rate, not both"
        )
    if match_threshold is not None:
        return {"match_threshold": validate_threshold(float(match_threshold), "match_threshold")}
    if false_match_rate is not None:
        rate = float(false_match_rate)
        if not (math.isfinite(rate) and 0.0 < rate < 1.0):
            raise FacepipeError(
                ErrorCode.ILLEGAL_PARAMETER, f"false_match_rate must be in (0, 1), got {rate}"
            )
        return {"false_match_rate": rate}
    return {}


@dataclass(frozen=True)
class JobThreshold:
    confidence: float
    rule: str
    """``match_threshold``, ``false_match_rate`` or ``default``."""
    false_match_rate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"confidence": round(self.confidence, 3), "rule": self.rule}
        if self.false_match_rate is not None:
            out["false_match_rate"] = self.false_match_rate
        return out


def job_threshold(params: dict[str, Any], comparisons: int, settings: Settings) -> JobThreshold:
    """The confidence a job's candidates must reach to count as a match."""
    if params.get("match_threshold") is not None:
        return JobThreshold(float(params["match_threshold"]), "match_threshold")
    if params.get("false_match_rate") is not None:
        rate = float(params["false_match_rate"])
        return JobThreshold(
            confidence_for_false_match_rate(rate, comparisons), "false_match_rate", rate
        )
    return JobThreshold(settings.identify_match_threshold, "default")


def gallery_comparisons(
    conn: psycopg.Connection, groups: list[str], model_id: str, settings: Settings
) -> int:
    """How many chances a searched face has to match someone: one per enrolled person when
    identify ranks persons by fused templates, one per enrolled face when by best face."""
    from pipeline.index.templates import MEAN
    from pipeline.store import repo

    if settings.identify_person_template != MEAN:
        return repo.count_group_faces(conn, groups, model_id, GALLERY_COUNT_CAP)
    return repo.count_group_persons(conn, groups, model_id)


def reidentify_summary(
    conn: psycopg.Connection,
    job_id: str,
    params: dict[str, Any],
    model_id: str,
    settings: Settings,
) -> dict[str, Any]:
    """Faces searched and matched by a re-identification job, and how many of the matches are
    expected to be false at its threshold given the gallery's size now."""
    groups = list(params.get("groups") or [])
    size = gallery_comparisons(conn, groups, model_id, settings) if groups else 0
    threshold = job_threshold(params, size, settings)
    from pipeline.store.observations import count_best_matches

    searched, matched = count_best_matches(conn, job_id, threshold.confidence)
    expected = expected_false_matches(threshold.confidence, size, searched)
    return {
        "threshold": threshold.to_dict(),
        "far_per_comparison": far_from_confidence(threshold.confidence),
        "gallery_comparisons": size,
        "person_template": settings.identify_person_template,
        "faces_searched": searched,
        "faces_matched": matched,
        "expected_false_matches": round(expected, 3),
        "note": "expected false matches if every searched face were of a person not enrolled "
        "(an upper bound)",
    }
