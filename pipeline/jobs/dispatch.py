"""How the library hands work to the queues, without knowing Celery.

``pipeline/`` never imports ``workers/``: job submission and the watchdog talk to a
:class:`Dispatcher`, which ``workers.dispatch`` implements with Celery's ``send_task`` by name.
The task names are defined here, once: they are the contract between the two sides (the beat
schedule and the worker's task registry use these constants too).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class TaskName(StrEnum):
    """Every facepipe Celery task, by queue (``facepipe.<queue>.<what>``)."""

    LIST_SOURCE = "facepipe.ingest.list_source"
    EXPORT = "facepipe.ingest.export"
    PROCESS_CHUNK = "facepipe.infer.process_chunk"
    REEMBED = "facepipe.infer.reembed"
    REINDEX = "facepipe.index.reindex"
    IDENTIFY_BATCH = "facepipe.search.identify_batch"
    NIGHTLY_REIDENTIFY = "facepipe.schedule.nightly_reidentify"
    SCHEDULED_REINDEX = "facepipe.schedule.reindex"
    CLEANUP = "facepipe.schedule.cleanup"
    WATCHDOG = "facepipe.schedule.watchdog"


@dataclass(frozen=True)
class BrokerState:
    """What the broker can tell the watchdog.

    ``queued``: messages waiting or reserved by a worker in every facepipe queue (None: this
    broker cannot say). ``lost``: the broker lost its data since the last look (a restart
    without persistence): every message it held is gone.
    """

    queued: int | None
    lost: bool


class Dispatcher(Protocol):
    """Sends facepipe's work to the queues."""

    def send_listing(self, job_id: str, token: str | None = None, next_seq: int = 0) -> None:
        """List (the rest of) a job's source, from ``token`` / ``next_seq``."""

    def send_chunk(
        self, job_id: str, seq_lo: int, seq_hi: int, *, countdown: float | None = None
    ) -> None:
        """Process the items ``seq_lo..seq_hi`` of a job (after ``countdown`` seconds)."""

    def send_export(self, job_id: str, dest: str) -> None:
        """Export a finished job's results to ``dest``."""

    def send_reembed(self, job_id: str) -> None:
        """Run (or resume) a reembed job."""

    def broker_state(self) -> BrokerState:
        """How many messages the queues hold, and whether the broker lost them since the last
        :meth:`broker_state_handled`."""

    def broker_state_handled(self) -> None:
        """Everything a lost broker needed is re-sent: stop reporting the loss."""
