"""The watchdog: every job ends, done or failed with a code, without anyone typing a command.

Postgres holds the truth about every item; the broker only carries work, and work can be lost:
a worker killed mid-chunk (its message comes back only after the broker's visibility timeout,
an hour by default), a Redis restarted without persistence (every queued message gone), a
chunk that gave up while Postgres was away. The watchdog runs every ``watchdog_interval_s`` in
each worker (one at a time, under a Redis lock) and as a beat task, and heals each case:

1. **expired leases** - items still ``running`` whose lease ran out lost their worker: they go
   back to ``pending`` and their chunk is re-sent (the claim counts the attempt, so an item that
   kills its worker every time ends failed after ``item_max_attempts``);
2. **a broker that lost its data** (the dispatcher's canary key is gone) - every pending item of
   every unfinished job is re-sent, and every unfinished listing resumed from its last page;
3. **work no queue holds** - a job with pending items or an unfinished listing, nothing running
   under a live lease, no message in any queue, and no progress for ``watchdog_idle_s``: the
   same re-send.

4. **a job run as one task** (a reembed or an identify-batch: it has no items, the job row
   holds its lease) whose lease ran out, or that nothing holds after a broker loss or
   ``watchdog_idle_s`` without progress and nothing queued: its task is re-sent, and resumes
   where the database says (a reembed) or redoes its idempotent writes (an identify-batch).

Every re-send counts on the item (``resends``; on the job, ``lease_resends``, for case 4); past
``watchdog_max_resends`` the item (the job) fails with ITEM_LOST instead of travelling
forever. A job the watchdog looked at carries its finding in ``jobs.stalled`` (cleared by the
next progress), which ``jobs show`` and ``--wait`` print.
Re-sending is always safe: a chunk skips items that are done or held by a live run.

:func:`decide` is the pure rule; :func:`run_watchdog` does the reading and sending.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.index.batch_params import task_kwargs
from pipeline.jobs.dispatch import BrokerState, Dispatcher, TaskName
from pipeline.jobs.model import ItemOutcome, ItemStatus, Job, JobKind
from pipeline.jobs.runtime import Runtime
from pipeline.observability.metrics import (
    ITEMS_LOST,
    LEASES_EXPIRED,
    WATCHDOG_RESENT,
    count_failure,
)
from pipeline.store import jobs as store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobHealth:
    """What the database says about one unfinished job."""

    job_id: str
    listing_done: bool
    pending: int
    live_running: int
    idle_s: float
    expired_seqs: tuple[int, ...] = ()


@dataclass(frozen=True)
class Decision:
    """What to do about one job: re-send ``seqs`` (None: every pending item), resume listing."""

    reason: str
    resend_all_pending: bool = False
    seqs: tuple[int, ...] = ()
    resume_listing: bool = False
    note_only: bool = False


def decide(health: JobHealth, broker: BrokerState, settings: Settings) -> Decision | None:
    """The watchdog's rule for one job (see the module docstring); None: leave it alone."""
    unfinished_work = health.pending > 0 or not health.listing_done
    if broker.lost and unfinished_work:
        return Decision(
            "the broker lost its queued messages (restarted without persistence?)",
            resend_all_pending=True,
            resume_listing=not health.listing_done,
        )
    idle = health.idle_s >= settings.watchdog_idle_s
    nothing_holds_it = broker.queued == 0 and health.live_running == 0
    if unfinished_work and idle and nothing_holds_it:
        return Decision(
            f"no progress for {health.idle_s:.0f} s with nothing queued or running",
            resend_all_pending=True,
            resume_listing=not health.listing_done,
        )
    if health.expired_seqs:
        return Decision(
            "a worker stopped renewing its lease (killed or hung)", seqs=health.expired_seqs
        )
    if unfinished_work and idle and health.live_running == 0:
        queued = "an unknown number of" if broker.queued is None else str(broker.queued)
        return Decision(
            f"no progress for {health.idle_s:.0f} s; {queued} messages are queued ahead of it "
            "(are workers running for every queue?)",
            note_only=True,
        )
    return None


CHUNKED_KINDS = tuple(kind.value for kind in JobKind if kind.chunked)
"""Job kinds listed into items (cases 1-3). An identify-batch or reindex run has no items and
its "listing" never ends before the run does: taken for a stalled item job, it would be sent a
listing that fails it while it runs."""

