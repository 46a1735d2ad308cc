"""A run's hold on its work: renewed in the background while the run works.

Two kinds of hold: a chunk run holds its items (``job_items.lease_*``), and a job run as one
long task (a reembed) holds the job row itself (``jobs.lease_*``,
:func:`pipeline.store.jobs.claim_job_lease`).

The lease is what tells a dead worker from a slow one. A run renews its items' leases every
third of ``lease_s``; when the process dies (kill -9, out of memory, a lost machine) the
renewals stop, the leases run out, and the watchdog (:mod:`pipeline.jobs.watchdog`) puts the
items back and re-sends them, within about ``lease_s + watchdog_interval_s`` rather than the
broker's visibility timeout (an hour by default).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

from psycopg import Connection

from pipeline.store import jobs as store
from pipeline.store.db import Database

log = logging.getLogger(__name__)


def new_owner() -> str:
    """A fresh lease owner id for one chunk run."""
    return uuid.uuid4().hex


Renew = Callable[[Connection, str, float], int]
"""Extends ``owner``'s leases by ``lease_s`` seconds; how many it still holds."""


class LeaseKeeper:
    """Context manager renewing ``owner``'s leases every ``lease_s / 3`` until it exits
    (item leases by default; ``renew=store.renew_job_lease`` for a job's own lease).

    A failed renewal (the database is away) is logged and tried again at the next tick: if the
    outage outlasts the lease, the watchdog re-sends the items once the database is back, and
    this run's write finds them no longer its own and writes nothing (no double effect).
    """

    def __init__(
        self, db: Database, owner: str, lease_s: float, renew: Renew = store.renew_leases
    ) -> None:
        self.db = db
        self.owner = owner
        self.lease_s = lease_s
        self.renew = renew
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{owner[:8]}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        interval = max(0.5, self.lease_s / 3.0)
        while not self._stop.wait(interval):
            try:
                with self.db.transaction() as conn:
                    self.renew(conn, self.owner, self.lease_s)
            except Exception as exc:  # any failure: keep trying until the run ends
                log.warning("renewing leases of %s failed: %s", self.owner[:8], exc)


@contextmanager
def holding_job_lease(db: Database, job_id: str, owner: str, lease_s: float) -> Iterator[None]:
    """Renew the job row's own lease (a job run as one task: reembed, identify-batch) while the
    block runs, and give it back when it ends. A run that dies gives nothing back: the lease
    runs out and the watchdog re-sends the job's task."""
    try:
        with LeaseKeeper(db, owner, lease_s, renew=store.renew_job_lease):
            yield
    finally:
        try:
            with db.transaction() as conn:
                store.release_job_lease(conn, job_id, owner)
        except Exception as exc:  # the lease then runs out on its own
            log.warning("releasing the lease of job %s failed: %s", job_id, exc)
