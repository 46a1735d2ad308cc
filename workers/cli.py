"""The commands that run Celery processes: ``facepipe worker``, ``beat`` and ``demo``.

Installed as the ``workers`` entry point of ``facepipe.commands``: the ``facepipe`` command line
(:mod:`pipeline.cli`) calls :func:`add_commands` with its Typer app, so the library's commands
never import Celery and these appear only where the workers package is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipeline.config import get_settings


def add_commands(app: typer.Typer) -> None:
    """Attach ``worker``, ``beat`` and ``demo`` to the ``facepipe`` app."""
    app.command()(worker)
    app.command()(beat)
    app.command()(demo)


def worker(
    queues: Annotated[
        str, typer.Option("--queues", "-Q", help="Comma-separated queues to consume.")
    ] = "ingest,infer,index,search",
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1)] = 1,
    pool: Annotated[
        str, typer.Option("--pool", "-P", help="prefork, solo or threads.")
    ] = "prefork",
    loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "INFO",
) -> None:
    """Run a Celery worker (models load once per worker process)."""
    from workers.app import app as celery_app

    celery_app.worker_main(
        ["worker", "-Q", queues, "-c", str(concurrency), "-P", pool, "-l", loglevel]
    )


def beat(loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "INFO") -> None:
    """Run Celery beat (nightly re-identification, periodic reindex, clean-up)."""
    from workers.app import app as celery_app

    home = Path(get_settings().home)
    home.mkdir(parents=True, exist_ok=True)
    celery_app.start(["beat", "-l", loglevel, "-s", str(home / "celerybeat-schedule")])


def demo(
    workdir: Annotated[
        Path | None, typer.Option(help="Where the sample archive goes (default HOME/demo).")
    ] = None,
) -> None:
    """The main job end to end: embedded Postgres, a worker, enrol a sample archive, identify."""
    from workers.demo import run_demo

    raise typer.Exit(run_demo(Console(), workdir=workdir))
