"""Search SQL on the real pgvector: the HNSW expression index is used, iterative scans fill a
group-filtered result, and exact and HNSW searches agree on clear probes."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.store import repo
from pipeline.store.db import Database
from pipeline.store.records import NewFace

MODEL = "synthetic-test"


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, 512)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def gallery(clean_database: Database) -> np.ndarray:
    """300 persons with one synthetic face each; p0-p29 in 'small', everyone in 'big'."""
    vecs = _unit(np.random.default_rng(3), 300)
    with clean_database.transaction() as conn:
        for i, v in enumerate(vecs):
            repo.insert_person(conn, f"p{i}", "", "")
            repo.add_memberships(conn, f"p{i}", ["big"] + (["small"] if i < 30 else []))
            repo.insert_face(
                conn,
                NewFace(
                    person_id=f"p{i}",
                    model_id=MODEL,
                    embedding=v,
                    box=(0, 0, 1, 1),
                    landmarks=np.zeros((5, 2), np.float32),
                    det_score=1.0,
                    quality_score=100.0,
                    quality_level=4,
                    quality={},
                    content_sha256=f"{i:064x}",
                    face_index=0,
                ),
            )
    return vecs


def test_hnsw_index_serves_filtered_search_with_iterative_scan(
    clean_database: Database, gallery: np.ndarray
) -> None:
    probe = gallery[7] * 0.8 + _unit(np.random.default_rng(9), 1)[0] * 0.6
    probe /= np.linalg.norm(probe)
    with clean_database.transaction() as conn:
        # the table is tiny: keep the planner off the other plans so it shows the index path
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        conn.execute("SET LOCAL enable_sort = off")
        plan = " ".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN SELECT face_id FROM faces f WHERE f.model_id = %s "
                "ORDER BY f.embedding::halfvec(512) <=> %s::halfvec(512) LIMIT 5",
                (MODEL, probe),
            )
        )
        assert "faces_embedding_hnsw" in plan
        # hnsw.ef_search 10 alone would return at most ~10 rows before the filter keeps 3 in
        # 30; the iterative scan keeps walking until the 20 wanted rows of 'small' are found.
        hits = repo.search_hnsw(
            conn, probe, ["small"], MODEL, limit=20, ef_search=10, max_scan_tuples=10_000
        )
        exact = repo.search_exact(conn, probe, ["small"], MODEL, 20)
        exact_scan = repo.search_exact(conn, probe, ["small"], MODEL, 20, scan_table=True)
    assert len(hits) == 20
    assert {h.person_id for h in hits} <= {f"p{i}" for i in range(30)}
    assert hits[0].person_id == exact[0].person_id == exact_scan[0].person_id == "p7"
    assert [h.face_id for h in exact] == [h.face_id for h in exact_scan]
    # re-ranked on float32: the HNSW hit's score is the exact cosine
    assert abs(hits[0].score - float(gallery[7] @ probe)) < 1e-5
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_group_face_estimate(clean_database: Database, gallery: np.ndarray) -> None:
    with clean_database.connection() as conn:
        assert repo.estimate_group_faces(conn, ["small"], MODEL, 1000)[0] == 30  # not analysed
        conn.execute("ANALYZE faces; ANALYZE persons")
        in_small, total = repo.estimate_group_faces(conn, ["small"], MODEL, 1000)
        assert (in_small, total) == (30, 300)
        assert repo.estimate_group_faces(conn, ["big"], MODEL, 100)[0] == 101  # capped count
