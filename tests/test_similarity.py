"""Cosine similarity and the cosine <-> confidence mapping, on arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import ErrorCode, FacepipeError
from pipeline.similarity import (
    DEFAULT_MATCH_CONFIDENCE,
    MATCH_COSINE,
    confidence_from_cosine,
    cosine,
    cosine_from_confidence,
    cosine_matrix,
    is_match,
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


def test_confidence_knots_and_bounds() -> None:
    assert confidence_from_cosine(MATCH_COSINE) == DEFAULT_MATCH_CONFIDENCE
    assert confidence_from_cosine(-1.0) == 0.0
    assert confidence_from_cosine(1.0) == 100.0
    assert confidence_from_cosine(0.0) == pytest.approx(5.0)
    assert confidence_from_cosine(0.8) == pytest.approx(98.0)
    assert confidence_from_cosine(-5.0) == 0.0  # clamped
    assert confidence_from_cosine(1.5) == 100.0
    assert cosine_from_confidence(DEFAULT_MATCH_CONFIDENCE) == pytest.approx(MATCH_COSINE)
    assert cosine_from_confidence(0.0) == -1.0
    assert cosine_from_confidence(100.0) == 1.0
    assert cosine_from_confidence(150.0) == 1.0


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
    assert is_match(MATCH_COSINE)
    assert not is_match(MATCH_COSINE - 1e-6)
    assert is_match(0.9)
    assert not is_match(0.0)
    assert is_match(0.0, threshold=5.0)


def test_settings_defaults_are_the_measured_threshold() -> None:
    from pipeline.config import Settings

    fields = Settings.model_fields
    assert fields["match_threshold"].default == DEFAULT_MATCH_CONFIDENCE
    assert fields["face_match_threshold"].default == DEFAULT_MATCH_CONFIDENCE
