"""FAISS commands: ``facepipe reindex``, ``facepipe identify-batch`` and ``facepipe index list``.

``reindex`` and ``identify-batch`` send their task to the Celery ``index`` / ``search`` queue
(``--wait`` follows it to the end); ``--inline`` runs the work in this process instead.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipeline.cli.app import app
from pipeline.cli.options import FalseMatchRateOpt, MatchThresholdOpt
from pipeline.config import get_settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.dispatch import Dispatcher, TaskName

index_app = typer.Typer(help="FAISS index snapshots.", no_args_is_help=True)
app.add_typer(index_app, name="index")

console = Console()
err_console = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
InlineOpt = Annotated[
    bool, typer.Option("--inline", help="Run in this process instead of on a Celery worker.")
]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait for the task to finish.")]


def _db() -> Any:
    from pipeline.jobs.runtime import get_runtime

    return get_runtime().db


def _dispatcher() -> Dispatcher:
    from pipeline.jobs.runtime import get_runtime

    return get_runtime().dispatcher


def _fail(exc: FacepipeError) -> typer.Exit:
    err_console.print(f"[red]error[/red] {exc}")
    return typer.Exit(2)


def _out(data: Any, as_json: bool, text: str) -> None:
    if as_json:
        typer.echo(json.dumps(data, default=str))
    else:
        console.print(text)


@app.command()
def reindex(
    group: Annotated[str | None, typer.Option("--group", "-g", help="Index this group.")] = None,
    all_faces: Annotated[
        bool, typer.Option("--all", help="Index all enrolled faces of the model.")
    ] = False,
    model: Annotated[
        str | None, typer.Option("--model", help="Model id (default: that of most faces).")
    ] = None,
    kind: Annotated[
        str | None, typer.Option(help="Force flat, ivf_flat, ivf_pq or hnsw (default: by size).")
    ] = None,
    inline: InlineOpt = False,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Build a FAISS snapshot of a group (--group G) or of all faces (--all)."""
    if (group is None) == (not all_faces):
        err_console.print("give exactly one of --group G or --all")
        raise typer.Exit(2)
    try:
        if inline:
            from pipeline.index.reindex import default_model
            from pipeline.index.reindex import reindex as run_reindex
            from pipeline.index.snapshot import Scope
            from pipeline.index.spec import IndexKind

            db = _db()
            scope = Scope(model_id=model or default_model(db, group), group=group)
            rec = run_reindex(db, scope, kind=IndexKind(kind) if kind else None)
            data = rec.to_dict()
            _out(
                data,
                as_json,
                f"snapshot {rec.snapshot_id}: {rec.count} faces, {rec.kind}, "
                f"{rec.build_seconds:.2f} s -> {rec.location}",
            )
            return
        sent = _dispatcher().send(
            TaskName.REINDEX,
            {"group": group, "all_faces": all_faces, "model_id": model, "kind": kind},
        )
        if not wait:
            _out({"task_id": sent.id}, as_json, f"reindex task {sent.id} sent to queue index")
            return
        result = sent.result()  # a failed task raises its FacepipeError here
        _out(result, as_json, json.dumps(result, indent=1, default=str))
    except FacepipeError as exc:
        raise _fail(exc) from exc
    except ValueError as exc:
        raise _fail(FacepipeError(ErrorCode.ILLEGAL_PARAMETER, str(exc))) from exc


