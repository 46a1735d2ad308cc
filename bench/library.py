"""Benchmark of the face library's search on Postgres + pgvector.

For each gallery size (synthetic unit vectors; probes are noisy copies of enrolled vectors at a
genuine-like cosine of ~0.6 to their source, so top-1 is well defined):

* insert throughput with binary ``COPY`` (persons, memberships, faces) and HNSW build time;
* identify latency p50/p95 and recall@1 (top-1 person vs exact float32 brute force) through the
  library's real code path (:meth:`FaceLibrary.identify_embeddings`), for the whole gallery and
  for group filters of several sizes, with the exact scan and with the HNSW index (iterative
  scans), which gives the group size up to which an exact scan is the better choice;
* ``vector`` vs ``halfvec``: table + index size, HNSW latency and recall on the same data.

Usage::

    python bench/library.py --sizes 10000,100000 --queries 200
    python bench/library.py --sizes 1000000 --queries 100   # ~2 GB of vectors, long build
    python bench/library.py --sizes 1000000 --queries 20 --no-hnsw  # exact plans only

It starts its own embedded Postgres in a temporary directory (or uses ``--database-url``; its
tables are emptied!) and writes ``bench/out/library.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray
from pgvector import HalfVector
from pgvector.psycopg import register_vector

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import DEFAULT_OUT, machine_info
from pipeline.config import Settings
from pipeline.index import planner
from pipeline.library import FaceLibrary
from pipeline.store.db import Database, embedded_server, stop_embedded_server

DIM = 512
MODEL_ID = "bench-synthetic"
PROBE_COSINE = 0.6


def connect(url: str) -> psycopg.Connection:
    conn = psycopg.connect(url)
    register_vector(conn)
    return conn


def unit_rows(rng: np.random.Generator, n: int, dim: int = DIM) -> NDArray[np.float32]:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def probes_of(
    rng: np.random.Generator, gallery: NDArray[np.float32], rows: NDArray[np.int64]
) -> NDArray[np.float32]:
    """Noisy copies of gallery rows with cosine ~PROBE_COSINE to their source."""
    noise = unit_rows(rng, len(rows), gallery.shape[1])
    q = PROBE_COSINE * gallery[rows] + np.sqrt(1 - PROBE_COSINE**2) * noise
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def group_sizes(n: int) -> list[int]:
    return sorted({s for s in (1_000, 5_000, 10_000, 20_000, 50_000, n // 10) if s < n})


def reset(conn: psycopg.Connection) -> None:
    conn.execute(
        "TRUNCATE matches, observed_faces, faces, memberships, persons, groups "
        "RESTART IDENTITY CASCADE"
    )


def load_gallery(
    conn: psycopg.Connection,
    vecs: NDArray[np.float32],
    groups: dict[str, int],
    hnsw: bool = True,
) -> dict[str, Any]:
    """COPY persons, memberships (group g holds persons 0..size-1) and one face per person."""
    n = len(vecs)
    conn.execute("DROP INDEX IF EXISTS faces_embedding_hnsw")
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        with cur.copy("COPY persons (person_id) FROM STDIN") as copy:
            for i in range(n):
                copy.write_row((f"p{i}",))
        cur.executemany("INSERT INTO groups (group_id) VALUES (%s)", [(g,) for g in groups])
        with cur.copy("COPY memberships (group_id, person_id) FROM STDIN") as copy:
            for g, size in groups.items():
                for i in range(size):
                    copy.write_row((g, f"p{i}"))
    t1 = time.perf_counter()
    box, lms = [0.0, 0.0, 112.0, 112.0], [50.0] * 10
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY faces (person_id, model_id, embedding_dim, embedding, box, landmarks, det_score,"
            " quality_score, quality_level, content_sha256, face_index)"
            " FROM STDIN WITH (FORMAT BINARY)"
        ) as copy,
    ):
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
        for i in range(n):
            copy.write_row(
                (f"p{i}", MODEL_ID, DIM, vecs[i], box, lms, 0.9, 90.0, 4, f"{i:064x}", 0)
            )
    conn.commit()
    t2 = time.perf_counter()
    if hnsw:
        conn.execute("SET maintenance_work_mem = '2GB'")
        conn.execute(
            "CREATE INDEX faces_embedding_hnsw ON faces USING hnsw "
            "((embedding::halfvec(512)) halfvec_cosine_ops) WITH (m = 16, ef_construction = 64)"
        )
    conn.execute("ANALYZE persons; ANALYZE memberships; ANALYZE faces")
    conn.commit()
    t3 = time.perf_counter()
    return {
        "persons_memberships_s": round(t1 - t0, 2),
        "faces_copy_s": round(t2 - t1, 2),
        "faces_copy_rows_per_s": round(n / (t2 - t1)),
        "hnsw_build_s": round(t3 - t2, 2) if hnsw else None,
    }


def timed(fn: Callable[[], Any], reps: int) -> tuple[list[float], list[Any]]:
    lat, out = [], []
    for _ in range(reps):
        t = time.perf_counter()
        out.append(fn())
        lat.append((time.perf_counter() - t) * 1000)
    return lat, out


def summary(lat: Sequence[float], hits: Sequence[bool]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p95_ms": round(float(np.percentile(lat, 95)), 2),
        "recall_at_1": round(float(np.mean(hits)), 4),
    }


def measure_library(
    db: Database,
    vecs: NDArray[np.float32],
    group: str,
    group_size: int,
    probes: NDArray[np.float32],
    exact: bool,
    ef_search: int,
) -> dict[str, float]:
    """Identify latency and recall@1 through FaceLibrary.identify_embeddings."""
    settings = Settings(
        exact_search_max_faces=10**9 if exact else 0, hnsw_ef_search=ef_search, identify_top_n=5
    )
    lib = FaceLibrary(db, None, settings)
    truth = np.argmax(probes @ vecs[:group_size].T, axis=1)
    it = iter(range(len(probes)))

    def one() -> str | None:
        i = next(it)
        cands = lib.identify_embeddings([probes[i]], [group], model_id=MODEL_ID)[0]
        return cands[0].person_id if cands else None

    lat, top = timed(one, len(probes))
    hits = [t == f"p{truth[i]}" for i, t in enumerate(top)]
    return summary(lat, hits)


def index_comparison(
    conn: psycopg.Connection, vecs: NDArray[np.float32], probes: NDArray[np.float32], ef: int
) -> dict[str, Any]:
    """HNSW on ``vector`` vs on the ``halfvec`` cast (what migration 0001 builds), same faces:
    build time, index size, unfiltered top-1 latency and recall@1 vs float32 brute force.

    Each ORDER BY expression can only be served by its own index, so both coexist here.
    """
    truth = np.argmax(probes @ vecs.T, axis=1)
    conn.execute("SET maintenance_work_mem = '1GB'")
    t0 = time.perf_counter()
    conn.execute(
        "CREATE INDEX bench_vector_hnsw ON faces USING hnsw (embedding vector_cosine_ops) "
        "WITH (m = 16, ef_construction = 64)"
    )
    conn.commit()
    vector_build = time.perf_counter() - t0
    results: dict[str, Any] = {}
    variants = (
        ("vector", "bench_vector_hnsw", "embedding <=> %s::vector(512)"),
        ("halfvec", "faces_embedding_hnsw", "embedding::halfvec(512) <=> %s::halfvec(512)"),
    )
    for kind, index, order in variants:
        sql = f"SELECT face_id - 1 FROM faces ORDER BY {order} LIMIT 5"
        plan = " ".join(r[0] for r in conn.execute("EXPLAIN " + sql, (probes[0],)).fetchall())
        if index not in plan:
            raise RuntimeError(f"the {kind} query does not use {index}: {plan}")

        def one(sql: str = sql, it: Any = iter(range(len(probes)))) -> int:
            i = next(it)
            with conn.transaction():
                conn.execute(f"SET LOCAL hnsw.ef_search = {ef}")
                row = conn.execute(sql, (probes[i],)).fetchone()
            return int(row[0]) if row else -1

        lat, top = timed(one, len(probes))
        size = conn.execute("SELECT pg_relation_size(%s::regclass)", (index,)).fetchone()[0]
        results[kind] = {
            **summary(lat, [t == truth[i] for i, t in enumerate(top)]),
            "index_mb": round(size / 2**20, 1),
        }
    results["vector"]["build_s"] = round(vector_build, 2)
    conn.execute("DROP INDEX bench_vector_hnsw")
    conn.commit()
    return results


def storage_comparison(
    conn: psycopg.Connection, vecs: NDArray[np.float32], probes: NDArray[np.float32]
) -> dict[str, Any]:
    """Exact-scan latency and size of the same vectors stored as ``vector`` with default storage
    (2 KiB values get TOASTed), ``vector`` with STORAGE PLAIN (migration 0001) and ``halfvec``."""
    out: dict[str, Any] = {"rows": len(vecs)}
    variants = (
        ("vector_toast", "vector", None),
        ("vector_plain", "vector", "PLAIN"),
        ("halfvec", "halfvec", None),
    )
    for name, typ, storage in variants:
        table = f"bench_{name}"
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (id int, person_id text, e {typ}(512))")
        if storage:
            conn.execute(f"ALTER TABLE {table} ALTER COLUMN e SET STORAGE {storage}")
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY {table} (id, person_id, e) FROM STDIN WITH (FORMAT BINARY)") as copy,
        ):
            copy.set_types(["int4", "text", typ])
            for i, v in enumerate(vecs):
                copy.write_row((i, f"p{i}", HalfVector(v) if typ == "halfvec" else v))
        conn.execute(f"ANALYZE {table}")
        conn.commit()
        sql = f"SELECT id FROM {table} ORDER BY e <=> %s::{typ}(512) LIMIT 5"
        it = iter(range(len(probes)))
        lat, _ = timed(
            lambda sql=sql, it=it: conn.execute(sql, (probes[next(it)],)).fetchall(), len(probes)
        )
        size = conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0]
        out[name] = {
            "exact_p50_ms": round(float(np.percentile(lat, 50)), 2),
            "total_mb": round(size / 2**20, 1),
        }
        conn.execute(f"DROP TABLE {table}")
        conn.commit()
    return out


def run_size(
    db: Database,
    n: int,
    queries: int,
    ef_list: Sequence[int],
    seed: int,
    comparisons: bool,
    hnsw: bool = True,
) -> dict:
    rng = np.random.default_rng(seed)
    vecs = unit_rows(rng, n)
    sizes = group_sizes(n)
    groups = {"all": n, **{f"g{s}": s for s in sizes}}
    with connect(db.url) as conn:
        reset(conn)
        conn.commit()
        load = load_gallery(conn, vecs, groups, hnsw=hnsw)
    print(f"[{n}] loaded: {load}", flush=True)
    out: dict[str, Any] = {"faces": n, "load": load, "search": []}
    for group, size in groups.items():
        probes = probes_of(rng, vecs, rng.integers(0, size, queries))
        # exact by walking the members on the index, and by reading the whole table (the
        # library picks one by the groups' share of the gallery, SCAN_TABLE_SHARE)
        modes = [("exact-members", True, 0, 1.0), ("exact-scan", True, 0, 0.0)]
        if not hnsw:  # no index: the exact table scan is the only plan for large groups
            modes = modes if size <= 50_000 else modes[1:]
        else:
            modes = modes if size <= 50_000 else []
            modes += [(f"hnsw ef={ef}", False, ef, planner.SCAN_TABLE_SHARE) for ef in ef_list]
        for label, exact, ef, share in modes:
            default_share = planner.SCAN_TABLE_SHARE
            planner.SCAN_TABLE_SHARE = share
            try:
                measured = measure_library(db, vecs, group, size, probes, exact, ef)
            finally:
                planner.SCAN_TABLE_SHARE = default_share
            row = {"group": group, "group_faces": size, "mode": label, **measured}
            print(f"[{n}] {row}", flush=True)
            out["search"].append(row)
    if not comparisons:
        return out
    probes = probes_of(rng, vecs, rng.integers(0, n, queries))
    with connect(db.url) as conn:
        out["hnsw_vector_vs_halfvec"] = index_comparison(conn, vecs, probes, max(ef_list))
        print(f"[{n}] hnsw vector vs halfvec: {out['hnsw_vector_vs_halfvec']}", flush=True)
        m = min(n, 20_000)
        out["exact_storage"] = storage_comparison(conn, vecs[:m], probes[:20])
        print(f"[{n}] exact scan by storage: {out['exact_storage']}", flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000", help="gallery sizes, comma-separated")
    ap.add_argument("--queries", type=int, default=200, help="probes per configuration")
    ap.add_argument("--ef-search", default="40,100", help="hnsw.ef_search values")
    ap.add_argument("--database-url", default=None, help="use this database (tables emptied!)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--skip-comparisons",
        action="store_true",
        help="skip the vector-vs-halfvec index and storage comparisons (saves an index build)",
    )
    ap.add_argument(
        "--no-hnsw",
        dest="hnsw",
        action="store_false",
        help="skip the HNSW build and HNSW rows (long at 1M faces on 2 cores); exact plans "
        "only, the table scan for every group (implies --skip-comparisons)",
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT / "library.json")
    args = ap.parse_args(argv)
    tmp = None
    if args.database_url:
        db = Database.from_url(args.database_url)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="facepipe-bench-pg-"))
        server = embedded_server(tmp / "data")
        db = Database.from_url(server.get_uri(), server=server)
    try:
        results = {
            "machine": machine_info(),
            "probe_cosine": PROBE_COSINE,
            "sizes": [
                run_size(
                    db,
                    int(n),
                    args.queries,
                    [int(e) for e in args.ef_search.split(",")],
                    args.seed,
                    not args.skip_comparisons and args.hnsw,
                    args.hnsw,
                )
                for n in args.sizes.split(",")
            ],
        }
    finally:
        db.close()
        if tmp is not None:
            stop_embedded_server(tmp / "data")
            shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
