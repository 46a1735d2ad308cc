"""Repositories: plain SQL over a psycopg connection, no rules and no transactions of their own.

Every function takes the caller's connection, so a caller decides what one transaction holds
(:mod:`pipeline.library` holds the rules; the batch pipeline writes a whole chunk at once).
Vectors go in and out as NumPy arrays (pgvector's adapter is registered on every connection).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray
from psycopg.types.json import Jsonb

from pipeline.store.records import (
    FaceHit,
    FaceInfo,
    GroupDetails,
    GroupInfo,
    NewFace,
    PersonSummary,
)

HNSW_DIM = 512
"""Dimension of the HNSW expression index (``embedding::halfvec(512)``, migration 0001)."""


def as_array(value: Any) -> NDArray[np.float32]:
    """A pgvector value (``Vector``, ``HalfVector`` or array) as a float32 NumPy vector."""
    to_numpy = getattr(value, "to_numpy", None)
    return np.asarray(to_numpy() if to_numpy else value, dtype=np.float32)


# --- persons and groups ----------------------------------------------------------------------


def insert_person(conn: psycopg.Connection, person_id: str, name: str, tag: str) -> bool:
    """Insert a person; False when the id is taken."""
    row = conn.execute(
        "INSERT INTO persons (person_id, name, tag) VALUES (%s, %s, %s) "
        "ON CONFLICT (person_id) DO NOTHING RETURNING person_id",
        (person_id, name, tag),
    ).fetchone()
    return row is not None


def lock_person(conn: psycopg.Connection, person_id: str) -> bool:
    """Lock the person's row until the transaction ends; False when the person does not exist.

    Every face write for a person takes this lock first, so concurrent adds to one person are
    serialised and the face cap holds.
    """
    row = conn.execute(
        "SELECT 1 FROM persons WHERE person_id = %s FOR UPDATE", (person_id,)
    ).fetchone()
    return row is not None


def person_exists(conn: psycopg.Connection, person_id: str) -> bool:
    row = conn.execute("SELECT 1 FROM persons WHERE person_id = %s", (person_id,)).fetchone()
    return row is not None


@dataclass(frozen=True)
class PersonRow:
    """A person's own columns."""

    name: str
    tag: str
    created_at: datetime


def get_person(conn: psycopg.Connection, person_id: str) -> PersonRow | None:
    """A person's name, tag and creation time, or None."""
    row = conn.execute(
        "SELECT name, tag, created_at FROM persons WHERE person_id = %s", (person_id,)
    ).fetchone()
    return None if row is None else PersonRow(row[0], row[1], row[2])


def update_person(
    conn: psycopg.Connection, person_id: str, name: str | None, tag: str | None
) -> bool:
    """Set name and/or tag (None leaves a field as it is); False when the person is missing."""
    row = conn.execute(
        "UPDATE persons SET name = coalesce(%s, name), tag = coalesce(%s, tag), "
        "updated_at = now() WHERE person_id = %s RETURNING person_id",
        (name, tag, person_id),
    ).fetchone()
    return row is not None


