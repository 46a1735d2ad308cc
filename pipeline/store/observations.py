"""Writes of faces seen by the pipeline (observed faces) and their identify candidates
(matches): engine-free, on the caller's connection, so a chunk writes in one transaction."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray

from pipeline.errors import ErrorCode, FacepipeError
from pipeline.store import repo
from pipeline.store.records import Candidate
from pipeline.types import Face, ImageAnalysis


def unit_vector(vec: Any) -> NDArray[np.float32]:
    """``vec`` as a float32 unit vector; a zero or non-finite vector is FEATURE_FAILED."""
    arr = np.asarray(vec, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(arr))
    if not np.isfinite(norm) or norm < 1e-12:
        raise FacepipeError(ErrorCode.FEATURE_FAILED, "the face embedding is zero or not finite")
    return arr / norm


def record_observed_faces(
    conn: psycopg.Connection,
    analysis: ImageAnalysis,
    *,
    faces: Sequence[Face] | None = None,
    source_uri: str | None = None,
    job_id: str | None = None,
) -> list[int]:
    """Store faces seen in a processed image (not enrolled); their observed ids, in order.

    Idempotent on (image hash, face index, model): re-processing an image returns the same ids.
    ``faces`` defaults to every face of the analysis that has an embedding.
    """
    chosen = [f for f in (analysis.faces if faces is None else faces) if f.embedding is not None]
    rows = []
    for face in chosen:
        emb = unit_vector(face.embedding)
        rows.append(
            {
                "content_sha256": analysis.content_sha256,
                "face_index": int(face.index),
                "model_id": analysis.model_id,
                "source_uri": source_uri if source_uri is not None else analysis.source,
                "embedding_dim": int(emb.shape[0]),
                "embedding": emb,
                "box": [float(v) for v in face.box],
                "landmarks": [float(v) for v in np.asarray(face.landmarks).reshape(-1)],
                "det_score": float(face.score),
                "quality_score": float(face.quality.score),
                "quality_level": int(face.quality.level),
                "job_id": job_id,
            }
        )
    return repo.upsert_observed_faces(conn, rows)


def record_matches(
    conn: psycopg.Connection,
    observed_id: int,
    candidates: Sequence[Candidate],
    *,
    job_id: str | None = None,
) -> int:
    """Store an observed face's candidates (rank 1 = best), replacing those of the same
    (observed face, job): a retried chunk rewrites, never duplicates. How many were written."""
    rows = [
        (rank, c.person_id, int(c.face_id), float(c.score), float(c.confidence))
        for rank, c in enumerate(candidates, start=1)
    ]
    return repo.replace_matches(conn, observed_id, job_id or "", rows)


def count_best_matches(conn: psycopg.Connection, job_id: str, confidence: float) -> tuple[int, int]:
    """(faces a job searched, those whose best match reached ``confidence``)."""
    row = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE confidence >= %s) FROM matches"
        " WHERE job_id = %s AND rank = 1",
        (confidence, job_id),
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


_JOB_MATCHES = """
SELECT o.observed_id, o.source_uri, o.face_index, o.box, o.quality_score,
       coalesce(json_agg(json_build_object(
           'rank', m.rank, 'person_id', m.person_id, 'face_id', m.face_id,
           'confidence', round(m.confidence::numeric, 2), 'score', round(m.score::numeric, 4))
           ORDER BY m.rank) FILTER (WHERE m.rank IS NOT NULL), '[]')
FROM (SELECT DISTINCT unnest(observed_ids)::bigint AS observed_id
      FROM job_items WHERE job_id = %(job)s::uuid) AS ids
JOIN observed_faces o USING (observed_id)
LEFT JOIN matches m ON m.observed_id = o.observed_id AND m.job_id = %(job)s::text
GROUP BY o.observed_id
ORDER BY o.source_uri, o.face_index
"""


def job_match_rows(conn: psycopg.Connection, job_id: str) -> Iterator[tuple[Any, ...]]:
    """A job's observed faces with their matches (a JSON list, best first), ordered by source
    and face, streamed with a server-side cursor: (observed_id, source_uri, face_index, box,
    quality_score, matches)."""
    with conn.cursor(name=f"export_{job_id.replace('-', '')}") as cur:
        cur.execute(_JOB_MATCHES, {"job": job_id})
        yield from cur


# --- observed faces as probes (identify-batch) -----------------------------------------------


def _probe_where(
    job: str | None, since: datetime | None, model_id: str | None = None
) -> tuple[str, dict[str, Any]]:
    """The WHERE clause (``TRUE`` when empty) selecting observed faces ``o`` of a job, since a
    time, of a model."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    for column, value in (("model_id", model_id), ("job_id", job)):
        if value is not None:
            clauses.append(f"o.{column} = %({column})s")
            params[column] = value
    if since is not None:
        clauses.append("o.created_at >= %(since)s")
        params["since"] = since
    return " AND ".join(clauses) or "TRUE", params


def probes_model(conn: psycopg.Connection, job: str | None, since: datetime | None) -> str | None:
    """The most common model of the observed faces of ``job`` / since ``since`` (None: none)."""
    where, params = _probe_where(job, since)
    row = conn.execute(
        f"SELECT o.model_id FROM observed_faces o WHERE {where} GROUP BY o.model_id "
        "ORDER BY count(*) DESC LIMIT 1",
        params,
    ).fetchone()
    return None if row is None else str(row[0])


def count_probes(
    conn: psycopg.Connection, job: str | None, since: datetime | None, model_id: str
) -> int:
    """How many observed faces of ``model_id`` the selection holds."""
    where, params = _probe_where(job, since, model_id)
    row = conn.execute(f"SELECT count(*) FROM observed_faces o WHERE {where}", params).fetchone()
    return int(row[0]) if row else 0


def stream_probes(
    conn: psycopg.Connection, job: str | None, since: datetime | None, model_id: str, batch: int
) -> Iterator[list[tuple[Any, ...]]]:
    """The selected observed faces in id order, ``batch`` rows at a time (server-side cursor):
    (observed_id, embedding, source_uri, face_index, box)."""
    where, params = _probe_where(job, since, model_id)
    with conn.cursor(name="facepipe_probes", binary=True) as cur:
        cur.itersize = batch
        cur.execute(
            "SELECT o.observed_id, o.embedding, o.source_uri, o.face_index, o.box "
            f"FROM observed_faces o WHERE {where} ORDER BY o.observed_id",
            params,
        )
        while rows := cur.fetchmany(batch):
            yield rows
