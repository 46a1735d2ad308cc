"""SQL over the enrolled faces for indexing and searching (migrations 0001 and 0003): the
scopes FAISS snapshots are built from, the delta a snapshot lacks, tombstones.

Every function takes the caller's psycopg connection. Vectors are streamed with a server-side
(named) cursor, ``itersize`` rows per round trip, so building an index never holds the scope
in one Python list.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
from numpy.typing import NDArray

from pipeline.errors import ErrorCode, FacepipeError

if TYPE_CHECKING:
    from pipeline.index.snapshot import Scope


def open_transactions_since(conn: psycopg.Connection) -> datetime:
    """The start of the oldest transaction open now in this database (other than ours), or
    now when there is none.

    Read *before* a build takes its snapshot, this is the snapshot's watermark: a face (or a
    deletion) missing from the snapshot was written by a transaction that committed after the
    snapshot, so it started after this time or was open at it. ``created_at`` is the writing
    transaction's start (``now()``), and tombstones carry the deletion time, so "faces created
    at or after the watermark" and "tombstones at or after it" cover everything the snapshot may
    lack, with no guessed margin.
    """
    row = conn.execute(
        "SELECT least(now(), coalesce(min(xact_start), now())) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND xact_start IS NOT NULL"
    ).fetchone()
    if row is None:  # an aggregate always answers one row
        raise FacepipeError(ErrorCode.DATABASE_UNAVAILABLE, "pg_stat_activity answered nothing")
    watermark: datetime = row[0]
    return watermark


def begin_repeatable_read(conn: psycopg.Connection) -> datetime:
    """Make the connection's transaction REPEATABLE READ (one snapshot of the data for every
    read of a build) and return its time."""
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    row = conn.execute("SELECT now()").fetchone()
    if row is None:  # SELECT now() always answers one row
        raise FacepipeError(ErrorCode.DATABASE_UNAVAILABLE, "SELECT now() answered nothing")
    started: datetime = row[0]
    return started


def as_vector(value: Any) -> NDArray[np.float32]:
    """A pgvector value (``Vector`` in binary results, ndarray in text ones) as float32."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32)


def scope_where(scope: Scope, alias: str = "f") -> tuple[str, dict[str, Any]]:
    """The WHERE clause selecting a scope's faces (``alias`` is the faces table alias)."""
    if scope.group is None:
        return f"{alias}.model_id = %(model)s", {"model": scope.model_id}
    return (
        f"{alias}.model_id = %(model)s AND {alias}.person_id IN "
        "(SELECT m.person_id FROM memberships m WHERE m.group_id = %(group)s)",
        {"model": scope.model_id, "group": scope.group},
    )


def count_scope(conn: psycopg.Connection, scope: Scope) -> int:
    """Number of faces in the scope."""
    where, params = scope_where(scope)
    row = conn.execute(f"SELECT count(*) FROM faces f WHERE {where}", params).fetchone()
    return int(row[0]) if row else 0


def scope_dim(conn: psycopg.Connection, scope: Scope) -> int | None:
    """The embedding dimension of the scope's faces (None when it has none)."""
    where, params = scope_where(scope)
    row = conn.execute(
        f"SELECT embedding_dim FROM faces f WHERE {where} LIMIT 1", params
    ).fetchone()
    return int(row[0]) if row else None


def scope_changed_since(
    conn: psycopg.Connection, scope: Scope, max_face_id: int | None, watermark: datetime
) -> bool:
    """Whether a face was added to the scope after ``max_face_id``, or anything deleted after
    ``watermark`` (strictly newer: an unchanged scope is not rebuilt)."""
    where, params = scope_where(scope)
    added = conn.execute(
        f"SELECT EXISTS (SELECT 1 FROM faces f WHERE {where} AND f.face_id > %(seq)s)",
        {**params, "seq": max_face_id or 0},
    ).fetchone()
    deleted = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM index_tombstones WHERE deleted_at > %s)", (watermark,)
    ).fetchone()
    return bool((added and added[0]) or (deleted and deleted[0]))


