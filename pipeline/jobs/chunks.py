"""Processing one chunk of a job: claim, analyse batched, write everything in one transaction.

What a job kind does in the analyse and write steps lives in :mod:`pipeline.jobs.kinds`; this
module only orchestrates claim -> analyse -> write -> outcomes.

Exactly-once effects on at-least-once delivery:

1. *claim* (short transaction): the chunk's unfinished items become ``running`` with
   ``attempts + 1``. Items a killed worker left ``running`` are claimed again.
2. *analyse* (no transaction open): the engine reads and decodes in a thread pool while the
   previous batch is on the model.
3. *write* (one transaction): the items still unfinished are locked ``FOR UPDATE``; faces,
   observed faces, matches, item statuses and job counters are written; commit. A duplicate
   delivery running at the same time waits on the lock, then finds the items finished and
   writes nothing. A worker killed before the commit leaves no trace but ``running`` items.

Writes are keyed deterministically besides: enrolled faces by (person, content hash, face
index, model id), observed faces by (content hash, face index, model id), matches by
(observed face, job, rank).
"""

from __future__ import annotations

import logging
import time

from pipeline.errors import FacepipeError
from pipeline.jobs.kinds import steps_for
from pipeline.jobs.kinds.outcomes import interrupted, retry_later
from pipeline.jobs.lease import LeaseKeeper, new_owner
from pipeline.jobs.model import ChunkResult, Item, ItemStatus, Job
from pipeline.jobs.runtime import Runtime
from pipeline.observability.metrics import record_chunk
from pipeline.store import jobs as store

log = logging.getLogger(__name__)


def process_chunk(rt: Runtime, job_id: str, seq_lo: int, seq_hi: int) -> ChunkResult:
    """Run the items ``seq_lo..seq_hi`` of a job; see the module docstring for the guarantees.

    The claimed items are leased to this run and the lease is renewed while it works
    (:mod:`pipeline.jobs.lease`). If the run fails in any way before its write commits, it puts
    the items it still holds back to pending (not counting the attempt when the service, not
    the item, failed); if it cannot (the database is away) the lease runs out and the watchdog
    does it.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    owner = new_owner()
    with rt.db.transaction() as conn:
        job = store.get_job(conn, job_id)
        if job.status.finished:
            return ChunkResult(job_id, skipped=f"job is {job.status.value}")
        items = store.claim_chunk(conn, job_id, seq_lo, seq_hi, owner, rt.settings.lease_s)
    timings["claim"] = _ms(t0)
    if not items:
        return ChunkResult(job_id, skipped="no unfinished items (done, or held by a live run)")
    try:
        with LeaseKeeper(rt.db, owner, rt.settings.lease_s):
            return _run_claimed(rt, job, items, owner, seq_lo, seq_hi, timings, t0)
    except BaseException as exc:
        _release(rt, owner, exc)
        raise


def _release(rt: Runtime, owner: str, exc: BaseException) -> None:
    """Put back what a failed run still holds (best effort: the lease covers the rest)."""
    transient = (isinstance(exc, FacepipeError) and exc.retryable) or _is_db_error(exc)
    try:
        with rt.db.transaction() as conn:
            n = store.release_items(conn, owner, count_attempt=not transient)
        if n:
            log.warning("chunk run %s gave back %d items after %s", owner[:8], n, exc)
    except Exception as release_exc:  # the database may be the reason the run failed
        log.warning(
            "could not give back the items of %s (%s); their lease will run out",
            owner[:8],
            release_exc,
        )


def _is_db_error(exc: BaseException) -> bool:
    import psycopg

    return isinstance(exc, psycopg.OperationalError)


def _run_claimed(
    rt: Runtime,
    job: Job,
    items: list[Item],
    owner: str,
    seq_lo: int,
    seq_hi: int,
    timings: dict[str, float],
    t0: float,
) -> ChunkResult:
    job_id = job.id

    # an item claimed more often than allowed was interrupted every time (its worker died,
    # e.g. on an image that exhausts memory): fail it instead of redelivering it forever
    limit = rt.settings.item_max_attempts
    exhausted = [it for it in items if it.attempts > limit]
    items = [it for it in items if it.attempts <= limit]

    steps = steps_for(job.kind)
    t1 = time.perf_counter()
    prepared = steps.analyse(rt, job, items)
    timings["analyse"] = _ms(t1)

    t2 = time.perf_counter()
    with rt.db.transaction() as conn:
        locked = store.lock_unfinished(conn, [it.id for it in items + exhausted], owner)
        todo = [it for it in items if it.id in locked]
        by_id = steps.write(rt, conn, job, todo, prepared) if todo else {}
        max_attempts = rt.settings.item_max_attempts
        outcomes = [retry_later(by_id[it.id], it, max_attempts) for it in todo]
        outcomes += [interrupted(it) for it in exhausted if it.id in locked]
        finished = store.write_outcomes(conn, job_id, outcomes)
    timings["write"] = _ms(t2)
    timings["total"] = _ms(t0)
    record_chunk(job.kind.value, outcomes, prepared.outcomes.values(), timings)  # metrics
    result = ChunkResult(
        job_id,
        processed=len(outcomes),
        done=sum(o.status == ItemStatus.DONE for o in outcomes),
        failed=sum(o.status == ItemStatus.FAILED for o in outcomes),
        faces=sum(o.n_faces for o in outcomes if o.status == ItemStatus.DONE),
        retry_later=sum(o.status == ItemStatus.PENDING for o in outcomes),
        job_finished=finished,
        timings_ms=timings,
    )
    log.info(
        "job %s chunk %d-%d: %d done, %d failed, %d to retry, %d faces (%s)",
        job_id,
        seq_lo,
        seq_hi,
        result.done,
        result.failed,
        result.retry_later,
        result.faces,
        ", ".join(f"{k} {v:.0f} ms" for k, v in timings.items()),
    )
    return result


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
