"""boto3 clients for S3 and SQS built from settings (endpoint configurable for MinIO / moto)."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError

_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5)


def s3_client(settings: Settings) -> Any:
    """An S3 client for ``settings.s3_endpoint_url`` (None: AWS) in ``settings.s3_region``."""
    return boto3.client(
        "s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region, config=_CONFIG
    )


def sqs_client(settings: Settings) -> Any:
    """An SQS client on the same endpoint and region as S3 (moto serves both on one port)."""
    return boto3.client(
        "sqs",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        config=_CONFIG,
    )


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``; the key may be empty (whole bucket)."""
    if not uri.startswith("s3://"):
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"no bucket in {uri!r}")
    return bucket, key
