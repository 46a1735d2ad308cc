"""A live progress bar over a job (images/s, faces, failures, ETA), polling the database.

When the job makes no progress the watcher says so, with the watchdog's finding (why it
stalled and what was re-sent), instead of waiting silently.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from pipeline.jobs.model import Job
from pipeline.jobs.runtime import get_runtime
from pipeline.jobs.watchdog import describe_stall
from pipeline.store import jobs as store


def watch_job(
    job_id: str,
    console: Console,
    *,
    show: bool = True,
    timeout_s: float | None = None,
) -> Job:
    """Poll a job until it ends, with a live progress bar (images/s, faces, failures, ETA)."""
    rt = get_runtime()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.completed:.0f}/{task.fields[listed]} images"),
        TextColumn("{task.fields[rate]} img/s"),
        TextColumn("faces {task.fields[faces]}"),
        TextColumn("[red]failed {task.fields[failed]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=not show, transient=False) as progress:
        task = progress.add_task(job_id[:8], total=None, rate="-", faces=0, failed=0, listed="?")

        last_stall: list[str | None] = [None]

        def show_state(job: Job) -> None:
            stall = (
                None
                if job.status.finished
                else describe_stall(job.stalled, job.idle_s, rt.settings)
            )
            if stall and stall != last_stall[0] and show:
                progress.console.print(f"[yellow]{job.id[:8]} {stall}[/yellow]")
            last_stall[0] = stall
            rate = job.images_per_s
            progress.update(
                task,
                total=max(job.n_items, 1) if job.listing_done or job.n_items else None,
                completed=job.n_done + job.n_failed,
                rate=f"{rate:.1f}" if rate else "-",
                faces=job.n_faces,
                failed=job.n_failed,
                listed=str(job.n_items) if job.listing_done else f"{job.n_items}+",
                description=f"{job.kind.value} {job.id[:8]} {job.status.value}",
            )

        return store.wait_for_job(rt.db, job_id, timeout_s=timeout_s, on_poll=show_state)
