"""Every Prometheus metric facepipe's processes record: one home for the names, and the small
calls the API, the workers and the search code make to move them.

Names follow the Prometheus conventions: ``facepipe_`` prefix, base units (seconds), ``_total``
for counters, histograms for durations. Labels have bounded values only (route templates,
catalogue error names, job kinds, stage names), never ids or caller-given strings.

The jobs-and-queues gauges (queue depths, jobs by status, stalled jobs...) are not here: they
are read from Redis and Postgres when scraped, by :mod:`pipeline.observability.exporter`.

Several processes (Celery prefork pool processes, ``uvicorn --workers N``) are aggregated with
prometheus-client's multiprocess mode: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory
*before* the process starts, and :func:`scrape_registry` reads every process's values from it.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections import Counter as Counter_
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.parser import text_string_to_metric_families

from pipeline.observability.logging import log_context

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_generation = 0
"""Bumped each time this process empties the multiprocess directory (see
:func:`clear_multiprocess_dir`)."""


def _process_identifier() -> str:
    # Names this process's value files (``counter_<id>.db``). prometheus-client opens them when
    # the metrics below are created, at import; a process that then empties the directory (the
    # worker's main process, ``facepipe api``) would go on writing to unlinked files, and every
    # value it records (the watchdog's counters, one API process's requests) would never reach
    # a scrape. A new id makes prometheus-client open new files, as it does after a fork.
    pid = os.getpid()
    return f"{pid}-{_generation}" if _generation else str(pid)


if os.environ.get(MULTIPROC_ENV):
    # Both must be in place before the first metric is created (below): prometheus-client
    # opens its files then, and fails the import when the directory does not exist (as in a
    # fresh container, whose compose file only names it).
    Path(os.environ[MULTIPROC_ENV]).mkdir(parents=True, exist_ok=True)
    values.ValueClass = values.MultiProcessValue(_process_identifier)  # type: ignore[no-untyped-call]

# Bucket bounds in seconds. HTTP calls run from a few ms (library reads) to seconds (a large
# photo on CPU); per-image stages from sub-ms (align) to seconds (a 20 MP decode); chunks of
# 32 images from under a second (GPU) to minutes (CPU, slow downloads).
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CHUNK_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
SEARCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0)

# --- HTTP API (recorded by pipeline.observability.http) --------------------------------------
HTTP_REQUESTS = Counter(
    "facepipe_http_requests_total",
    "HTTP requests answered, by route template, API protocol, method and status code.",
    ["route", "protocol", "method", "status"],
)
HTTP_DURATION = Histogram(
    "facepipe_http_request_duration_seconds",
    "Time from receiving an HTTP request to the end of its answer.",
    ["route", "protocol", "method"],
    buckets=HTTP_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge(
    "facepipe_http_requests_in_flight",
    "HTTP requests being handled now.",
    multiprocess_mode="livesum",
)
MODEL_SLOT_WAIT = Histogram(
    "facepipe_api_model_slot_wait_seconds",
    "Time an API call waited for one of the API's model slots (ENGINE_CONCURRENCY).",
    buckets=HTTP_BUCKETS,
)

# --- workers (recorded by pipeline.jobs.chunks and workers/) ----------------------------------
IMAGES_PROCESSED = Counter(
    "facepipe_images_processed_total",
    "Job items (images, or stored observed faces) processed successfully (status done).",
    ["kind"],
)
FACES_PROCESSED = Counter(
    "facepipe_faces_processed_total",
    "Faces enrolled or observed by successfully processed job items.",
    ["kind"],
)
ITEMS_FAILED = Counter(
    "facepipe_items_failed_total",
    "Job items that ended failed, by catalogue error name (pipeline/errors.py).",
    ["kind", "code"],
)
ITEMS_RETRIED = Counter(
    "facepipe_item_retries_total",
    "Job items put back to pending after a transient error, to be tried again.",
    ["kind", "code"],
)
STAGE_DURATION = Histogram(
    "facepipe_stage_duration_seconds",
    "Time per image in each processing stage: decode (read + decode), detect, landmarks, "
    "align, embed, attributes (each image's share of its batch), write (its share of the "
    "chunk's database transaction).",
    ["stage"],
    buckets=STAGE_BUCKETS,
)
CHUNK_DURATION = Histogram(
    "facepipe_chunk_duration_seconds",
    "Time to process one chunk (claim, analyse, write), by job kind.",
    ["kind"],
    buckets=CHUNK_BUCKETS,
)
TASKS = Counter(
    "facepipe_tasks_total",
    "Celery task runs by task name and outcome (done, failed, retry, crashed).",
    ["task", "outcome"],
)
TASK_DURATION = Histogram(
    "facepipe_task_duration_seconds",
    "Time one Celery task run took, by task name.",
    ["task"],
    buckets=CHUNK_BUCKETS,
)
# Recorded by the jobs watchdog (pipeline.jobs.watchdog).
WATCHDOG_RESENT = Counter(
    "facepipe_watchdog_resent_total",
    "Chunks the watchdog sent again (expired leases, a broker that lost its queues, work no "
    "queue held).",
)
LEASES_EXPIRED = Counter(
    "facepipe_leases_expired_total",
    "Item leases found expired (their worker stopped renewing them).",
)
ITEMS_LOST = Counter(
    "facepipe_items_lost_total",
    "Items failed with ITEM_LOST after the watchdog re-sent them too often.",
)

# --- search (recorded by pipeline.library and pipeline.index.search) --------------------------
IDENTIFY_DURATION = Histogram(
    "facepipe_identify_duration_seconds",
    "Time of one identify search call (a batch of probes), by engine: pgvector_exact, "
    "pgvector_hnsw or faiss.",
    ["engine"],
    buckets=SEARCH_BUCKETS,
)
IDENTIFY_PROBES = Counter(
    "facepipe_identify_probes_total",
    "Probe faces searched, by engine (divide facepipe_identify_duration_seconds_sum by it for "
    "the time per probe).",
    ["engine"],
)

STAGES = ("decode", "detect", "landmarks", "align", "embed", "attributes")
"""The engine's per-image stages (``ImageAnalysis.timings_ms`` keys), in pipeline order."""


