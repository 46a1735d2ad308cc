"""The open-set identification metrics of bench/open_set.py on vectors with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from bench.open_set import fnir_at_fpir, person_scores, split_identities, top1


def _unit(degrees: list[float]) -> np.ndarray:
    rad = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


def test_split_keeps_a_probe_per_enrolled_person_and_strangers_apart() -> None:
    identities = [f"p{k}" for k in range(10) for _ in range(k % 4 + 2)]
    split = split_identities(identities, per_person=3, seed=1)
    enrolled = set(split.gallery_person)
    strangers = {identities[i] for i in split.non_mated}
    assert len(enrolled) == 5 and len(strangers) == 5 and not enrolled & strangers
    for person, faces in split.gallery_faces.items():
        total = identities.count(person)
        assert len(faces) == min(3, total - 1)
        assert sum(identities[i] == person for i in split.mated) == total - len(faces)
    assert split == split_identities(identities, per_person=3, seed=1)  # deterministic


def test_best_face_and_mean_templates() -> None:
    # person a: faces at 0 and 40 degrees; person b: one face at 90 degrees
    emb = _unit([0.0, 40.0, 90.0])
    faces = {"a": [0, 1], "b": [2]}
    probes = _unit([10.0, 30.0, 80.0])
    best = person_scores(probes, emb, ["a", "b"], faces, "best-face")
    np.testing.assert_allclose(best[:, 0], np.cos(np.deg2rad([10.0, 10.0, 40.0])), atol=1e-6)
    np.testing.assert_allclose(best[:, 1], np.cos(np.deg2rad([80.0, 60.0, 10.0])), atol=1e-6)
    mean = person_scores(probes, emb, ["a", "b"], faces, "mean")
    # the fused template of a points at 20 degrees
    np.testing.assert_allclose(mean[:, 0], np.cos(np.deg2rad([10.0, 10.0, 60.0])), atol=1e-6)
    # weighted by quality: a's face at 0 degrees counts 3x, the template points at
    # atan2(sin 40, 3 + cos 40) = 8.3 degrees
    quality = np.array([3.0, 1.0, 0.5], dtype=np.float32)
    weighted = person_scores(probes, emb, ["a", "b"], faces, "weighted", quality)
    angle = np.rad2deg(np.arctan2(np.sin(np.deg2rad(40.0)), 3.0 + np.cos(np.deg2rad(40.0))))
    np.testing.assert_allclose(
        weighted[:, 0], np.cos(np.deg2rad([10.0, 30.0, 80.0]) - np.deg2rad(angle)), atol=1e-6
    )
    np.testing.assert_allclose(weighted[:, 1], mean[:, 1], atol=1e-6)  # one face: its own
    with pytest.raises(ValueError, match="quality"):
        person_scores(probes, emb, ["a", "b"], faces, "weighted")
    who, score = top1(best)
    assert who.tolist() == [0, 0, 1]
    assert score[2] == pytest.approx(np.cos(np.deg2rad(10.0)), abs=1e-6)


def test_dir_at_fpir() -> None:
    non_mated = np.arange(100, dtype=np.float64)  # confidences 0..99
    mated = np.array([99.5, 98.0, 97.5, 50.0])
    ok = np.array([True, True, False, True])
    # FPIR 1e-2: one stranger of 100 may pass -> threshold just above 98
    dir_, threshold = fnir_at_fpir(ok, mated, non_mated, 1e-2)
    assert 98.0 < threshold < 98.001
    assert dir_ == pytest.approx(0.25)
    dir_, threshold = fnir_at_fpir(ok, mated, non_mated, 0.5)
    assert 49.0 < threshold < 49.001
    assert dir_ == pytest.approx(0.75)  # the misidentified probe never counts


def test_identify_ranks_candidates_by_fused_template() -> None:
    from pipeline.index.templates import fused_templates, rank_by_template

    # person a: faces at 0 and 60 degrees (template at 30); b: one face at 40
    vectors = {"a": _unit([0.0, 60.0]), "b": _unit([40.0])}
    template = fused_templates(vectors)["a"]
    np.testing.assert_allclose(template, _unit([30.0])[0], atol=1e-6)
    probe = _unit([25.0])[0] * 3.0  # any length
    # by best face a (0 or 60 -> 25 / 35 degrees away) ranks after b (15 degrees away)...
    candidates = [
        ("b", 7, float(np.cos(np.deg2rad(15.0)))),
        ("a", 1, float(np.cos(np.deg2rad(25.0)))),
    ]
    ranked = rank_by_template(probe, candidates, vectors, top_n=2)
    # ...by template a is 5 degrees away and comes first, keeping its best face id
    assert [(p, f) for p, f, _ in ranked] == [("a", 1), ("b", 7)]
    assert ranked[0][2] == pytest.approx(np.cos(np.deg2rad(5.0)), abs=1e-6)
    assert rank_by_template(probe, candidates, vectors, top_n=1) == ranked[:1]
    # a person without stored vectors keeps its face score
    assert rank_by_template(probe, candidates, {"a": vectors["a"]}, 2)[1][2] == candidates[0][2]


def test_det_curve_steps_through_every_threshold() -> None:
    from bench.open_set import det_curve

    # mated: 4 probes, one misidentified (never counts as found); strangers: 4 probes
    ok = np.array([True, True, False, True])
    mated = np.array([90.0, 70.0, 95.0, 40.0])
    strangers = np.array([80.0, 60.0, 30.0, 10.0])
    fpir, fnir = det_curve(ok, mated, strangers)
    # thresholds high to low: 90 80 70 60 40 30 10 (95 is no one's right answer)
    np.testing.assert_allclose(fpir, [0, 0.25, 0.25, 0.5, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(fnir, [0.75, 0.75, 0.5, 0.5, 0.25, 0.25, 0.25])


def test_open_set_run_draws_a_det_plot(tmp_path) -> None:
    from bench.open_set import evaluate_open_set, plot_det
    from pipeline.calibration import default_calibration

    rng = np.random.default_rng(0)
    identities = [f"p{k}" for k in range(40) for _ in range(3)]
    centres = rng.normal(size=(40, 64))
    emb = np.repeat(centres, 3, axis=0) + 1.2 * rng.normal(size=(120, 64))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    quality = rng.uniform(0.5, 0.9, size=120).astype(np.float32)
    result = evaluate_open_set(
        emb, identities, default_calibration(), gallery_sizes=(10,), quality=quality
    )
    curves = result.pop("_curves")
    assert [(c["gallery_persons"], c["template"]) for c in curves] == [
        (size, template) for size in (10, 20) for template in ("best-face", "mean", "weighted")
    ]
    assert len(result["rows"]) == 6
    plot_det(curves, tmp_path / "det.png", "synthetic")
    assert (tmp_path / "det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
