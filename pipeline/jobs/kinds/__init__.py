"""What each job kind does with a chunk, one module a kind: an analysis step (no transaction
open) and a write step (in the chunk's transaction), behind :class:`KindSteps`.

* :mod:`~pipeline.jobs.kinds.enroll`: faces join their persons under the admission rules;
* :mod:`~pipeline.jobs.kinds.reidentify`: faces are observed and identified against groups;
* :mod:`~pipeline.jobs.kinds.detect`: faces are observed (no search).

:mod:`~pipeline.jobs.kinds.outcomes` holds the item outcomes all kinds and the chunk run
(:mod:`pipeline.jobs.chunks`) share.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from psycopg import Connection

from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.kinds.analysis import Prepared
from pipeline.jobs.kinds.detect import Detect
from pipeline.jobs.kinds.enroll import Enroll
from pipeline.jobs.kinds.outcomes import failed
from pipeline.jobs.kinds.reidentify import Reidentify
from pipeline.jobs.model import Item, ItemOutcome, Job, JobKind
from pipeline.jobs.runtime import Runtime


class KindSteps(Protocol):
    """The two steps of a job kind over one chunk."""

    def analyse(self, rt: Runtime, job: Job, items: Sequence[Item]) -> Prepared:
        """Read and analyse the items (the engine, stored vectors); no transaction is open."""
        ...

    def write(
        self, rt: Runtime, conn: Connection, job: Job, items: Sequence[Item], prepared: Prepared
    ) -> dict[int, ItemOutcome]:
        """Apply the kind's rules and write its effects in ``conn``'s transaction; an outcome
        for every item, by item id."""
        ...


class _NoChunks:
    """A kind processed elsewhere (identify-batch, reindex, reembed): its items fail."""

    def analyse(self, rt: Runtime, job: Job, items: Sequence[Item]) -> Prepared:
        return Prepared({}, {})

    def write(
        self, rt: Runtime, conn: Connection, job: Job, items: Sequence[Item], prepared: Prepared
    ) -> dict[int, ItemOutcome]:
        err = FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER, f"job kind {job.kind.value} has no chunk processing"
        )
        return {it.id: failed(it, err) for it in items}


_STEPS: dict[JobKind, KindSteps] = {
    JobKind.ENROLL: Enroll(),
    JobKind.REIDENTIFY: Reidentify(),
    JobKind.DETECT: Detect(),
}


def steps_for(kind: JobKind) -> KindSteps:
    """The steps of ``kind``'s chunks."""
    return _STEPS.get(kind, _NoChunks())


__all__ = ["KindSteps", "Prepared", "steps_for"]
