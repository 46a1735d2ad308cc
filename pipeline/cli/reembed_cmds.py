"""``facepipe reembed``: move a scope's enrolled faces to another model pack (see
:mod:`pipeline.jobs.reembed`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, TaskID

from pipeline.cli.app import app
from pipeline.config import get_settings
from pipeline.errors import ErrorCode, FacepipeError

console = Console()
err_console = Console(stderr=True)


@app.command()
def reembed(
    pack: Annotated[
        Path | None,
        typer.Option(
            "--pack",
            help="Model pack folder to re-embed with (e.g. the one "
            "`facepipe models quantize` printed).",
        ),
    ] = None,
    group: Annotated[
        str | None, typer.Option("--group", "-g", help="Only this group (default: all faces).")
    ] = None,
    source_model: Annotated[
        str | None,
        typer.Option("--from", help="Model id to move from (default: the scope's active one)."),
    ] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, max=4096, help="Faces per step.")] = 64,
    resume: Annotated[
        str | None, typer.Option("--resume", help="Resume this reembed job id instead.")
    ] = None,
    inline: Annotated[
        bool, typer.Option("--inline", help="Run in this process instead of on a worker.")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job to its end.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Re-embed every enrolled face of a scope from its stored aligned crop with another pack.

    New vectors are written beside the old ones; when every face has its new vector the scope
    switches to the new model. Resumable: run it again with --resume JOB.
    """
    from pipeline.jobs.reembed import (
        ReembedParams,
        create_reembed_job,
        recognizer_model_id,
        run_reembed,
        source_model_of,
    )
    from pipeline.jobs.runtime import get_runtime
    from pipeline.store import jobs as job_store

    settings = get_settings()
    try:
        db = get_runtime().db
        if resume is not None:
            with db.connection() as conn:
                job = job_store.find_job_by_prefix(conn, resume)
        else:
            if pack is None:
                raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "give --pack (or --resume JOB)")
            if not pack.is_dir():
                raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"{pack} is not a folder")
            with db.connection() as conn:
                source = source_model or source_model_of(conn, group)
            params = ReembedParams(
                group, source, recognizer_model_id(pack, settings), str(pack.resolve()), batch
            )
            job = create_reembed_job(db, params)
        if not json_out:
            console.print(
                f"reembed job {job.id}: {job.n_done}/{job.n_items} faces already "
                f"re-embedded ({job.params.get('source_model')} -> "
                f"{job.params.get('target_model')})"
            )
        if inline:
            with _progress(json_out) as report:
                result = run_reembed(db, job.id, settings, on_progress=report)
            out = result.to_dict()
        else:
            from pipeline.jobs.runtime import get_runtime

            get_runtime().dispatcher.send_reembed(job.id)
            out = {"job_id": job.id, "submitted": True}
            if wait:
                from pipeline.jobs.progress import watch_job

                final = watch_job(job.id, err_console, show=not json_out)
                out = final.to_dict()
    except FacepipeError as exc:
        err_console.print(f"[red]error[/red] {exc}")
        raise typer.Exit(2) from exc
    if json_out:
        typer.echo(json.dumps(out, default=str))
    else:
        console.print(out)
    if out.get("switched") is False or out.get("status") == "failed":
        raise typer.Exit(1)


class _progress:
    """A rich progress bar fed by run_reembed's (done, total) calls; silent with --json."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> Callable[[int, int], None]:
        if not self.quiet:
            self.bar = Progress(console=err_console)
            self.bar.start()
            self.task = self.bar.add_task("re-embedding", total=None)
        return self.report

    def report(self, done: int, total: int) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
