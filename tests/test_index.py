"""FAISS index: index choice, build + snapshot round trip (local and S3), delta, tombstones, GC.

Against the real embedded Postgres (``clean_database``) with faiss-cpu; the S3 round trip uses a
moto server over HTTP.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.index import faiss_index
from pipeline.index.faiss_index import IndexBuilder, SearchableIndex
from pipeline.index.reindex import reindex
from pipeline.index.search import SnapshotCache, identify_faiss
from pipeline.index.snapshot import Scope
from pipeline.index.spec import FLAT_MAX, IVF_FLAT_MAX, IndexKind, choose_spec, nlist_for
from pipeline.store.db import Database
from pipeline.store.snapshots import list_snapshots

MODEL = "synthetic-00000000"
DIM = 512


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clustered(rng: np.random.Generator, n_persons: int, per_person: int, spread: float):
    """Persons as random centres, their faces as noisy copies (like real embeddings)."""
    centres = unit(rng.standard_normal((n_persons, DIM)))
    faces = unit(
        np.repeat(centres, per_person, axis=0)
        + spread * rng.standard_normal((n_persons * per_person, DIM)) / np.sqrt(DIM)
    )
    return centres, faces


def enrol(db: Database, group: str, persons: list[str], vectors: np.ndarray) -> list[int]:
    """Write persons, memberships and faces with COPY (the library's rules are not under test)."""
    with db.transaction() as conn:
        conn.execute("INSERT INTO groups (group_id) VALUES (%s) ON CONFLICT DO NOTHING", (group,))
        for p in dict.fromkeys(persons):
            conn.execute(
                "INSERT INTO persons (person_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (p, p.upper()),
            )
            conn.execute(
                "INSERT INTO memberships (group_id, person_id) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                (group, p),
            )
        buf = io.StringIO()
        for i, (p, v) in enumerate(zip(persons, vectors, strict=True)):
            vec = "[" + ",".join(f"{x:.9g}" for x in v) + "]"
            buf.write(
                f"{p}\t{MODEL}\t{DIM}\t{vec}\t{{0,0,1,1}}\t{{0,0,0,0,0,0,0,0,0,0}}\t"
                f"0.9\t80\t3\tsha-{group}-{p}-{i}\t0\n"
            )
        with conn.cursor().copy(
            "COPY faces (person_id, model_id, embedding_dim, embedding, box, landmarks, "
            "det_score, quality_score, quality_level, content_sha256, face_index) FROM STDIN"
        ) as copy:
            copy.write(buf.getvalue())
        rows = conn.execute(
            "SELECT face_id FROM faces WHERE content_sha256 LIKE %s ORDER BY face_id",
            (f"sha-{group}-%",),
        ).fetchall()
    return [r[0] for r in rows]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, snapshot_uri=str(tmp_path / "snapshots"), snapshot_keep=2)


@pytest.fixture
def gallery(clean_database: Database):
    """200 persons x 2 faces in group ``g``; returns (db, centres, persons, face ids)."""
    rng = np.random.default_rng(7)
    centres, faces = clustered(rng, 200, 2, spread=0.6)
    persons = [f"p{i:03d}" for i in range(200) for _ in range(2)]
    ids = enrol(clean_database, "g", persons, faces)
    return clean_database, centres, persons, ids


def probes_near(rng: np.random.Generator, centres: np.ndarray, idx: list[int]) -> np.ndarray:
    return unit(centres[idx] + 0.5 * rng.standard_normal((len(idx), DIM)) / np.sqrt(DIM))


# --- pure ----------------------------------------------------------------------------------


def test_index_kind_follows_the_documented_thresholds() -> None:
    assert choose_spec(FLAT_MAX - 1, DIM).kind is IndexKind.FLAT
    ivf = choose_spec(FLAT_MAX, DIM)
    assert ivf.kind is IndexKind.IVF_FLAT
    assert ivf.nlist == nlist_for(FLAT_MAX) == 1024  # 4 * sqrt(50k) = 894 -> 1024
    assert ivf.train_size == min(FLAT_MAX, max(39 * 1024, 65536))
    pq = choose_spec(IVF_FLAT_MAX, DIM)
    assert pq.kind is IndexKind.IVF_PQ and pq.pq_m == 64 and pq.factory_string.endswith("PQ64x8")
    assert pq.train_size == min(IVF_FLAT_MAX, max(39 * pq.nlist, 65536))
    assert choose_spec(10, DIM, IndexKind.HNSW).factory_string == "HNSW32,Flat"


