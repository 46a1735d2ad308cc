"""What one API process holds: settings, engine, database, library (the jobs' Runtime) and the
model slots that bound concurrent inference.

ONNX Runtime already uses every core for one call, so more than :data:`MODEL_SLOTS` concurrent
model calls would only thrash. A call waits at most ``api_slot_wait_s`` for a slot, then is
answered SERVICE_BUSY (503): a saturated server says so instead of queueing callers without end.
Downloads never hold a slot, and run on threads of their own (see :mod:`pipeline.api.images`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.runtime import Runtime
from pipeline.observability.metrics import MODEL_SLOT_WAIT

if TYPE_CHECKING:
    from pipeline.api.images import Fetched, ImageSource

MODEL_SLOTS = 2
"""Model-running calls executed at once per API process."""

DOWNLOAD_THREADS = 24
"""Caller images fetched at once per API process, on threads of their own: a slow URL holds its
thread for up to FACEPIPE_DOWNLOAD_TIMEOUT_S, and in anyio's shared pool (40 threads) enough of
them would leave model calls (holding a slot) and /healthz waiting for a thread. Fetches beyond
this wait their turn without a thread."""

T = TypeVar("T")


@dataclass(frozen=True)
class Saturation:
    """How busy the model slots are right now (reported by /healthz)."""

    slots: int
    in_use: int
    waiting: int

    def to_dict(self) -> dict[str, int]:
        return {"slots": self.slots, "in_use": self.in_use, "waiting": self.waiting}


class ApiState(Runtime):
    """The jobs' :class:`Runtime` plus the API's model slots. A database handed in stays the
    caller's to close."""

    def __init__(
        self, settings: Settings, engine: Any | None = None, database: Any | None = None
    ) -> None:
        super().__init__(settings, db=database, engine=engine)
        self._owns_db = database is None
        self.slots = anyio.CapacityLimiter(MODEL_SLOTS)
        self.downloads = anyio.CapacityLimiter(DOWNLOAD_THREADS)
        self._waiting = 0
        # Keys, tokens and rate limits (pipeline.api.auth); built on first use.
        self.auth: Any | None = None

    def close(self) -> None:
        if self._owns_db:
            super().close()

    def saturation(self) -> Saturation:
        return Saturation(MODEL_SLOTS, int(self.slots.borrowed_tokens), self._waiting)

    async def with_model(self, fn: Callable[[], T]) -> T:
        """Run model work (decode, detect, embed, then the database) in a worker thread once a
        model slot is free; SERVICE_BUSY when none frees up within ``api_slot_wait_s``."""
        self._waiting += 1
        waited = time.perf_counter()
        try:
            with anyio.fail_after(self.settings.api_slot_wait_s):
                await self.slots.acquire()
        except TimeoutError as exc:
            raise FacepipeError(
                ErrorCode.SERVICE_BUSY,
                f"every model slot stayed busy for {self.settings.api_slot_wait_s:g} s; "
                "retry later",
            ) from exc
        finally:
            self._waiting -= 1
            # the waits that ran out too: they are the ones that say the API is saturated
            MODEL_SLOT_WAIT.observe(time.perf_counter() - waited)
        try:
            # Not cancellable: a caller who hangs up still lets its thread finish, and the slot
            # is only released once the models are free again.
            return await anyio.to_thread.run_sync(fn)
        finally:
            self.slots.release()

    @staticmethod
    async def blocking(fn: Callable[[], T]) -> T:
        """Run I/O-only work (the database) in a worker thread, never behind a slot."""
        return await anyio.to_thread.run_sync(fn)

    async def fetch(self, source: ImageSource) -> Fetched:
        """One request image's bytes (see :meth:`fetch_all`)."""
        return (await self.fetch_all([source]))[0]

    async def fetch_all(self, sources: Sequence[ImageSource]) -> list[Fetched]:
        """Read a call's images (:func:`pipeline.api.images.fetch_all`), never behind a slot:
        on a download thread when one must be fetched over the network (never in the threads
        other work needs), else (inline images, uploads) on any worker thread at once."""
        from pipeline.api.images import fetch_all, is_remote

        remote = any(is_remote(s) for s in sources)
        return await anyio.to_thread.run_sync(
            lambda: fetch_all(sources, self.settings), limiter=self.downloads if remote else None
        )
