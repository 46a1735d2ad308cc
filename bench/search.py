"""Benchmark of large-scale search: pgvector exact / HNSW against FAISS exact / IVF.

For each gallery size (``--sizes``; synthetic unit vectors for scale, seeded with real face
embeddings for recall):

* gallery: the real faces of ``../shared/data/faces/dev`` (every identity's photos but the
  first) and of the package's sample photos, plus synthetic distractors up to the size;
  queries: each identity's first photo (real) and noisy copies of random gallery rows at a
  genuine-like cosine of 0.6 (synthetic);
* recall@1 / recall@5: overlap of an engine's top-k faces with the exact top-k (NumPy brute
  force over the same float32 vectors);
* queries/s: pgvector one query per statement (exact: sequential scan; HNSW: ef_search 40 and
  100); FAISS single queries and one batch of all queries;
* build: COPY load, HNSW build (pgvector), reindex (stream from Postgres + train + add + save)
  for FAISS Flat and IVF-Flat, snapshot load; memory: index sizes and RSS growth;
* planner: per-probe cost of pgvector (the library's identify) vs FAISS (identify_faiss, with
  delta and tombstone queries) for groups of several sizes, and the snapshot load time;
* end to end: ``identify_batch`` over ``--batch-probes`` observed faces with FAISS and over
  ``--pg-batch-probes`` with pgvector (matches written to Postgres).

Usage::

    python bench/search.py --sizes 100000
    python bench/search.py --sizes 100000,1000000 --batch-probes 10000
    # 1M without the pgvector HNSW build (too long on 2 cores) nor the planner sweep:
    python bench/search.py --sizes 1000000 --no-hnsw --no-planner --no-e2e-reindex \
        --pg-exact-queries 20 --pg-batch-probes 20

It starts its own embedded Postgres in a temporary directory and writes
``bench/out/search.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import psycopg
from numpy.typing import NDArray
from pgvector.psycopg import register_vector

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import DEFAULT_OUT, SHARED_FACES, machine_info
from pipeline.config import Settings
from pipeline.index.identify_batch import identify_batch
from pipeline.index.planner import SearchEngine
from pipeline.index.reindex import reindex
from pipeline.index.search import SnapshotCache, identify_faiss
from pipeline.index.snapshot import Scope
from pipeline.index.spec import IndexKind, choose_spec
from pipeline.library import FaceLibrary
from pipeline.store.db import Database, embedded_server, stop_embedded_server

DIM = 512
GROUP = "bench"
PROBE_COSINE = 0.6


def unit_rows(rng: np.random.Generator, n: int) -> NDArray[np.float32]:
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def noisy_copies(rng: np.random.Generator, rows: NDArray[np.float32]) -> NDArray[np.float32]:
    q = PROBE_COSINE * rows + np.sqrt(1 - PROBE_COSINE**2) * unit_rows(rng, len(rows))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


# --- real embeddings -------------------------------------------------------------------------


def real_embeddings(cache: Path) -> tuple[str, list[str], NDArray[np.float32], list[bool]]:
    """(model id, identity per face, embeddings, is-query flags) of the real photos, cached."""
    if cache.is_file():
        data = np.load(cache, allow_pickle=False)
        return (
            str(data["model"]),
            [str(x) for x in data["ids"]],
            data["emb"],
            [bool(x) for x in data["query"]],
        )
    from pipeline.engine import FaceEngine
    from pipeline.models.pack import vectron_model_dir
    from pipeline.sources import load_image
    from pipeline.types import DetectMode

    engine = FaceEngine.from_settings(Settings())
    ids: list[str] = []
    embs: list[NDArray[np.float32]] = []
    query: list[bool] = []
    labels = SHARED_FACES / "dev" / "labels.csv"
    if labels.is_file():
        seen: set[str] = set()
        with labels.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        for row in rows:
            try:
                img = load_image(str(SHARED_FACES / "dev" / row["path"]))
            except Exception:  # an unreadable photo is skipped, not fatal for a benchmark
                continue
            faces = engine.analyze([img], mode=DetectMode.LARGEST)[0].faces
            if not faces or faces[0].embedding is None:
                continue
            ids.append(row["identity"])
            embs.append(faces[0].embedding)
            query.append(row["identity"] not in seen)
            seen.add(row["identity"])
    for name in ("players.jpg", "gdp.jpg"):
        img = load_image(str(vectron_model_dir() / name))
        for f in engine.analyze([img])[0].faces:
            ids.append(f"{name}-{f.index}")
            embs.append(f.embedding)
            query.append(False)
    emb = np.stack(embs).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, model=engine.model_id, ids=np.array(ids), emb=emb, query=np.array(query))
    return engine.model_id, ids, emb, query


# --- loading ---------------------------------------------------------------------------------


def load(
    conn: psycopg.Connection,
    persons: list[str],
    vecs: NDArray[np.float32],
    model: str,
    groups: dict[str, int],
    hnsw: bool = True,
) -> dict[str, Any]:
    """COPY persons, memberships (group g: the first ``size`` faces' persons) and faces; build
    the HNSW index afterwards (timed) unless ``hnsw`` is false."""
    conn.execute("DROP INDEX IF EXISTS faces_embedding_hnsw")
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        with cur.copy("COPY persons (person_id) FROM STDIN") as copy:
            for p in dict.fromkeys(persons):
                copy.write_row((p,))
        cur.executemany("INSERT INTO groups (group_id) VALUES (%s)", [(g,) for g in groups])
        with cur.copy("COPY memberships (group_id, person_id) FROM STDIN") as copy:
            for g, size in groups.items():
                for p in dict.fromkeys(persons[:size]):
                    copy.write_row((g, p))
        box, lms = [0.0, 0.0, 112.0, 112.0], [50.0] * 10
        with cur.copy(
            "COPY faces (person_id, model_id, embedding_dim, embedding, box, landmarks, "
            "det_score, quality_score, quality_level, content_sha256, face_index) FROM STDIN "
            "WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(
                [
                    "text",
                    "text",
                    "int2",
                    "vector",
                    "float4[]",
                    "float4[]",
                    "float4",
                    "float4",
                    "int2",
                    "text",
                    "int4",
                ]
            )
            for i, (p, v) in enumerate(zip(persons, vecs, strict=True)):
                copy.write_row((p, model, DIM, v, box, lms, 0.9, 90.0, 4, f"{i:064x}", 0))
    conn.commit()
    t1 = time.perf_counter()
    if hnsw:
        conn.execute("SET maintenance_work_mem = '2GB'")
        conn.execute(
            "CREATE INDEX faces_embedding_hnsw ON faces USING hnsw "
            "(embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
        )
    conn.execute("ANALYZE faces")
    conn.execute("ANALYZE memberships")
    conn.commit()
    t2 = time.perf_counter()
    sizes = conn.execute(
        "SELECT pg_total_relation_size('faces'), "
        "pg_relation_size(to_regclass('faces_embedding_hnsw'))"
    ).fetchone()
    return {
        "copy_s": round(t1 - t0, 2),
        "copy_rows_per_s": round(len(vecs) / (t1 - t0)),
        "hnsw_build_s": round(t2 - t1, 2) if hnsw else None,
        "faces_table_mb": round(sizes[0] / 2**20, 1),
        "hnsw_index_mb": round(sizes[1] / 2**20, 1) if hnsw else None,
    }


def insert_probes(
    conn: psycopg.Connection, probes: NDArray[np.float32], model: str, job: str
) -> None:
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY observed_faces (content_sha256, face_index, model_id, source_uri, embedding_dim, "
            "embedding, box, landmarks, det_score, quality_score, quality_level, job_id) "
            "FROM STDIN WITH (FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(
            [
                "text",
                "int4",
                "text",
                "text",
                "int2",
                "vector",
                "float4[]",
                "float4[]",
                "float4",
                "float4",
                "int2",
                "text",
            ]
        )
        for i, v in enumerate(probes):
            copy.write_row(
                (
                    f"{job}-{i:058x}",
                    0,
                    model,
                    f"bench://{job}/{i}",
                    DIM,
                    v,
                    [0.0, 0.0, 1.0, 1.0],
                    [0.0] * 10,
                    0.9,
                    80.0,
                    3,
                    job,
                )
            )
    conn.commit()


# --- measurements ----------------------------------------------------------------------------


def recall(got: NDArray[np.int64], truth: NDArray[np.int64], k: int) -> float:
    """FAISS-style 1-recall@k: share of queries whose exact nearest face is in the top k."""
    return float(np.mean([t[0] in g[:k] for g, t in zip(got, truth, strict=True)]))


def overlap(got: NDArray[np.int64], truth: NDArray[np.int64], k: int) -> float:
    """|top-k ∩ exact top-k| / k, averaged (random distractors make ranks 2-5 near-ties)."""
    return float(
        np.mean([len(set(g[:k]) & set(t[:k])) / k for g, t in zip(got, truth, strict=True)])
    )


def recalls(got: NDArray[np.int64], truth: NDArray[np.int64], r: int) -> dict[str, Any]:
    """Recall over all queries, and over the first ``r`` (the real-face queries) alone."""
    return {
        "recall@1": round(recall(got, truth, 1), 4),
        "recall@5": round(recall(got, truth, 5), 4),
        "overlap@5": round(overlap(got, truth, 5), 4),
        "real_recall@1": round(recall(got[:r], truth[:r], 1), 4) if r else None,
        "real_recall@5": round(recall(got[:r], truth[:r], 5), 4) if r else None,
    }


def pg_search(
    conn: psycopg.Connection, queries: NDArray[np.float32], k: int, exact: bool, ef: int = 40
) -> tuple[NDArray[np.int64], float]:
    """Top-k face ids per query, one statement each; (ids, queries/s)."""
    out = np.full((len(queries), k), -1, dtype=np.int64)
    with conn.transaction():
        if exact:
            conn.execute("SET LOCAL enable_indexscan = off")
        else:
            conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef)}")
        t0 = time.perf_counter()
        for i, q in enumerate(queries):
            # prepare=False: a plan cached while index scans were off would be reused
            rows = conn.execute(
                "SELECT face_id FROM faces ORDER BY embedding <=> %s LIMIT %s",
                (q, k),
                prepare=False,
            ).fetchall()
            out[i, : len(rows)] = [r[0] for r in rows]
        dt = time.perf_counter() - t0
    return out, len(queries) / dt


def faiss_measure(
    db: Database,
    scope: Scope,
    kind: IndexKind,
    settings: Settings,
    queries: NDArray[np.float32],
    truth: NDArray[np.int64],
    n_real: int,
    nprobes: Sequence[int] = (),
) -> dict[str, Any]:
    proc = psutil.Process()
    rec = reindex(db, scope, settings, kind=kind)
    rss0 = proc.memory_info().rss
    cache = SnapshotCache()
    loaded = cache.get(db, scope, settings)
    if loaded is None:
        raise RuntimeError("the snapshot just built is not found")
    rss1 = proc.memory_info().rss
    idx = loaded.index
    res: dict[str, Any] = {
        "kind": rec.kind,
        "nlist": rec.meta.get("nlist"),
        "nprobe": rec.meta.get("nprobe"),
        "train_size": rec.meta.get("train_size"),
        "reindex_s": round(rec.build_seconds, 2),
        "train_s": rec.meta.get("train_seconds"),
        "add_s": rec.meta.get("add_seconds"),
        "save_s": rec.meta.get("save_seconds"),
        "load_s": round(loaded.load_seconds, 3),
        "index_file_mb": round(os.path.getsize(Path(rec.location) / "index.faiss") / 2**20, 1),
        "rss_growth_mb": round((rss1 - rss0) / 2**20, 1),
    }

    def run(nprobe: int | None) -> dict[str, Any]:
        if nprobe is not None:
            import faiss

            faiss.extract_index_ivf(idx.device_index).nprobe = nprobe
        t0 = time.perf_counter()
        for q in queries[:100]:
            idx.search(q[None, :], 5)
        single = min(100, len(queries)) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        _, got = idx.search(queries, 5)
        batch = len(queries) / (time.perf_counter() - t0)
        return {
            "qps_single": round(single, 1),
            "qps_batch": round(batch, 1),
            **recalls(got, truth, n_real),
        }

    res.update(run(None))
    if nprobes:
        res["nprobe_sweep"] = {str(n): run(n) for n in nprobes}
    return res


def planner_sweep(
    db: Database,
    model: str,
    settings: Settings,
    sizes: Sequence[int],
    rng: np.random.Generator,
    gallery: NDArray[np.float32],
) -> list[dict]:
    """Per-probe cost of the library's identify (pgvector) vs identify_faiss per group size."""
    library = FaceLibrary(db, None, settings)
    out = []
    for size in sizes:
        group = f"g{size}"
        probes = noisy_copies(rng, gallery[rng.integers(0, size, 256)])
        t0 = time.perf_counter()
        library.identify_embeddings(probes[:40], [group], 5, model_id=model)
        pg = (time.perf_counter() - t0) / 40
        reindex(db, Scope(model_id=model, group=group), settings)
        cache = SnapshotCache()
        t0 = time.perf_counter()
        identify_faiss(db, probes[:1], [group], model, 5, cache=cache, settings=settings)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        identify_faiss(db, probes, [group], model, 5, cache=cache, settings=settings)
        fa = (time.perf_counter() - t0) / len(probes)
        t0 = time.perf_counter()
        identify_faiss(db, probes[:1], [group], model, 5, cache=cache, settings=settings)
        one = time.perf_counter() - t0
        breakeven = first / max(pg - fa, 1e-9) if pg > fa else None
        out.append(
            {
                "group_faces": size,
                "pgvector_ms_per_probe": round(pg * 1e3, 2),
                "faiss_ms_per_probe_batch256": round(fa * 1e3, 2),
                "faiss_single_call_ms": round(one * 1e3, 2),
                "faiss_first_call_with_load_ms": round(first * 1e3, 1),
                "probes_to_amortise_load": None if breakeven is None else round(breakeven),
            }
        )
        print(json.dumps(out[-1]), flush=True)
    return out


def delta_sweep(
    db: Database,
    model: str,
    settings: Settings,
    rng: np.random.Generator,
    gallery: NDArray[np.float32],
    deltas: Sequence[int] = (1_000, 10_000),
) -> list:
    """identify_faiss cost per probe when faces were added after the snapshot (delta)."""
    scope = Scope(model_id=model, group=GROUP)
    reindex(db, scope, settings)
    probes = noisy_copies(rng, gallery[rng.integers(0, len(gallery), 256)])
    out, added = [], 0
    for d in (0, *deltas):
        if d > added:
            new = unit_rows(rng, d - added)
            with psycopg.connect(db.url) as conn:
                register_vector(conn)
                with conn.cursor() as cur:
                    persons = [f"delta{added + i}" for i in range(len(new))]
                    with cur.copy("COPY persons (person_id) FROM STDIN") as copy:
                        for p in persons:
                            copy.write_row((p,))
                    with cur.copy("COPY memberships (group_id, person_id) FROM STDIN") as copy:
                        for p in persons:
                            copy.write_row((GROUP, p))
                    with cur.copy(
                        "COPY faces (person_id, model_id, embedding_dim, embedding, box, "
                        "landmarks, det_score, quality_score, quality_level, content_sha256, "
                        "face_index) FROM STDIN WITH (FORMAT BINARY)"
                    ) as copy:
                        copy.set_types(
                            [
                                "text",
                                "text",
                                "int2",
                                "vector",
                                "float4[]",
                                "float4[]",
                                "float4",
                                "float4",
                                "int2",
                                "text",
                                "int4",
                            ]
                        )
                        for p, v in zip(persons, new, strict=True):
                            copy.write_row(
                                (
                                    p,
                                    model,
                                    DIM,
                                    v,
                                    [0.0, 0.0, 1.0, 1.0],
                                    [0.0] * 10,
                                    0.9,
                                    90.0,
                                    4,
                                    f"{p:>064}",
                                    0,
                                )
                            )
                conn.commit()
            added = d
        cache = SnapshotCache()
        identify_faiss(db, probes[:1], [GROUP], model, 5, cache=cache, settings=settings)
        t0 = time.perf_counter()
        identify_faiss(db, probes, [GROUP], model, 5, cache=cache, settings=settings)
        out.append(
            {
                "delta_faces": d,
                "faiss_ms_per_probe_batch256": round(
                    (time.perf_counter() - t0) * 1e3 / len(probes), 2
                ),
            }
        )
        print(json.dumps(out[-1]), flush=True)
    return out


def run_size(db: Database, n: int, args: argparse.Namespace, real) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    model, ids, emb, is_query = real
    q_mask = np.array(is_query)
    real_gallery = emb[~q_mask]
    real_persons = [f"r-{i}" for i, q in zip(ids, is_query, strict=True) if not q]
    n_syn = n - len(real_gallery)
    syn = unit_rows(rng, n_syn)
    gallery = np.concatenate([real_gallery, syn])
    persons = real_persons + [f"s{i}" for i in range(n_syn)]
    sweep_sizes = [s for s in (2_000, 10_000, 20_000, 50_000) if s < n]
    groups = {GROUP: n, f"g{n}": n, **{f"g{s}": s for s in sweep_sizes}}
    with psycopg.connect(db.url) as conn:
        register_vector(conn)
        conn.execute(
            "TRUNCATE matches, observed_faces, faces, memberships, persons, groups, "
            "index_snapshots, index_tombstones RESTART IDENTITY CASCADE"
        )
        conn.commit()
        t_load = load(conn, persons, gallery, model, groups, hnsw=args.hnsw)
        print(f"[{n}] loaded: {t_load}", flush=True)
        queries = np.concatenate(
            [emb[q_mask], noisy_copies(rng, gallery[rng.integers(0, n, args.queries)])]
        ).astype(np.float32)
        # exact truth (face ids are 1..n in load order)
        sims = queries @ gallery.T
        top = np.argpartition(-sims, 5, axis=1)[:, :5]  # top 5 unordered, then ordered
        truth = (
            np.take_along_axis(
                top, np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1), axis=1
            )
            + 1
        )
        del sims
        n_real = int(q_mask.sum())
        res: dict[str, Any] = {
            "gallery": n,
            "real_gallery_faces": len(real_gallery),
            "queries": len(queries),
            "real_queries": int(q_mask.sum()),
            "load": t_load,
        }
        nq = min(args.pg_exact_queries, len(queries))
        got, qps = pg_search(conn, queries[:nq], 5, exact=True)
        res["pgvector_exact"] = {
            "qps": round(qps, 2),
            "queries": nq,
            **recalls(got, truth[:nq], n_real),
        }
        print(f"[{n}] pgvector exact: {res['pgvector_exact']}", flush=True)
        for ef in (40, 100) if args.hnsw else ():
            got, qps = pg_search(conn, queries, 5, exact=False, ef=ef)
            res[f"pgvector_hnsw_ef{ef}"] = {"qps": round(qps, 1), **recalls(got, truth, n_real)}
            print(f"[{n}] pgvector hnsw ef={ef}: {res[f'pgvector_hnsw_ef{ef}']}", flush=True)
    settings = Settings(
        home=Path(args.work),
        snapshot_uri=str(Path(args.work) / "snapshots"),
        search_batch_size=1024,
    )
    scope = Scope(model_id=model, group=GROUP)
    res["faiss_flat"] = faiss_measure(db, scope, IndexKind.FLAT, settings, queries, truth, n_real)
    print(f"[{n}] faiss flat: {res['faiss_flat']}", flush=True)
    res["faiss_ivf_flat"] = faiss_measure(
        db, scope, IndexKind.IVF_FLAT, settings, queries, truth, n_real, nprobes=(16, 64, 128, 256)
    )
    print(f"[{n}] faiss ivf: {res['faiss_ivf_flat']}", flush=True)
    if args.pq:
        res["faiss_ivf_pq"] = faiss_measure(
            db, scope, IndexKind.IVF_PQ, settings, queries, truth, n_real
        )
        print(f"[{n}] faiss ivf-pq: {res['faiss_ivf_pq']}", flush=True)
    res["auto_spec"] = choose_spec(n, DIM).factory_string
    if args.planner:
        res["planner"] = planner_sweep(db, model, settings, [*sweep_sizes, n], rng, gallery)
        res["delta"] = delta_sweep(db, model, settings, rng, gallery)
    # end to end: identify-batch over observed faces
    batch_probes = noisy_copies(rng, gallery[rng.integers(0, n, args.batch_probes)])
    with psycopg.connect(db.url) as conn:
        register_vector(conn)
        insert_probes(conn, batch_probes, model, "bench-faiss")
        insert_probes(conn, batch_probes[: args.pg_batch_probes], model, "bench-pg")
    if args.e2e_reindex:
        reindex(db, scope, settings)  # the kind the size calls for
    # else: the IVF-Flat snapshot measured above is the newest (no face added since, without
    # the planner sweep) and the kind choose_spec picks for 50k-2M faces
    e2e = {}
    for eng, job in ((SearchEngine.FAISS, "bench-faiss"), (SearchEngine.PGVECTOR, "bench-pg")):
        r = identify_batch(
            db,
            [GROUP],
            probe_job=job,
            top_n=5,
            settings=settings,
            force_engine=eng,
            export=f"{job}.jsonl",
        )  # under work/exports
        e2e[eng.value] = {
            "probes": r.probes,
            "seconds": round(r.seconds, 2),
            "probes_per_s": round(r.probes / r.seconds, 1),
            "stats": r.stats,
        }
        print(f"[{n}] identify-batch {eng.value}: {e2e[eng.value]}", flush=True)
    res["identify_batch"] = e2e
    return res


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000", help="gallery sizes, comma-separated")
    ap.add_argument("--queries", type=int, default=500, help="synthetic recall/qps queries")
    ap.add_argument(
        "--pg-exact-queries",
        type=int,
        default=50,
        help="queries for the (slow) pgvector exact scan",
    )
    ap.add_argument(
        "--batch-probes", type=int, default=10_000, help="identify-batch probes with FAISS"
    )
    ap.add_argument(
        "--pg-batch-probes", type=int, default=1_000, help="identify-batch probes with pgvector"
    )
    ap.add_argument("--pq", action="store_true", help="also build IVF-PQ (slow to train)")
    ap.add_argument(
        "--no-planner", dest="planner", action="store_false", help="skip the planner sweep"
    )
    ap.add_argument(
        "--no-hnsw",
        dest="hnsw",
        action="store_false",
        help="skip the pgvector HNSW build and its queries (long at 1M faces on "
        "2 cores); pgvector identify-batch then runs without the index",
    )
    ap.add_argument(
        "--no-e2e-reindex",
        dest="e2e_reindex",
        action="store_false",
        help="identify-batch reuses the IVF-Flat snapshot just measured instead of "
        "building it again (only with --no-planner, sizes 50k-2M)",
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT / "search.json")
    ap.add_argument(
        "--real-cache", type=Path, default=Path(tempfile.gettempdir()) / "facepipe-bench-real.npz"
    )
    args = ap.parse_args(argv)
    if not args.e2e_reindex and args.planner:
        ap.error("--no-e2e-reindex needs --no-planner (the delta sweep adds faces)")
    real = real_embeddings(args.real_cache)
    print(f"real faces: {len(real[1])} ({sum(real[3])} queries), model {real[0]}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="facepipe-bench-search-"))
    args.work = str(tmp / "work")
    server = embedded_server(tmp / "pg")
    db = Database.from_url(server.get_uri(), server=server)
    try:
        results = {
            "machine": machine_info(),
            "probe_cosine": PROBE_COSINE,
            "sizes": [run_size(db, int(n), args, real) for n in args.sizes.split(",")],
        }
    finally:
        db.close()
        stop_embedded_server(tmp / "pg")
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
