"""``facepipe api`` (the HTTP API server) and ``facepipe queue-metrics`` (queue depths to
CloudWatch for autoscaling)."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from pipeline.cli.app import app
from pipeline.config import get_settings
from pipeline.errors import FacepipeError


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Server processes (each loads the models once).")
    ] = 1,
    log_level: Annotated[str | None, typer.Option(help="Default: FACEPIPE_LOG_LEVEL.")] = None,
) -> None:
    """Serve the HTTP API: /v1 (detect, compare, verify, identify, persons, faces, groups,
    jobs) and the Tencent YouTu v2 protocol (/face/*). Refuses to listen beyond loopback with
    FACEPIPE_API_AUTH=false."""
    import uvicorn

    from pipeline.api.auth import check_exposure

    try:
        check_exposure(host, get_settings())
    except FacepipeError as exc:
        typer.echo(f"error {exc.numeric_code} {exc.code.value}: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    from pipeline.observability.logging import dict_config
    from pipeline.observability.metrics import clear_multiprocess_dir

    # With PROMETHEUS_MULTIPROC_DIR (several server processes added up on /metrics): a previous
    # run's values must not be added to this run's.
    clear_multiprocess_dir()
    level = (log_level or get_settings().log_level).lower()
    uvicorn.run(
        "pipeline.api:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=level,
        # every server process logs through facepipe's handler (text or FACEPIPE_LOG_FORMAT=json)
        log_config=dict_config(level=level),
        access_log=False,  # the API's middleware writes the access line, with the request id
        proxy_headers=True,
    )


@app.command("queue-metrics")
def queue_metrics(
    interval: Annotated[
        float, typer.Option(min=1.0, help="Seconds between two publications.")
    ] = 30.0,
    once: Annotated[bool, typer.Option("--once", help="Publish once and exit.")] = False,
    endpoint_url: Annotated[
        str | None, typer.Option(help="CloudWatch endpoint (default: AWS in FACEPIPE_S3_REGION).")
    ] = None,
) -> None:
    """Publish the Celery queue depths as CloudWatch metric facepipe/QueueDepth{Queue=...}."""
    from pipeline.aws import cloudwatch_client
    from pipeline.observability.cloudwatch import publish_queue_depths, run_publisher
    from pipeline.observability.logging import configure_logging

    settings = get_settings()
    configure_logging(settings)
    client = cloudwatch_client(settings, endpoint_url)
    if once:
        try:
            depths = publish_queue_depths(settings=settings, cloudwatch=client)
        except FacepipeError as exc:
            typer.echo(f"{exc.code.value} ({exc.numeric_code}): {exc.message}", err=True)
            raise typer.Exit(1) from exc
        typer.echo(" ".join(f"{q}={n}" for q, n in depths.items()))
        return
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run_publisher(interval, stop=stop, settings=settings, cloudwatch=client)
