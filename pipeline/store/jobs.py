"""Jobs and job items in Postgres (migration 0002): creation, claiming, completion, queries.

Every state change is one short SQL statement or one transaction. Counters on the job row are
updated in the same transaction as the items they count, so they never drift from the items.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from psycopg import Connection
from psycopg.rows import dict_row

from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.model import (
    Item,
    ItemOutcome,
    ItemSpec,
    ItemStatus,
    Job,
    JobKind,
    JobStatus,
    Origin,
)

if TYPE_CHECKING:
    from pipeline.store.db import Database

log = logging.getLogger(__name__)

_JOB_COLUMNS = (
    "id, kind, params, status, listing_done, n_items, n_done, n_failed, n_faces, error, "
    "created_at, started_at, finished_at, origin, stalled, listing_token, listing_next_seq, "
    "progress_at"
)
_ITEM_COLUMNS = (
    "id, job_id, seq, uri, person_id, person_name, groups, status, attempts, error_code, "
    "error_name, error_message, n_faces, face_ids, observed_ids, result"
)


def _job(row: dict[str, Any]) -> Job:
    return Job(
        id=str(row["id"]),
        kind=JobKind(row["kind"]),
        params=row["params"] or {},
        status=JobStatus(row["status"]),
        listing_done=row["listing_done"],
        n_items=row["n_items"],
        n_done=row["n_done"],
        n_failed=row["n_failed"],
        n_faces=row["n_faces"],
        error=row["error"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        origin=Origin(row["origin"]),
        stalled=row["stalled"],
        listing_token=row["listing_token"],
        listing_next_seq=row["listing_next_seq"],
        progress_at=row["progress_at"],
    )


def _item(row: dict[str, Any]) -> Item:
    return Item(
        id=row["id"],
        job_id=str(row["job_id"]),
        seq=row["seq"],
        uri=row["uri"],
        person_id=row["person_id"],
        person_name=row["person_name"],
        groups=tuple(row["groups"]) if row["groups"] is not None else None,
        status=ItemStatus(row["status"]),
        attempts=row["attempts"],
        error_code=row["error_code"],
        error_name=row["error_name"],
        error_message=row["error_message"],
        n_faces=row["n_faces"],
        face_ids=tuple(row["face_ids"] or ()),
        observed_ids=tuple(row["observed_ids"] or ()),
        result=row["result"],
    )


def new_job_id(idempotency_key: str | None = None) -> str:
    """A random job id, or a deterministic one derived from an idempotency key."""
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"facepipe-job:{idempotency_key}"))


def create_job(
    conn: Connection,
    kind: JobKind,
    params: dict[str, Any],
    *,
    idempotency_key: str | None = None,
    origin: Origin = Origin.CLI,
) -> tuple[Job, bool]:
    """Insert a job (status pending); with an idempotency key an existing job is returned.

    Returns ``(job, created)``.
    """
    job_id = new_job_id(idempotency_key)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"INSERT INTO jobs (id, kind, params, idempotency_key, origin) "
            f"VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING {_JOB_COLUMNS}",
            (job_id, kind.value, json.dumps(params), idempotency_key, origin.value),
        )
        row = cur.fetchone()
        if row is not None:
            return _job(row), True
    return get_job(conn, job_id), False


def wait_for_job(
    db: Database,
    job_id: str,
    *,
    timeout_s: float | None = None,
    poll_s: float = 0.5,
    on_poll: Callable[[Job], None] | None = None,
) -> Job:
    """Poll the job until it is finished or ``timeout_s`` passes; the last state read.

    ``on_poll`` sees every state read (a progress bar, say); JOB_NOT_FOUND propagates.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        with db.connection() as conn:
            job = get_job(conn, job_id)
        if on_poll is not None:
            on_poll(job)
        if job.status.finished or (deadline is not None and time.monotonic() > deadline):
            return job
        time.sleep(poll_s)


def get_job(conn: Connection, job_id: str) -> Job:
    """The job with this id, or JOB_NOT_FOUND."""
    try:
        uuid.UUID(job_id)
    except ValueError as exc:
        raise FacepipeError(ErrorCode.JOB_NOT_FOUND, f"no job {job_id!r}", job_id=job_id) from exc
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = %s", (job_id,))
        row = cur.fetchone()
    if row is None:
        raise FacepipeError(ErrorCode.JOB_NOT_FOUND, f"no job {job_id!r}", job_id=job_id)
    return _job(row)