def person_tags(conn: psycopg.Connection, person_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """person_id -> (name, tag) for the given persons."""
    if not person_ids:
        return {}
    rows = conn.execute(
        "SELECT person_id, name, tag FROM persons WHERE person_id = ANY(%s)", (list(person_ids),)
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def delete_person(conn: psycopg.Connection, person_id: str) -> list[str]:
    """Delete a person with its faces (vectors and crops), memberships and matches.

    Returns the groups it was in (for clean-up), or an empty list when it did not exist.
    """
    groups = person_groups(conn, person_id)
    row = conn.execute(
        "DELETE FROM persons WHERE person_id = %s RETURNING person_id", (person_id,)
    ).fetchone()
    if row is None:
        return []
    return groups


def ensure_groups(conn: psycopg.Connection, group_ids: Sequence[str]) -> None:
    """Create the groups that do not exist yet (groups are created implicitly)."""
    conn.execute(
        "INSERT INTO groups (group_id) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
        (list(group_ids),),
    )


def add_memberships(conn: psycopg.Connection, person_id: str, group_ids: Sequence[str]) -> int:
    """Put a person in groups (creating them); returns how many memberships are new."""
    ensure_groups(conn, group_ids)
    cur = conn.execute(
        "INSERT INTO memberships (group_id, person_id) SELECT unnest(%s::text[]), %s "
        "ON CONFLICT DO NOTHING",
        (list(group_ids), person_id),
    )
    return cur.rowcount


def remove_membership(conn: psycopg.Connection, person_id: str, group_id: str) -> bool:
    """Take a person out of a group; False when it was not in it."""
    row = conn.execute(
        "DELETE FROM memberships WHERE person_id = %s AND group_id = %s RETURNING 1",
        (person_id, group_id),
    ).fetchone()
    return row is not None


def person_groups(conn: psycopg.Connection, person_id: str) -> list[str]:
    """The groups of a person, sorted."""
    rows = conn.execute(
        "SELECT group_id FROM memberships WHERE person_id = %s ORDER BY group_id", (person_id,)
    ).fetchall()
    return [r[0] for r in rows]


def delete_empty_groups(conn: psycopg.Connection, group_ids: Sequence[str]) -> int:
    """Drop those of the given groups that no longer hold anyone, unless they were created
    explicitly (IAI CreateGroup): implicit groups exist only through their members."""
    if not group_ids:
        return 0
    cur = conn.execute(
        "DELETE FROM groups g WHERE g.group_id = ANY(%s) AND NOT g.explicit AND NOT EXISTS "
        "(SELECT 1 FROM memberships m WHERE m.group_id = g.group_id)",
        (list(group_ids),),
    )
    return cur.rowcount


def existing_groups(conn: psycopg.Connection, group_ids: Sequence[str]) -> list[str]:
    """Those of the given groups that exist, in the given order."""
    rows = conn.execute(
        "SELECT group_id FROM groups WHERE group_id = ANY(%s)", (list(group_ids),)
    ).fetchall()
    found = {r[0] for r in rows}
    return [g for g in group_ids if g in found]


def list_group_persons(
    conn: psycopg.Connection, group_id: str, offset: int, limit: int
) -> tuple[list[PersonSummary], int]:
    """A page of the persons of a group ordered by id, and the group's person count."""
    total_row = conn.execute(
        "SELECT count(*) FROM memberships WHERE group_id = %s", (group_id,)
    ).fetchone()
    rows = conn.execute(
        "SELECT p.person_id, p.name, p.tag FROM memberships m "
        "JOIN persons p ON p.person_id = m.person_id WHERE m.group_id = %s "
        "ORDER BY p.person_id OFFSET %s LIMIT %s",
        (group_id, offset, limit),
    ).fetchall()
    return [PersonSummary(*r) for r in rows], int(total_row[0] if total_row else 0)


def list_groups(conn: psycopg.Connection, offset: int, limit: int) -> tuple[list[GroupInfo], int]:
    """A page of all groups ordered by id with their person counts, and the group count."""
    total_row = conn.execute("SELECT count(*) FROM groups").fetchone()
    rows = conn.execute(
        "SELECT g.group_id, (SELECT count(*) FROM memberships m WHERE m.group_id = g.group_id) "
        "FROM groups g ORDER BY g.group_id OFFSET %s LIMIT %s",
        (offset, limit),
    ).fetchall()
    return [GroupInfo(r[0], int(r[1])) for r in rows], int(total_row[0] if total_row else 0)


def insert_group(
    conn: psycopg.Connection, group_id: str, name: str, tag: str, ex_fields: Sequence[str]
) -> bool:
    """Create an explicit group; False when the id is taken (explicitly or not)."""
    row = conn.execute(
        "INSERT INTO groups (group_id, explicit, name, tag, ex_fields) "
        "VALUES (%s, true, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
        (group_id, name, tag, Jsonb(list(ex_fields))),
    ).fetchone()
    return row is not None


def update_group(
    conn: psycopg.Connection,
    group_id: str,
    name: str | None,
    tag: str | None,
    ex_fields: Sequence[str] | None,
) -> bool:
    """Change a group's name / tag / custom field names (None: unchanged); False if missing.
    A group modified this way becomes explicit (it has properties of its own now)."""
    row = conn.execute(
        "UPDATE groups SET explicit = true, name = coalesce(%s, name), tag = coalesce(%s, tag), "
        "ex_fields = coalesce(%s, ex_fields) WHERE group_id = %s RETURNING 1",
        (name, tag, Jsonb(list(ex_fields)) if ex_fields is not None else None, group_id),
    ).fetchone()
    return row is not None


def get_group(conn: psycopg.Connection, group_id: str) -> GroupDetails | None:
    row = conn.execute(
        "SELECT g.group_id, g.name, g.tag, g.ex_fields, g.explicit, g.created_at, "
        "(SELECT count(*) FROM memberships m WHERE m.group_id = g.group_id), "
        "(SELECT count(*) FROM memberships m JOIN faces f ON f.person_id = m.person_id "
        " WHERE m.group_id = g.group_id) "
        "FROM groups g WHERE g.group_id = %s",
        (group_id,),
    ).fetchone()
    if row is None:
        return None
    return GroupDetails(
        row[0], row[1], row[2], tuple(row[3]), row[4], row[5], int(row[6]), int(row[7])
    )


def membership_values(conn: psycopg.Connection, person_id: str) -> dict[str, tuple[str, ...]]:
    """A person's custom field values per group (groups without values map to ())."""
    rows = conn.execute(
        "SELECT group_id, ex_values FROM memberships WHERE person_id = %s ORDER BY group_id",
        (person_id,),
    ).fetchall()
    return {r[0]: tuple(r[1]) for r in rows}


def set_membership_values(
    conn: psycopg.Connection, person_id: str, group_id: str, values: Sequence[str]
) -> bool:
    """Store a person's custom field values in a group; False when it is not a member."""
    row = conn.execute(
        "UPDATE memberships SET ex_values = %s WHERE person_id = %s AND group_id = %s RETURNING 1",
        (Jsonb(list(values)), person_id, group_id),
    ).fetchone()
    return row is not None


def delete_group(conn: psycopg.Connection, group_id: str) -> list[str]:
    """Delete a group and its memberships; the persons left in no group are deleted too
    (IAI DeleteGroup). Returns the deleted persons."""
    members = [
        r[0]
        for r in conn.execute(
            "DELETE FROM memberships WHERE group_id = %s RETURNING person_id", (group_id,)
        ).fetchall()
    ]
    conn.execute("DELETE FROM groups WHERE group_id = %s", (group_id,))
    if not members:
        return []
    rows = conn.execute(
        "DELETE FROM persons p WHERE p.person_id = ANY(%s) AND NOT EXISTS "
        "(SELECT 1 FROM memberships m WHERE m.person_id = p.person_id) RETURNING p.person_id",
        (members,),
    ).fetchall()
    return [r[0] for r in rows]


# --- enrolled faces --------------------------------------------------------------------------


def insert_face(conn: psycopg.Connection, face: NewFace) -> tuple[int, bool]:
    """Insert an enrolled face; ``(face_id, created)``. An existing row with the same
    deterministic key (person, image hash, face index, model) is returned, not duplicated."""
    row = conn.execute(
        "INSERT INTO faces (person_id, model_id, embedding_dim, embedding, box, landmarks, "
        "det_score, quality_score, quality_level, quality, source_uri, content_sha256, "
        "face_index, crop, crop_format, job_id) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT ON CONSTRAINT faces_key DO NOTHING RETURNING face_id",
        (
            face.person_id,
            face.model_id,
            int(face.embedding.shape[0]),
            np.asarray(face.embedding, dtype=np.float32),
            [float(v) for v in face.box],
            [float(v) for v in np.asarray(face.landmarks, dtype=np.float32).reshape(-1)],
            float(face.det_score),
            float(face.quality_score),
            int(face.quality_level),
            Jsonb(face.quality),
            face.source_uri,
            face.content_sha256,
            int(face.face_index),
            face.crop,
            face.crop_format,
            face.job_id,
        ),
    ).fetchone()
    if row is not None:
        return int(row[0]), True
    existing = find_face(conn, face.person_id, face.content_sha256, face.face_index, face.model_id)
    if existing is None:  # deleted between the conflict and this read: cannot happen under lock
        raise RuntimeError("face key conflicted but no row was found")
    return existing, False


def find_face(
    conn: psycopg.Connection, person_id: str, content_sha256: str, face_index: int, model_id: str
) -> int | None:
    """The face id stored under a deterministic key, or None."""
    row = conn.execute(
        "SELECT face_id FROM faces WHERE person_id = %s AND content_sha256 = %s "
        "AND face_index = %s AND model_id = %s",
        (person_id, content_sha256, face_index, model_id),
    ).fetchone()
    return None if row is None else int(row[0])


def person_face_tally(
    conn: psycopg.Connection, person_id: str
) -> tuple[int, tuple[int, float] | None]:
    """How many faces a person has (any model), and its worst face: (face id, quality score) of
    the lowest quality, the newest among equals (None without faces)."""
    row = conn.execute(
        "SELECT count(*), (array_agg(face_id ORDER BY quality_score ASC, face_id DESC))[1], "
        "min(quality_score) FROM faces WHERE person_id = %s",
        (person_id,),
    ).fetchone()
    if row is None or not row[0]:
        return 0, None
    return int(row[0]), (int(row[1]), float(row[2]))


def person_face_ids(conn: psycopg.Connection, person_id: str) -> list[int]:
    """The face ids of a person, oldest first."""
    rows = conn.execute(
        "SELECT face_id FROM faces WHERE person_id = %s ORDER BY face_id", (person_id,)
    ).fetchall()
    return [int(r[0]) for r in rows]


def person_embeddings(
    conn: psycopg.Connection, person_id: str, model_id: str
) -> tuple[list[int], NDArray[np.float32]]:
    """The face ids and (n, dim) vectors of a person's faces made by ``model_id``."""
    rows = conn.execute(
        "SELECT face_id, embedding FROM faces WHERE person_id = %s AND model_id = %s "
        "ORDER BY face_id",
        (person_id, model_id),
    ).fetchall()
    if not rows:
        return [], np.zeros((0, 0), dtype=np.float32)
    return [int(r[0]) for r in rows], np.stack([as_array(r[1]) for r in rows])


def persons_vectors(
    conn: psycopg.Connection, person_ids: Sequence[str], model_id: str
) -> dict[str, NDArray[np.float32]]:
    """person -> (n, dim) vectors of the person's faces made by ``model_id``."""
    if not person_ids:
        return {}
    rows = conn.execute(
        "SELECT person_id, embedding FROM faces WHERE person_id = ANY(%s) AND model_id = %s",
        (list(person_ids), model_id),
    ).fetchall()
    grouped: dict[str, list[NDArray[np.float32]]] = {}
    for person, embedding in rows:
        grouped.setdefault(person, []).append(as_array(embedding))
    return {p: np.stack(v) for p, v in grouped.items()}


def delete_faces(conn: psycopg.Connection, person_id: str, face_ids: Sequence[int]) -> list[int]:
    """Delete faces of a person (vectors, crops and matches go with them); ids deleted."""
    rows = conn.execute(
        "DELETE FROM faces WHERE person_id = %s AND face_id = ANY(%s) RETURNING face_id",
        (person_id, list(face_ids)),
    ).fetchall()
    return sorted(int(r[0]) for r in rows)


def delete_all_faces(conn: psycopg.Connection, person_id: str) -> int:
    """Delete every face of a person; how many."""
    return conn.execute("DELETE FROM faces WHERE person_id = %s", (person_id,)).rowcount


_FACE_COLUMNS = (
    "face_id, person_id, model_id, box, landmarks, det_score, quality_score, quality_level, "
    "source_uri, content_sha256, face_index, crop_format, created_at, job_id"
)


def get_face(conn: psycopg.Connection, face_id: int) -> FaceInfo | None:
    """An enrolled face's record (no vector, no crop bytes), or None."""
    row = conn.execute(
        f"SELECT {_FACE_COLUMNS} FROM faces WHERE face_id = %s", (face_id,)
    ).fetchone()
    if row is None:
        return None
    lm = row[4]
    return FaceInfo(
        face_id=str(row[0]),
        person_id=row[1],
        model_id=row[2],
        box=(float(row[3][0]), float(row[3][1]), float(row[3][2]), float(row[3][3])),
        landmarks=tuple((float(lm[i]), float(lm[i + 1])) for i in range(0, len(lm), 2)),
        det_score=float(row[5]),
        quality_score=float(row[6]),
        quality_level=int(row[7]),
        source_uri=row[8],
        content_sha256=row[9],
        face_index=int(row[10]),
        crop_format=row[11],
        created_at=row[12],
        job_id=row[13],
    )


def get_face_crop(conn: psycopg.Connection, face_id: int) -> tuple[bytes, str] | None:
    """The stored aligned crop of a face and its format, or None."""
    row = conn.execute(
        "SELECT crop, crop_format FROM faces WHERE face_id = %s AND crop IS NOT NULL", (face_id,)
    ).fetchone()
    return None if row is None else (bytes(row[0]), row[1])


def get_face_embedding(conn: psycopg.Connection, face_id: int) -> NDArray[np.float32] | None:
    row = conn.execute("SELECT embedding FROM faces WHERE face_id = %s", (face_id,)).fetchone()
    return None if row is None else as_array(row[0])


# --- search ----------------------------------------------------------------------------------


def count_group_faces(
    conn: psycopg.Connection, group_ids: Sequence[str], model_id: str, cap: int
) -> int:
    """Faces of ``model_id`` in the groups, counted exactly up to ``cap + 1``."""
    row = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM faces f WHERE f.model_id = %s AND f.person_id IN "
        "(SELECT m.person_id FROM memberships m WHERE m.group_id = ANY(%s)) LIMIT %s) t",
        (model_id, list(group_ids), cap + 1),
    ).fetchone()
    return int(row[0]) if row else 0


def count_group_persons(conn: psycopg.Connection, group_ids: Sequence[str], model_id: str) -> int:
    """Persons of the groups with at least one face of ``model_id``."""
    row = conn.execute(
        "SELECT count(DISTINCT f.person_id) FROM faces f WHERE f.model_id = %s AND f.person_id"
        " IN (SELECT m.person_id FROM memberships m WHERE m.group_id = ANY(%s))",
        (model_id, list(group_ids)),
    ).fetchone()
    return int(row[0]) if row else 0


def estimate_group_faces(
    conn: psycopg.Connection, group_ids: Sequence[str], model_id: str, cap: int
) -> tuple[int, int]:
    """(about how many faces the groups hold, about how many the gallery holds), cheaply.

    The groups' memberships are counted on the primary key index (up to ``cap + 1``) and
    multiplied by the gallery's mean faces per person (planner statistics). Before the tables
    were ever analysed it counts exactly (they are small then).
    """
    stats = conn.execute(
        "SELECT (SELECT reltuples FROM pg_class WHERE oid = 'faces'::regclass),"
        " (SELECT reltuples FROM pg_class WHERE oid = 'persons'::regclass)"
    ).fetchone()
    faces, persons = (float(stats[0]), float(stats[1])) if stats else (-1.0, -1.0)
    if faces <= 0 or persons <= 0:
        exact = count_group_faces(conn, group_ids, model_id, cap)
        return exact, exact
    row = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM memberships WHERE group_id = ANY(%s) LIMIT %s) t",
        (list(group_ids), cap + 1),
    ).fetchone()
    members = int(row[0]) if row else 0
    return round(members * max(faces / persons, 1.0)), round(faces)