# --- recording ----------------------------------------------------------------------------------


@functools.cache
def _stage(stage: str) -> Any:
    # a label child resolved once: .labels() costs as much as the observation itself
    return STAGE_DURATION.labels(stage=stage)


def observe_stage(stage: str, seconds: float) -> None:
    """One image's time in ``stage``."""
    _stage(stage).observe(max(0.0, seconds))


def observe_image_timings(timings_ms: Mapping[str, float]) -> None:
    """An analysed image's stage times, as the engine reports them (milliseconds)."""
    for stage, ms in timings_ms.items():
        if stage in STAGES:
            _stage(stage).observe(max(0.0, ms / 1000.0))


def count_processed(kind: str, faces: int, images: int = 1) -> None:
    IMAGES_PROCESSED.labels(kind=kind).inc(images)
    FACES_PROCESSED.labels(kind=kind).inc(faces)


def count_failure(kind: str, code: str, n: int = 1) -> None:
    ITEMS_FAILED.labels(kind=kind, code=code).inc(n)


def count_item_retry(kind: str, code: str, n: int = 1) -> None:
    ITEMS_RETRIED.labels(kind=kind, code=code).inc(n)


def observe_chunk(kind: str, seconds: float, *, items: int, write_seconds: float) -> None:
    """A finished chunk: its duration, and each written item's share of the write."""
    CHUNK_DURATION.labels(kind=kind).observe(max(0.0, seconds))
    if items > 0:
        write, share = _stage("write"), max(0.0, write_seconds) / items
        for _ in range(items):
            write.observe(share)


