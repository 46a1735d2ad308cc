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
    with pytest.raises(ValueError, match="1000 impostor"):
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
