"""``s3://bucket/key`` sources: capped reads and listings one page at a time.

The client comes from :mod:`pipeline.aws` (one per process and configuration).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.aws import s3_client
from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.sources.location import S3Location

logger = logging.getLogger(__name__)

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})
_DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled"})


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
            data = bytes(body.read(cap + 1))
        finally:
            body.close()
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc, source) from exc
    if len(data) > cap:
        raise FacepipeError(ErrorCode.IMAGE_TOO_LARGE, f"{source}: above the cap of {cap} bytes")
    return data


@dataclass(frozen=True)
class S3KeyPage:
    """The object keys of one ``list_objects_v2`` page and the token of the next (None: last)."""

    keys: tuple[str, ...]
    next_token: str | None


def list_s3_keys(
    location: S3Location, settings: Settings, *, token: str | None = None, page_size: int = 1000
) -> S3KeyPage:
    """One page of the keys under a prefix, from ``token`` (S3's continuation token) on.

    Folder markers (keys ending in ``/``) are skipped.
    """
    args: dict[str, Any] = {"Bucket": location.bucket, "Prefix": location.key, "MaxKeys": page_size}
    if token:
        args["ContinuationToken"] = token
    try:
        resp = s3_client(settings).list_objects_v2(**args)
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc, location.uri) from exc
    keys = tuple(item["Key"] for item in resp.get("Contents", ()) if not item["Key"].endswith("/"))
    next_token = resp.get("NextContinuationToken") if resp.get("IsTruncated") else None
    return S3KeyPage(keys, next_token)
