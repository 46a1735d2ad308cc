"""Metrics, logs and events of running processes after real work.

A real ``facepipe api`` server (uvicorn subprocess; alone, then in multiprocess mode) answers
detect calls;
a real Celery worker subprocess (prefork pool, two processes, multiprocess metrics) runs a detect
job over real photos and a GIF, and its watchdog (in the worker's main process) heals a job a
dead worker left; a real ``facepipe metrics serve`` exporter reads Redis and the embedded
Postgres. Each ``/metrics`` is scraped over HTTP and the counters must have moved by exactly
the work done; every scrape is named the Prometheus way (and passes ``promtool check metrics``
where promtool is installed); the Grafana dashboard may only name metrics these scrapes declare.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from pipeline.jobs.model import ItemSpec, ItemStatus, JobKind, JobStatus
from pipeline.jobs.runtime import get_runtime
from pipeline.jobs.submit import submit_job
from pipeline.observability.logging import ContextFilter, json_formatter, log_context
from pipeline.observability.metrics import exposed_names
from pipeline.store import jobs as store
from tests.fixtures.services import free_port, items_of, wait_job
from tests.test_observability_units import (
    convention_problems,
    dashboard_metric_names,
    promtool_problems,
)

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-c", "from pipeline.cli import main; main()"]


# --- helpers ----------------------------------------------------------------------------------


def scrape(url: str) -> str:
    """The exposition at ``url``, checked against the naming rules (and by promtool)."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    assert convention_problems(text) == [], url
    assert promtool_problems(text) in (None, ""), (url, promtool_problems(text))
    return text


