"""Search metrics on real faces: identify latency and probe counts by engine (pgvector exact,
pgvector HNSW, FAISS), and the exporter's gallery size and snapshot age, against the embedded
Postgres with the sample photos' faces enrolled (fixtures of tests/test_index_engines.py)."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from pipeline.config import Settings
from pipeline.index.reindex import reindex
from pipeline.index.search import SnapshotCache, identify_faiss
from pipeline.index.snapshot import Scope
from pipeline.library import FaceLibrary
from pipeline.store.stats import read_job_stats
from tests.test_index_engines import GROUP, analyses, enrolled, probe_matrix  # noqa: F401


def _sample(name: str, engine: str) -> float:
    return REGISTRY.get_sample_value(name, {"engine": engine}) or 0.0


def test_identify_metrics_by_engine_and_gallery_gauges(
    enrolled: Any,  # noqa: F811  (the fixtures imported above)
    analyses: Any,  # noqa: F811
    tmp_path: Any,
) -> None:
    db, library, model = enrolled
    settings = Settings(home=tmp_path, snapshot_uri=str(tmp_path / "snaps"))
    reindex(db, Scope(model_id=model, group=GROUP), settings)
    probes = probe_matrix(analyses)
    engines = ("pgvector_exact", "pgvector_hnsw", "faiss")
    before = {
        e: (
            _sample("facepipe_identify_probes_total", e),
            _sample("facepipe_identify_duration_seconds_count", e),
        )
        for e in engines
    }

    library.identify_embeddings(probes, [GROUP], 5, model_id=model)
    hnsw = FaceLibrary(db, None, Settings(home=tmp_path, exact_search_max_faces=1))
    hnsw.identify_embeddings(probes[:3], [GROUP], 5, model_id=model)
    identify_faiss(db, probes, [GROUP], model, 5, cache=SnapshotCache(), settings=settings)

    moved = {
        e: (
            _sample("facepipe_identify_probes_total", e) - before[e][0],
            _sample("facepipe_identify_duration_seconds_count", e) - before[e][1],
        )
        for e in engines
    }
    assert moved == {
        "pgvector_exact": (len(probes), 1),
        "pgvector_hnsw": (3, 1),
        "faiss": (len(probes), 1),
    }

    with db.connection() as conn:
        stats = read_job_stats(conn, 900.0)
        faces = conn.execute("SELECT count(*) FROM faces").fetchone()[0]
    assert stats.gallery == {model: faces}
    assert 0.0 <= stats.snapshot_age_s[model] < 600.0