SINGLE_TASK_KINDS = (JobKind.REEMBED.value, JobKind.IDENTIFY_BATCH.value)
"""Job kinds run as one task holding the job's own lease (no items, no chunks)."""


@dataclass(frozen=True)
class LeasedJobHealth:
    """What the database says about one unfinished job run as one task (case 4)."""

    job_id: str
    held: bool
    """A run took the job's lease (and has not given it back)."""
    expired: bool
    """...and its lease ran out: the run stopped renewing it."""
    idle_s: float


def decide_leased(health: LeasedJobHealth, broker: BrokerState, settings: Settings) -> str | None:
    """Why to re-send the task of a job run as one task; None: leave it alone."""
    if health.held and not health.expired:
        return None  # a live run works on it
    if health.expired:
        return "a worker stopped renewing the job's lease (killed or hung)"
    if broker.lost:
        return "the broker lost its queued messages (restarted without persistence?)"
    if health.idle_s >= settings.watchdog_idle_s and broker.queued == 0:
        return f"no progress for {health.idle_s:.0f} s with nothing queued or running"
    return None


@dataclass
class WatchdogReport:
    """What one watchdog run did."""

    leases_expired: int = 0
    chunks_sent: int = 0
    listings_resumed: int = 0
    items_lost: int = 0
    job_tasks_sent: int = 0
    jobs_lost: int = 0
    broker_lost: bool = False
    jobs: dict[str, str] = field(default_factory=dict)
    """job id -> the reason it was acted on"""

    def to_dict(self) -> dict[str, object]:
        return {
            "leases_expired": self.leases_expired,
            "chunks_sent": self.chunks_sent,
            "listings_resumed": self.listings_resumed,
            "items_lost": self.items_lost,
            "job_tasks_sent": self.job_tasks_sent,
            "jobs_lost": self.jobs_lost,
            "broker_lost": self.broker_lost,
            "jobs": self.jobs,
        }


def run_watchdog(rt: Runtime, dispatcher: Dispatcher) -> WatchdogReport:
    """One pass over every unfinished job; see the module docstring."""
    with rt.db.transaction() as conn:  # the database first: if it is away, nothing is consumed
        expired = store.expire_leases(conn)
    broker = dispatcher.broker_state()
    report = WatchdogReport(broker_lost=broker.lost)
    report.leases_expired = len(expired)
    expired_by_job: dict[str, list[int]] = {}
    for job_id, seq in expired:
        expired_by_job.setdefault(job_id, []).append(int(seq))
    for health in _unfinished_jobs(rt, expired_by_job):
        decision = decide(health, broker, rt.settings)
        if decision is None:
            continue
        _apply(rt, dispatcher, health, decision, report)
    for leased in _leased_jobs(rt):
        reason = decide_leased(leased, broker, rt.settings)
        if reason is not None:
            _resend_leased(rt, dispatcher, leased.job_id, reason, report)
    if broker.lost:
        dispatcher.broker_state_handled()
    LEASES_EXPIRED.inc(report.leases_expired)
    WATCHDOG_RESENT.inc(report.chunks_sent)
    ITEMS_LOST.inc(report.items_lost)
    if report.jobs or report.leases_expired or report.job_tasks_sent:
        log.warning("watchdog: %s", report.to_dict())
    return report


def _unfinished_jobs(rt: Runtime, expired: dict[str, list[int]]) -> list[JobHealth]:
    with rt.db.connection() as conn:
        rows = store.unfinished_job_counts(conn, CHUNKED_KINDS)
    return [
        JobHealth(
            job_id=r[0],
            listing_done=bool(r[1]),
            pending=int(r[2]),
            live_running=int(r[3]),
            idle_s=float(r[4]),
            expired_seqs=tuple(sorted(expired.get(r[0], ()))),
        )
        for r in rows
    ]


def _leased_jobs(rt: Runtime) -> list[LeasedJobHealth]:
    with rt.db.connection() as conn:
        rows = store.leased_job_states(conn, SINGLE_TASK_KINDS)
    return [
        LeasedJobHealth(job_id, held, expired, idle_s) for job_id, held, expired, idle_s in rows
    ]


