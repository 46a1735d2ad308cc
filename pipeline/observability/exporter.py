"""The jobs-and-queues exporter: gauges read from Redis and Postgres each time Prometheus scrapes.

``facepipe metrics serve`` runs one of these per deployment (next to beat); it owns no state,
so two of them report the same numbers. What it reports:

* ``facepipe_queue_messages{queue}``: messages waiting on each Celery queue;
* ``facepipe_queue_unacked_messages``: messages delivered to a worker, not yet acknowledged;
* ``facepipe_jobs{kind,status}``: jobs by kind and status (every combination, zeros included);
* ``facepipe_jobs_stalled{kind}``: pending or running jobs with no item started or finished
  for ``metrics_stalled_after_s``;
* ``facepipe_oldest_pending_item_age_seconds``: how long the oldest pending item has waited
  (measured from its job's creation: items carry no creation time of their own);
* ``facepipe_gallery_faces{model}``: enrolled faces per model;
* ``facepipe_index_snapshot_age_seconds{model}``: age of the stalest FAISS snapshot scope
  (each scope's newest live snapshot);
* ``facepipe_exporter_up{source}``: 1 when ``broker`` / ``database`` answered this scrape.

The queue depths come from :func:`pipeline.observability.queues.queue_depths`, the reader the
CloudWatch autoscaling metric uses too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.config import Settings
from pipeline.errors import FacepipeError
from pipeline.jobs.dispatch import QUEUES
from pipeline.jobs.model import JobKind, JobStatus
from pipeline.observability.queues import UNACKED, queue_depths
from pipeline.store.stats import JobStats, read_job_stats

log = logging.getLogger(__name__)


def job_families(stats: JobStats) -> list[Metric]:
    """The Prometheus families for ``stats`` (pure: no I/O)."""
    jobs = GaugeMetricFamily("facepipe_jobs", "Jobs by kind and status.", labels=["kind", "status"])
    for kind in JobKind:
        for status in JobStatus:
            jobs.add_metric([kind.value, status.value], stats.by_status.get((kind, status), 0))
    stalled = GaugeMetricFamily(
        "facepipe_jobs_stalled",
        "Pending or running jobs with no item started or finished for metrics_stalled_after_s.",
        labels=["kind"],
    )
    for kind in JobKind:
        stalled.add_metric([kind.value], stats.stalled.get(kind, 0))
    oldest = GaugeMetricFamily(
        "facepipe_oldest_pending_item_age_seconds",
        "Age of the oldest pending job item (since its job was created); 0 when none waits.",
        value=stats.oldest_pending_s,
    )
    gallery = GaugeMetricFamily(
        "facepipe_gallery_faces", "Enrolled faces, by embedding model.", labels=["model"]
    )
    for model, n in sorted(stats.gallery.items()):
        gallery.add_metric([model], n)
    snapshot = GaugeMetricFamily(
        "facepipe_index_snapshot_age_seconds",
        "Age of the stalest FAISS snapshot scope (its newest live snapshot), by model.",
        labels=["model"],
    )
    for model, age in sorted(stats.snapshot_age_s.items()):
        snapshot.add_metric([model], age)
    return [jobs, stalled, oldest, gallery, snapshot]


def queue_families(depths: dict[str, int]) -> list[Metric]:
    """The Prometheus families for the broker's queue depths (pure: no I/O)."""
    waiting = GaugeMetricFamily(
        "facepipe_queue_messages", "Messages waiting on a Celery queue.", labels=["queue"]
    )
    for queue in QUEUES:
        waiting.add_metric([queue], depths.get(queue, 0))
    unacked = GaugeMetricFamily(
        "facepipe_queue_unacked_messages",
        "Messages delivered to a worker and not yet acknowledged.",
        value=depths.get(UNACKED, 0),
    )
    return [waiting, unacked]


def up_family(answered: dict[str, bool]) -> Metric:
    """``facepipe_exporter_up{source}``: which sources answered this scrape (pure: no I/O)."""
    up = GaugeMetricFamily(
        "facepipe_exporter_up",
        "1 when the source answered the exporter during this scrape.",
        labels=["source"],
    )
    for source, ok in answered.items():
        up.add_metric([source], 1 if ok else 0)
    return up


class PipelineCollector(Collector):
    """Reads the broker and the database on every scrape (a failing source reports up=0 and
    leaves its gauges out for this scrape, rather than failing the whole scrape)."""

    def __init__(self, settings: Settings, db: Any) -> None:
        self.settings = settings
        self.db = db

    def collect(self) -> Iterator[Metric]:
        answered: dict[str, bool] = {}
        try:
            yield from queue_families(queue_depths(self.settings.broker_url))
            answered["broker"] = True
        except FacepipeError as exc:
            log.warning("queue depths not read: %s", exc)
            answered["broker"] = False
        try:
            with self.db.connection() as conn:
                stats = read_job_stats(conn, self.settings.metrics_stalled_after_s)
            yield from job_families(stats)
            answered["database"] = True
        except (FacepipeError, psycopg.Error) as exc:
            log.warning("job statistics not read: %s", exc)
            answered["database"] = False
        yield up_family(answered)


def exporter_registry(settings: Settings, db: Any) -> CollectorRegistry:
    """A registry holding only the pipeline collector (what ``facepipe metrics serve`` serves)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(settings, db))
    return registry
