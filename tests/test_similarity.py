"""Cosine similarity, the cosine <-> confidence mapping and the vendors' scales."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.calibration import DEFAULT_MODEL_ID
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.similarity import (
    BAIDU_SAME_PERSON,
    DEFAULT_FACE_MATCH_CONFIDENCE,
    DEFAULT_IDENTIFY_CONFIDENCE,
    DEFAULT_MATCH_CONFIDENCE,
    baidu_score,
    calibration,
    confidence_from_baidu_score,
    confidence_from_cosine,
    cosine,
    cosine_from_confidence,
    cosine_matrix,
    is_match,
    tencent_score,
)


def test_cosine_known_values() -> None:
    assert cosine([1, 0], [1, 0]) == pytest.approx(1.0)
    assert cosine([1, 0], [0, 1]) == pytest.approx(0.0)
    assert cosine([1, 0], [-1, 0]) == pytest.approx(-1.0)
    assert cosine([3, 4], [6, 8]) == pytest.approx(1.0)  # scale does not matter
    assert cosine([1, 1], [1, 0]) == pytest.approx(1 / np.sqrt(2))
    assert cosine([0, 0], [1, 0]) == 0.0  # zero vector: no direction


def test_cosine_matrix_matches_pairwise_and_leaves_inputs_alone() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 512)).astype(np.float32)
    b = rng.normal(size=(3, 512)).astype(np.float32)
    a_before = a.copy()
    sims = cosine_matrix(a, b)
    assert sims.shape == (4, 3)
    assert sims.dtype == np.float32
    for i in range(4):
        for j in range(3):
            assert sims[i, j] == pytest.approx(cosine(a[i], b[j]), abs=1e-5)
    np.testing.assert_array_equal(a, a_before)
    assert np.diag(cosine_matrix(a, a)) == pytest.approx(np.ones(4), abs=1e-5)


def test_dimension_mismatch_is_illegal_parameter() -> None:
    with pytest.raises(FacepipeError) as err:
        cosine_matrix(np.ones((2, 512)), np.ones((2, 128)))
    assert err.value.code is ErrorCode.ILLEGAL_PARAMETER
    with pytest.raises(FacepipeError):
        cosine(np.ones((2, 3)), np.ones(3))


def test_confidence_bounds_and_the_default_calibration() -> None:
    # the scale is the shipped calibration of the default recognizer (tests/test_calibration*)
    cal = calibration()
    assert cal.model_id == DEFAULT_MODEL_ID
    assert confidence_from_cosine(-1.0) == 0.0
    assert confidence_from_cosine(1.0) == 100.0
    assert confidence_from_cosine(-5.0) == 0.0  # clamped
    assert confidence_from_cosine(1.5) == 100.0
    assert cosine_from_confidence(0.0) == -1.0
    assert cosine_from_confidence(100.0) == 1.0
    assert cosine_from_confidence(150.0) == 1.0
    # unrelated faces (cosine ~0) are far below every threshold; the thresholds are ordered
    assert confidence_from_cosine(0.0) < 20.0
    bounds = [
        cosine_from_confidence(t)
        for t in (
            DEFAULT_MATCH_CONFIDENCE,
            DEFAULT_FACE_MATCH_CONFIDENCE,
            DEFAULT_IDENTIFY_CONFIDENCE,
        )
    ]
    assert 0.0 < bounds[0] < bounds[1] < bounds[2] < 1.0
    assert confidence_from_cosine(bounds[0]) == pytest.approx(DEFAULT_MATCH_CONFIDENCE)


def test_confidence_strictly_increasing_and_inverse_round_trips() -> None:
    cos = np.linspace(-1.0, 1.0, 2001)
    conf = confidence_from_cosine(cos)
    assert isinstance(conf, np.ndarray) and conf.shape == cos.shape
    assert np.all(np.diff(conf) > 0)
    assert np.all((conf >= 0) & (conf <= 100))
    np.testing.assert_allclose(cosine_from_confidence(conf), cos, atol=1e-12)
    confs = np.linspace(0.0, 100.0, 1001)
    back = confidence_from_cosine(cosine_from_confidence(confs))
    np.testing.assert_allclose(back, confs, atol=1e-9)
    assert isinstance(confidence_from_cosine(0.5), float)
    assert isinstance(cosine_from_confidence(70.0), float)


def test_is_match_at_threshold() -> None:
    bound = cosine_from_confidence(DEFAULT_MATCH_CONFIDENCE)
    assert is_match(bound + 1e-9)
    assert not is_match(bound - 1e-6)
    assert is_match(0.9)
    assert not is_match(0.0)
    assert is_match(0.0, threshold=confidence_from_cosine(0.0))


def test_settings_defaults_are_the_documented_thresholds() -> None:
    from pipeline.config import Settings

    fields = Settings.model_fields
    assert fields["match_threshold"].default == DEFAULT_MATCH_CONFIDENCE == 50.0
    assert fields["face_match_threshold"].default == DEFAULT_FACE_MATCH_CONFIDENCE == 60.0
    assert fields["identify_match_threshold"].default == DEFAULT_IDENTIFY_CONFIDENCE


def test_tencent_scale_is_the_confidence() -> None:
    assert tencent_score(50.0) == 50.0
    assert tencent_score(-3.0) == 0.0 and tencent_score(120.0) == 100.0
    np.testing.assert_array_equal(tencent_score(np.array([0.0, 42.5, 100.0])), [0, 42.5, 100])


def test_baidu_scale_known_values_and_inverse() -> None:
    # Baidu's "same person" 80 is facepipe's verify default 50 (FAR 1e-4); ten points a decade
    assert baidu_score(DEFAULT_MATCH_CONFIDENCE) == BAIDU_SAME_PERSON
    assert baidu_score(40.0) == pytest.approx(70.0)
    assert baidu_score(60.0) == pytest.approx(90.0)
    assert baidu_score(0.0) == 0.0 and baidu_score(100.0) == 100.0
    assert baidu_score(10.0) == pytest.approx(25.0)  # bottom ramp
    assert baidu_score(80.0) == pytest.approx(95.0 + 5.0 * 15.0 / 35.0)  # top ramp
    assert confidence_from_baidu_score(80.0) == DEFAULT_MATCH_CONFIDENCE
    levels = np.linspace(0.0, 100.0, 1001)
    scores = baidu_score(levels)
    assert np.all(np.diff(scores) > 0)
    np.testing.assert_allclose(confidence_from_baidu_score(scores), levels, atol=1e-9)
    np.testing.assert_allclose(baidu_score(confidence_from_baidu_score(levels)), levels, atol=1e-9)
    assert baidu_score(150.0) == 100.0 and confidence_from_baidu_score(-1.0) == 0.0
    # a Baidu threshold becomes a cosine bound through the calibration
    bound = cosine_from_confidence(confidence_from_baidu_score(BAIDU_SAME_PERSON))
    assert bound == pytest.approx(cosine_from_confidence(DEFAULT_MATCH_CONFIDENCE))