def large_groups(conn: psycopg.Connection, min_faces: int) -> list[tuple[str, str]]:
    """(group, model) of every group holding at least ``min_faces`` faces of that model."""
    rows = conn.execute(
        "SELECT m.group_id, f.model_id FROM faces f JOIN memberships m USING (person_id) "
        "GROUP BY m.group_id, f.model_id HAVING count(*) >= %s",
        (min_faces,),
    ).fetchall()
    return [(str(g), str(m)) for g, m in rows]


def stream_scope(
    conn: psycopg.Connection, scope: Scope, batch: int
) -> Iterator[tuple[NDArray[np.int64], NDArray[np.float32]]]:
    """(face ids, vectors) of the scope in face id order, ``batch`` rows at a time.

    Runs on a server-side cursor inside the caller's transaction.
    """
    where, params = scope_where(scope)
    with conn.cursor(name="facepipe_index_stream", binary=True) as cur:
        cur.itersize = batch
        cur.execute(
            f"SELECT f.face_id, f.embedding FROM faces f WHERE {where} ORDER BY f.face_id",
            params,
        )
        while True:
            rows = cur.fetchmany(batch)
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.stack([as_vector(r[1]) for r in rows])
            yield ids, vecs


def sample_scope(
    conn: psycopg.Connection, scope: Scope, size: int, total: int, seed: float = 0.42
) -> NDArray[np.float32]:
    """About ``size`` vectors drawn uniformly from the scope (training sample for an IVF).

    Postgres draws the sample (``random() < p``, seeded), so only the sample crosses the wire.
    """
    if total <= 0 or size <= 0:
        return np.zeros((0, 0), dtype=np.float32)
    where, params = scope_where(scope)
    p = min(1.0, 1.1 * size / total)
    conn.execute("SELECT setseed(%s)", (seed,))
    rows = conn.execute(
        f"SELECT f.embedding FROM faces f WHERE {where} AND random() < %(p)s LIMIT %(n)s",
        {**params, "p": p, "n": size},
        binary=True,
    ).fetchall()
    return (
        np.stack([as_vector(r[0]) for r in rows]) if rows else (np.zeros((0, 0), dtype=np.float32))
    )


@dataclass(frozen=True)
class Tombstones:
    """What was deleted since a time: faces, persons, and persons removed from groups."""

    face_ids: frozenset[int]
    person_ids: frozenset[str]
    memberships: frozenset[tuple[str, str]]
    """(person_id, group_id) pairs."""

    def __len__(self) -> int:
        return len(self.face_ids) + len(self.person_ids) + len(self.memberships)

    def excludes(self, face_id: int, person_id: str | None, group: str | None) -> bool:
        """True when a face from a snapshot older than these tombstones must be dropped."""
        if face_id in self.face_ids:
            return True
        if person_id is None:
            return False
        if person_id in self.person_ids:
            return True
        return group is not None and (person_id, group) in self.memberships


def tombstones_since(conn: psycopg.Connection, since: datetime) -> Tombstones:
    """Tombstones recorded at or after ``since`` (a snapshot's watermark)."""
    rows = conn.execute(
        "SELECT kind, face_id, person_id, group_id FROM index_tombstones WHERE deleted_at >= %s",
        (since,),
    ).fetchall()
    faces = frozenset(int(r[1]) for r in rows if r[0] == "face" and r[1] is not None)
    persons = frozenset(r[2] for r in rows if r[0] == "person")
    members = frozenset((r[2], r[3]) for r in rows if r[0] == "membership")
    return Tombstones(faces, persons, members)


def prune_tombstones(conn: psycopg.Connection, before: datetime) -> int:
    """Delete tombstones older than ``before`` (the oldest live watermark); how many."""
    cur = conn.execute("DELETE FROM index_tombstones WHERE deleted_at < %s", (before,))
    return cur.rowcount


@dataclass(frozen=True)
class DeltaHit:
    """A face added after a snapshot, scored exactly against one probe."""

    probe: int
    face_id: int
    person_id: str
    score: float