def find_job_by_prefix(conn: Connection, prefix: str) -> Job:
    """A job by its full id or an unambiguous prefix of it (for the CLI)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id::text LIKE %s LIMIT 2",
            (prefix.lower() + "%",),
        )
        rows = cur.fetchall()
    if len(rows) != 1:
        what = "is ambiguous" if rows else "matches no job"
        raise FacepipeError(ErrorCode.JOB_NOT_FOUND, f"job id {prefix!r} {what}")
    return _job(rows[0])


def list_jobs(conn: Connection, *, limit: int = 20, status: JobStatus | None = None) -> list[Job]:
    """Newest jobs first."""
    sql = f"SELECT {_JOB_COLUMNS} FROM jobs"
    args: list[Any] = []
    if status is not None:
        sql += " WHERE status = %s"
        args.append(status.value)
    sql += " ORDER BY created_at DESC LIMIT %s"
    args.append(limit)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, args)
        return [_job(r) for r in cur.fetchall()]


def list_items(
    conn: Connection,
    job_id: str,
    *,
    status: ItemStatus | None = None,
    limit: int | None = None,
) -> list[Item]:
    """Items of a job in listing order."""
    sql = f"SELECT {_ITEM_COLUMNS} FROM job_items WHERE job_id = %s"
    args: list[Any] = [job_id]
    if status is not None:
        sql += " AND status = %s"
        args.append(status.value)
    sql += " ORDER BY seq"
    if limit is not None:
        sql += " LIMIT %s"
        args.append(limit)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, args)
        return [_item(r) for r in cur.fetchall()]


def error_counts(conn: Connection, job_id: str) -> dict[str, int]:
    """How many failed items per error name."""
    rows = conn.execute(
        "SELECT error_name, count(*) FROM job_items WHERE job_id = %s AND status = 'failed' "
        "GROUP BY error_name ORDER BY count(*) DESC",
        (job_id,),
    ).fetchall()
    return {str(name): int(n) for name, n in rows}


def add_items(conn: Connection, job_id: str, specs: Sequence[ItemSpec], first_seq: int) -> int:
    """Insert items with consecutive seq numbers; already-listed URIs are skipped.

    Returns how many were new. The job's ``n_items`` grows by that many in the same statement
    batch, so a redelivered listing page neither duplicates items nor inflates counters.
    """
    if not specs:
        return 0
    rows = [
        (
            job_id,
            first_seq + i,
            s.uri,
            s.person_id,
            s.person_name,
            list(s.groups) if s.groups is not None else None,
        )
        for i, s in enumerate(specs)
    ]
    inserted = 0
    with conn.cursor() as cur:
        for row in rows:
            cur.execute(
                "INSERT INTO job_items (job_id, seq, uri, person_id, person_name, groups) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                row,
            )
            inserted += cur.rowcount
        if inserted:
            cur.execute("UPDATE jobs SET n_items = n_items + %s WHERE id = %s", (inserted, job_id))
    return inserted


def mark_listing_done(conn: Connection, job_id: str) -> bool:
    """Record that every item is listed; finishes the job if nothing is left. True if finished."""
    conn.execute("UPDATE jobs SET listing_done = true WHERE id = %s", (job_id,))
    return finalize_if_complete(conn, job_id)


def finalize_if_complete(conn: Connection, job_id: str) -> bool:
    """Mark the job done when listing is over and every item is done or failed."""
    row = conn.execute(
        "UPDATE jobs SET status = 'done', finished_at = now(), "
        "started_at = coalesce(started_at, now()) "
        "WHERE id = %s AND listing_done AND status IN ('pending', 'running') "
        "AND n_done + n_failed >= n_items RETURNING id",
        (job_id,),
    ).fetchone()
    return row is not None


def delete_job(conn: Connection, job_id: str) -> None:
    """Remove a job that never started (its first message could not be sent)."""
    conn.execute("DELETE FROM jobs WHERE id = %s AND n_done = 0 AND n_failed = 0", (job_id,))


def fail_job(conn: Connection, job_id: str, error: dict[str, Any]) -> None:
    """A job-level failure (e.g. its source does not exist)."""
    conn.execute(
        "UPDATE jobs SET status = 'failed', error = %s, finished_at = now() "
        "WHERE id = %s AND status IN ('pending', 'running')",
        (json.dumps(error), job_id),
    )


def set_job_fields(conn: Connection, job_id: str, **fields: Any) -> None:
    """Set columns of a job row directly (runs that manage their own job row, identify-batch);
    the column names come from the caller's code, never from input."""
    sets = ", ".join(f"{k} = %({k})s" for k in fields)
    conn.execute(f"UPDATE jobs SET {sets} WHERE id = %(id)s", {**fields, "id": job_id})