def search_exact(
    conn: psycopg.Connection,
    query: NDArray[np.float32],
    group_ids: Sequence[str],
    model_id: str,
    limit: int,
    *,
    scan_table: bool = False,
) -> list[FaceHit]:
    """Exact search: every face of the groups scored on its float32 vector; the ``limit`` best
    face hits, best first (a top-N heap sort; several may belong to one person).

    ``scan_table`` reads the whole faces table once (a hash semi-join on the members: best when
    the groups hold most of the gallery); otherwise the members are walked on the memberships
    primary key and their faces fetched on ``faces_person_idx`` (best for a small share).
    """
    params = {"q": query, "m": model_id, "g": list(group_ids), "k": limit}
    if scan_table:
        sql = (
            "SELECT f.face_id, f.person_id, f.embedding <=> %(q)s::vector AS dist FROM faces f"
            " WHERE f.model_id = %(m)s AND f.person_id IN"
            "  (SELECT m.person_id FROM memberships m WHERE m.group_id = ANY(%(g)s))"
            " ORDER BY dist, f.face_id LIMIT %(k)s"
        )
    else:
        # OFFSET 0 keeps the planner from flattening the lateral subquery into a hash join.
        sql = (
            "SELECT f.face_id, f.person_id, f.embedding <=> %(q)s::vector AS dist"
            " FROM (SELECT DISTINCT m.person_id FROM memberships m"
            "  WHERE m.group_id = ANY(%(g)s)) p"
            " CROSS JOIN LATERAL (SELECT x.face_id, x.person_id, x.embedding FROM faces x"
            "  WHERE x.person_id = p.person_id AND x.model_id = %(m)s OFFSET 0) f"
            " ORDER BY dist, f.face_id LIMIT %(k)s"
        )
    rows = conn.execute(sql, params).fetchall()
    return [FaceHit(int(r[0]), r[1], 1.0 - float(r[2])) for r in rows]


