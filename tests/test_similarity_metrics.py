"""The verification metrics of bench/accuracy.py on score sets with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from bench.accuracy import (
    equal_error_rate,
    operating_point,
    pair_scores,
    rank1_identification,
    roc_curve,
)


def _unit(degrees: float) -> list[float]:
    rad = np.deg2rad(degrees)
    return [float(np.cos(rad)), float(np.sin(rad))]


def test_operating_point_counts_false_accepts() -> None:
    impostor = np.arange(1000) / 1000 * 0.5  # 0 .. 0.4995
    genuine = np.array([0.9, 0.8, 0.7, 0.2])
    point = operating_point(genuine, impostor, 1e-2)
    assert point.threshold == pytest.approx(989 / 1000 * 0.5)
    assert point.far == pytest.approx(0.01)  # exactly 10 impostors above
    assert point.tar == pytest.approx(0.75)
    assert point.meaningful
    strict = operating_point(genuine, impostor, 1e-3)
    assert strict.far == pytest.approx(0.001)
    assert not strict.meaningful  # one false accept is not a measurement


def test_eer_and_roc() -> None:
    genuine = np.array([0.6, 0.7, 0.8, 0.9])
    impostor = np.array([0.1, 0.2, 0.3, 0.65])
    eer, threshold = equal_error_rate(genuine, impostor)
    assert eer == pytest.approx(0.25)
    assert threshold == pytest.approx(0.65)
    thresholds, far, tar = roc_curve(genuine, impostor)
    assert np.all(np.diff(thresholds) < 0)
    assert np.all(np.diff(far) >= 0) and np.all(np.diff(tar) >= 0)
    assert far[-1] == 1.0 and tar[-1] == 1.0


def test_pair_scores_split_by_identity() -> None:
    emb = np.array([_unit(0), _unit(60), _unit(90)], dtype=np.float32)
    genuine, impostor, gen_pairs, imp_pairs = pair_scores(emb, ["a", "a", "b"])
    assert gen_pairs.tolist() == [[0, 1]]
    assert genuine == pytest.approx([0.5], abs=1e-6)
    assert imp_pairs.tolist() == [[0, 2], [1, 2]]
    assert impostor == pytest.approx([0.0, np.cos(np.deg2rad(30))], abs=1e-6)


def test_rank1_leave_one_out_with_singleton_distractor() -> None:
    emb = np.array([_unit(a) for a in (0, 10, 90, 40, 60)], dtype=np.float32)
    correct, probes, errors = rank1_identification(emb, ["A", "A", "B", "B", "C"])
    assert (correct, probes) == (2, 4)  # the singleton C is a distractor, not a probe
    assert errors == [(2, 4), (3, 4)]