def cancel_job(conn: Connection, job_id: str) -> Job:
    """Cancel a pending or running job: chunks not yet started will skip their items."""
    job = get_job(conn, job_id)
    if job.status.finished:
        raise FacepipeError(
            ErrorCode.JOB_STATE, f"job {job_id} is already {job.status.value}", job_id=job_id
        )
    conn.execute(
        "UPDATE jobs SET status = 'cancelled', finished_at = now() WHERE id = %s", (job_id,)
    )
    return get_job(conn, job_id)


def reset_failed_items(conn: Connection, job_id: str) -> list[int]:
    """Put a job's failed items back to pending (the job runs again). Returns their seqs."""
    job = get_job(conn, job_id)
    if job.status in (JobStatus.PENDING, JobStatus.RUNNING):
        raise FacepipeError(
            ErrorCode.JOB_STATE, f"job {job_id} is still {job.status.value}", job_id=job_id
        )
    rows = conn.execute(
        "UPDATE job_items SET status = 'pending', attempts = 0 "
        "WHERE job_id = %s AND status = 'failed' RETURNING seq",
        (job_id,),
    ).fetchall()
    seqs = sorted(r[0] for r in rows)
    has_pending = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM job_items WHERE job_id = %s "
        "AND status IN ('pending', 'running'))",
        (job_id,),
    ).fetchone()
    if seqs or (has_pending and has_pending[0]):
        conn.execute(
            "UPDATE jobs SET status = 'running', finished_at = NULL, error = NULL, "
            "n_failed = n_failed - %s WHERE id = %s",
            (len(seqs), job_id),
        )
    return seqs


def unfinished_seqs(conn: Connection, job_id: str) -> list[int]:
    """Seqs of items still pending or running (to resume a job)."""
    rows = conn.execute(
        "SELECT seq FROM job_items WHERE job_id = %s AND status IN ('pending', 'running') "
        "ORDER BY seq",
        (job_id,),
    ).fetchall()
    return [r[0] for r in rows]


def seq_ranges(seqs: Sequence[int], chunk_size: int) -> list[tuple[int, int]]:
    """Group sorted seqs into inclusive (lo, hi) ranges of at most ``chunk_size`` seqs each."""
    ranges: list[tuple[int, int]] = []
    for start in range(0, len(seqs), chunk_size):
        part = seqs[start : start + chunk_size]
        ranges.append((part[0], part[-1]))
    return ranges


