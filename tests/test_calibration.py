"""The Tencent-scale calibration on synthetic score distributions with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pipeline.calibration import (
    DEFAULT_MODEL_ID,
    SHIPPED_DIR,
    Calibration,
    calibration_for,
    confidence_for_false_match_rate,
    confidence_from_far,
    expected_false_matches,
    far_from_confidence,
    fit_calibration,
    fit_generalized_pareto,
    knot_standard_errors,
    read_calibration,
    save_calibration,
)
from pipeline.errors import FacepipeError

SD = 0.1


@pytest.fixture(scope="module")
def normal_calibration() -> Calibration:
    """2M impostor cosines ~ N(0, 0.1): FAR(c) = 1 - Phi(c / 0.1) is known exactly."""
    rng = np.random.default_rng(7)
    return fit_calibration(rng.normal(0.0, SD, size=2_000_000), "synthetic-normal")


def test_tencent_scale_anchors() -> None:
    # the published anchors: 40/50/60 at FAR 1e-3/1e-4/1e-5, each 10 points tenfold
    for far, conf in ((1e-3, 40.0), (1e-4, 50.0), (1e-5, 60.0), (1e-6, 70.0), (1.0, 10.0)):
        assert confidence_from_far(far) == pytest.approx(conf)
        assert far_from_confidence(conf) == pytest.approx(far)
    assert far_from_confidence(0.0) == 1.0  # capped: a rate
    levels = np.linspace(10.0, 100.0, 91)
    np.testing.assert_allclose(confidence_from_far(far_from_confidence(levels)), levels)


def _true_confidence(cos: float) -> float:
    """The Tencent confidence the cosine really has under N(0, 0.1): from the exact FAR."""
    return confidence_from_far(0.5 * math.erfc(cos / SD / math.sqrt(2.0)))


def test_measured_knots_match_the_normal_quantiles(normal_calibration: Calibration) -> None:
    # 2M pairs measure FAR down to 100 / 2M = 5e-5 from the data (confidence <= 53): the knots
    # are empirical quantiles, within sampling error: k pairs above the knot measure its FAR to
    # +-1/sqrt(k), i.e. +-4.34/sqrt(k) points; allowed 3.5 of those (1 point at 50, k = 200)
    for conf in (20.0, 30.0, 40.0, 50.0):
        k = far_from_confidence(conf) * 2_000_000
        tolerance = 3.5 * 10 * math.log10(math.e) / math.sqrt(k)
        got = _true_confidence(normal_calibration.cosine(conf))
        assert got == pytest.approx(conf, abs=tolerance)
        assert normal_calibration.provenance["check"][f"{conf:g}"]["source"] == "data"


def test_fitted_tail_extrapolates_the_normal_tail(normal_calibration: Calibration) -> None:
    # beyond the data the generalized Pareto fit; a normal tail is light (shape < 0). The
    # tolerances are the spread over 5 seeds of this test (max error 0.7 / 1.8 / 2.9 / 4.2
    # points at 60 / 70 / 80 / 90): extrapolating 1 to 4 decades past the data is that uncertain
    tail = normal_calibration.provenance["tail"]
    assert -0.3 < tail["shape"] < 0.0
    for conf, tolerance in ((60.0, 1.0), (70.0, 2.5), (80.0, 4.0), (90.0, 5.0)):
        got = _true_confidence(normal_calibration.cosine(conf))
        assert got == pytest.approx(conf, abs=tolerance)
        assert normal_calibration.provenance["check"][f"{conf:g}"]["source"] == "fit"


def test_measured_far_at_each_anchor(normal_calibration: Calibration) -> None:
    check = normal_calibration.provenance["check"]
    for conf in ("30", "40", "50"):
        assert check[conf]["measured_far"] == pytest.approx(check[conf]["target_far"], rel=0.15)


def test_generalized_pareto_recovers_known_parameters() -> None:
    rng = np.random.default_rng(3)
    for shape, scale in ((-0.2, 0.05), (0.0, 1.0), (0.25, 2.0)):
        u = rng.uniform(size=50_000)
        x = -scale * np.log(u) if shape == 0 else scale / shape * (u**-shape - 1.0)
        fitted_shape, fitted_scale = fit_generalized_pareto(x)
        assert fitted_shape == pytest.approx(shape, abs=0.03)
        assert fitted_scale == pytest.approx(scale, rel=0.05)


def test_mapping_monotone_and_exactly_invertible(normal_calibration: Calibration) -> None:
    cos = np.linspace(-1.0, 1.0, 4001)
    conf = normal_calibration.confidence(cos)
    assert np.all(np.diff(conf) > 0)
    assert conf[0] == 0.0 and conf[-1] == 100.0
    np.testing.assert_allclose(normal_calibration.cosine(conf), cos, atol=1e-12)
    levels = np.linspace(0.0, 100.0, 2001)
    np.testing.assert_allclose(
        normal_calibration.confidence(normal_calibration.cosine(levels)), levels, atol=1e-9
    )
    # a confidence threshold is a cosine bound: conf >= T exactly when cos >= cosine(T)
    rng = np.random.default_rng(0)
    scores = rng.uniform(-1.0, 1.0, size=10_000)
    for threshold in (40.0, 50.0, 60.0, 70.0, 80.0):
        bound = normal_calibration.cosine(threshold)
        by_conf = normal_calibration.confidence(scores) >= threshold - 1e-9
        np.testing.assert_array_equal(by_conf, scores >= bound - 1e-12)
    assert normal_calibration.confidence(-3.0) == 0.0
    assert normal_calibration.cosine(250.0) == 1.0


def test_json_round_trip_and_validation(normal_calibration: Calibration, tmp_path) -> None:
    path = save_calibration(normal_calibration, tmp_path)
    assert path.name == "synthetic-normal.json"
    back = read_calibration(path)
    assert back.model_id == "synthetic-normal"
    np.testing.assert_allclose(back.confidence_knots, normal_calibration.confidence_knots)
    np.testing.assert_allclose(back.cosine_knots, normal_calibration.cosine_knots, atol=1e-6)
    data = json.loads(path.read_text())
    data["knots"]["cosine"][5], data["knots"]["cosine"][6] = (
        data["knots"]["cosine"][6],
        data["knots"]["cosine"][5],
    )
    with pytest.raises(ValueError, match="strictly increasing"):
        Calibration.from_json(data)
    data["scale"] = "baidu"
    with pytest.raises(ValueError, match="scale"):
        Calibration.from_json(data)
    with pytest.raises(ValueError, match="100,000 impostor pairs"):
        fit_calibration(np.zeros(10), "tiny")


def test_lookup_by_model_id(normal_calibration: Calibration, tmp_path) -> None:
    save_calibration(normal_calibration, tmp_path)
    calibration_for.cache_clear()
    mine = calibration_for("synthetic-normal", str(tmp_path))
    assert mine.model_id == "synthetic-normal"
    shipped = calibration_for(DEFAULT_MODEL_ID)
    assert shipped.model_id == DEFAULT_MODEL_ID
    assert (SHIPPED_DIR / f"{DEFAULT_MODEL_ID}.json").is_file()
    # unknown recognizers fall back to the default pack's calibration
    assert calibration_for("unknown-model-00000000").model_id == DEFAULT_MODEL_ID
    calibration_for.cache_clear()


def test_open_set_arithmetic() -> None:
    # one comparison: the per-comparison FAR
    assert expected_false_matches(50.0, 1, 1) == pytest.approx(1e-4)
    # Tencent's 1:N table: 10k faces, 1% of strangers at 70, 0.1% at 80
    assert expected_false_matches(70.0, 10_000, 1) == pytest.approx(0.01, rel=0.01)
    assert expected_false_matches(80.0, 10_000, 1) == pytest.approx(0.001, rel=0.01)
    assert expected_false_matches(80.0, 100_000, 1_000) == pytest.approx(
        1_000 * (1 - (1 - 1e-7) ** 100_000)
    )
    assert expected_false_matches(0.0, 5, 7) == 7.0
    for rate, faces in ((0.01, 10_000), (0.001, 100_000), (0.05, 1)):
        t = confidence_for_false_match_rate(rate, faces)
        assert expected_false_matches(t, faces, 1) == pytest.approx(rate, rel=1e-9)
    assert confidence_for_false_match_rate(0.01, 10_000) == pytest.approx(
        10 - 10 * math.log10(-math.expm1(math.log1p(-0.01) / 10_000))
    )
    for bad in (0.0, 1.0, -0.1, float("nan")):
        with pytest.raises(FacepipeError):
            confidence_for_false_match_rate(bad, 100)


def _naive_jackknife_se(scores, ga, gb, cos, levels) -> np.ndarray:
    """knot_standard_errors written out: delete each group, recount, jackknife, delta method."""
    groups = sorted(set(ga.tolist()) | set(gb.tolist()))
    fars = []
    for g in groups:
        keep = (ga != g) & (gb != g)
        fars.append([np.mean(scores[keep] >= c) for c in cos])
    fars_arr = np.asarray(fars)
    m = len(groups)
    var = (m - 1) / m * np.sum((fars_arr - fars_arr.mean(axis=0)) ** 2, axis=0)
    far = np.asarray([np.mean(scores >= c) for c in cos])
    lo = np.interp(levels - 2.0, levels, cos)
    hi = np.interp(levels + 2.0, levels, cos)
    span = np.interp(levels + 2.0, levels, levels) - np.interp(levels - 2.0, levels, levels)
    return (hi - lo) / (span * math.log(10.0) / 10.0) * np.sqrt(var) / far


def test_knot_standard_errors_are_the_delete_one_identity_jackknife() -> None:
    rng = np.random.default_rng(11)
    i, j = np.triu_indices(40, k=1)
    scores = rng.normal(0.0, 0.1, i.size)
    levels = np.arange(15.0, 30.5, 0.5)
    cos = np.quantile(scores, 1.0 - far_from_confidence(levels))
    got = knot_standard_errors(scores, (i, j), cos, levels)
    np.testing.assert_allclose(got, _naive_jackknife_se(scores, i, j, cos, levels), rtol=1e-9)
    with pytest.raises(ValueError, match="one group pair"):
        knot_standard_errors(scores[:-1], (i, j), cos, levels)


@pytest.mark.parametrize(
    "person_sd, low, high",
    [
        # pairs independent: the jackknife counts each pair's noise through both its photos'
        # persons and errs high (1.3-1.6x in this set-up), never low
        (0.0, 1.1, 1.8),
        # a person effect (some people resemble many others), as in real faces: about right
        (0.03, 0.85, 1.4),
    ],
)
def test_knot_standard_errors_match_the_spread_over_repeated_sets(
    person_sd: float, low: float, high: float
) -> None:
    # cosine of persons a and b = u_a + u_b + noise, 500 persons: the knots' spread over 200
    # independent sets is the known answer the standard error of one set must estimate
    rng = np.random.default_rng(5)
    i, j = np.triu_indices(500, k=1)
    levels = np.arange(15.0, 41.0, 0.5)
    fars = far_from_confidence(levels)
    knots, errors = [], []
    for _ in range(200):
        person = rng.normal(0.0, person_sd, 500)
        scores = person[i] + person[j] + rng.normal(0.0, 0.1, i.size)
        cos = np.quantile(scores, 1.0 - fars)
        knots.append(cos)
        errors.append(knot_standard_errors(scores, (i, j), cos, levels))
    spread = np.std(knots, axis=0)
    ratio = np.mean(errors, axis=0) / spread
    for level in (20.0, 30.0, 40.0):
        assert low < ratio[levels == level][0] < high
    if person_sd:  # the binomial error of independent pairs would understate it several times
        slope = -np.gradient(np.mean(knots, axis=0), np.log(fars))  # cosine per unit ln FAR
        binomial = slope * np.sqrt((1.0 - fars) / (fars * i.size))
        assert np.all(spread[levels <= 30.0] > 2 * binomial[levels <= 30.0])


def test_calibration_records_the_data_knots_standard_errors(
    normal_calibration: Calibration,
) -> None:
    assert "knot_standard_errors" not in normal_calibration.provenance  # no identities given
    rng = np.random.default_rng(2)
    i, j = np.triu_indices(1000, k=1)  # 499,500 pairs: data down to FAR 2e-4 (confidence 47)
    person = rng.normal(0.0, 0.02, 1000)
    scores = person[i] + person[j] + rng.normal(0.0, 0.1, i.size)
    cal = fit_calibration(scores, "synthetic-persons", pair_groups=(i, j))
    recorded = cal.provenance["knot_standard_errors"]
    levels = np.asarray(recorded["confidence"])
    assert levels[0] == 15.0 and levels[-1] == 46.5  # every data knot, none of the fit's
    expected = knot_standard_errors(scores, (i, j), cal.cosine(levels), levels)
    np.testing.assert_allclose(recorded["cosine_se"], expected, atol=1e-6)
    assert cal.provenance["check"]["40"]["cosine_se"] == pytest.approx(
        float(expected[levels == 40.0][0]), abs=1e-6
    )
    assert "cosine_se" not in cal.provenance["check"]["50"]  # from the fitted tail


def test_too_few_impostor_pairs_for_a_tail_are_refused() -> None:
    # 155 photos (about 11,000 impostor pairs, the old scale's data) leave 11 pairs for the tail
    # fit: a light tail fitted to them ends just past the largest impostor, and every cosine
    # beyond would read 99. Refused, saying how much is needed.
    rng = np.random.default_rng(4)
    with pytest.raises(ValueError, match="needs 100: at least 100,000 impostor pairs"):
        fit_calibration(rng.normal(0.0, 0.07, 11_450), "too-small")
    assert fit_calibration(rng.normal(0.0, 0.07, 100_000), "enough").model_id == "enough"
