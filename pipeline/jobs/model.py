"""Records of the job model: kinds, statuses, items and chunk results (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pipeline.sources.location import Trust


class JobKind(StrEnum):
    """What a job does with each item."""

    ENROLL = "enroll"
    REIDENTIFY = "reidentify"
    DETECT = "detect"
    IDENTIFY_BATCH = "identify-batch"
    REINDEX = "reindex"
    REEMBED = "reembed"

    @property
    def chunked(self) -> bool:
        """Listed into items and processed in chunks (the watchdog's item rule applies); the
        other kinds run as one task each (identify-batch, reindex, reembed)."""
        return self in (JobKind.ENROLL, JobKind.REIDENTIFY, JobKind.DETECT)


class Origin(StrEnum):
    """Who submitted a job: decides what its sources may name (see pipeline.sources.location)."""

    CLI = "cli"
    HTTP = "http"
    S3_EVENT = "s3-event"
    SCHEDULE = "schedule"

    @property
    def trust(self) -> Trust:
        """Operators (CLI, schedule) may name local paths; callers (HTTP, S3 events) never."""
        return Trust.OPERATOR if self in (Origin.CLI, Origin.SCHEDULE) else Trust.CALLER


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


class ItemStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class ItemSpec:
    """One unit of work as a producer lists it: an image URI and, for enrolment, whose it is."""

    uri: str
    person_id: str | None = None
    person_name: str | None = None
    groups: tuple[str, ...] | None = None


OBSERVED_PREFIX = "observed:"
"""Item URI of a stored observed face (re-identification of faces already seen)."""


@dataclass(frozen=True)
class Item:
    """A job item as stored (its ``uri`` an image source, or ``observed:<id>`` for an observed
    face stored earlier: :data:`OBSERVED_PREFIX`)."""

    id: int
    job_id: str
    seq: int
    uri: str
    person_id: str | None
    person_name: str | None
    groups: tuple[str, ...] | None
    status: ItemStatus
    attempts: int
    error_code: int | None = None
    error_name: str | None = None
    error_message: str | None = None
    n_faces: int = 0
    face_ids: tuple[str, ...] = ()
    observed_ids: tuple[str, ...] = ()
    result: dict[str, Any] | None = None

    @property
    def observed_id(self) -> int | None:
        """The observed face an ``observed:<id>`` item names (None: an image item)."""
        if not self.uri.startswith(OBSERVED_PREFIX):
            return None
        try:
            return int(self.uri[len(OBSERVED_PREFIX) :])
        except ValueError:
            return None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seq": self.seq,
            "uri": self.uri,
            "status": self.status.value,
            "attempts": self.attempts,
            "faces": self.n_faces,
        }
        if self.person_id:
            out["person_id"] = self.person_id
        if self.error_name:
            out["error"] = {
                "code": self.error_code,
                "name": self.error_name,
                "message": self.error_message,
            }
        if self.face_ids:
            out["face_ids"] = list(self.face_ids)
        if self.observed_ids:
            out["observed_ids"] = list(self.observed_ids)
        return out


@dataclass(frozen=True)
class Job:
    """A job as stored, with its counters."""

    id: str
    kind: JobKind
    params: dict[str, Any]
    status: JobStatus
    listing_done: bool
    n_items: int
    n_done: int
    n_failed: int
    n_faces: int
    error: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    origin: Origin = Origin.CLI
    stalled: dict[str, Any] | None = None
    """The watchdog's last finding when the job makes no progress (see pipeline.jobs.watchdog)."""
    listing_token: str | None = None
    listing_next_seq: int = 0
    progress_at: datetime | None = None
    """Last time an item of the job was claimed or finished, or its listing moved on."""

    @property
    def n_pending(self) -> int:
        return self.n_items - self.n_done - self.n_failed

    @property
    def elapsed_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or datetime.now(self.started_at.tzinfo)
        return max(0.0, (end - self.started_at).total_seconds())

    @property
    def idle_s(self) -> float:
        """Seconds since the job last made progress (since it was created if never)."""
        last = self.progress_at or self.created_at
        return max(0.0, (datetime.now(last.tzinfo) - last).total_seconds())

    @property
    def images_per_s(self) -> float | None:
        """Throughput over the job's running time (items finished per second)."""
        elapsed = self.elapsed_s
        finished = self.n_done + self.n_failed
        if not elapsed or not finished:
            return None
        return finished / elapsed

    def to_dict(self) -> dict[str, Any]:
        rate = self.images_per_s
        return {
            "id": self.id,
            "kind": self.kind.value,
            "status": self.status.value,
            "params": self.params,
            "items": self.n_items,
            "done": self.n_done,
            "failed": self.n_failed,
            "pending": self.n_pending,
            "faces": self.n_faces,
            "listing_done": self.listing_done,
            "images_per_s": round(rate, 2) if rate is not None else None,
            "error": self.error,
            "origin": self.origin.value,
            "stalled": self.stalled,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


@dataclass(frozen=True)
class ItemOutcome:
    """What processing one item produced, before it is written."""

    item_id: int
    status: ItemStatus
    error: dict[str, Any] | None = None
    content_sha256: str | None = None
    n_faces: int = 0
    face_ids: tuple[str, ...] = ()
    observed_ids: tuple[str, ...] = ()
    result: dict[str, Any] | None = None


@dataclass(frozen=True)
class ChunkResult:
    """The small result a chunk task returns."""

    job_id: str
    processed: int = 0
    done: int = 0
    failed: int = 0
    faces: int = 0
    retry_later: int = 0
    skipped: str | None = None
    job_finished: bool = False
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "processed": self.processed,
            "done": self.done,
            "failed": self.failed,
            "faces": self.faces,
            "retry_later": self.retry_later,
            "skipped": self.skipped,
            "job_finished": self.job_finished,
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
        }
