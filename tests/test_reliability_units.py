"""Self-healing and hang-proofing, piece by piece: the watchdog's rule, leases, special files,
decode caps, and submitting while the broker is away. The whole-system version (real kills and
restarts) is tests/chaos/."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.chunks import process_chunk
from pipeline.jobs.dispatch import BrokerState
from pipeline.jobs.listing import list_step
from pipeline.jobs.model import ItemStatus, JobKind, JobStatus
from pipeline.jobs.runtime import Runtime
from pipeline.jobs.watchdog import JobHealth, decide, describe_stall, run_watchdog
from pipeline.sources import decode_image, read_source_bytes
from pipeline.store import jobs as store
from pipeline.store.db import Database

SETTINGS = Settings(watchdog_idle_s=60)


def health(**kw: object) -> JobHealth:
    base: dict[str, object] = {
        "job_id": "j",
        "listing_done": True,
        "pending": 5,
        "live_running": 0,
        "idle_s": 0.0,
    }
    return JobHealth(**{**base, **kw})  # type: ignore[arg-type]


def test_watchdog_rule() -> None:
    quiet = BrokerState(queued=0, lost=False)
    busy = BrokerState(queued=40, lost=False)
    lost = BrokerState(queued=0, lost=True)
    # a job that just started is left alone, whatever the queue says
    assert decide(health(idle_s=5), quiet, SETTINGS) is None
    # the broker lost its data: everything pending is re-sent, the listing resumed
    d = decide(health(idle_s=1, listing_done=False), lost, SETTINGS)
    assert d and d.resend_all_pending and d.resume_listing
    # nothing queued, nothing running, idle: re-send
    d = decide(health(idle_s=61), quiet, SETTINGS)
    assert d and d.resend_all_pending and not d.resume_listing
    # a live run still works on it: leave it
    assert decide(health(idle_s=61, live_running=3), quiet, SETTINGS) is None
    # other work queued ahead: a note, no re-send (re-sending a backlog would double it)
    d = decide(health(idle_s=61), busy, SETTINGS)
    assert d and d.note_only and "40 messages" in d.reason
    # an unknown broker (not Redis): never re-send on a guess
    d = decide(health(idle_s=600), BrokerState(queued=None, lost=False), SETTINGS)
    assert d and d.note_only
    # expired leases: those items, at once
    d = decide(health(idle_s=1, expired_seqs=(3, 4)), busy, SETTINGS)
    assert d and d.seqs == (3, 4) and not d.resend_all_pending
    # finished work and a finished listing: nothing to do even if idle
    assert decide(health(pending=0, idle_s=999), quiet, SETTINGS) is None


def test_stall_description() -> None:
    note = {"reason": "r", "action": "re-sent 2 items in 1 chunks", "at": "t"}
    assert describe_stall(note, 0, SETTINGS) == (
        "stalled: r - watchdog re-sent 2 items in 1 chunks at t"
    )
    assert describe_stall(None, 10, SETTINGS) is None
    assert "is a worker running" in (describe_stall(None, 200, SETTINGS) or "")


@pytest.fixture()
def runtime(clean_database: Database, engine: object) -> Runtime:
    settings = Settings(
        database_url=clean_database.url, chunk_size=2, watchdog_idle_s=0, watchdog_max_resends=2
    )
    return Runtime(settings, db=clean_database, engine=engine)


def _queued_chunks(client: redis.Redis) -> list[list[object]]:
    """The args of every chunk message waiting in the broker's ``infer`` queue."""
    out = []
    for raw in client.lrange("infer", 0, -1):
        message = json.loads(raw)
        args, _, _ = json.loads(base64.b64decode(message["body"]))
        out.append(args)
    return out


