"""The SQL of a reembed job (:mod:`pipeline.jobs.reembed`): a scope's active model
(``scope_models``, migration 0006), its faces of the source model and their twins of the target
model, and the twins' inserts. The job row's counters are in :mod:`pipeline.store.jobs`.

A face's *twin* is the face of the target model with the same person, image hash and face
index (the ``faces_key`` constraint less the model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from psycopg import Connection

ALL_SCOPE = "all"


def scope_key(group: str | None) -> str:
    """``all`` or ``group=<id>``, as index snapshots name their scopes."""
    return ALL_SCOPE if group is None else f"group={group}"


@dataclass(frozen=True)
class ReembedScope:
    """Which faces a reembed moves: those of ``source_model`` in the group (every enrolled face
    when ``group`` is None), to ``target_model``."""

    group: str | None
    source_model: str
    target_model: str

    def sql_params(self) -> dict[str, Any]:
        return {"source": self.source_model, "target": self.target_model, "group": self.group}


@dataclass(frozen=True)
class ScopeCount:
    """A reembed scope counted in one statement."""

    total: int
    """Faces of the source model in the scope."""
    with_twin: int
    """Those that have their twin of the target model."""
    without_crop: int
    """Those without a stored crop and without a twin (they cannot be re-embedded)."""


@dataclass(frozen=True)
class PendingFace:
    """A face of the source model without its twin yet, with what its twin copies."""

    face_id: int
    person_id: str
    box: list[float]
    landmarks: list[float]
    det_score: float
    quality_score: float
    quality_level: int
    quality: dict[str, Any]
    source_uri: str | None
    content_sha256: str
    face_index: int
    crop: bytes
    crop_format: str | None


# --- the scope's active model ----------------------------------------------------------------


def active_model(conn: Connection, group: str | None) -> str | None:
    """The model a scope was switched to by a finished reembed job, or None (never switched)."""
    row = conn.execute(
        "SELECT model_id FROM scope_models WHERE scope = %s", (scope_key(group),)
    ).fetchone()
    return None if row is None else str(row[0])


def switch_scope(conn: Connection, group: str | None, model_id: str, job_id: str) -> None:
    """Record ``model_id`` as the scope's active model, switched by the job ``job_id``."""
    conn.execute(
        "INSERT INTO scope_models (scope, model_id, job_id) VALUES (%s, %s, %s) "
        "ON CONFLICT (scope) DO UPDATE SET model_id = excluded.model_id, "
        "job_id = excluded.job_id, switched_at = now()",
        (scope_key(group), model_id, job_id),
    )


def _scope_sql(group: str | None, alias: str = "f") -> str:
    if group is None:
        return "TRUE"
    return f"{alias}.person_id IN (SELECT person_id FROM memberships WHERE group_id = %(group)s)"


def majority_model(conn: Connection, group: str | None) -> str | None:
    """The model of most of the scope's faces (ties to the smallest model id), None without
    faces."""
    row = conn.execute(
        f"SELECT model_id FROM faces f WHERE {_scope_sql(group)} GROUP BY model_id "
        "ORDER BY count(*) DESC, model_id LIMIT 1",
        {"group": group},
    ).fetchone()
    return None if row is None else str(row[0])


def scope_model(conn: Connection, group: str | None) -> str | None:
    """The model a scope's faces are searched with: the one a reembed job switched it to, else
    the model of most of its faces; None without faces."""
    return active_model(conn, group) or majority_model(conn, group)


# --- faces and their twins -------------------------------------------------------------------

_TWIN = (
    "EXISTS (SELECT 1 FROM faces t WHERE t.person_id = f.person_id "
    "AND t.content_sha256 = f.content_sha256 AND t.face_index = f.face_index "
    "AND t.model_id = %(target)s)"
)


def count_scope(conn: Connection, scope: ReembedScope) -> ScopeCount:
    """The scope's faces, those with a twin, and those without crop and without twin."""
    row = conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE {_TWIN}), "
        f"count(*) FILTER (WHERE f.crop IS NULL AND NOT {_TWIN}) "
        f"FROM faces f WHERE f.model_id = %(source)s AND {_scope_sql(scope.group)}",
        scope.sql_params(),
    ).fetchone()
    assert row is not None
    return ScopeCount(total=int(row[0]), with_twin=int(row[1]), without_crop=int(row[2]))


_PENDING = (
    "SELECT f.face_id, f.person_id, f.box, f.landmarks, f.det_score, f.quality_score, "
    "f.quality_level, f.quality, f.source_uri, f.content_sha256, f.face_index, f.crop, "
    "f.crop_format FROM faces f "
    "WHERE f.model_id = %(source)s AND f.face_id > %(after)s AND f.crop IS NOT NULL "
    "AND {scope} AND NOT {twin} ORDER BY f.face_id LIMIT %(limit)s"
)


def pending_faces(
    conn: Connection, scope: ReembedScope, after: int, limit: int
) -> list[PendingFace]:
    """Up to ``limit`` faces with a crop and without a twin, after face id ``after``, in face
    id order."""
    rows = conn.execute(
        _PENDING.format(scope=_scope_sql(scope.group), twin=_TWIN),
        {**scope.sql_params(), "after": after, "limit": limit},
    ).fetchall()
    return [
        PendingFace(
            face_id=int(row[0]),
            person_id=row[1],
            box=row[2],
            landmarks=row[3],
            det_score=row[4],
            quality_score=row[5],
            quality_level=row[6],
            quality=row[7],
            source_uri=row[8],
            content_sha256=row[9],
            face_index=row[10],
            crop=bytes(row[11]),
            crop_format=row[12],
        )
        for row in rows
    ]


def insert_twins(
    conn: Connection,
    faces: Sequence[PendingFace],
    vectors: NDArray[np.float32],
    target: str,
    job_id: str,
) -> int:
    """The twins of ``faces`` (one vector each) beside them, made by ``job_id``; a twin
    already there (a redelivered run) is kept. How many rows were inserted."""
    from psycopg.types.json import Jsonb

    inserted = 0
    with conn.cursor() as cur:
        for face, vector in zip(faces, vectors, strict=True):
            cur.execute(
                "INSERT INTO faces (person_id, model_id, embedding_dim, embedding, box, "
                "landmarks, det_score, quality_score, quality_level, quality, source_uri, "
                "content_sha256, face_index, crop, crop_format, job_id) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT ON CONSTRAINT faces_key DO NOTHING",
                (
                    face.person_id,
                    target,
                    int(vector.shape[0]),
                    np.asarray(vector, np.float32),
                    face.box,
                    face.landmarks,
                    face.det_score,
                    face.quality_score,
                    face.quality_level,
                    Jsonb(face.quality),
                    face.source_uri,
                    face.content_sha256,
                    face.face_index,
                    face.crop,
                    face.crop_format,
                    job_id,
                ),
            )
            inserted += cur.rowcount
    return inserted


def unmovable_face_ids(conn: Connection, scope: ReembedScope, limit: int) -> list[int]:
    """Up to ``limit`` ids of faces without a crop and without a twin, in face id order."""
    rows = conn.execute(
        f"SELECT f.face_id FROM faces f WHERE f.model_id = %(source)s AND f.crop IS NULL "
        f"AND {_scope_sql(scope.group)} AND NOT {_TWIN} ORDER BY f.face_id LIMIT %(n)s",
        {**scope.sql_params(), "n": limit},
    ).fetchall()
    return [int(r[0]) for r in rows]