def test_ivf_recall_on_clustered_synthetic_data_is_above_the_floor() -> None:
    rng = np.random.default_rng(3)
    centres, faces = clustered(rng, 4000, 3, spread=0.6)
    queries = probes_near(rng, centres, list(range(0, 4000, 10)))
    flat = IndexBuilder(choose_spec(len(faces), DIM, IndexKind.FLAT))
    flat.add(faces)
    exact = SearchableIndex.from_wrapped(flat.finish(np.arange(len(faces))), IndexKind.FLAT)
    spec = choose_spec(len(faces), DIM, IndexKind.IVF_FLAT)
    ivf = IndexBuilder(spec)
    ivf.train(faces[rng.choice(len(faces), spec.train_size, replace=False)])
    for i in range(0, len(faces), 5000):
        ivf.add(faces[i : i + 5000])
    approx = SearchableIndex.from_wrapped(
        ivf.finish(np.arange(len(faces))), IndexKind.IVF_FLAT, nprobe=spec.nprobe
    )
    _, truth = exact.search(queries, 5)
    _, got = approx.search(queries, 5)
    # recall@1: the exact nearest face is IVF's first; 1-recall@5: it is among IVF's five.
    recall1 = float(np.mean(got[:, 0] == truth[:, 0]))
    recall_1_at_5 = float(np.mean([t[0] in g for g, t in zip(got, truth, strict=True)]))
    assert recall1 >= 0.95, recall1
    assert recall_1_at_5 >= 0.98, recall_1_at_5


def test_flat_search_is_exact_brute_force() -> None:
    rng = np.random.default_rng(5)
    data = unit(rng.standard_normal((500, DIM)))
    queries = unit(rng.standard_normal((20, DIM)))
    b = IndexBuilder(choose_spec(500, DIM))
    b.add(data)
    idx = SearchableIndex.from_wrapped(b.finish(np.arange(500) + 1000), IndexKind.FLAT)
    scores, labels = idx.search(queries, 10)
    brute = queries @ data.T
    order = np.argsort(-brute, axis=1)[:, :10]
    np.testing.assert_array_equal(labels, order + 1000)
    np.testing.assert_allclose(scores, np.take_along_axis(brute, order, axis=1), atol=1e-5)


@pytest.mark.gpu
def test_gpu_flat_gives_the_cpu_results() -> None:
    if faiss_index.gpu_count() == 0:
        pytest.skip("faiss has no GPU here")
    rng = np.random.default_rng(11)
    data = unit(rng.standard_normal((5000, DIM)))
    queries = unit(rng.standard_normal((100, DIM)))
    results = []
    for use_gpu in (False, True):
        b = IndexBuilder(choose_spec(5000, DIM), use_gpu=use_gpu)
        b.add(data)
        idx = SearchableIndex.from_wrapped(
            b.finish(np.arange(5000)), IndexKind.FLAT, use_gpu=use_gpu
        )
        assert idx.on_gpu is use_gpu
        results.append(idx.search(queries, 10))
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-4)


# --- with Postgres ----------------------------------------------------------------------------


def test_reindex_snapshot_round_trip_in_a_local_directory(gallery, settings) -> None:
    db, centres, _, _ = gallery
    scope = Scope(model_id=MODEL, group="g")
    rec = reindex(db, scope, settings)
    assert rec.count == 400 and rec.kind == "flat" and rec.scope == "group=g"
    snap_dir = Path(rec.location)
    assert {p.name for p in snap_dir.iterdir()} == {"index.faiss", "ids.npy", "meta.json"}
    rng = np.random.default_rng(1)
    idx = list(range(0, 200, 7))
    res = identify_faiss(db, probes_near(rng, centres, idx), ["g"], MODEL, 3, cache=SnapshotCache())
    assert [r[0].person_id for r in res] == [f"p{i:03d}" for i in idx]
    assert all(len({c.person_id for c in r}) == len(r) == 3 for r in res)
    assert res[0][0].name == "P000" and 0 <= res[0][0].confidence <= 100


def test_missing_snapshot_is_index_not_found(gallery) -> None:
    db, centres, _, _ = gallery
    with pytest.raises(FacepipeError) as err:
        identify_faiss(db, centres[:1], ["g"], MODEL, 1, cache=SnapshotCache())
    assert err.value.code is ErrorCode.INDEX_NOT_FOUND


def test_faces_added_after_the_snapshot_are_found(gallery, settings) -> None:
    db, _, _, _ = gallery
    reindex(db, Scope(model_id=MODEL, group="g"), settings)
    rng = np.random.default_rng(2)
    newcomer = unit(rng.standard_normal((1, DIM)))
    enrol(db, "g", ["zed"], newcomer)
    res = identify_faiss(db, newcomer, ["g"], MODEL, 2, cache=SnapshotCache())
    assert res[0][0].person_id == "zed" and res[0][0].score > 0.99


def test_deleted_person_and_face_are_never_returned_from_an_old_snapshot(gallery, settings):
    db, centres, _, _ = gallery
    scope = Scope(model_id=MODEL, group="g")
    reindex(db, scope, settings)
    cache = SnapshotCache()
    probe = centres[[5, 9]]
    before = identify_faiss(db, probe, ["g"], MODEL, 1, cache=cache)
    assert [r[0].person_id for r in before] == ["p005", "p009"]
    with db.transaction() as conn:
        conn.execute("DELETE FROM persons WHERE person_id = 'p005'")
        conn.execute("DELETE FROM memberships WHERE person_id = 'p009'")
        kinds = conn.execute(
            "SELECT kind, count(*) FROM index_tombstones GROUP BY kind ORDER BY kind"
        ).fetchall()
    # p005: the person, its 2 faces and its membership (cascades); p009: its membership
    assert kinds == [("face", 2), ("membership", 2), ("person", 1)]
    after = identify_faiss(db, probe, ["g"], MODEL, 3, cache=cache)
    assert all(c.person_id not in ("p005", "p009") for r in after for c in r)
    assert all(len(r) == 3 for r in after)
    rec = reindex(db, scope, settings)
    assert rec.count == 396


