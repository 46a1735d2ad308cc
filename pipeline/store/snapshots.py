"""The ``index_snapshots`` table: one row a FAISS snapshot built of a scope (migration 0003)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    from pipeline.index.snapshot import Scope


@dataclass(frozen=True)
class SnapshotRecord:
    """A row of ``index_snapshots``."""

    snapshot_id: str
    scope: str
    model_id: str
    location: str
    kind: str
    dim: int
    count: int
    max_face_id: int | None
    watermark: datetime
    build_seconds: float
    created_at: datetime
    meta: dict[str, Any]

    @property
    def prefix(self) -> str:
        """The snapshot's key under its store root."""
        return str(self.meta.get("prefix", ""))

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshot_id": self.snapshot_id,
            "scope": self.scope,
            "model_id": self.model_id,
            "location": self.location,
            "kind": self.kind,
            "count": self.count,
            "max_face_id": self.max_face_id,
            "watermark": self.watermark.isoformat(),
            "build_seconds": round(self.build_seconds, 3),
            "created_at": self.created_at.isoformat(),
            "store": self.meta.get("store"),
            "nlist": self.meta.get("nlist", 0),
            "nprobe": self.meta.get("nprobe", 0),
            "train_size": self.meta.get("train_size", 0),
            "on_gpu": self.meta.get("on_gpu", False),
        }


_COLUMNS = (
    "snapshot_id, scope, model_id, location, kind, dim, count, max_face_id, watermark, "
    "build_seconds, created_at, meta"
)


def _record(row: tuple[Any, ...]) -> SnapshotRecord:
    return SnapshotRecord(
        snapshot_id=row[0],
        scope=row[1],
        model_id=row[2],
        location=row[3],
        kind=row[4],
        dim=int(row[5]),
        count=int(row[6]),
        max_face_id=None if row[7] is None else int(row[7]),
        watermark=row[8],
        build_seconds=float(row[9]),
        created_at=row[10],
        meta=row[11] or {},
    )


def newest_snapshot(conn: psycopg.Connection, scope: Scope) -> SnapshotRecord | None:
    """The newest live snapshot of the scope, or None."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM index_snapshots WHERE scope = %s AND model_id = %s "
        "AND gc_at IS NULL ORDER BY created_at DESC, snapshot_id DESC LIMIT 1",
        (scope.key, scope.model_id),
    ).fetchone()
    return None if row is None else _record(row)


def list_snapshots(
    conn: psycopg.Connection, scope: Scope | None = None, include_gc: bool = False
) -> list[SnapshotRecord]:
    """Snapshots, newest first (of one scope when given)."""
    clauses, params = [], []
    if scope is not None:
        clauses += ["scope = %s", "model_id = %s"]
        params += [scope.key, scope.model_id]
    if not include_gc:
        clauses.append("gc_at IS NULL")
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM index_snapshots {where} "
        "ORDER BY scope, model_id, created_at DESC, snapshot_id DESC",
        params,
    ).fetchall()
    return [_record(r) for r in rows]


def insert_snapshot(
    conn: psycopg.Connection,
    *,
    snapshot_id: str,
    scope: str,
    model_id: str,
    location: str,
    kind: str,
    dim: int,
    count: int,
    max_face_id: int | None,
    watermark: datetime,
    build_seconds: float,
    meta: dict[str, Any],
) -> SnapshotRecord:
    """Record a snapshot written to its store."""
    row = conn.execute(
        "INSERT INTO index_snapshots (snapshot_id, scope, model_id, location, kind, dim, "
        "count, max_face_id, watermark, build_seconds, meta) VALUES "
        f"(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
        (
            snapshot_id,
            scope,
            model_id,
            location,
            kind,
            dim,
            count,
            max_face_id,
            watermark,
            build_seconds,
            Jsonb(meta),
        ),
    ).fetchone()
    return _record(row)  # type: ignore[arg-type]


def mark_collected(conn: psycopg.Connection, snapshot_id: str) -> None:
    """Mark a snapshot whose files were deleted."""
    conn.execute("UPDATE index_snapshots SET gc_at = now() WHERE snapshot_id = %s", (snapshot_id,))


def oldest_live_watermark(conn: psycopg.Connection) -> datetime | None:
    """The oldest watermark among live snapshots (None without any)."""
    row = conn.execute("SELECT min(watermark) FROM index_snapshots WHERE gc_at IS NULL").fetchone()
    return None if row is None else row[0]


def live_scopes(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(scope key, model) of every scope with a live snapshot."""
    rows = conn.execute(
        "SELECT DISTINCT scope, model_id FROM index_snapshots WHERE gc_at IS NULL"
    ).fetchall()
    return [(str(k), str(m)) for k, m in rows]
