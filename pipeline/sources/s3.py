"""``s3://bucket/key`` sources through boto3: one cached client per process, capped reads,
lazy paginated listings.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.sources.location import S3Location

logger = logging.getLogger(__name__)

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})
_DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled"})
_client_lock = threading.Lock()


@lru_cache(maxsize=8)
def _cached_client(endpoint_url: str | None, region: str, timeout_s: float) -> Any:
    # boto3's default session is not thread-safe; a client made from its own session is.
    config = Config(
        region_name=region,
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=32,
        s3={"addressing_style": "path"} if endpoint_url else {},
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


def s3_client(settings: Settings) -> Any:
    """The process-wide S3 client for these settings (endpoint, region, timeout)."""
    with _client_lock:
        return _cached_client(
            settings.s3_endpoint_url, settings.s3_region, float(settings.download_timeout_s)
        )


def _translate(exc: Exception, what: str) -> FacepipeError:
    """boto errors -> catalogue: missing/denied are permanent, the rest retryable."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _NOT_FOUND_CODES or status == 404:
            return FacepipeError(ErrorCode.SOURCE_NOT_FOUND, f"{what}: not found ({code})")
        if code in _DENIED_CODES or status == 403:
            return FacepipeError(ErrorCode.SOURCE_NOT_FOUND, f"{what}: access denied ({code})")
        if status == 400:
            return FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"{what}: refused ({code}: {error})")
        return FacepipeError(
            ErrorCode.OBJECT_STORE_UNAVAILABLE, f"{what}: object store error {code} ({status})"
        )
    return FacepipeError(ErrorCode.OBJECT_STORE_UNAVAILABLE, f"{what}: {type(exc).__name__}: {exc}")


def read_s3(loc: S3Location, settings: Settings) -> bytes:
    """Fetch an object, refusing it before the body is read when it is above the byte cap."""
    source = loc.uri
    if loc.is_prefix:
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER,
            f"{source}: is a prefix, not an object (expand it with expand_sources)",
        )
    cap = settings.max_image_bytes
    try:
        response = s3_client(settings).get_object(Bucket=loc.bucket, Key=loc.key)
        size = int(response.get("ContentLength") or 0)
        body = response["Body"]
        try:
            if size > cap:
                raise FacepipeError(
                    ErrorCode.IMAGE_TOO_LARGE,
                    f"{source}: {size} bytes is above the cap of {cap} (FACEPIPE_MAX_IMAGE_BYTES)",
                )
            data = body.read(cap + 1)
        finally:
            body.close()
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc, source) from exc
    if len(data) > cap:
        raise FacepipeError(ErrorCode.IMAGE_TOO_LARGE, f"{source}: above the cap of {cap} bytes")
    return data


def iter_s3_keys(location: S3Location, settings: Settings, page_size: int = 1000) -> Iterator[str]:
    """Keys under a prefix, page by page as they are consumed (never the whole listing at once).

    Folder markers (keys ending in ``/``) are skipped.
    """
    paginator = s3_client(settings).get_paginator("list_objects_v2")
    pages = paginator.paginate(
        Bucket=location.bucket,
        Prefix=location.key,
        PaginationConfig={"PageSize": page_size},
    )
    try:
        for page in pages:
            for item in page.get("Contents", ()):
                key = item["Key"]
                if not key.endswith("/"):
                    yield key
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc, location.uri) from exc
