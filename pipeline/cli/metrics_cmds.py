"""``facepipe metrics serve``: the Prometheus exporter for queues, jobs, gallery and snapshots."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from pipeline.cli.app import app
from pipeline.config import get_settings

metrics_app = typer.Typer(help="Prometheus metrics of the pipeline.", no_args_is_help=True)
app.add_typer(metrics_app, name="metrics")


@metrics_app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 9108,
) -> None:
    """Serve queue depths, jobs by status, stalled jobs, the oldest pending item's age, gallery
    sizes and snapshot ages on http://HOST:PORT/metrics (read from Redis and Postgres on each
    scrape)."""
    from prometheus_client import start_http_server

    from pipeline.observability.exporter import exporter_registry
    from pipeline.observability.logging import configure_logging
    from pipeline.store.db import Database

    settings = get_settings()
    configure_logging(settings)
    db = Database.from_settings(settings)
    server, thread = start_http_server(port, host, registry=exporter_registry(settings, db))
    typer.echo(f"serving pipeline metrics on http://{host}:{port}/metrics")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    thread.join(5)
    db.close()