def _resend_leased(
    rt: Runtime, dispatcher: Dispatcher, job_id: str, reason: str, report: WatchdogReport
) -> None:
    """Take the lease back from a lost run (unless a run took it meanwhile) and re-send the
    job's task; past ``watchdog_max_resends`` fail the job with ITEM_LOST instead."""
    note = {"reason": reason, "at": datetime.now(UTC).isoformat()}
    limit = rt.settings.watchdog_max_resends
    with rt.db.transaction() as conn:
        resends = store.take_back_job_lease(conn, job_id)
        if resends is None:
            return  # a run took the job (or it ended) since the look
        job = store.get_job(conn, job_id)
        lost = resends > limit
        if lost:
            err = FacepipeError(
                ErrorCode.ITEM_LOST,
                f"the job's task was re-sent {limit} times and lost every time (workers died "
                "or the broker lost it); giving up",
            )
            store.fail_job(conn, job_id, err.to_dict())
            action = f"failed it: re-sent {limit} times already (ITEM_LOST)"
            report.jobs_lost += 1
        else:
            action = "re-sent the job's task"
        store.set_stalled_note(conn, job_id, {**note, "action": action})
    if not lost:  # sent after the commit: the run finds the lease free
        _send_job_task(dispatcher, job)
        report.job_tasks_sent += 1
    report.jobs[job_id] = f"{reason}: {action}"


def _send_job_task(dispatcher: Dispatcher, job: Job) -> None:
    """The task of a job run as one task, again (it resumes, or redoes idempotent writes)."""
    if job.kind is JobKind.REEMBED:
        dispatcher.send_reembed(job.id)
        return
    # identify-batch: the message of its stored parameters, as its first one was
    dispatcher.send(TaskName.IDENTIFY_BATCH, task_kwargs(job.params, job.id))


def _apply(
    rt: Runtime,
    dispatcher: Dispatcher,
    health: JobHealth,
    decision: Decision,
    report: WatchdogReport,
) -> None:
    job_id = health.job_id
    note = {"reason": decision.reason, "at": datetime.now(UTC).isoformat()}
    if decision.note_only:
        with rt.db.transaction() as conn:
            store.set_stalled_note(conn, job_id, {**note, "action": "waiting"})
        return
    limit = rt.settings.watchdog_max_resends
    with rt.db.transaction() as conn:
        job = store.get_job(conn, job_id)
        seqs = None if decision.resend_all_pending else list(decision.seqs)
        lost = store.lock_resent_too_often(conn, job_id, limit, seqs)
        if lost:
            store.write_outcomes(conn, job_id, [_lost(r[0], r[1], r[2]) for r in lost])
            # failed items by code count every failure, not only those a chunk wrote
            count_failure(job.kind.value, ErrorCode.ITEM_LOST.value, len(lost))
        resent = store.count_resend(conn, job_id, seqs)
        ranges = store.seq_ranges(resent, _chunk_size(rt, job.params))
        action = f"re-sent {len(resent)} items in {len(ranges)} chunks"
        if decision.resume_listing:
            action += ", resumed the listing"
        if lost:
            action += f", failed {len(lost)} items re-sent {limit} times already (ITEM_LOST)"
        store.set_stalled_note(conn, job_id, {**note, "action": action})
    # Sent after the commit: a chunk that runs at once sees the notes and counters in place.
    if decision.resume_listing:
        dispatcher.send_listing(job_id, job.listing_token, job.listing_next_seq)
        report.listings_resumed += 1
    for lo, hi in ranges:
        dispatcher.send_chunk(job_id, lo, hi)
    report.chunks_sent += len(ranges)
    report.items_lost += len(lost)
    report.jobs[job_id] = f"{decision.reason}: {action}"


def _chunk_size(rt: Runtime, params: dict[str, object]) -> int:
    value = params.get("chunk_size")
    return max(1, int(value) if isinstance(value, int) else rt.settings.chunk_size)


def _lost(item_id: int, uri: str, resends: int) -> ItemOutcome:
    err = FacepipeError(
        ErrorCode.ITEM_LOST,
        f"{uri}: its work was re-sent {resends} times and lost every time (workers died or the "
        "broker lost it); giving up on this item",
    )
    return ItemOutcome(item_id, ItemStatus.FAILED, error=err.to_dict())


def describe_stall(note: dict[str, str] | None, idle_s: float, settings: Settings) -> str | None:
    """One line for ``jobs show`` / ``--wait`` about a job that makes no progress."""
    if note:
        return f"stalled: {note.get('reason')} - watchdog {note.get('action')} at {note.get('at')}"
    if idle_s >= settings.watchdog_idle_s * 2:
        return (
            f"no progress for {idle_s:.0f} s and no watchdog finding: is a worker running "
            "(facepipe worker)?"
        )
    return None