def claim_chunk(
    conn: Connection, job_id: str, seq_lo: int, seq_hi: int, owner: str, lease_s: float
) -> list[Item]:
    """Lease the chunk's unfinished items to ``owner`` (attempts + 1) and return them.

    Pending items are claimed, and running items whose lease ended (their worker died: its
    writes were never committed, the chunk commits in one transaction). Items running under a
    live lease belong to another run of the same chunk that is still alive and are left to it.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"UPDATE job_items SET status = 'running', attempts = attempts + 1, "
            f"started_at = now(), lease_owner = %s, "
            f"lease_until = now() + make_interval(secs => %s) "
            f"WHERE job_id = %s AND seq BETWEEN %s AND %s AND (status = 'pending' "
            f"OR (status = 'running' AND (lease_until IS NULL OR lease_until < now()))) "
            f"RETURNING {_ITEM_COLUMNS}",
            (owner, lease_s, job_id, seq_lo, seq_hi),
        )
        items = sorted((_item(r) for r in cur.fetchall()), key=lambda it: it.seq)
    if items:
        conn.execute(
            "UPDATE jobs SET status = CASE WHEN status = 'pending' THEN 'running' ELSE status END, "
            "started_at = coalesce(started_at, now()), progress_at = now(), stalled = NULL "
            "WHERE id = %s AND status IN ('pending', 'running')",
            (job_id,),
        )
    return items


def renew_leases(conn: Connection, owner: str, lease_s: float) -> int:
    """Extend the leases of the items ``owner`` still holds; how many it holds."""
    cur = conn.execute(
        "UPDATE job_items SET lease_until = now() + make_interval(secs => %s) "
        "WHERE lease_owner = %s AND status = 'running'",
        (lease_s, owner),
    )
    return cur.rowcount


def release_items(conn: Connection, owner: str, *, count_attempt: bool) -> int:
    """Put the items ``owner`` still holds back to pending (a chunk that gives up).

    ``count_attempt=False`` when the run failed for the service's sake (database or broker
    unavailable): the item is not to blame and keeps its attempts.
    """
    cur = conn.execute(
        "UPDATE job_items SET status = 'pending', lease_until = NULL, lease_owner = NULL, "
        "attempts = CASE WHEN %s THEN attempts ELSE greatest(0, attempts - 1) END "
        "WHERE lease_owner = %s AND status = 'running'",
        (count_attempt, owner),
    )
    return cur.rowcount


def lock_unfinished(conn: Connection, item_ids: Sequence[int], owner: str) -> set[int]:
    """Lock the given items that ``owner`` still holds; returns their ids.

    Called at the start of the chunk's write transaction: a duplicate delivery of the same
    chunk running at the same time waits here, then finds the items finished (or leased to
    someone else after this run's lease ran out) and skips them.
    """
    if not item_ids:
        return set()
    rows = conn.execute(
        "SELECT id FROM job_items WHERE id = ANY(%s) AND status = 'running' "
        "AND lease_owner = %s ORDER BY id FOR UPDATE",
        (list(item_ids), owner),
    ).fetchall()
    return {r[0] for r in rows}


def save_listing_progress(conn: Connection, job_id: str, token: str | None, next_seq: int) -> None:
    """Remember where the listing stopped (the watchdog resumes a lost listing from here)."""
    conn.execute(
        "UPDATE jobs SET listing_token = %s, listing_next_seq = %s, progress_at = now(), "
        "stalled = NULL WHERE id = %s",
        (token, next_seq, job_id),
    )


def write_outcomes(conn: Connection, job_id: str, outcomes: Sequence[ItemOutcome]) -> bool:
    """Write item statuses and bump the job's counters; returns True when the job finished.

    Must run inside the chunk's transaction, after :func:`lock_unfinished`.
    """
    done = failed = faces = 0
    with conn.cursor() as cur:
        for o in outcomes:
            err = o.error or {}
            finished = o.status in (ItemStatus.DONE, ItemStatus.FAILED)
            cur.execute(
                "UPDATE job_items SET status = %s, error_code = %s, error_name = %s, "
                "error_message = %s, content_sha256 = coalesce(%s, content_sha256), "
                "n_faces = %s, face_ids = %s, observed_ids = %s, result = %s, "
                "lease_until = NULL, lease_owner = NULL, "
                "finished_at = CASE WHEN %s THEN now() ELSE NULL END WHERE id = %s",
                (
                    o.status.value,
                    err.get("code"),
                    err.get("name"),
                    err.get("message"),
                    o.content_sha256,
                    o.n_faces,
                    list(o.face_ids),
                    list(o.observed_ids),
                    json.dumps(o.result) if o.result is not None else None,
                    finished,
                    o.item_id,
                ),
            )
            if o.status == ItemStatus.DONE:
                done += 1
                faces += o.n_faces
            elif o.status == ItemStatus.FAILED:
                failed += 1
        if outcomes:
            cur.execute(
                "UPDATE jobs SET n_done = n_done + %s, n_failed = n_failed + %s, "
                "n_faces = n_faces + %s, progress_at = now(), stalled = NULL WHERE id = %s",
                (done, failed, faces, job_id),
            )
    return finalize_if_complete(conn, job_id)


def cleanup_items(conn: Connection, retention_days: float) -> int:
    """Delete the items of jobs finished more than ``retention_days`` ago; returns the count.

    Job rows (with their counters) stay, so ``jobs list`` still shows the history.
    """
    cur = conn.execute(
        "DELETE FROM job_items USING jobs WHERE job_items.job_id = jobs.id "
        "AND jobs.status IN ('done', 'failed', 'cancelled') "
        "AND jobs.finished_at <= now() - make_interval(secs => %s)",
        (retention_days * 86400.0,),
    )
    return cur.rowcount


# --- the lease of a job run as one task (reembed; migration 0008) ----------------------------


def claim_job_lease(conn: Connection, job_id: str, owner: str, lease_s: float) -> bool:
    """Take the job's lease for ``owner`` unless a live run holds it; whether it was taken."""
    row = conn.execute(
        "UPDATE jobs SET lease_owner = %s, lease_until = now() + make_interval(secs => %s) "
        "WHERE id = %s AND (lease_owner IS NULL OR lease_owner = %s OR lease_until IS NULL "
        "OR lease_until < now()) RETURNING id",
        (owner, lease_s, job_id, owner),
    ).fetchone()
    return row is not None


def renew_job_lease(conn: Connection, owner: str, lease_s: float) -> int:
    """Extend the lease of the job ``owner`` holds; 0 when it lost it (a lease renewer, like
    :func:`renew_leases` for items)."""
    cur = conn.execute(
        "UPDATE jobs SET lease_until = now() + make_interval(secs => %s) "
        "WHERE lease_owner = %s AND status = 'running'",
        (lease_s, owner),
    )
    return cur.rowcount


def release_job_lease(conn: Connection, job_id: str, owner: str) -> None:
    """Give the job's lease back (the run ended, or failed with an error it reported)."""
    conn.execute(
        "UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE id = %s AND lease_owner = %s",
        (job_id, owner),
    )


# --- the counters of a job run as one task (reembed), set from a count of its scope ---------


def set_listed_totals(conn: Connection, job_id: str, n_items: int, n_done: int) -> None:
    """A new job's totals, known at creation (nothing is listed item by item)."""
    conn.execute(
        "UPDATE jobs SET n_items = %s, n_done = %s, listing_done = true WHERE id = %s",
        (n_items, n_done, job_id),
    )


def start_job_run(conn: Connection, job_id: str, n_items: int, n_done: int) -> None:
    """A run (or a resumed one) starts: running, no error, its totals counted again."""
    conn.execute(
        "UPDATE jobs SET status = 'running', error = NULL, finished_at = NULL, "
        "started_at = coalesce(started_at, now()), progress_at = now(), stalled = NULL, "
        "n_items = %s, n_done = %s, n_failed = 0 WHERE id = %s",
        (n_items, n_done, job_id),
    )


def add_job_run_progress(conn: Connection, job_id: str, *, done: int, failed: int) -> None:
    """One step of the run: ``done`` faces written (each a done item), ``failed`` not."""
    conn.execute(
        "UPDATE jobs SET n_done = n_done + %s, n_failed = n_failed + %s, "
        "n_faces = n_faces + %s, progress_at = now(), stalled = NULL WHERE id = %s",
        (done, failed, done, job_id),
    )


def finish_job_run(conn: Connection, job_id: str, n_items: int, n_done: int) -> None:
    """The run is done, with its final totals."""
    conn.execute(
        "UPDATE jobs SET status = 'done', finished_at = now(), n_items = %s, "
        "n_done = %s, n_failed = 0 WHERE id = %s",
        (n_items, n_done, job_id),
    )


def set_job_counts(conn: Connection, job_id: str, n_items: int, n_done: int, n_failed: int) -> None:
    """The job's totals as counted (before it is failed with them)."""
    conn.execute(
        "UPDATE jobs SET n_items = %s, n_done = %s, n_failed = %s WHERE id = %s",
        (n_items, n_done, n_failed, job_id),
    )


# --- the watchdog ----------------------------------------------------------------------------


def expire_leases(conn: Connection) -> list[tuple[str, int]]:
    """Put back to pending every running item whose lease ran out; (job id, seq) of each."""
    rows = conn.execute(
        "UPDATE job_items SET status = 'pending', lease_until = NULL, lease_owner = NULL "
        "WHERE status = 'running' AND lease_until < now() RETURNING job_id::text, seq"
    ).fetchall()
    return [(str(r[0]), int(r[1])) for r in rows]


def unfinished_job_counts(
    conn: Connection, kinds: Sequence[str]
) -> list[tuple[str, bool, int, int, float]]:
    """Every pending or running job of ``kinds`` (jobs listed into items), oldest first: (id,
    listing done, pending items, running items with a live lease, seconds since its last
    progress)."""
    rows = conn.execute(
        "SELECT j.id::text, j.listing_done, "
        "  count(*) FILTER (WHERE i.status = 'pending'), "
        "  count(*) FILTER (WHERE i.status = 'running' AND i.lease_until >= now()), "
        "  extract(epoch FROM now() - coalesce(j.progress_at, j.created_at)) "
        "FROM jobs j LEFT JOIN job_items i ON i.job_id = j.id "
        "WHERE j.status IN ('pending', 'running') AND j.kind = ANY(%s) "
        "GROUP BY j.id ORDER BY j.created_at",
        (list(kinds),),
    ).fetchall()
    return [(str(r[0]), bool(r[1]), int(r[2]), int(r[3]), float(r[4])) for r in rows]


def lock_resent_too_often(
    conn: Connection, job_id: str, limit: int, seqs: Sequence[int] | None
) -> list[tuple[int, str, int]]:
    """Lock the job's pending items (among ``seqs``; None: all) re-sent ``limit`` times or
    more: (item id, uri, resends) of each."""
    rows = conn.execute(
        "SELECT id, uri, resends FROM job_items WHERE job_id = %s AND status = 'pending' "
        "AND resends >= %s AND (%s::int[] IS NULL OR seq = ANY(%s::int[])) FOR UPDATE",
        (job_id, limit, seqs, seqs),
    ).fetchall()
    return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]


