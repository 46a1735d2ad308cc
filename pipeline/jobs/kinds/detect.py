"""Detection: every face becomes an observed face (no search)."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import Connection

from pipeline.jobs.kinds import observe
from pipeline.jobs.kinds.analysis import Prepared
from pipeline.jobs.model import Item, ItemOutcome, Job
from pipeline.jobs.runtime import Runtime


class Detect(observe.ObservingKind):
    """The detect kind's steps."""

    def write(
        self, rt: Runtime, conn: Connection, job: Job, items: Sequence[Item], prepared: Prepared
    ) -> dict[int, ItemOutcome]:
        seen = observe.record(rt, conn, job, items, prepared)
        return observe.item_outcomes(items, seen, {}, None)
