"""Writes of faces seen by the pipeline (observed faces) and their identify candidates
(matches): engine-free, on the caller's connection, so a chunk writes in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
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