def record_chunk(
    kind: str,
    outcomes: Iterable[Any],
    analysed: Iterable[Any],
    timings_ms: Mapping[str, float],
) -> None:
    """Everything one processed chunk moves: per-image stage times of the ``analysed`` engine
    outcomes (work done, even when a duplicate delivery then writes nothing), and for each
    written ``ItemOutcome``: processed (done), failed (by error name) or retried later
    (pending again); the chunk's duration and each written item's share of the write.

    Failed items are also logged one line each, with their ``item_id`` bound.
    """
    for outcome in analysed:
        analysis = getattr(outcome, "analysis", None)
        if analysis is not None:
            observe_image_timings(analysis.timings_ms)
    written = done = faces = 0
    failed: Counter_[str] = Counter_()
    retried: Counter_[str] = Counter_()
    for item in outcomes:
        written += 1
        status = str(getattr(item.status, "value", item.status))
        code = str((item.error or {}).get("name", "INTERNAL"))
        if status == "done":
            done += 1
            faces += int(item.n_faces)
        elif status == "failed":
            failed[code] += 1
            with log_context(item_id=item.item_id):
                log.info("item failed: %s %s", code, (item.error or {}).get("message", ""))
        elif status == "pending":
            retried[code] += 1
    if done:
        count_processed(kind, faces, done)
    for code, n in failed.items():
        count_failure(kind, code, n)
    for code, n in retried.items():
        count_item_retry(kind, code, n)
    observe_chunk(
        kind,
        timings_ms.get("total", 0.0) / 1000.0,
        items=written,
        write_seconds=timings_ms.get("write", 0.0) / 1000.0,
    )


def observe_task(task: str, outcome: str, seconds: float) -> None:
    TASKS.labels(task=task, outcome=outcome).inc()
    TASK_DURATION.labels(task=task).observe(max(0.0, seconds))


@contextmanager
def time_identify(engine: str, probes: int) -> Iterator[None]:
    """Time a search call of ``probes`` probes on ``engine`` (recorded when it succeeds)."""
    started = time.perf_counter()
    yield
    IDENTIFY_DURATION.labels(engine=engine).observe(time.perf_counter() - started)
    IDENTIFY_PROBES.labels(engine=engine).inc(probes)


# --- exposition ---------------------------------------------------------------------------------


def multiprocess_dir() -> Path | None:
    """The multiprocess directory when this process records to one."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def scrape_registry() -> CollectorRegistry:
    """What ``/metrics`` serves: every process's values in multiprocess mode, else this
    process's default registry."""
    if multiprocess_dir() is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def exposition(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """The text exposition of ``registry`` (default :func:`scrape_registry`) and its type."""
    return generate_latest(registry or scrape_registry()), CONTENT_TYPE_LATEST


def clear_multiprocess_dir() -> int:
    """Delete the value files a previous run left in the multiprocess directory.

    Called by the one process that owns the directory (the worker's main process before its
    pool starts, ``facepipe api`` before its server processes start): counters of a previous
    run would otherwise be added to this run's. This process's own values start again at zero
    in new files.
    """
    global _generation
    folder = multiprocess_dir()
    if folder is None:
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    removed = 0
    for path in folder.glob("*.db"):
        path.unlink(missing_ok=True)
        removed += 1
    _generation += 1  # this process's next value write opens new files (_process_identifier)
    return removed


def mark_process_dead(pid: int) -> None:
    """Forget a dead process's live gauges (its counters stay: they are cumulative)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def exposed_names(exposition_text: str) -> set[str]:
    """The sample names a text exposition declares (``facepipe_x_total``, ``facepipe_y_bucket``,
    ``facepipe_y_sum``...), including those of families that have no sample yet."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition_text):
        names |= {sample.name for sample in family.samples}
        if family.type == "histogram":
            names |= {f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"}
        elif family.type == "counter":
            names.add(f"{family.name}_total")
        else:
            names.add(family.name)
    return names
