"""Pipeline commands: ``facepipe enroll``, ``reidentify``, ``jobs ...`` and ``s3-listen``.

``worker``, ``beat`` and ``demo`` run Celery processes: ``workers.cli`` adds them (an entry point
of ``facepipe.commands``), so nothing here imports the queue's implementation."""

from __future__ import annotations

import json
import signal
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipeline.cli.app import app
from pipeline.cli.options import FalseMatchRateOpt, MatchThresholdOpt
from pipeline.config import get_settings
from pipeline.errors import FacepipeError
from pipeline.jobs.model import Job, JobKind, JobStatus

jobs_app = typer.Typer(
    help="List, show, cancel, retry and resume pipeline jobs.", no_args_is_help=True
)
app.add_typer(jobs_app, name="jobs")

console = Console()
err_console = Console(stderr=True)

GroupOpt = Annotated[list[str], typer.Option("--group", "-g", help="Group (repeatable).")]
WaitOpt = Annotated[
    bool, typer.Option("--wait/--no-wait", help="Follow the job with a progress bar until it ends.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _fail(exc: FacepipeError) -> typer.Exit:
    err_console.print(f"[red]error[/red] {exc}")
    return typer.Exit(2)


def _runtime() -> Any:
    from pipeline.jobs.runtime import get_runtime

    return get_runtime()


def _get_job(job_id: str) -> Job:
    from pipeline.store import jobs as store

    with _runtime().db.connection() as conn:
        return store.find_job_by_prefix(conn, job_id)


def watch_job(job_id: str, *, show: bool = True, timeout_s: float | None = None) -> Job:
    """Follow a job with a progress bar until it ends."""
    from pipeline.jobs.progress import watch_job as watch

    return watch(job_id, console, show=show, timeout_s=timeout_s)


def _print_job(job: Job, *, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(job.to_dict()))
        return
    rate = job.images_per_s
    console.print(
        f"job {job.id}  {job.kind.value}  [bold]{job.status.value}[/bold]  "
        f"items {job.n_items}  done {job.n_done}  failed {job.n_failed}  faces {job.n_faces}"
        + (f"  {rate:.1f} img/s" if rate else "")
    )
    if job.error:
        console.print(f"  [red]{job.error.get('name')}[/red]: {job.error.get('message')}")
    if not job.status.finished:
        from pipeline.jobs.watchdog import describe_stall

        stall = describe_stall(job.stalled, job.idle_s, _runtime().settings)
        if stall:
            console.print(f"  [yellow]{stall}[/yellow]")


def _print_reid_summary(job: Job) -> None:
    """Matched faces and how many of them to expect to be false (pipeline.jobs.reid_threshold)."""
    from pipeline.jobs.reid_threshold import reidentify_summary
    from pipeline.jobs.runtime import get_runtime

    rt = get_runtime()
    with rt.db.connection() as conn:
        s = reidentify_summary(conn, job.id, job.params, rt.engine.model_id, rt.settings)
    t = s["threshold"]
    unit = "persons" if s["person_template"] == "mean" else "faces"
    console.print(
        f"  matched {s['faces_matched']} of {s['faces_searched']} faces at confidence "
        f">= {t['confidence']:g} ({t['rule']}; FAR {s['far_per_comparison']:.0e} per "
        f"comparison, {s['gallery_comparisons']} gallery {unit}): about "
        f"{s['expected_false_matches']:g} false matches expected if all were strangers"
    )


@app.command()
def enroll(
    source: Annotated[str, typer.Argument(help="Folder, s3://bucket/prefix/, URL list or CSV.")],
    group: GroupOpt,
    manifest: Annotated[
        str | None, typer.Option(help="CSV uri,person_id,name,groups overriding folder names.")
    ] = None,
    person: Annotated[str | None, typer.Option(help="Enrol every image as this person.")] = None,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Enrol every face of SRC (person = parent folder, unless the manifest says otherwise)."""
    from pipeline.jobs.submit import submit_job

    try:
        job = submit_job(JobKind.ENROLL, source, groups=group, manifest=manifest, person_id=person)
    except FacepipeError as exc:
        raise _fail(exc) from exc
    if not as_json:
        console.print(f"job {job.id} submitted (enroll {source} into {', '.join(group)})")
    if wait:
        job = watch_job(job.id, show=not as_json)
    _print_job(job, as_json=as_json)
    if job.status == JobStatus.FAILED:
        raise typer.Exit(1)


@app.command()
def reidentify(
    source: Annotated[
        str | None, typer.Argument(help="Folder, s3:// prefix, URL list or CSV (or --since).")
    ] = None,
    group: GroupOpt = None,  # type: ignore[assignment]
    export: Annotated[
        str | None, typer.Option(help="Also write matches as JSON Lines here (path or s3://).")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Re-identify observed faces stored since (ISO time).")
    ] = None,
    top: Annotated[int | None, typer.Option(help="Candidates per face.")] = None,
    threshold: MatchThresholdOpt = None,
    false_match_rate: FalseMatchRateOpt = None,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Identify every face of SRC (or of stored observations) against the groups."""
    from pipeline.jobs.submit import submit_job

    groups = group or get_settings().reidentify_groups
    if (source is None) == (since is None):
        err_console.print("give either SRC or --since")
        raise typer.Exit(2)
    try:
        job = submit_job(
            JobKind.REIDENTIFY,
            source,
            groups=groups,
            export=export,
            since=datetime.fromisoformat(since) if since else None,
            top_n=top,
            match_threshold=threshold,
            false_match_rate=false_match_rate,
        )
    except FacepipeError as exc:
        raise _fail(exc) from exc
    if not as_json:
        console.print(f"job {job.id} submitted (reidentify against {', '.join(groups)})")
    if wait:
        job = watch_job(job.id, show=not as_json)
    _print_job(job, as_json=as_json)
    if wait and not as_json:
        _print_reid_summary(job)
    if job.status == JobStatus.FAILED:
        raise typer.Exit(1)


@jobs_app.command("list")
def jobs_list(
    limit: Annotated[int, typer.Option(min=1)] = 20,
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Newest jobs with their counts and throughput."""
    from pipeline.store import jobs as store

    with _runtime().db.connection() as conn:
        jobs = store.list_jobs(conn, limit=limit, status=JobStatus(status) if status else None)
    if as_json:
        console.print_json(json.dumps([j.to_dict() for j in jobs]))
        return
    table = Table("id", "kind", "status", "items", "done", "failed", "faces", "img/s", "created")
    for j in jobs:
        rate = j.images_per_s
        table.add_row(
            j.id[:8],
            j.kind.value,
            j.status.value,
            str(j.n_items),
            str(j.n_done),
            str(j.n_failed),
            str(j.n_faces),
            f"{rate:.1f}" if rate else "-",
            j.created_at.strftime("%m-%d %H:%M"),
        )
    console.print(table)


@jobs_app.command("show")
def jobs_show(
    job_id: str,
    items: Annotated[int, typer.Option(help="Show up to this many items.")] = 20,
    failed_only: Annotated[bool, typer.Option("--failed", help="Only failed items.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """A job's counts, errors by code and its items."""
    from pipeline.jobs.model import ItemStatus
    from pipeline.store import jobs as store

    try:
        job = _get_job(job_id)
    except FacepipeError as exc:
        raise _fail(exc) from exc
    with _runtime().db.connection() as conn:
        errors = store.error_counts(conn, job.id)
        rows = store.list_items(
            conn, job.id, status=ItemStatus.FAILED if failed_only else None, limit=items
        )
    if as_json:
        out = job.to_dict() | {"errors": errors, "items_shown": [r.to_dict() for r in rows]}
        console.print_json(json.dumps(out))
        return
    _print_job(job, as_json=False)
    if job.kind in (JobKind.REIDENTIFY, JobKind.IDENTIFY_BATCH):
        _print_reid_summary(job)
    for name, n in errors.items():
        console.print(f"  {n} x {name}")
    table = Table("seq", "uri", "person", "status", "tries", "faces", "error")
    for r in rows:
        table.add_row(
            str(r.seq),
            r.uri[-60:],
            r.person_id or "",
            r.status.value,
            str(r.attempts),
            str(r.n_faces),
            f"{r.error_name}: {r.error_message}" if r.error_name else "",
        )
    console.print(table)


@jobs_app.command("cancel")
def jobs_cancel(job_id: str) -> None:
    """Cancel a pending or running job (chunks not started yet skip their items)."""
    from pipeline.store import jobs as store

    try:
        job = _get_job(job_id)
        with _runtime().db.transaction() as conn:
            job = store.cancel_job(conn, job.id)
    except FacepipeError as exc:
        raise _fail(exc) from exc
    _print_job(job, as_json=False)


@jobs_app.command("retry")
def jobs_retry(job_id: str, wait: WaitOpt = False) -> None:
    """Run a finished job's failed items again."""
    from pipeline.jobs.submit import retry_failed

    try:
        job = _get_job(job_id)
        n = retry_failed(job.id)
    except FacepipeError as exc:
        raise _fail(exc) from exc
    console.print(f"{n} failed items of job {job.id} queued again")
    if wait and n:
        _print_job(watch_job(job.id), as_json=False)


@jobs_app.command("resume")
def jobs_resume(job_id: str, wait: WaitOpt = False) -> None:
    """Re-enqueue a job's unfinished items (after a broker loss); done items are skipped."""
    from pipeline.jobs.submit import resume_job

    try:
        job = _get_job(job_id)
        n = resume_job(job.id)
    except FacepipeError as exc:
        raise _fail(exc) from exc
    console.print(f"{n} chunks of job {job.id} queued again")
    if wait:
        _print_job(watch_job(job.id), as_json=False)


@app.command("s3-listen")
def s3_listen(
    queue_url: Annotated[str, typer.Option("--queue-url", help="SQS queue receiving S3 events.")],
) -> None:
    """Long-poll SQS for S3 ObjectCreated events and turn each object into a job item."""
    from pipeline.jobs.s3_listener import SqsListener
    from pipeline.observability.logging import configure_logging

    configure_logging(get_settings())
    listener = SqsListener(queue_url)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: listener.stop())
    listener.run()