def delta_ids_sql(scope: Scope) -> str:
    """A query of the ids of faces a snapshot may lack: newer ids, created at or after the
    watermark, or of persons put into the group at or after it.

    A UNION of index-friendly branches (faces primary key, ``faces_created_idx``,
    ``memberships_group_created_idx`` from migration 0003), not one OR, so it never scans the
    whole faces table.
    """
    where, _ = scope_where(scope)
    branches = [
        f"SELECT f.face_id FROM faces f WHERE f.face_id > %(seq)s AND {where}",
        f"SELECT f.face_id FROM faces f WHERE f.created_at >= %(wm)s AND {where}",
    ]
    if scope.group is not None:
        branches.append(
            "SELECT f.face_id FROM faces f WHERE f.model_id = %(model)s AND f.person_id IN "
            "(SELECT m2.person_id FROM memberships m2 WHERE m2.group_id = %(group)s "
            "AND m2.created_at >= %(wm)s)"
        )
    return " UNION ".join(branches)


def delta_count(
    conn: psycopg.Connection, scope: Scope, after_face_id: int | None, after: datetime
) -> int:
    """Faces of the scope added after a snapshot (see :func:`delta_search`)."""
    _, params = scope_where(scope)
    row = conn.execute(
        f"SELECT count(*) FROM ({delta_ids_sql(scope)}) ids",
        {**params, "seq": after_face_id or 0, "wm": after},
    ).fetchone()
    return int(row[0]) if row else 0


def delta_search(
    conn: psycopg.Connection,
    scope: Scope,
    probes: NDArray[np.float32],
    k: int,
    after_face_id: int | None,
    after: datetime,
) -> list[DeltaHit]:
    """Exact top-``k`` per probe in pgvector over the scope's faces added after a snapshot.

    "After" is :func:`delta_ids_sql` with ``after`` the snapshot's watermark; faces also in
    the snapshot may come back (the caller deduplicates by face id).
    The delta is materialised first so Postgres scans it exactly instead of walking the HNSW
    index with a filter.
    """
    if probes.shape[0] == 0:
        return []
    _, params = scope_where(scope)
    rows = conn.execute(
        "WITH delta AS MATERIALIZED ("
        " SELECT f.face_id, f.person_id, f.embedding FROM faces f"
        f" WHERE f.face_id IN ({delta_ids_sql(scope)})) "
        "SELECT p.ord, d.face_id, d.person_id, d.score FROM "
        " unnest(%(probes)s::vector[]) WITH ORDINALITY AS p(v, ord) "
        " CROSS JOIN LATERAL ("
        "  SELECT delta.face_id, delta.person_id, -(delta.embedding <#> p.v) AS score"
        "  FROM delta ORDER BY delta.embedding <#> p.v, delta.face_id LIMIT %(k)s) d",
        {
            **params,
            "seq": after_face_id or 0,
            "wm": after,
            "probes": [_vector_literal(v) for v in probes],
            "k": k,
        },
    ).fetchall()
    return [DeltaHit(int(r[0]) - 1, int(r[1]), r[2], float(r[3])) for r in rows]


def _vector_literal(v: NDArray[np.float32]) -> str:
    # pgvector's text form; 9 significant digits round-trip float32 exactly.
    return "[" + ",".join(f"{x:.9g}" for x in v.tolist()) + "]"


@dataclass(frozen=True)
class StoredFace:
    """A face as it is now in the library (absent when deleted or out of scope)."""

    face_id: int
    person_id: str
    embedding: NDArray[np.float32] | None


def fetch_faces(
    conn: psycopg.Connection, scope: Scope, face_ids: Sequence[int], with_vectors: bool
) -> dict[int, StoredFace]:
    """The faces among ``face_ids`` that still exist and still belong to the scope."""
    if not face_ids:
        return {}
    where, params = scope_where(scope)
    cols = "f.face_id, f.person_id" + (", f.embedding" if with_vectors else "")
    rows = conn.execute(
        f"SELECT {cols} FROM faces f WHERE f.face_id = ANY(%(ids)s) AND {where}",
        {**params, "ids": list(face_ids)},
        binary=True,
    ).fetchall()
    return {
        int(r[0]): StoredFace(int(r[0]), r[1], as_vector(r[2]) if with_vectors else None)
        for r in rows
    }
