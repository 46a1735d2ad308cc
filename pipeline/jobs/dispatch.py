"""How the library hands work to the queues, without knowing Celery.

``pipeline/`` never imports ``workers/``: job submission and the watchdog talk to a
:class:`Dispatcher`, which ``workers.dispatch`` implements with Celery's ``send_task`` by name.
The task names are defined here, once: they are the contract between the two sides (the beat
schedule and the worker's task registry use these constants too).

Which implementation serves a process is configuration (``FACEPIPE_DISPATCHER``, default
``celery``), found among the installed ``facepipe.dispatchers`` entry points: the dependency
points from ``workers/`` to ``pipeline/``, never back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.errors import ErrorCode, FacepipeError

if TYPE_CHECKING:
    from pipeline.config import Settings

DISPATCHER_ENTRY_POINTS = "facepipe.dispatchers"


QUEUES: tuple[str, ...] = ("ingest", "infer", "index", "search")
"""The queues facepipe routes tasks to: a task named ``facepipe.<queue>.<what>`` goes to
``<queue>`` (the scheduled ones to ``ingest``)."""


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


class SentTask(Protocol):
    """A task handed to the queues, whose result can be waited for."""

    @property
    def id(self) -> str:
        """The task's id."""

    def result(self, timeout_s: float | None = None) -> dict[str, Any]:
        """Wait for the task's result; a task that failed raises its FacepipeError here."""


class Dispatcher(Protocol):
    """Sends facepipe's work to the queues."""

    def send(self, name: TaskName, kwargs: Mapping[str, Any]) -> SentTask:
        """Send one task by name with keyword arguments (reindex, identify-batch, reembed)."""

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


def load_dispatcher(settings: Settings) -> Dispatcher:
    """The dispatcher named by ``settings.dispatcher``, from the installed entry points."""
    found = entry_points(group=DISPATCHER_ENTRY_POINTS, name=settings.dispatcher)
    if not found:
        known = sorted(ep.name for ep in entry_points(group=DISPATCHER_ENTRY_POINTS))
        raise FacepipeError(
            ErrorCode.BROKER_UNAVAILABLE,
            f"no dispatcher {settings.dispatcher!r} is installed (installed: {known or 'none'}); "
            "install facepipe with its workers package, or set FACEPIPE_DISPATCHER",
        )
    factory: Callable[[Settings], Dispatcher] = next(iter(found)).load()
    return factory(settings)