def search_hnsw(
    conn: psycopg.Connection,
    query: NDArray[np.float32],
    group_ids: Sequence[str],
    model_id: str,
    limit: int,
    ef_search: int,
    max_scan_tuples: int,
) -> list[FaceHit]:
    """Approximate search on the HNSW index with pgvector 0.8 iterative scans; up to ``limit``
    face hits, best first (several may belong to one person).

    The index orders by the halfvec distance; the hits are re-ranked by the exact float32 one.

    The group filter is applied while the index is walked; ``relaxed_order`` iterative scanning
    keeps walking until ``limit`` rows pass it (or ``max_scan_tuples`` were visited), so a
    selective filter does not starve the result. Must run inside a transaction (SET LOCAL).
    """
    conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
    conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
    conn.execute(f"SET LOCAL hnsw.max_scan_tuples = {int(max_scan_tuples)}")
    rows = conn.execute(
        "WITH hits AS MATERIALIZED ("
        " SELECT f.face_id, f.person_id, f.embedding <=> %(q)s::vector AS dist FROM faces f"
        " WHERE f.model_id = %(m)s AND EXISTS (SELECT 1 FROM memberships m"
        "  WHERE m.person_id = f.person_id AND m.group_id = ANY(%(g)s))"
        f" ORDER BY f.embedding::halfvec({HNSW_DIM}) <=> %(q)s::halfvec({HNSW_DIM})"
        " LIMIT %(k)s) "
        "SELECT face_id, person_id, dist FROM hits ORDER BY dist, face_id",
        {"q": query, "m": model_id, "g": list(group_ids), "k": limit},
    ).fetchall()
    return [FaceHit(int(r[0]), r[1], 1.0 - float(r[2])) for r in rows]


