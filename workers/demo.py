"""``facepipe demo``: the main job end to end on the embedded defaults.

Starts (or reuses) the embedded Postgres, checks the local Redis, starts a Celery worker
subprocess, builds a sample archive from the package-shipped photos, enrols it as a job (with
a progress bar), re-identifies the faces of two group photos against it, prints the matches
and stops the worker.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import redis
from rich.console import Console
from rich.table import Table

from pipeline.config import get_settings
from pipeline.jobs.export import iter_job_matches
from pipeline.jobs.exportdest import export_root
from pipeline.jobs.model import JobKind, JobStatus
from pipeline.jobs.progress import watch_job
from pipeline.jobs.runtime import get_runtime
from pipeline.jobs.sample import build_sample_archive
from pipeline.jobs.submit import submit_job
from pipeline.models.pack import vectron_model_dir
from workers.process import start_worker, wait_ready

DEMO_GROUP = "demo"


def run_demo(console: Console, *, workdir: Path | None = None) -> int:
    """Run the demo; returns the process exit status."""
    started = time.perf_counter()
    settings = get_settings()
    home = Path(settings.home)
    work = workdir or home / "demo"
    console.rule("[bold]facepipe demo")
    console.print(f"data directory (FACEPIPE_HOME): {home}")

    rt = get_runtime()
    db = rt.db
    where = f"embedded in {home / 'pg'}" if db.server else "external"
    console.print(f"Postgres + pgvector: {where}")
    try:
        redis.Redis.from_url(settings.broker_url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        console.print(f"[red]Redis at {settings.broker_url} does not answer: {exc}")
        console.print("start one with scripts/ensure-redis (make demo does)")
        return 1
    console.print(f"Redis broker: {settings.broker_url}")

    worker = start_worker(queues=("ingest", "infer"), concurrency=1, logfile=work / "worker.log")
    try:
        console.print(f"worker started (pid {worker.pid}, log {worker.logfile}); loading models")
        archive_root = work / "archive"
        shutil.rmtree(archive_root, ignore_errors=True)
        archive = build_sample_archive(archive_root, rt.engine)
        n_photos = sum(len(p) for p in archive.persons.values())
        console.print(
            f"sample archive: {len(archive.persons)} persons, {n_photos} photos in {archive_root}"
        )
        wait_ready(worker, timeout_s=120)

        console.rule("enrol the archive (person = folder name)")
        job = submit_job(JobKind.ENROLL, str(archive_root), groups=[DEMO_GROUP])
        job = watch_job(job.id, console)
        console.print(
            f"enroll job {job.id[:8]}: {job.n_done} photos enrolled, {job.n_failed} refused "
            f"({job.images_per_s or 0:.1f} images/s)"
        )
        _print_refusals(console, job.id)

        console.rule("identify the faces of group photos against the archive")
        photos = vectron_model_dir()
        urls = work / "group_photos.txt"
        urls.write_text(f"{photos / 'players.jpg'}\n{photos / 'gdp.jpg'}\n")
        # exports go under the export folder (FACEPIPE_EXPORT_DIR, default <home>/exports)
        export = export_root(settings) / "demo" / "matches.jsonl"
        rjob = submit_job(
            JobKind.REIDENTIFY,
            str(urls),
            groups=[DEMO_GROUP],
            export="demo/matches.jsonl",
            top_n=3,
        )
        rjob = watch_job(rjob.id, console)
        if rjob.status != JobStatus.DONE:
            console.print(f"[red]reidentify job ended {rjob.status.value}: {rjob.error}")
            return 1
        with db.connection() as conn:
            records = list(iter_job_matches(conn, rjob.id))
        _print_matches(console, records, settings.identify_match_threshold)
        _wait_for(export, 15.0)
        console.print(f"matches also exported as JSON Lines: {export}")
        console.print(
            f"done in {time.perf_counter() - started:.0f} s. Try: facepipe jobs list, "
            f"facepipe jobs show {rjob.id[:8]}, facepipe identify PHOTO --group {DEMO_GROUP}"
        )
        return 0
    finally:
        worker.stop()


def _wait_for(path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def _print_refusals(console: Console, job_id: str) -> None:
    from pipeline.jobs.model import ItemStatus
    from pipeline.store import jobs as store

    with get_runtime().db.connection() as conn:
        items = store.list_items(conn, job_id, status=ItemStatus.FAILED, limit=10)
    for item in items:
        console.print(
            f"  refused {Path(item.uri).parent.name}/{Path(item.uri).name}: "
            f"{item.error_name} ({item.error_code})"
        )


def _print_matches(console: Console, records: list[dict], threshold: float) -> None:
    """One row per face: who it is (at the match threshold) and the closest enrolled person."""
    table = Table(
        "photo",
        "face",
        "identified as",
        "confidence",
        "closest enrolled person",
        caption=f"match threshold: confidence >= {threshold:g}",
    )
    for rec in records:
        best = rec["matches"][0] if rec["matches"] else None
        conf = float(best["confidence"]) if best else 0.0
        matched = best is not None and conf >= threshold
        table.add_row(
            Path(rec["source"]).name,
            str(rec["face_index"]),
            f"[green]{best['person_id']}[/green]" if matched and best else "unknown",
            f"{conf:.1f}" if best else "-",
            best["person_id"] if best else "-",
        )
    console.print(table)
