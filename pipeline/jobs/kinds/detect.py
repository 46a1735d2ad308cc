"""Detection: every face becomes an observed face (no search)."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import Connection

from pipeline.jobs.kinds.analysis import Prepared
from pipeline.jobs.kinds.observe import ObservingKind, item_outcomes, record
from pipeline.jobs.model import Item, ItemOutcome, Job
from pipeline.jobs.runtime import Runtime


class Detect(ObservingKind):
    """The detect kind's steps."""

    def write(
        self, rt: Runtime, conn: Connection, job: Job, items: Sequence[Item], prepared: Prepared
    ) -> dict[int, ItemOutcome]:
        seen = record(rt, conn, job, items, prepared)
        return item_outcomes(items, seen, {}, None)
