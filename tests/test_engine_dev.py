"""Detection over the labelled photos of ../shared/data/faces (skipped when absent)."""

from __future__ import annotations

import pytest

from pipeline.engine import FaceEngine

pytestmark = pytest.mark.shared_data

NO_FACE = (
    "dlib__dog.jpg",
    "dlib__horses.jpg",
    "dlib__giraffe.jpg",
    "insightface__view.jpg",
    "face-api.js__white.png",
    "insightface__no_face.png",
)


def test_every_dev_photo_yields_a_face(engine: FaceEngine, dev_labels) -> None:
    # 94 of these 155 (150x150 grayscale crops, aligned face chips) are tight crops on which
    # InsightFace's FaceAnalysis finds nothing; the padded retry must find every one
    sources = [str(photo.path) for photo in dev_labels]
    assert len(sources) == 155
    missed = [
        o.source
        for o in engine.analyze_stream(sources, embed=False)
        if o.error is not None or o.analysis is None or not o.analysis.faces
    ]
    assert missed == []


def test_no_face_photos_yield_none(engine: FaceEngine, shared_faces) -> None:
    sources = [str(shared_faces / "hard" / name) for name in NO_FACE]
    for rotate in (False, True):  # the rotation search must not invent faces either
        outcomes = list(engine.analyze_stream(sources, embed=False, rotate=rotate))
        assert all(o.error is None for o in outcomes)
        assert {o.source: len(o.analysis.faces) for o in outcomes} == dict.fromkeys(sources, 0)
