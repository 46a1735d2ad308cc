"""Detection: every face becomes an observed face (no search)."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import Connection

from pipeline.jobs.kinds import observe
from pipeline.jobs.kinds.analysis import Prepared, analyse_items
from pipeline.jobs.model import Item, ItemOutcome, Job
from pipeline.jobs.runtime import Runtime
from pipeline.types import DetectMode


class Detect:
    """The detect kind's steps."""

    def analyse(self, rt: Runtime, job: Job, items: Sequence[Item]) -> Prepared:
        return analyse_items(rt, job, items, DetectMode.ALL)

    def write(
        self, rt: Runtime, conn: Connection, job: Job, items: Sequence[Item], prepared: Prepared
    ) -> dict[int, ItemOutcome]:
        seen = observe.record(rt, conn, job, items, prepared)
        return observe.item_outcomes(items, seen, {}, None)