def test_garbage_collection_keeps_the_newest_k(gallery, settings) -> None:
    db, _, _, _ = gallery
    scope = Scope(model_id=MODEL, group="g")
    recs = [reindex(db, scope, settings) for _ in range(3)]
    with db.connection() as conn:
        live = list_snapshots(conn, scope)
        everything = list_snapshots(conn, scope, include_gc=True)
    assert [r.snapshot_id for r in live] == [recs[2].snapshot_id, recs[1].snapshot_id]
    assert len(everything) == 3
    assert not Path(recs[0].location).exists()
    assert Path(recs[2].location).exists()


def test_snapshot_round_trip_through_s3(gallery, tmp_path, pipeline_env, moto_server) -> None:
    import boto3

    db, centres, _, _ = gallery
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(
        Bucket="snaps"
    )
    settings = Settings(home=tmp_path, snapshot_uri="s3://snaps/faiss", s3_endpoint_url=moto_server)
    scope = Scope(model_id=MODEL, group="g")
    rec = reindex(db, scope, settings)
    assert rec.location.startswith("s3://snaps/faiss/group=g/")
    keys = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").list_objects_v2(
        Bucket="snaps", Prefix="faiss/"
    )["Contents"]
    assert {k["Key"].rsplit("/", 1)[1] for k in keys} == {"index.faiss", "ids.npy", "meta.json"}
    res = identify_faiss(
        db, centres[[3, 4]], ["g"], MODEL, 1, cache=SnapshotCache(), settings=settings
    )
    assert [r[0].person_id for r in res] == ["p003", "p004"]


def test_a_face_committed_after_the_build_started_is_in_the_delta(gallery, settings) -> None:
    """A transaction open while the snapshot is built commits afterwards: its face has a
    created_at before the build, is not in the snapshot, and must still be found."""
    import psycopg
    from pgvector.psycopg import register_vector

    db, _, _, _ = gallery
    late = unit(np.random.default_rng(4).standard_normal((1, DIM)))
    with psycopg.connect(db.url) as writer:
        register_vector(writer)
        writer.execute("INSERT INTO persons (person_id) VALUES ('late')")
        writer.execute("INSERT INTO memberships (group_id, person_id) VALUES ('g', 'late')")
        writer.execute(
            "INSERT INTO faces (person_id, model_id, embedding_dim, embedding, box, landmarks, "
            "det_score, quality_score, quality_level, content_sha256, face_index) VALUES "
            "('late', %s, %s, %s, '{0,0,1,1}', '{0,0,0,0,0,0,0,0,0,0}', 0.9, 80, 3, 'late', 0)",
            (MODEL, DIM, late[0]),
        )
        # a later face commits first: the late face's id is below the snapshot's newest
        enrol(db, "g", ["early"], unit(np.random.default_rng(5).standard_normal((1, DIM))))
        rec = reindex(db, Scope(model_id=MODEL, group="g"), settings)  # writer still open
        writer.commit()
    assert rec.count == 401
    with db.connection() as conn:
        late_id = conn.execute("SELECT face_id FROM faces WHERE person_id = 'late'").fetchone()
    assert late_id[0] < rec.max_face_id
    res = identify_faiss(db, late, ["g"], MODEL, 1, cache=SnapshotCache())
    assert res[0][0].person_id == "late"


@pytest.mark.parametrize("kind", [IndexKind.IVF_FLAT, IndexKind.HNSW])
def test_forced_approximate_kinds_build_from_postgres_and_find_the_person(
    gallery, settings, kind
) -> None:
    db, centres, _, _ = gallery
    rec = reindex(db, Scope(model_id=MODEL, group="g"), settings, kind=kind)
    assert rec.kind == kind.value and rec.count == 400
    res = identify_faiss(db, centres[:20], ["g"], MODEL, 1, cache=SnapshotCache())
    assert float(np.mean([r[0].person_id == f"p{i:03d}" for i, r in enumerate(res)])) >= 0.95


def test_scheduled_reindex_picks_big_groups_and_changed_scopes_only(gallery, tmp_path) -> None:
    from pipeline.index.reindex import due_scopes

    db, _, _, _ = gallery
    settings = Settings(home=tmp_path, snapshot_uri=str(tmp_path / "s"), faiss_min_gallery=400)
    scope = Scope(model_id=MODEL, group="g")
    assert due_scopes(db, settings) == [scope]
    assert due_scopes(db, Settings(home=tmp_path, faiss_min_gallery=401)) == []
    reindex(db, scope, settings)
    assert due_scopes(db, settings) == []  # nothing changed since the snapshot
    with db.transaction() as conn:
        conn.execute("DELETE FROM faces WHERE face_id = (SELECT min(face_id) FROM faces)")
    assert due_scopes(db, settings) == [scope]
