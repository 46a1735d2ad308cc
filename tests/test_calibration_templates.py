"""identify ranks persons by their fused templates, in pgvector and FAISS alike (real Postgres)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.index.reindex import reindex
from pipeline.index.search import SnapshotCache, identify_faiss
from pipeline.index.snapshot import Scope
from pipeline.library import FaceLibrary
from pipeline.store.db import Database
from tests.test_index import DIM, MODEL, enrol


def _in_plane(degrees: list[float]) -> np.ndarray:
    """Unit vectors at these angles in the plane of the first two axes (512-d)."""
    out = np.zeros((len(degrees), DIM), dtype=np.float32)
    rad = np.deg2rad(degrees)
    out[:, 0], out[:, 1] = np.cos(rad), np.sin(rad)
    return out


@pytest.fixture
def two_persons(clean_database: Database) -> Database:
    # a: faces at 0 and 60 degrees (template at 30); b: one face at 40
    enrol(clean_database, "g", ["a", "a", "b"], _in_plane([0.0, 60.0, 40.0]))
    return clean_database


@pytest.mark.parametrize(
    "template, first, cosine_degrees", [("mean", "a", 5.0), ("best-face", "b", 15.0)]
)
def test_pgvector_identify_by_template(
    two_persons: Database, template: str, first: str, cosine_degrees: float
) -> None:
    settings = Settings(database_url=two_persons.url, identify_person_template=template)
    library = FaceLibrary(two_persons, None, settings)
    [cands] = library.identify_embeddings(_in_plane([25.0]), ["g"], 2, model_id=MODEL)
    assert cands[0].person_id == first and len(cands) == 2
    assert cands[0].score == pytest.approx(np.cos(np.deg2rad(cosine_degrees)), abs=1e-5)
    assert cands[0].confidence == pytest.approx(
        library.calibration(MODEL).confidence(cands[0].score)
    )


@pytest.mark.parametrize("template, first", [("mean", "a"), ("best-face", "b")])
def test_faiss_identify_by_template(
    two_persons: Database, tmp_path: Path, template: str, first: str
) -> None:
    settings = Settings(
        home=tmp_path, snapshot_uri=str(tmp_path / "snapshots"), identify_person_template=template
    )
    reindex(two_persons, Scope(model_id=MODEL, group="g"), settings)
    [cands] = identify_faiss(
        two_persons, _in_plane([25.0]), ["g"], MODEL, 2, cache=SnapshotCache(), settings=settings
    )
    assert [c.person_id for c in cands] == [first, "b" if first == "a" else "a"]
