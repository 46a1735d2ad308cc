"""The AWS clients (S3, SQS, CloudWatch), built in one place from settings.

Endpoint (``FACEPIPE_S3_ENDPOINT_URL``: MinIO, moto... or None for AWS), region
(``FACEPIPE_S3_REGION``), timeouts (``FACEPIPE_DOWNLOAD_TIMEOUT_S``) and attempts per call
(``FACEPIPE_AWS_MAX_ATTEMPTS``, botocore's "standard" retry mode) all come from
:class:`pipeline.config.Settings`. One client is kept per process and per distinct
configuration: building one costs tens of milliseconds, and a boto3 client (unlike the default
session it would otherwise come from) is safe to share between threads.

This module depends on the configuration only, so every package (sources, jobs, index,
observability, workers) can use it without importing one another.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

from pipeline.config import Settings, get_settings

_client_lock = threading.Lock()
# Seconds an SQS long poll may take beyond its wait time before the read times out.
_LONG_POLL_MARGIN_S = 10.0


@lru_cache(maxsize=16)
def _cached_client(
    service: str,
    endpoint_url: str | None,
    region: str,
    timeout_s: float,
    read_timeout_s: float,
    max_attempts: int,
) -> Any:
    config = Config(
        region_name=region,
        connect_timeout=timeout_s,
        read_timeout=read_timeout_s,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        max_pool_connections=32,
        # MinIO and moto serve buckets as paths, not as host names
        s3={"addressing_style": "path"} if service == "s3" and endpoint_url else {},
    )
    return boto3.session.Session().client(service, endpoint_url=endpoint_url, config=config)


def _client(
    service: str, settings: Settings, endpoint_url: str | None, read_timeout_s: float | None = None
) -> Any:
    timeout = float(settings.download_timeout_s)
    with _client_lock:
        return _cached_client(
            service,
            endpoint_url,
            settings.s3_region,
            timeout,
            timeout if read_timeout_s is None else read_timeout_s,
            settings.aws_max_attempts,
        )


def s3_client(settings: Settings) -> Any:
    """The process-wide S3 client for these settings."""
    return _client("s3", settings, settings.s3_endpoint_url)


def sqs_client(settings: Settings) -> Any:
    """The SQS client on the S3 endpoint and region (moto serves both on one port).

    Its reads wait for the long poll (``FACEPIPE_SQS_WAIT_TIME_S``) plus a margin.
    """
    read_timeout = max(
        float(settings.download_timeout_s), float(settings.sqs_wait_time_s) + _LONG_POLL_MARGIN_S
    )
    return _client("sqs", settings, settings.s3_endpoint_url, read_timeout)


def cloudwatch_client(settings: Settings | None = None, endpoint_url: str | None = None) -> Any:
    """A CloudWatch client in the configured region (``endpoint_url``: None means AWS)."""
    return _client("cloudwatch", settings or get_settings(), endpoint_url)
