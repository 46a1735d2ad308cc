"""The shipped calibration of the default recognizer, reproduced from the shared lfw-dev photos.

Two ways, chosen by what is on the machine (say which ran: the test ids differ):

* ``full``: the 4,854 embeddings cached by ``python -m bench.embed_cache`` (about 11.8M impostor
  pairs, as when the shipped file was made). The knots must come back to within 0.002 cosine
  (the same vectors give the same knots; the margin covers onnxruntime builds).
* ``subset``: without the cache, every 6th identity (about 800 photos, about 320k impostor
  pairs) is embedded here. That measures the FAR only down to about 3e-4 from the data, so only
  the knots at confidence 20 / 30 / 40 are compared, with a tolerance from the sampling error of
  ~320k pairs (0.012 cosine at 40). It is slow (embedding), hence ``slow``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.accuracy import pair_scores
from bench.embed_cache import _cache_key, cache_dir, choose_face, load_cached, read_label_rows
from pipeline.calibration import DEFAULT_MODEL_ID, calibration_for, fit_calibration
from pipeline.types import DetectMode

SUBSET_STEP = 6


@pytest.fixture(scope="module")
def lfw_labels(shared_faces: Path) -> Path:
    labels = shared_faces / "lfw-dev" / "labels.csv"
    if not labels.is_file():
        pytest.skip("../shared/data/faces/lfw-dev is not present")
    return labels


def _cached(labels: Path, model_id: str) -> Path:
    return cache_dir() / f"{labels.parent.name}-{_cache_key(labels, model_id, 'centre')}.npz"


@pytest.mark.shared_data
def test_shipped_calibration_from_cached_embeddings(engine, lfw_labels: Path) -> None:
    assert engine.model_id == DEFAULT_MODEL_ID
    path = _cached(lfw_labels, engine.model_id)
    if not path.is_file():
        pytest.skip(f"no cached lfw-dev embeddings at {path} (python -m bench.embed_cache)")
    data = load_cached(path)
    _, impostor, _, _ = pair_scores(data.embeddings, data.identities)
    fitted = fit_calibration(impostor, engine.model_id)
    shipped = calibration_for(DEFAULT_MODEL_ID)
    assert shipped.provenance["impostor_pairs"] == impostor.size
    levels = np.arange(15.0, 99.5, 0.5)
    np.testing.assert_allclose(fitted.cosine(levels), shipped.cosine(levels), atol=0.002)


@pytest.mark.slow
@pytest.mark.shared_data
def test_shipped_calibration_from_a_subset(engine, lfw_labels: Path) -> None:
    rows = read_label_rows(lfw_labels)
    names = sorted({identity for _, identity in rows})[::SUBSET_STEP]
    chosen = [(p, i) for p, i in rows if i in set(names)]
    outcomes = engine.analyze_stream(
        [str(lfw_labels.parent / p) for p, _ in chosen], mode=DetectMode.ALL
    )
    vectors, identities = [], []
    for (_, identity), outcome in zip(chosen, outcomes, strict=True):
        if outcome.analysis is None:
            continue
        index = choose_face(outcome.analysis, "centre")
        if index is not None:
            vectors.append(outcome.analysis.faces[index].embedding)
            identities.append(identity)
    assert len(vectors) >= 0.97 * len(chosen)
    _, impostor, _, _ = pair_scores(np.stack(vectors), identities)
    fitted = fit_calibration(impostor, engine.model_id)
    shipped = calibration_for(DEFAULT_MODEL_ID)
    # k impostors above a knot measure its FAR to +-1/sqrt(k): at FAR 1e-3 of ~320k pairs,
    # k ~ 320 (+-5.6%, ~0.002 cosine); identities differ between the subset and the whole set
    # too, so allow 0.012 (0.006 at FAR 1e-1 / 1e-2)
    for level, tolerance in ((20.0, 0.006), (30.0, 0.006), (40.0, 0.012)):
        assert fitted.cosine(level) == pytest.approx(shipped.cosine(level), abs=tolerance)