def test_watchdog_resends_lost_work_then_gives_up_with_item_lost(
    runtime: Runtime,
    pipeline_env: dict[str, str],
    pipeline_redis: redis.Redis,
    players_jpg: Path,
    gdp_jpg: Path,
) -> None:
    """Against the real broker (Redis) through the real Celery dispatcher."""
    send = runtime.dispatcher
    assert send.broker_state().lost  # an empty broker: never seen (or restarted) -> lost
    assert run_watchdog(runtime, send).broker_lost  # nothing to re-send; the loss is handled
    assert not send.broker_state().lost  # the canary is back: the loss is reported once

    with runtime.db.transaction() as conn:
        job, _ = store.create_job(conn, JobKind.DETECT, {"source": str(players_jpg)})
    list_step(runtime, job, lambda lo, hi: None)
    with runtime.db.transaction() as conn:  # a run that died: its lease has run out
        store.claim_chunk(conn, job.id, 0, 0, "dead", 0)
    report = run_watchdog(runtime, send)
    assert report.leases_expired == 1
    assert _queued_chunks(pipeline_redis) == [[job.id, 0, 0]]
    pipeline_redis.delete("infer")
    assert process_chunk(runtime, job.id, 0, 0).done == 1  # the re-sent chunk, run here
    with runtime.db.connection() as conn:
        assert store.get_job(conn, job.id).status is JobStatus.DONE

    # an item whose chunk message is lost every time: re-sent twice, then failed with a code
    with runtime.db.transaction() as conn:
        lost_job, _ = store.create_job(conn, JobKind.DETECT, {"source": str(gdp_jpg)})
    list_step(runtime, lost_job, lambda lo, hi: None)  # its chunk message never arrives
    for _ in range(2):
        run_watchdog(runtime, send)
        assert _queued_chunks(pipeline_redis) == [[lost_job.id, 0, 0]]
        pipeline_redis.delete("infer")  # ... and is lost again
    with runtime.db.connection() as conn:
        stalled = store.get_job(conn, lost_job.id)
    assert stalled.stalled and "nothing queued or running" in stalled.stalled["reason"]
    assert run_watchdog(runtime, send).items_lost == 1
    with runtime.db.connection() as conn:
        final = store.get_job(conn, lost_job.id)
        (item,) = store.list_items(conn, lost_job.id)
    assert final.status is JobStatus.DONE and final.n_failed == 1
    assert (item.status, item.error_name, item.error_code) == (
        ItemStatus.FAILED,
        "ITEM_LOST",
        -1910,
    )

    # a broker restarted without persistence: its canary is gone, work is re-sent at once
    with runtime.db.transaction() as conn:
        fresh, _ = store.create_job(conn, JobKind.DETECT, {"source": str(gdp_jpg)})
    list_step(runtime, fresh, lambda lo, hi: None)
    pipeline_redis.flushdb()
    report = run_watchdog(runtime, send)
    assert report.broker_lost and _queued_chunks(pipeline_redis) == [[fresh.id, 0, 0]]


def test_watchdog_heals_an_identify_batch_as_one_task_never_as_items(
    runtime: Runtime, pipeline_env: dict[str, str], pipeline_redis: redis.Redis
) -> None:
    """An identify-batch run has no items and its listing is never "done" until it ends. The
    item rule took it for a stalled job and sent it a listing, which failed the running job
    (EMPTY_PARAMETER) or listed its probes as items that then failed. Now: a live run (its
    lease renewed) is left alone; a run nothing holds is re-sent as its own task."""
    send = runtime.dispatcher
    with runtime.db.transaction() as conn:
        live, _ = store.create_job(conn, JobKind.IDENTIFY_BATCH, {"groups": ["g"]})
        store.set_job_fields(conn, live.id, status="running")
        assert store.claim_job_lease(conn, live.id, "live-run", 600)
        lost, _ = store.create_job(
            conn,
            JobKind.IDENTIFY_BATCH,
            {"groups": ["g"], "probe_job": None, "since": "2026-01-01T00:00:00+00:00",
             "sources": [], "top_n": 3, "export": None, "engine": "faiss",
             "false_match_rate": 0.01},
        )  # fmt: skip
    report = run_watchdog(runtime, send)  # a brand-new broker: lost, re-send what nobody holds
    assert live.id not in report.jobs and report.job_tasks_sent == 1
    assert pipeline_redis.llen("ingest") == 0 and pipeline_redis.llen("infer") == 0
    (raw,) = pipeline_redis.lrange("search", 0, -1)
    message = json.loads(raw)
    _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert message["headers"]["task"] == "facepipe.search.identify_batch"
    assert kwargs == {
        "groups": ["g"],
        "job": None,
        "since": "2026-01-01T00:00:00+00:00",
        "sources": None,
        "top_n": 3,
        "export": None,
        "run_job_id": lost.id,
        "engine": "faiss",  # what the run was asked for, not the planner's choice on re-send
        "match_threshold": None,
        "false_match_rate": 0.01,
    }
    with runtime.db.connection() as conn:
        after = store.get_job(conn, live.id)
        assert store.list_items(conn, live.id) == []
        assert "re-sent the job's task" in (store.get_job(conn, lost.id).stalled or {})["action"]
    assert after.status is JobStatus.RUNNING and after.error is None and after.stalled is None