def count_resend(conn: Connection, job_id: str, seqs: Sequence[int] | None) -> list[int]:
    """Count one more re-send on the job's pending items (among ``seqs``; None: all); their
    seqs, ascending."""
    rows = conn.execute(
        "UPDATE job_items SET resends = resends + 1 WHERE job_id = %s AND status = 'pending' "
        "AND (%s::int[] IS NULL OR seq = ANY(%s::int[])) RETURNING seq",
        (job_id, seqs, seqs),
    ).fetchall()
    return sorted(int(r[0]) for r in rows)


def set_stalled_note(conn: Connection, job_id: str, note: dict[str, str]) -> None:
    """Record on the job what the watchdog saw and did."""
    conn.execute("UPDATE jobs SET stalled = %s WHERE id = %s", (json.dumps(note), job_id))


def leased_job_states(
    conn: Connection, kinds: Sequence[str]
) -> list[tuple[str, bool, bool, float]]:
    """Every pending or running job of ``kinds`` (jobs run as one task), oldest first: (id,
    a run holds its lease, that lease ran out, seconds since its last progress)."""
    rows = conn.execute(
        "SELECT id::text, lease_owner IS NOT NULL, "
        "  lease_owner IS NOT NULL AND coalesce(lease_until < now(), true), "
        "  extract(epoch FROM now() - coalesce(progress_at, created_at)) "
        "FROM jobs WHERE kind = ANY(%s) AND status IN ('pending', 'running') "
        "ORDER BY created_at",
        (list(kinds),),
    ).fetchall()
    return [(str(r[0]), bool(r[1]), bool(r[2]), float(r[3])) for r in rows]


def take_back_job_lease(conn: Connection, job_id: str) -> int | None:
    """Clear the lease of an unfinished job nobody holds any more and count one more re-send
    of its task; the job's re-sends so far, or None when a run holds it (or it ended)."""
    row = conn.execute(
        "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, "
        "lease_resends = lease_resends + 1 WHERE id = %s "
        "AND status IN ('pending', 'running') "
        "AND (lease_owner IS NULL OR lease_until IS NULL OR lease_until < now()) "
        "RETURNING lease_resends",
        (job_id,),
    ).fetchone()
    return None if row is None else int(row[0])
