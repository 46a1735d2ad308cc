"""Chaos: real worker processes killed, a real Redis restarted without persistence, a real
Postgres stopped and started, a hostile HTTP server, a poison folder. Each job must end on its
own, every item done or failed with a code, no face twice, no counter drift, within a bounded
time; the recovery times are printed (``-s``) and recorded as test properties.

The healing settings are the production defaults (tests/chaos/conftest.py): visibility timeout
3600 s, lease 30 s, watchdog every 30 s, idle threshold 60 s. Nothing is typed: no
``jobs resume``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis

from pipeline.jobs.model import ItemStatus, Job, JobKind, JobStatus
from pipeline.jobs.runtime import get_runtime
from pipeline.jobs.submit import submit_job
from pipeline.store import jobs as store
from tests.chaos.conftest import ChaosPostgres, ChaosRedis
from tests.fixtures.services import apply_env, items_of, restore_env, wait_job

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

RECOVERY_GOAL_S = 120.0
"""The issue's goals: a killed worker's items done within this long of a new worker starting;
a job whose queued messages a Redis restart lost done within this long of the restart. Every
lost piece of work is re-sent within it too."""
FINISH_BOUND_S = 300.0
"""A job finishes within this long of its re-send (processing time on a busy 2-core machine)."""


def _folder(root: Path, photo: Path, n: int) -> Path:
    """``n`` distinct images (the photo flipped and shifted), so no two share a hash."""
    root.mkdir(parents=True, exist_ok=True)
    image = cv2.imread(str(photo))
    for i in range(n):
        shifted = np.roll(image, i * 3, axis=1)
        cv2.imwrite(str(root / f"{i:03d}.jpg"), shifted if i % 2 else shifted[:, ::-1])
    return root


def _running_items(job_id: str) -> int:
    with get_runtime().db.connection() as conn:
        row = conn.execute(
            "SELECT count(*) FROM job_items WHERE job_id = %s AND status = 'running'", (job_id,)
        ).fetchone()
    return int(row[0]) if row else 0


def _wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _resends(job_id: str) -> int:
    """How often the watchdog re-sent items of the job, in all. (Each re-send counts on its
    items; the job's note would say so too, but the next claim clears it, often before a poll
    could see it.)"""
    with get_runtime().db.connection() as conn:
        row = conn.execute(
            "SELECT coalesce(sum(resends), 0) FROM job_items WHERE job_id = %s", (job_id,)
        ).fetchone()
    return int(row[0]) if row else 0


def _finished_items(job_id: str, seqs: list[int]) -> int:
    with get_runtime().db.connection() as conn:
        row = conn.execute(
            "SELECT count(*) FROM job_items WHERE job_id = %s AND seq = ANY(%s) "
            "AND status IN ('done', 'failed')",
            (job_id, seqs),
        ).fetchone()
    return int(row[0]) if row else 0


def _running_seqs(job_id: str) -> list[int]:
    with get_runtime().db.connection() as conn:
        rows = conn.execute(
            "SELECT seq FROM job_items WHERE job_id = %s AND status = 'running' ORDER BY seq",
            (job_id,),
        ).fetchall()
    return [int(r[0]) for r in rows]


@dataclass(frozen=True)
class Healed:
    job: Job
    resent_s: float
    done_s: float
    watched_done_s: float | None = None


def _heal_and_finish(
    job_id: str,
    t0: float,
    what: str,
    record_property: Callable[[str, object], None],
    watch: list[int] | None = None,
) -> Healed:
    """Wait for the watchdog's re-send, then (with ``watch``) for those items to finish, then
    for the job's end; record and check all."""
    before = _resends(job_id)
    _wait_for(lambda: _resends(job_id) > before, RECOVERY_GOAL_S, f"{what}: a re-send")
    healed_s = time.monotonic() - t0
    watched_s = None
    if watch:
        _wait_for(
            lambda: _finished_items(job_id, watch) == len(watch),
            FINISH_BOUND_S,
            f"{what}: the lost items to finish",
        )
        watched_s = time.monotonic() - t0
        record_property(f"{what}_items_done_s", round(watched_s, 1))
    done = wait_job(job_id, timeout_s=FINISH_BOUND_S)
    done_s = time.monotonic() - t0
    record_property(f"{what}_resent_s", round(healed_s, 1))
    record_property(f"{what}_done_s", round(done_s, 1))
    items = "" if watched_s is None else f", its {len(watch or [])} lost items {watched_s:.1f} s"
    print(f"\n{what}: work re-sent after {healed_s:.1f} s{items}, job done after {done_s:.1f} s")
    _assert_accounted(done)
    return Healed(done, healed_s, done_s, watched_s)