@app.command("identify-batch")
def identify_batch_cmd(
    group: Annotated[list[str], typer.Option("--group", "-g", help="Group (repeatable).")],
    job: Annotated[
        str | None, typer.Option("--job", help="Probes: the observed faces of this job.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Probes: observed faces stored since (ISO).")
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option("--source", help="Probes: the faces of this image/folder/prefix/URL."),
    ] = None,
    top: Annotated[int | None, typer.Option("--top", min=1, help="Persons per face.")] = None,
    export: Annotated[
        str | None, typer.Option("--export", help="Also JSON Lines to s3:// or the export folder.")
    ] = None,
    engine: Annotated[
        str | None, typer.Option(help="Force pgvector or faiss (default: the planner).")
    ] = None,
    threshold: MatchThresholdOpt = None,
    false_match_rate: FalseMatchRateOpt = None,
    inline: InlineOpt = False,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Identify many faces against groups; matches go to Postgres (and --export)."""
    from pipeline.index.batch_params import run_params, task_kwargs
    from pipeline.index.identify_batch import create_run, identify_batch
    from pipeline.index.planner import SearchEngine

    if sum(x is not None for x in (job, since, source or None)) != 1:
        err_console.print("give exactly one of --job, --since or --source")
        raise typer.Exit(2)
    try:
        when = datetime.fromisoformat(since) if since else None
        forced = SearchEngine(engine) if engine else None
        db = _db()
        if job is not None:
            job = _resolve_job(db, job)
        params = run_params(
            group,
            probe_job=job,
            since=when,
            sources=source or (),
            top_n=top,
            export=export,
            force_engine=forced,
            match_threshold=threshold,
            false_match_rate=false_match_rate,
        )
        run_id = create_run(db, params)
        if inline:
            result = identify_batch(
                db,
                group,
                probe_job=job,
                since=when,
                sources=tuple(source or ()),
                top_n=top,
                export=export,
                job_id=run_id,
                force_engine=forced,
                match_threshold=threshold,
                false_match_rate=false_match_rate,
            )
            data = result.to_dict()
            summary = result.summary
            _out(
                data,
                as_json,
                f"job {run_id}: {result.probes} probes, {summary['faces_matched']} matched at "
                f"confidence >= {summary['threshold']['confidence']:g} (about "
                f"{summary['expected_false_matches']:g} false matches expected if all were "
                f"strangers), engine {result.plan.engine.value} ({result.plan.reason}), "
                f"{result.seconds:.2f} s" + (f", exported to {export}" if export else ""),
            )
            return
        _dispatcher().send(TaskName.IDENTIFY_BATCH, task_kwargs(params, run_id))
        if not wait:
            _out({"job_id": run_id}, as_json, f"identify-batch job {run_id} sent to queue search")
            return
        final = _wait_job(db, run_id)
        text = f"job {run_id}: {final['status']}, {final['probes']} probes"
        if final["error"]:
            text += f" ({final['error'].get('name')}: {final['error'].get('message')})"
        elif export:
            text += f", exported to {export}"
        _out(final, as_json, text)
        if final["status"] != "done":
            raise typer.Exit(1)
    except FacepipeError as exc:
        raise _fail(exc) from exc
    except ValueError as exc:
        raise _fail(FacepipeError(ErrorCode.ILLEGAL_PARAMETER, str(exc))) from exc


def _resolve_job(db: Any, job: str) -> str:
    """The full id of a job given by the short prefix ``jobs list`` prints (as ``jobs show``).

    A value naming no job is kept as given: observed faces may carry another run label.
    """
    from pipeline.store.jobs import find_job_by_prefix

    with db.connection() as conn:
        try:
            return find_job_by_prefix(conn, job).id
        except FacepipeError as exc:
            if exc.code != ErrorCode.JOB_NOT_FOUND:
                raise
            return job


def _wait_job(db: Any, job_id: str) -> dict[str, Any]:
    from pipeline.store.jobs import wait_for_job

    job = wait_for_job(db, job_id)
    return {
        "job_id": job_id,
        "status": job.status.value,
        "probes": job.n_items,
        "failed": job.n_failed,
        "error": job.error,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


@index_app.command("list")
def index_list(
    all_: Annotated[bool, typer.Option("--all", help="Include garbage-collected ones.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List index snapshots, newest first per scope."""
    from pipeline.store.snapshots import list_snapshots

    try:
        with _db().connection() as conn:
            records = list_snapshots(conn, include_gc=all_)
    except FacepipeError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in records], default=str))
        return
    table = Table("snapshot", "scope", "model", "kind", "faces", "watermark", "build s", "location")
    for r in records:
        table.add_row(
            r.snapshot_id,
            r.scope,
            r.model_id,
            r.kind,
            str(r.count),
            r.watermark.isoformat(timespec="seconds"),
            f"{r.build_seconds:.2f}",
            r.location,
        )
    console.print(table)
    if not records:
        console.print(f"no snapshots (store: {get_settings().snapshot_uri or 'HOME/snapshots'})")
