"""Fixtures of the chaos tests: services of their own that a test may kill and restart.

* ``chaos_redis``: a ``redis-server`` on a free port, **without persistence** (what a
  careless deployment runs), restartable: a restart loses every queued message.
* ``chaos_postgres``: an embedded Postgres + pgvector of its own, stoppable and restartable
  (the session's database is never touched).
* ``chaos_env``: the pipeline environment moved onto those services, with the production
  defaults for everything the self-healing depends on (visibility timeout, leases, watchdog),
  applied to this process (settings, runtime, Celery app) and handed to the workers.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from pipeline.store.db import Database, embedded_server, stop_embedded_server
from tests.fixtures.db import private_pgdata
from tests.fixtures.services import apply_env, free_port, restore_env


@dataclass
class ChaosRedis:
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("chaos redis did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # like a crash: nothing is saved (there is no persistence anyway)
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture()
def chaos_redis(tmp_path: Path) -> Iterator[ChaosRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = ChaosRedis(free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class ChaosPostgres:
    pgdata: Path
    url: str

    def stop(self) -> None:
        assert stop_embedded_server(self.pgdata)

    def start(self) -> None:
        server = embedded_server(self.pgdata)
        assert server.get_uri() == self.url  # same socket, same URL: clients just reconnect


@pytest.fixture()
def chaos_postgres() -> Iterator[ChaosPostgres]:
    pgdata = private_pgdata()
    server = embedded_server(pgdata)
    db = Database.from_url(server.get_uri())  # applies the migrations
    db.close()
    try:
        yield ChaosPostgres(pgdata, server.get_uri())
    finally:
        stop_embedded_server(pgdata)
        shutil.rmtree(pgdata.parent, ignore_errors=True)


# The production defaults the self-healing rests on (pipeline_env shortens some for the other
# pipeline tests; the chaos tests measure recovery with the real ones).
PRODUCTION_HEALING = {
    "FACEPIPE_VISIBILITY_TIMEOUT_S": "3600",
    "FACEPIPE_LEASE_S": "30",
    "FACEPIPE_WATCHDOG_INTERVAL_S": "30",
    "FACEPIPE_WATCHDOG_IDLE_S": "60",
}


@pytest.fixture()
def chaos_env(pipeline_env: dict[str, str], chaos_redis: ChaosRedis) -> Iterator[dict[str, str]]:
    """pipeline_env on the chaos Redis, with the production healing defaults."""
    env = {
        **PRODUCTION_HEALING,
        "FACEPIPE_BROKER_URL": f"{chaos_redis.url}/0",
        "FACEPIPE_RESULT_BACKEND": f"{chaos_redis.url}/1",
    }
    saved = apply_env(env)
    try:
        yield {**pipeline_env, **env}
    finally:
        restore_env(saved)