def best_person_face(
    conn: psycopg.Connection, query: NDArray[np.float32], person_id: str, model_id: str
) -> FaceHit | None:
    """The person's face most similar to ``query`` (exact), or None without faces."""
    row = conn.execute(
        "SELECT face_id, embedding <=> %s AS dist FROM faces WHERE person_id = %s "
        "AND model_id = %s ORDER BY dist, face_id LIMIT 1",
        (query, person_id, model_id),
    ).fetchone()
    return None if row is None else FaceHit(int(row[0]), person_id, 1.0 - float(row[1]))


# --- observed faces and matches --------------------------------------------------------------


def observed_embeddings(
    conn: psycopg.Connection, observed_ids: Sequence[int]
) -> dict[int, NDArray[np.float32]]:
    """The stored vectors of observed faces, by id (missing ids are left out)."""
    rows = conn.execute(
        "SELECT observed_id, embedding FROM observed_faces WHERE observed_id = ANY(%s)",
        (list(observed_ids),),
    ).fetchall()
    return {int(i): as_array(e) for i, e in rows}


def observed_ids_since(
    conn: psycopg.Connection, since: datetime, after_id: int, limit: int
) -> list[int]:
    """Ids of the observed faces stored since ``since``, above ``after_id``, ascending (a page
    of at most ``limit``)."""
    rows = conn.execute(
        "SELECT observed_id FROM observed_faces WHERE created_at >= %s AND observed_id > %s "
        "ORDER BY observed_id LIMIT %s",
        (since, after_id, limit),
    ).fetchall()
    return [int(r[0]) for r in rows]