def _assert_accounted(job: Job) -> None:
    """Every item done or failed with a code; counters equal the items; no face twice."""
    assert job.status is JobStatus.DONE, job.to_dict()
    items = items_of(job.id)
    assert len(items) == job.n_items
    assert all(i.status in (ItemStatus.DONE, ItemStatus.FAILED) for i in items)
    assert all(i.error_code is not None for i in items if i.status is ItemStatus.FAILED)
    assert job.n_done == sum(i.status is ItemStatus.DONE for i in items)
    assert job.n_failed == sum(i.status is ItemStatus.FAILED for i in items)
    assert job.n_faces == sum(i.n_faces for i in items if i.status is ItemStatus.DONE)
    observed = [o for i in items for o in i.observed_ids]
    assert len(observed) == len(set(observed)) == job.n_faces
    with get_runtime().db.connection() as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (content_sha256, face_index)) FROM observed_faces "
            "WHERE observed_id = ANY(%s)",
            ([int(o) for o in observed],),
        ).fetchone()
    assert row is not None and row[0] == row[1] == job.n_faces


def test_worker_killed_mid_chunk_heals_without_anyone(
    chaos_env: dict[str, str],
    chaos_redis: ChaosRedis,
    start_worker: Callable[..., Any],
    players_jpg: Path,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    folder = _folder(tmp_path / "photos", players_jpg, 24)
    first = start_worker(**_worker_env(chaos_env))
    _wait_for_first_watchdog_pass(chaos_redis)
    job = submit_job(JobKind.DETECT, str(folder), chunk_size=8)
    _wait_for(lambda: _running_items(job.id) > 0, 120, "a chunk to start")
    time.sleep(0.5)  # well inside the chunk (8 images take seconds)
    first.kill()  # SIGKILL to the whole process group: the worker and its pool child
    first.proc.wait(10)
    lost = _running_seqs(job.id)
    assert lost  # left running by the dead worker
    start_worker(**_worker_env(chaos_env))  # returns once the new worker is ready
    healed = _heal_and_finish(job.id, time.monotonic(), "worker_kill", record_property, lost)
    assert healed.job.n_done == 24
    # the goal: the killed worker's items done within 2 minutes of a new worker
    assert healed.watched_done_s is not None and healed.watched_done_s <= RECOVERY_GOAL_S


def test_redis_restarted_without_persistence_heals_without_anyone(
    chaos_env: dict[str, str],
    chaos_redis: ChaosRedis,
    start_worker: Callable[..., Any],
    players_jpg: Path,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    folder = _folder(tmp_path / "photos", players_jpg, 24)
    start_worker(**_worker_env(chaos_env))
    _wait_for_first_watchdog_pass(chaos_redis)
    job = submit_job(JobKind.DETECT, str(folder), chunk_size=2)
    broker = redis.Redis(port=chaos_redis.port, db=0)
    _wait_for(
        lambda: _done(job.id) >= 2 and broker.llen("infer") >= 2,
        180,
        "the first chunk to finish with more chunks waiting in the broker",
    )
    chaos_redis.restart()  # every queued chunk message is gone
    healed = _heal_and_finish(job.id, time.monotonic(), "redis_restart", record_property)
    assert healed.job.n_done == 24
    assert healed.done_s <= RECOVERY_GOAL_S  # the goal: done within 2 minutes


def _wait_for_first_watchdog_pass(chaos_redis: ChaosRedis) -> None:
    """The worker's first watchdog pass finds a brand-new broker (no canary) and handles it;
    submitting after it keeps that first pass out of the test's timeline."""
    from workers.dispatch import CANARY_KEY

    broker = redis.Redis(port=chaos_redis.port, db=0)
    _wait_for(lambda: bool(broker.exists(CANARY_KEY)), 60, "the first watchdog pass")


def test_postgres_away_for_minutes_heals_when_it_returns(
    chaos_env: dict[str, str],
    chaos_postgres: ChaosPostgres,
    chaos_redis: ChaosRedis,
    start_worker: Callable[..., Any],
    players_jpg: Path,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    # FACEPIPE_CHAOS_PG_DOWN_S=180 measures the three minutes. In the suite the
    # outage is shorter, and the workers get one task retry instead of five, so that every
    # chunk task surely gives up during the outage (each attempt waits 10 s for a connection):
    # the job can then only finish through the watchdog.
    down_s = float(os.environ.get("FACEPIPE_CHAOS_PG_DOWN_S", "75"))
    saved = apply_env({"FACEPIPE_DATABASE_URL": chaos_postgres.url})
    try:
        env = {
            **_worker_env(chaos_env),
            "FACEPIPE_DATABASE_URL": chaos_postgres.url,
            "FACEPIPE_TASK_MAX_RETRIES": "1",
        }
        folder = _folder(tmp_path / "photos", players_jpg, 24)
        start_worker(**env)
        _wait_for_first_watchdog_pass(chaos_redis)
        job = submit_job(JobKind.DETECT, str(folder), chunk_size=4)
        _wait_for(lambda: _done(job.id) >= 4, 180, "the first chunk to finish")
        get_runtime().close()  # this process's pool would only log reconnect attempts
        chaos_postgres.stop()
        time.sleep(down_s)
        chaos_postgres.start()
        print(f"\npostgres was away {down_s:.0f} s")
        healed = _heal_and_finish(job.id, time.monotonic(), "postgres_outage", record_property)
        assert healed.job.n_done == 24
    finally:
        restore_env(saved)


def _done(job_id: str) -> int:
    with get_runtime().db.connection() as conn:
        return store.get_job(conn, job_id).n_done


def _worker_env(chaos_env: dict[str, str]) -> dict[str, str]:
    keys = (
        "FACEPIPE_BROKER_URL",
        "FACEPIPE_RESULT_BACKEND",
        "FACEPIPE_VISIBILITY_TIMEOUT_S",
        "FACEPIPE_LEASE_S",
        "FACEPIPE_WATCHDOG_INTERVAL_S",
        "FACEPIPE_WATCHDOG_IDLE_S",
    )
    return {k: chaos_env[k] for k in keys}


# --- hostile input through real workers -----------------------------------------------------------


class _Hostile(BaseHTTPRequestHandler):
    photo = b""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._route()

    def _route(self) -> None:
        if self.path == "/good.jpg":
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.photo)))
            self.end_headers()
            self.wfile.write(self.photo)
        elif self.path == "/hang.jpg":  # accepts, then never answers
            time.sleep(60)
        elif self.path == "/drip-headers.jpg":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            for _ in range(300):
                self.wfile.write(b"a")
                self.wfile.flush()
                time.sleep(0.2)
        elif self.path == "/drip-body.jpg":
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.photo)))
            self.end_headers()
            for i in range(len(self.photo)):
                self.wfile.write(self.photo[i : i + 1])
                self.wfile.flush()
                time.sleep(0.2)
        elif self.path == "/to-loopback.jpg":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.2:1/x.jpg")
            self.end_headers()
        elif self.path == "/huge.jpg":
            self.send_response(200)
            self.send_header("Content-Length", str(1 << 30))
            self.end_headers()
        else:
            self.send_response(404)
            self.end_headers()