def test_chunk_messages_carry_time_limits_sized_from_their_items(
    runtime: Runtime, pipeline_env: dict[str, str], pipeline_redis: redis.Redis
) -> None:
    """Soft limit items x FACEPIPE_TASK_ITEM_BUDGET_S + 60 s, hard limit 30 s more, in the
    message the broker holds (what the worker applies); listings get their own."""
    send = runtime.dispatcher
    budget = runtime.settings.task_item_budget_s
    send.send_chunk("job-a", 0, 0)
    send.send_chunk("job-b", 0, 31)
    send.send_listing("job-c")
    limits = {}
    for queue in ("infer", "ingest"):
        for raw in pipeline_redis.lrange(queue, 0, -1):
            message = json.loads(raw)
            args, _, _ = json.loads(base64.b64decode(message["body"]))  # argsrepr varies
            limits[args[0]] = message["headers"]["timelimit"]
    assert limits["job-a"] == [budget + 90, budget + 60]
    assert limits["job-b"] == [32 * budget + 90, 32 * budget + 60]
    assert limits["job-c"][0] > limits["job-c"][1] > 0


def test_a_run_cut_by_its_soft_time_limit_gives_its_items_back(
    runtime: Runtime, players_jpg: Path, tmp_path: Path
) -> None:
    """Celery's soft time limit is a signal whose handler raises SoftTimeLimitExceeded in the
    task; here the same signal mechanism (SIGALRM) cuts a real run in the middle."""
    from celery.exceptions import SoftTimeLimitExceeded

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(12):
        (folder / f"{i:02d}.jpg").write_bytes(players_jpg.read_bytes())
    with runtime.db.transaction() as conn:
        job, _ = store.create_job(conn, JobKind.DETECT, {"source": str(folder), "chunk_size": 12})
    list_step(runtime, job, lambda lo, hi: None)

    def cut(signum: int, frame: object) -> None:
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, cut)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(SoftTimeLimitExceeded):
            process_chunk(runtime, job.id, 0, 11)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    with runtime.db.connection() as conn:
        items = store.list_items(conn, job.id)
    # every item back to pending (none left running), the attempt counted (it took too long)
    assert {(i.status, i.attempts) for i in items} == {(ItemStatus.PENDING, 1)}
    assert process_chunk(runtime, job.id, 0, 11).done == 12  # and the next run does them


# --- nothing hangs on special files -------------------------------------------------------------


def test_fifo_and_symlink_loop_fail_alone_and_fast(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(loop)
    dangling = tmp_path / "gone.jpg"
    dangling.symlink_to(tmp_path / "missing.jpg")
    start = time.monotonic()
    codes = {}
    for path in (fifo, loop, dangling, tmp_path):
        with pytest.raises(FacepipeError) as info:
            read_source_bytes(str(path), Settings())
        codes[path.name] = info.value.code
    assert time.monotonic() - start < 1.0  # the FIFO has no writer: a plain open would block
    assert codes == {
        "pipe.jpg": ErrorCode.ILLEGAL_PARAMETER,
        "loop.jpg": ErrorCode.SOURCE_NOT_FOUND,
        "gone.jpg": ErrorCode.SOURCE_NOT_FOUND,
        tmp_path.name: ErrorCode.ILLEGAL_PARAMETER,
    }


def test_poison_folder_job_ends_with_every_item_coded(
    runtime: Runtime, players_jpg: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "poison"
    (folder / "ann").mkdir(parents=True)
    (folder / "ann" / "good.jpg").write_bytes(players_jpg.read_bytes())
    os.mkfifo(folder / "ann" / "fifo.jpg")
    (folder / "ann" / "loop.jpg").symlink_to(folder / "ann" / "loop.jpg")
    (folder / "ann" / "cycle").symlink_to(folder)  # a folder loop: never followed
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "ann" / "socket.jpg"))
    with runtime.db.transaction() as conn:
        job, _ = store.create_job(conn, JobKind.DETECT, {"source": str(folder)})
    chunks: list[tuple[int, int]] = []
    list_step(runtime, job, lambda lo, hi: chunks.append((lo, hi)))
    for lo, hi in chunks:
        process_chunk(runtime, job.id, lo, hi)
    sock.close()
    with runtime.db.connection() as conn:
        job = store.get_job(conn, job.id)
        items = {Path(i.uri).name: i for i in store.list_items(conn, job.id)}
    assert job.status is JobStatus.DONE
    assert {n: (i.status.value, i.error_name) for n, i in items.items()} == {
        "good.jpg": ("done", None),
        "fifo.jpg": ("failed", "ILLEGAL_PARAMETER"),
        "loop.jpg": ("failed", "SOURCE_NOT_FOUND"),
        "socket.jpg": ("failed", "SOURCE_NOT_FOUND"),
    }


# --- decode memory is bounded by format -----------------------------------------------------------


def test_full_size_only_formats_have_a_lower_pixel_cap() -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (1200, 1000, 3), dtype=np.uint8)
    settings = Settings(max_full_decode_pixels=1_000_000, max_image_pixels=2_000_000)
    for ext in (".png", ".bmp", ".webp"):
        data = cv2.imencode(ext, pixels)[1].tobytes()
        with pytest.raises(FacepipeError) as info:
            decode_image(data, f"x{ext}", settings)
        assert info.value.code is ErrorCode.IMAGE_TOO_LARGE
        assert "FACEPIPE_MAX_FULL_DECODE_PIXELS" in info.value.message
    jpeg = cv2.imencode(".jpg", pixels)[1].tobytes()
    assert decode_image(jpeg, "x.jpg", settings).width == 1000  # JPEG: its own cap