def count_observed_since(conn: psycopg.Connection, since: datetime) -> int:
    """How many observed faces were stored since ``since``."""
    row = conn.execute(
        "SELECT count(*) FROM observed_faces WHERE created_at >= %s", (since,)
    ).fetchone()
    return int(row[0]) if row else 0


def upsert_observed_faces(conn: psycopg.Connection, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert observed faces (keyed by image hash, face index, model); ids in input order.

    A face seen again keeps its id; its source URI and job are updated to the latest sighting.
    """
    ids: list[int] = []
    for r in rows:
        row = conn.execute(
            "INSERT INTO observed_faces (content_sha256, face_index, model_id, source_uri, "
            "embedding_dim, embedding, box, landmarks, det_score, quality_score, quality_level, "
            "job_id) VALUES (%(content_sha256)s, %(face_index)s, %(model_id)s, %(source_uri)s, "
            "%(embedding_dim)s, %(embedding)s, %(box)s, %(landmarks)s, %(det_score)s, "
            "%(quality_score)s, %(quality_level)s, %(job_id)s) "
            "ON CONFLICT ON CONSTRAINT observed_key DO UPDATE SET "
            "source_uri = coalesce(EXCLUDED.source_uri, observed_faces.source_uri), "
            "job_id = coalesce(EXCLUDED.job_id, observed_faces.job_id) "
            "RETURNING observed_id",
            r,
        ).fetchone()
        if row is None:
            raise RuntimeError("upsert returned no row")
        ids.append(int(row[0]))
    return ids


def replace_matches(
    conn: psycopg.Connection,
    observed_id: int,
    job_id: str,
    rows: Sequence[tuple[int, str, int, float, float]],
) -> int:
    """Replace the candidates of (observed face, job) by ``rows`` of
    (rank, person_id, face_id, score, confidence); how many were written."""
    conn.execute(
        "DELETE FROM matches WHERE observed_id = %s AND job_id = %s", (observed_id, job_id)
    )
    if not rows:
        return 0
    written = 0
    with conn.cursor() as cur:
        for rank, person_id, face_id, score, confidence in rows:
            # A candidate deleted since the search is skipped rather than failing the chunk.
            cur.execute(
                "INSERT INTO matches (observed_id, job_id, rank, person_id, face_id, score, "
                "confidence) SELECT %s, %s, %s, %s, %s, %s, %s WHERE EXISTS "
                "(SELECT 1 FROM faces WHERE face_id = %s AND person_id = %s)",
                (
                    observed_id,
                    job_id,
                    rank,
                    person_id,
                    face_id,
                    score,
                    confidence,
                    face_id,
                    person_id,
                ),
            )
            written += cur.rowcount
    return written