@pytest.fixture()
def hostile_server(players_jpg: Path) -> Iterator[str]:
    _Hostile.photo = players_jpg.read_bytes()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _png_bomb(side: int) -> bytes:
    """A valid, tiny PNG whose header claims ``side`` x ``side`` grey pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = zlib.compress(b"\x00" * (side + 1) * side, 9)
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def test_hostile_sources_end_with_codes_and_bounded_time(
    pipeline_env: dict[str, str],
    start_worker: Callable[..., Any],
    hostile_server: str,
    players_jpg: Path,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    folder = tmp_path / "poison" / "ann"
    folder.mkdir(parents=True)
    (folder / "good.jpg").write_bytes(players_jpg.read_bytes())
    os.mkfifo(folder / "fifo.jpg")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    (folder / "bomb.png").write_bytes(_png_bomb(12_000))  # 144 MP in ~200 kB
    big = np.full((6000, 7000, 3), 200, np.uint8)  # 42 MP: above the full-decode cap
    cv2.circle(big, (3500, 3000), 900, (40, 90, 160), -1)
    cv2.imwrite(str(folder / "big.png"), big, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    (folder / "empty.jpg").write_bytes(b"")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "socket.jpg"))
    urls = tmp_path / "urls.txt"
    urls.write_text(
        "\n".join(
            f"{hostile_server}/{name}"
            for name in (
                "good.jpg",
                "hang.jpg",
                "drip-headers.jpg",
                "drip-body.jpg",
                "to-loopback.jpg",
                "huge.jpg",
            )
        )
        + "\n"
    )
    start_worker(FACEPIPE_DOWNLOAD_TIMEOUT_S="3")
    started = time.monotonic()
    folder_job = submit_job(JobKind.DETECT, str(tmp_path / "poison"))
    url_job = submit_job(JobKind.DETECT, str(urls))
    jobs = [wait_job(folder_job.id, 240), wait_job(url_job.id, 240)]
    elapsed = time.monotonic() - started
    sock.close()
    record_property("hostile_jobs_s", round(elapsed, 1))
    print(f"\nhostile folder + hostile URLs: both jobs done in {elapsed:.1f} s")
    for job in jobs:
        _assert_accounted(job)
    by_name = {
        Path(i.uri).name: (i.status.value, i.error_name) for job in jobs for i in items_of(job.id)
    }
    assert by_name == {
        "good.jpg": ("done", None),  # twice: the folder's and the server's (same name)
        "fifo.jpg": ("failed", "ILLEGAL_PARAMETER"),
        "loop.jpg": ("failed", "SOURCE_NOT_FOUND"),
        "socket.jpg": ("failed", "SOURCE_NOT_FOUND"),
        "bomb.png": ("failed", "IMAGE_TOO_LARGE"),
        "big.png": ("failed", "IMAGE_TOO_LARGE"),
        "empty.jpg": ("failed", "EMPTY_IMAGE"),
        "hang.jpg": ("failed", "DOWNLOAD_FAILED"),
        "drip-headers.jpg": ("failed", "DOWNLOAD_FAILED"),
        "drip-body.jpg": ("failed", "DOWNLOAD_FAILED"),
        "to-loopback.jpg": ("failed", "URL_FORBIDDEN"),
        "huge.jpg": ("failed", "IMAGE_TOO_LARGE"),
    }
    assert elapsed < 180
