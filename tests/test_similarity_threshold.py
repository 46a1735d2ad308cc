"""The default match threshold on real embeddings of the labelled photos (needs ../shared/data)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.similarity import DEFAULT_MATCH_CONFIDENCE, confidence_from_cosine, cosine_matrix
from pipeline.types import DetectMode

# One identity from each subset (press photos, grayscale TV crops, aligned chips) plus a second
# press identity, three photos each.
IDENTITIES = ("deepface_Angelina", "deepface_Jennifer", "bbt_sheldon", "dlib_John_Simm")
PER_IDENTITY = 3


@pytest.mark.shared_data
def test_default_threshold_separates_same_and_different_people(engine, dev_labels) -> None:
    chosen = [
        photo
        for identity in IDENTITIES
        for photo in [p for p in dev_labels if p.identity == identity][:PER_IDENTITY]
    ]
    outcomes = list(engine.analyze_stream([str(p.path) for p in chosen], mode=DetectMode.LARGEST))
    assert all(o.analysis is not None and o.analysis.faces for o in outcomes)
    vectors = np.stack([o.analysis.faces[0].embedding for o in outcomes])
    confidences = confidence_from_cosine(cosine_matrix(vectors, vectors))
    genuine, impostor = [], []
    for i, j in itertools.combinations(range(len(chosen)), 2):
        same = chosen[i].identity == chosen[j].identity
        (genuine if same else impostor).append(float(confidences[i, j]))
    assert len(genuine) == len(IDENTITIES) * 3 and len(impostor) == 54
    assert min(genuine) >= DEFAULT_MATCH_CONFIDENCE
    assert max(impostor) < DEFAULT_MATCH_CONFIDENCE
