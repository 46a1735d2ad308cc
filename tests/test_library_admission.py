"""The enrolment rules as one pure decision (pipeline.library.admission): order and edges."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.calibration import Calibration
from pipeline.errors import ErrorCode
from pipeline.library.admission import (
    Admit,
    AlreadyEnrolled,
    Applicant,
    CapPolicy,
    PersonFaces,
    Refuse,
    Rules,
    check_quality,
    decide,
)

# confidence = 50 * (cosine + 1): cosine 0.6 is confidence 80
LINEAR = Calibration("linear", np.array([-1.0, 1.0]), np.array([0.0, 100.0]))


def _unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def _at_cosine(cos: float) -> np.ndarray:
    """A unit vector at cosine ``cos`` to (1, 0)."""
    return np.array([cos, np.sqrt(1.0 - cos * cos)], dtype=np.float32)


PROBE = _unit(1.0, 0.0)


def _rules(**kw: object) -> Rules:
    base: dict[str, object] = {
        "quality_control": 0,
        "face_match_threshold": 0.0,
        "near_duplicate_similarity": 0.95,
        "max_faces": 3,
    }
    return Rules(**{**base, **kw})  # type: ignore[arg-type]


def _face(level: int = 3, score: float = 70.0, embedding: np.ndarray | None = PROBE) -> Applicant:
    return Applicant(level, score, embedding)


def _person(
    cosines: list[float],
    ids: list[int] | None = None,
    *,
    count: int | None = None,
    worst: tuple[int, float] | None = None,
    existing: int | None = None,
) -> PersonFaces:
    ids = ids if ids is not None else list(range(1, len(cosines) + 1))
    vectors = (
        np.stack([_at_cosine(c) for c in cosines])
        if cosines
        else np.zeros((0, 0), dtype=np.float32)
    )
    return PersonFaces(
        "p1", existing, len(cosines) if count is None else count, worst, tuple(ids), vectors
    )


def test_quality_control_gate_comes_first() -> None:
    refused = decide(_face(level=1), _person([0.99], existing=7), _rules(quality_control=2), LINEAR)
    assert isinstance(refused, Refuse) and refused.code == ErrorCode.QUALITY_TOO_LOW
    assert check_quality(_face(level=2), _rules(quality_control=2)) is None


def test_a_face_without_embedding_is_refused() -> None:
    refused = check_quality(_face(embedding=None), _rules())
    assert refused is not None and refused.code == ErrorCode.FEATURE_FAILED


def test_the_same_face_again_returns_the_stored_one_even_at_the_cap() -> None:
    assert decide(_face(), _person([0.3], count=3, existing=42), _rules(), LINEAR) == (
        AlreadyEnrolled(42)
    )


def test_a_first_face_is_admitted_whatever_the_threshold() -> None:
    assert decide(_face(), _person([]), _rules(face_match_threshold=99.0), LINEAR) == Admit()


def test_cap_refuses_by_default() -> None:
    refused = decide(_face(), _person([0.3, 0.4, 0.5]), _rules(), LINEAR)
    assert isinstance(refused, Refuse) and refused.code == ErrorCode.TOO_MANY_FACES
    assert "already has 3 faces" in refused.message


@pytest.mark.parametrize("worst_quality", [70.0, 80.0])
def test_cap_replace_worst_refuses_a_face_not_better(worst_quality: float) -> None:
    person = _person([0.3, 0.4, 0.5], worst=(2, worst_quality))
    refused = decide(_face(score=70.0), person, _rules(cap_policy=CapPolicy.REPLACE_WORST), LINEAR)
    assert isinstance(refused, Refuse) and refused.code == ErrorCode.TOO_MANY_FACES
    assert "not better than the enrolled ones" in refused.message


def test_cap_replace_worst_checks_the_other_rules_without_the_replaced_face() -> None:
    # face 2 is a near-duplicate of the probe, but it is the one being replaced
    person = _person([0.3, 0.99, 0.5], ids=[1, 2, 3], worst=(2, 10.0))
    rules = _rules(cap_policy=CapPolicy.REPLACE_WORST)
    assert decide(_face(score=70.0), person, rules, LINEAR) == Admit(replaces=2)
    # ... while a near-duplicate among the kept faces still refuses
    person = _person([0.99, 0.3, 0.5], ids=[1, 2, 3], worst=(2, 10.0))
    refused = decide(_face(score=70.0), person, rules, LINEAR)
    assert isinstance(refused, Refuse) and refused.code == ErrorCode.NEAR_DUPLICATE_FACE


def test_cap_counts_faces_of_every_model_and_replaces_one_of_another_model() -> None:
    # three faces in all, one of this model; the worst is of another model (id 9)
    person = _person([0.5], ids=[1], count=3, worst=(9, 5.0))
    rules = _rules(cap_policy=CapPolicy.REPLACE_WORST)
    assert decide(_face(), person, rules, LINEAR) == Admit(replaces=9)


def test_near_duplicate_above_the_similarity_is_refused() -> None:
    rules = _rules(near_duplicate_similarity=0.9)
    refused = decide(_face(), _person([0.2, 0.91]), rules, LINEAR)
    assert isinstance(refused, Refuse) and refused.code == ErrorCode.NEAR_DUPLICATE_FACE
    assert decide(_face(), _person([0.2, 0.89]), rules, LINEAR) == Admit()


def test_face_match_threshold_against_the_best_face() -> None:
    rules = _rules(face_match_threshold=80.0)
    refused = decide(_face(), _person([0.1, 0.59]), rules, LINEAR)  # best confidence 79.5
    assert isinstance(refused, Refuse)
    assert refused.code == ErrorCode.FACE_MATCH_BELOW_THRESHOLD
    assert decide(_face(), _person([0.1, 0.61]), rules, LINEAR) == Admit()
    # 0 disables the rule
    assert decide(_face(), _person([-0.9]), _rules(face_match_threshold=0.0), LINEAR) == Admit()