# --- submitting while the broker is away --------------------------------------------------------


def test_submit_while_the_broker_is_down_answers_at_once_and_leaves_no_job(
    runtime: Runtime, pipeline_env: dict[str, str], players_jpg: Path
) -> None:
    from pipeline.jobs.submit import submit_job
    from workers.app import app, configure

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    down = runtime.settings.model_copy(
        update={"broker_url": f"redis://127.0.0.1:{dead}/0", "submit_timeout_s": 2.0}
    )
    configure(app, down)
    try:
        start = time.monotonic()
        with pytest.raises(FacepipeError) as info:
            submit_job(JobKind.DETECT, str(players_jpg), rt=Runtime(down, db=runtime.db))
        elapsed = time.monotonic() - start
    finally:
        configure(
            app,
            runtime.settings.model_copy(
                update={
                    "broker_url": pipeline_env["FACEPIPE_BROKER_URL"],
                    "result_backend": pipeline_env["FACEPIPE_RESULT_BACKEND"],
                }
            ),
        )
    assert info.value.code is ErrorCode.BROKER_UNAVAILABLE and info.value.spec.code == -1906
    assert elapsed < 10, elapsed
    with runtime.db.connection() as conn:
        assert store.list_jobs(conn) == []  # no orphan job row


def test_submit_to_a_frozen_broker_answers_within_the_submit_timeout(
    runtime: Runtime, pipeline_env: dict[str, str], players_jpg: Path, tmp_path: Path
) -> None:
    """A broker that accepts connections and never answers (a frozen Redis; a connection left
    half-open by a failover looks the same): kombu and the result backend would wait on it for
    ever. The submit answers BROKER_UNAVAILABLE within FACEPIPE_SUBMIT_TIMEOUT_S all the same,
    and leaves no job behind."""
    from pipeline.jobs.submit import submit_job
    from tests.fixtures.services import free_port
    from workers.app import app, configure

    port = free_port()
    frozen = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=port).ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        frozen.send_signal(signal.SIGSTOP)
        down = runtime.settings.model_copy(
            update={
                "broker_url": f"redis://127.0.0.1:{port}/0",
                "result_backend": f"redis://127.0.0.1:{port}/1",
                "submit_timeout_s": 2.0,
            }
        )
        configure(app, down)
        try:
            for _ in range(2):  # the second finds the first send still stuck
                start = time.monotonic()
                with pytest.raises(FacepipeError) as info:
                    submit_job(JobKind.DETECT, str(players_jpg), rt=Runtime(down, db=runtime.db))
                elapsed = time.monotonic() - start
                assert info.value.code is ErrorCode.BROKER_UNAVAILABLE
                assert elapsed < 4, elapsed
        finally:
            configure(
                app,
                runtime.settings.model_copy(
                    update={
                        "broker_url": pipeline_env["FACEPIPE_BROKER_URL"],
                        "result_backend": pipeline_env["FACEPIPE_RESULT_BACKEND"],
                    }
                ),
            )
    finally:
        frozen.send_signal(signal.SIGCONT)
        frozen.kill()
        frozen.wait(10)
    with runtime.db.connection() as conn:
        assert store.list_jobs(conn) == []  # no orphan job row


def test_the_redis_the_project_starts_keeps_its_queues_across_a_crash(tmp_path: Path) -> None:
    """scripts/ensure-redis (what `make demo` and `make test` start) runs Redis with an
    append-only file: a queued message survives kill -9 and a restart by the same script."""
    from tests.fixtures.services import free_port

    port = free_port()
    env = {
        **os.environ,
        "FACEPIPE_REDIS_PORT": str(port),
        "FACEPIPE_REDIS_DIR": str(tmp_path / "redis"),
    }
    script = Path(__file__).resolve().parents[1] / "scripts" / "ensure-redis"
    subprocess.run([str(script)], env=env, check=True, timeout=60)
    client = redis.Redis(port=port)
    try:
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        client.lpush("infer", b"a chunk message")
        time.sleep(1.5)  # appendfsync everysec: on disk within a second
        os.kill(int(client.info("server")["process_id"]), signal.SIGKILL)
        time.sleep(0.5)
        subprocess.run([str(script)], env=env, check=True, timeout=60)
        assert client.lrange("infer", 0, -1) == [b"a chunk message"]
    finally:
        with contextlib.suppress(redis.RedisError):
            client.shutdown(nosave=True)