def value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels`` (0 when none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except (OSError, urllib.error.HTTPError):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer:\n{log.read_text()[-4000:]}") from None
            time.sleep(0.3)


class Served:
    """A ``facepipe`` subprocess serving HTTP, stopped at the end of the test."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, ready_url: str) -> None:
        self.log = log
        with log.open("wb") as fh:
            self.proc = subprocess.Popen(
                CLI + args,
                env={**os.environ, **env},
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_http(ready_url, self.proc, log)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture()
def serve(pipeline_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def factory(args: list[str], ready_path: str, port: int, **env: str) -> Served:
        served = Served(
            args,
            {**pipeline_env, **env},
            tmp_path / f"{args[0]}-{port}.log",
            f"http://127.0.0.1:{port}{ready_path}",
        )
        started.append(served)
        return served

    try:
        yield factory
    finally:
        for served in started:
            served.stop()


@contextlib.contextmanager
def json_log(logger: str) -> Iterator[io.StringIO]:
    """The JSON lines ``logger`` writes in this process inside the block (INFO and up)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(json_formatter())
    handler.addFilter(ContextFilter())
    log = logging.getLogger(logger)
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield out
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


class EventLog:
    """Celery events captured from the broker (what Flower and ``celery events`` receive)."""

    def __init__(self) -> None:
        from workers.app import app

        self.events: list[dict[str, Any]] = []
        self.conn = app.connection_for_read()
        self.receiver = app.events.Receiver(self.conn, handlers={"*": self.events.append})
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def stop(self) -> None:
        self.receiver.should_stop = True
        self.thread.join(10)
        self.conn.release()


def photos(folder: Path, sources: list[Path]) -> int:
    """Each photo and its mirror image (different content): the number of images written."""
    folder.mkdir(parents=True)
    for src in sources:
        image = cv2.imread(str(src))
        cv2.imwrite(str(folder / f"{src.stem}.jpg"), image)
        cv2.imwrite(str(folder / f"{src.stem}-mirror.jpg"), cv2.flip(image, 1))
    return 2 * len(sources)


def gif_bytes() -> bytes:
    png = cv2.imencode(".png", np.zeros((80, 80, 3), np.uint8))[1].tobytes()
    return b"GIF89a" + png[6:]


def detect(base: str, data: bytes, request_id: str | None = None) -> tuple[int, dict[str, str]]:
    """POST /v1/detect of an inline image: the status and the answer's headers."""
    body = json.dumps({"image": base64.b64encode(data).decode()}).encode()
    headers = {"Content-Type": "application/json"}
    if request_id:
        headers["X-Request-ID"] = request_id
    req = urllib.request.Request(f"{base}/v1/detect", body, headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers)


# --- the tests --------------------------------------------------------------------------------


def test_counters_move_by_the_work_done_and_the_dashboard_names_only_real_metrics(
    clean_database: Any,
    start_worker: Callable[..., Any],
    serve: Callable[..., Served],
    players_jpg: Path,
    gdp_jpg: Path,
    yaoming_jpg: Path,
    tmp_path: Path,
) -> None:
    sources = [players_jpg, gdp_jpg, yaoming_jpg]
    folder = tmp_path / "images"
    n_images = photos(folder, sources)
    (folder / "anim.gif").write_bytes(gif_bytes())

    # --- a worker (prefork, 2 processes) runs a detect job over the images and the GIF -------
    worker_port = free_port()
    multiproc = tmp_path / "prom-multiproc"
    (multiproc).mkdir()
    (multiproc / "counter_1.db").write_bytes(b"stale file of an earlier run")
    worker = start_worker(
        queues=("ingest", "infer"),
        concurrency=2,
        FACEPIPE_CHUNK_SIZE="4",
        FACEPIPE_WORKER_METRICS_PORT=str(worker_port),
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
        FACEPIPE_LOG_FORMAT="json",
        # no redelivery of a slow chunk (the tests' default is 6 s): each chunk runs once
        FACEPIPE_VISIBILITY_TIMEOUT_S="300",
    )
    worker_url = f"http://127.0.0.1:{worker_port}/metrics"
    assert not (multiproc / "counter_1.db").exists()  # the main process emptied the directory
    before = scrape(worker_url)
    assert value(before, "facepipe_images_processed_total") == 0

    events = EventLog()
    time.sleep(1.0)  # the event subscription is in place before the first task is sent
    try:
        # submitted as the API would inside a request: the request id travels with the tasks
        with log_context(request_id="obs-request"), json_log("pipeline.jobs.submit") as out:
            submitted = submit_job(JobKind.DETECT, str(folder))
        job = wait_job(submitted.id)
    finally:
        time.sleep(1.0)
        events.stop()
    assert job.status == JobStatus.DONE and (job.n_done, job.n_failed) == (n_images, 1)
    # the submission's line (in the API's process, under its request): both ids as fields
    (submit_line,) = json_lines(out.getvalue())
    assert (submit_line["job_id"], submit_line["request_id"]) == (job.id, "obs-request")
    gif = next(i for i in items_of(job.id) if i.uri.endswith("anim.gif"))
    assert gif.error_name == "ILLEGAL_FORMAT"

    text = scrape(worker_url)
    assert value(text, "facepipe_images_processed_total", kind="detect") == n_images
    assert value(text, "facepipe_faces_processed_total", kind="detect") == job.n_faces > 0
    assert value(text, "facepipe_items_failed_total", kind="detect", code="ILLEGAL_FORMAT") == 1
    assert value(text, "facepipe_items_failed_total") == 1
    for stage in ("decode", "detect", "embed"):
        assert value(text, "facepipe_stage_duration_seconds_count", stage=stage) == n_images
    assert value(text, "facepipe_stage_duration_seconds_count", stage="write") == n_images + 1
    n_chunks = -(-(n_images + 1) // 4)
    assert value(text, "facepipe_chunk_duration_seconds_count", kind="detect") == n_chunks
    assert (
        value(text, "facepipe_tasks_total", task="facepipe.ingest.list_source", outcome="done") == 1
    )
    assert value(text, "facepipe_watchdog_resent_total") == 0  # declared, for the watchdog
    # both pool processes wrote values, and the main process added them up
    assert len(list(multiproc.glob("counter_*.db"))) >= 2

    # logs: one JSON object per line, the failed item's line carrying every id
    lines = json_lines(worker.log_text())
    failed = [r for r in lines if r.get("message", "").startswith("item failed")]
    assert len(failed) == 1
    rec = failed[0]
    assert rec["item_id"] == str(gif.id) and rec["job_id"] == job.id
    assert rec["task"] == "facepipe.infer.process_chunk" and rec["task_id"]
    assert rec["request_id"] == "obs-request"  # API -> list_source -> process_chunk
    lo, hi = (int(x) for x in rec["chunk"].split("-"))
    assert lo <= gif.seq <= hi
    assert any(r.get("job_id") == job.id and r["logger"] == "pipeline.jobs.chunks" for r in lines)

    # events: task names, and arguments by name, as Flower shows them
    received = [e for e in events.events if e["type"] == "task-received"]
    chunks = [e for e in received if e["name"] == "facepipe.infer.process_chunk"]
    assert len(chunks) == n_chunks
    assert (
        value(text, "facepipe_tasks_total", task="facepipe.infer.process_chunk", outcome="done")
        == n_chunks
    )
    assert all(
        e["args"] == "()" and f"'job_id': '{job.id}'" in e["kwargs"] and "'seq_lo': " in e["kwargs"]
        for e in chunks
    )
    assert {e["type"] for e in events.events} >= {
        "task-sent",
        "task-started",
        "task-succeeded",
        "worker-heartbeat",
    }

    # --- the API: N detect calls, one GIF, one unknown route ----------------------------------
    # one process, no multiprocess directory: its scrape declares every metric family, even
    # those no call moved yet (the dashboard check below); the multiprocess API is the next test
    api_port = free_port()
    api = serve(
        ["api", "--port", str(api_port)],
        "/healthz",
        api_port,
        FACEPIPE_LOG_FORMAT="json",
        FACEPIPE_API_AUTH="false",  # loopback trial
    )
    base = f"http://127.0.0.1:{api_port}"
    answers = [detect(base, p.read_bytes(), f"obs-{i}") for i, p in enumerate(sources)]
    assert [status for status, _ in answers] == [200] * len(sources)
    assert [h["x-request-id"] for _, h in answers] == [f"obs-{i}" for i in range(len(sources))]
    gif_status, _ = detect(base, gif_bytes())
    assert gif_status >= 400
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"{base}/no/such/route", timeout=10)

    api_text = scrape(f"{base}/metrics")
    route = {"route": "/v1/detect", "protocol": "facepipe", "method": "POST"}
    assert value(api_text, "facepipe_http_requests_total", **route, status="200") == len(sources)
    assert value(api_text, "facepipe_http_requests_total", **route, status=str(gif_status)) == 1
    assert value(api_text, "facepipe_http_requests_total", route="unmatched", status="404") == 1
    assert (
        value(api_text, "facepipe_http_request_duration_seconds_count", **route) == len(sources) + 1
    )
    assert value(api_text, "facepipe_api_model_slot_wait_seconds_count") == len(sources) + 1
    assert value(api_text, "facepipe_http_requests_in_flight") == 1  # this scrape
    api_lines = json_lines(api.log.read_text())
    access = [r for r in api_lines if r.get("request_id") == "obs-1"]
    assert access and access[-1]["route"] == "/v1/detect" and access[-1]["status"] == 200

    # --- the exporter -----------------------------------------------------------------------
    exporter_port = free_port()
    serve(["metrics", "serve", "--port", str(exporter_port)], "/metrics", exporter_port)
    exported = scrape(f"http://127.0.0.1:{exporter_port}/metrics")
    assert value(exported, "facepipe_jobs", kind="detect", status="done") == 1
    assert value(exported, "facepipe_jobs", status="running") == 0
    assert value(exported, "facepipe_queue_messages", queue="infer") == 0
    assert value(exported, "facepipe_exporter_up", source="broker") == 1
    assert value(exported, "facepipe_exporter_up", source="database") == 1

    # --- the dashboard names only metrics that these scrapes declare --------------------------
    declared = exposed_names(text) | exposed_names(api_text) | exposed_names(exported)
    missing = dashboard_metric_names() - declared
    assert not missing, f"dashboard names metrics no process exposes: {sorted(missing)}"


def test_exporter_reports_queues_stalled_jobs_and_waiting_items(
    clean_database: Any,
    pipeline_redis: redis.Redis,
    serve: Callable[..., Served],
) -> None:
    """Messages waiting (no worker), a job whose items wait: the gauges say so."""
    import workers.tasks  # noqa: F401  (registers the tasks whose arguments get named)

    rt = get_runtime()
    enqueue_chunk = rt.dispatcher.send_chunk
    with rt.db.transaction() as conn:
        job, _ = store.create_job(conn, JobKind.ENROLL, {"groups": ["g"]})
        store.add_items(conn, job.id, [ItemSpec(f"/nowhere/{i}.jpg", "p") for i in range(5)], 0)
    with log_context(request_id="req-7"):
        enqueue_chunk(job.id, 0, 2)
    enqueue_chunk(job.id, 3, 4)
    # the messages as they wait on the broker: arguments by name for Flower, the request id
    first, second = (json.loads(m) for m in pipeline_redis.lrange("infer", 0, -1)[::-1])
    assert first["headers"]["task"] == "facepipe.infer.process_chunk"
    assert first["headers"]["kwargsrepr"] == repr({"job_id": job.id, "seq_lo": 0, "seq_hi": 2})
    assert first["headers"]["argsrepr"] == "()"
    assert first["headers"]["facepipe_request_id"] == "req-7"
    assert "facepipe_request_id" not in second["headers"]
    time.sleep(1.2)

    port = free_port()
    serve(
        ["metrics", "serve", "--port", str(port)],
        "/metrics",
        port,
        FACEPIPE_METRICS_STALLED_AFTER_S="1",
    )
    text = scrape(f"http://127.0.0.1:{port}/metrics")
    assert value(text, "facepipe_queue_messages", queue="infer") == 2
    assert value(text, "facepipe_queue_messages", queue="ingest") == 0
    assert value(text, "facepipe_jobs", kind="enroll", status="pending") == 1
    assert value(text, "facepipe_jobs_stalled", kind="enroll") == 1
    assert value(text, "facepipe_oldest_pending_item_age_seconds") >= 1.0
    with rt.db.connection() as conn:
        assert all(i.status == ItemStatus.PENDING for i in store.list_items(conn, job.id))

    # the broker goes away: the exporter says so instead of failing the scrape
    broken = free_port()
    serve(
        ["metrics", "serve", "--port", str(broken)],
        "/metrics",
        broken,
        FACEPIPE_BROKER_URL="redis://127.0.0.1:1/0",
    )
    down = scrape(f"http://127.0.0.1:{broken}/metrics")
    assert value(down, "facepipe_exporter_up", source="broker") == 0
    assert value(down, "facepipe_exporter_up", source="database") == 1
    assert value(down, "facepipe_jobs", kind="enroll", status="pending") == 1


def test_the_watchdog_counts_in_the_workers_scrape(
    clean_database: Any,
    start_worker: Callable[..., Any],
    players_jpg: Path,
    gdp_jpg: Path,
    tmp_path: Path,
) -> None:
    """A worker died holding a chunk (its leases run out), one of whose items was re-sent as
    often as allowed already. The watchdog, which runs in the next worker's main process (not a
    pool process, and after that process emptied the multiprocess directory), expires the
    leases, fails the worn-out item with ITEM_LOST and re-sends the rest as one chunk: the
    worker's /metrics says so, exactly."""
    folder = tmp_path / "images"
    n_images = photos(folder, [players_jpg, gdp_jpg])
    specs = [ItemSpec(str(p)) for p in sorted(folder.iterdir())]
    specs.append(ItemSpec(str(folder / "worn-out.jpg")))
    max_resends = 2
    rt = get_runtime()
    with rt.db.transaction() as conn:
        job, _ = store.create_job(conn, JobKind.DETECT, {"groups": []})
        store.add_items(conn, job.id, specs, 0)
        store.mark_listing_done(conn, job.id)
        for _ in range(max_resends):  # the last item: re-sent as often as allowed
            store.count_resend(conn, job.id, [n_images])
        # a worker claims everything, and dies: its leases (10 ms) run out
        claimed = store.claim_chunk(conn, job.id, 0, n_images, "dead-worker", 0.01)
    assert len(claimed) == n_images + 1
    time.sleep(0.1)

    port = free_port()
    start_worker(
        queues=("infer",),
        concurrency=1,
        FACEPIPE_WORKER_METRICS_PORT=str(port),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prom-multiproc"),
        FACEPIPE_WATCHDOG_INTERVAL_S="1",
        FACEPIPE_WATCHDOG_MAX_RESENDS=str(max_resends),
        FACEPIPE_VISIBILITY_TIMEOUT_S="300",
    )
    done = wait_job(job.id)
    assert done.status == JobStatus.DONE and (done.n_done, done.n_failed) == (n_images, 1)
    assert items_of(job.id)[-1].error_name == "ITEM_LOST"

    text = scrape(f"http://127.0.0.1:{port}/metrics")
    assert value(text, "facepipe_leases_expired_total") == n_images + 1
    assert value(text, "facepipe_watchdog_resent_total") == 1  # one chunk (chunk size 8)
    assert value(text, "facepipe_items_lost_total") == 1
    assert value(text, "facepipe_items_failed_total", kind="detect", code="ITEM_LOST") == 1
    assert value(text, "facepipe_images_processed_total", kind="detect") == n_images
    assert value(text, "facepipe_chunk_duration_seconds_count", kind="detect") == 1


def test_the_api_in_multiprocess_mode_counts_from_zero_each_start(
    pipeline_env: dict[str, str],
    serve: Callable[..., Served],
    yaoming_jpg: Path,
    tmp_path: Path,
) -> None:
    """``facepipe api`` with PROMETHEUS_MULTIPROC_DIR (as ``--workers N`` needs): it empties the
    directory of an earlier run before serving, and its requests (recorded after its metrics
    opened their files) are all on /metrics, exactly."""
    multiproc = tmp_path / "prom-api"
    multiproc.mkdir()
    (multiproc / "counter_1.db").write_bytes(b"stale file of an earlier run")
    port = free_port()
    api = serve(
        ["api", "--port", str(port)],
        "/healthz",
        port,
        FACEPIPE_API_AUTH="false",  # loopback trial
        FACEPIPE_LOG_FORMAT="json",
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
    )
    assert not (multiproc / "counter_1.db").exists()
    base = f"http://127.0.0.1:{port}"
    before = scrape(f"{base}/metrics")
    assert value(before, "facepipe_http_requests_total", route="/v1/detect") == 0
    assert [detect(base, yaoming_jpg.read_bytes())[0] for _ in range(2)] == [200, 200]
    text = scrape(f"{base}/metrics")
    route = {"route": "/v1/detect", "protocol": "facepipe", "method": "POST"}
    assert value(text, "facepipe_http_requests_total", **route, status="200") == 2
    assert value(text, "facepipe_http_request_duration_seconds_count", **route) == 2
    assert value(text, "facepipe_api_model_slot_wait_seconds_count") == 2
    assert value(text, "facepipe_http_requests_total", route="/metrics") == 1  # `before`
    assert value(text, "facepipe_http_requests_in_flight") == 1  # this scrape
    # access lines: each call's, with its request id; none at INFO for the scrapes
    access = [r for r in json_lines(api.log.read_text()) if r["logger"] == "facepipe.access"]
    assert [r["route"] for r in access] == ["/v1/detect"] * 2
    assert all(len(r["request_id"]) == 32 for r in access)  # made up: the caller sent none
