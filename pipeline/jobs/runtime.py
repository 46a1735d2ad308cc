"""The per-process runtime a worker (or an in-process caller) processes chunks with.

Models and the database pool are heavy: they are created lazily, once per process, and reused
by every chunk that process runs. Celery's prefork pool forks children after importing the app,
so the worker calls :func:`reset_runtime` in each child (``worker_process_init``) before first
use: a pool or ONNX session inherited across ``fork`` is never shared.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from pipeline.config import Settings, get_settings

if TYPE_CHECKING:
    from pipeline.engine import FaceEngine
    from pipeline.jobs.dispatch import Dispatcher
    from pipeline.library import FaceLibrary
    from pipeline.store.db import Database

log = logging.getLogger(__name__)


class Runtime:
    """Settings plus lazily created database, engine, library and dispatcher for this process."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        db: Database | None = None,
        engine: FaceEngine | None = None,
    ) -> None:
        """Use the given database / engine (already built) or build them on first use."""
        self.settings = settings or get_settings()
        self._lock = threading.Lock()
        self._db: Database | None = db
        self._engine: FaceEngine | None = engine
        self._library: FaceLibrary | None = None
        self._dispatcher: Dispatcher | None = None

    @property
    def db(self) -> Database:
        with self._lock:
            if self._db is None:
                from pipeline.store.db import Database

                self._db = Database.from_settings(self.settings)
            return self._db

    @property
    def engine(self) -> FaceEngine:
        """The :class:`pipeline.engine.FaceEngine` (models loaded on first use)."""
        with self._lock:
            if self._engine is None:
                from pipeline.engine import FaceEngine

                self._engine = FaceEngine.from_settings(self.settings)
                log.info("engine loaded: model %s", self._engine.model_id)
            return self._engine

    @property
    def library(self) -> FaceLibrary:
        """The :class:`pipeline.library.FaceLibrary` over this runtime's db and engine."""
        db = self.db
        engine = self.engine
        with self._lock:
            if self._library is None:
                from pipeline.library import FaceLibrary

                self._library = FaceLibrary(db, engine, self.settings)
            return self._library

    @property
    def dispatcher(self) -> Dispatcher:
        """How this process sends work to the queues (``FACEPIPE_DISPATCHER``)."""
        with self._lock:
            if self._dispatcher is None:
                from pipeline.jobs.dispatch import load_dispatcher

                self._dispatcher = load_dispatcher(self.settings)
            return self._dispatcher

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
            self._db = None
            self._library = None


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The process-wide runtime (created on first call)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime()
        return _runtime


def reset_runtime() -> None:
    """Forget the runtime (after ``fork``: the child builds its own pool and sessions)."""
    global _runtime
    with _runtime_lock:
        _runtime = None
