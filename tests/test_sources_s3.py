"""s3:// intake against a real S3-speaking server (moto server over HTTP, in a subprocess)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeline.aws import s3_client
from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.sources import expand_sources, load_image, read_source_bytes

BUCKET = "facepipe-sources-test"
DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_settings() -> Iterator[Settings]:
    """A moto server on a free port, dummy credentials in the environment (restored after)."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.2)
        with pytest.MonkeyPatch.context() as mp:
            for key, value in DUMMY_AWS_ENV.items():
                mp.setenv(key, value)
            yield Settings(s3_endpoint_url=endpoint, download_timeout_s=5.0)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def bucket(s3_settings: Settings, gdp_jpg: Path) -> str:
    client = s3_client(s3_settings)
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="photos/gdp.jpg", Body=gdp_jpg.read_bytes())
    return BUCKET


def error_of(source: str, settings: Settings) -> FacepipeError:
    with pytest.raises(FacepipeError) as info:
        load_image(source, settings)
    return info.value


def test_get_object(bucket: str, s3_settings: Settings, gdp_jpg: Path) -> None:
    source = f"s3://{bucket}/photos/gdp.jpg"
    image = load_image(source, s3_settings)
    assert (image.width, image.height) == (500, 665)
    assert image.source == source
    assert read_source_bytes(source, s3_settings) == gdp_jpg.read_bytes()


def test_missing_key_and_bucket(bucket: str, s3_settings: Settings) -> None:
    err = error_of(f"s3://{bucket}/photos/nope.jpg", s3_settings)
    assert err.code is ErrorCode.SOURCE_NOT_FOUND and not err.retryable
    assert error_of("s3://no-such-bucket-xyz/a.jpg", s3_settings).code is (
        ErrorCode.SOURCE_NOT_FOUND
    )
    assert error_of(f"s3://{bucket}/photos/", s3_settings).code is ErrorCode.ILLEGAL_PARAMETER
    assert error_of("s3:///key.jpg", s3_settings).code is ErrorCode.ILLEGAL_PARAMETER


def test_object_above_byte_cap(bucket: str, s3_settings: Settings) -> None:
    capped = s3_settings.model_copy(update={"max_image_bytes": 1000})
    assert error_of(f"s3://{bucket}/photos/gdp.jpg", capped).code is ErrorCode.IMAGE_TOO_LARGE


def test_unreachable_endpoint_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(s3_endpoint_url=f"http://127.0.0.1:{port}", download_timeout_s=1.0)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in DUMMY_AWS_ENV.items():
            mp.setenv(key, value)
        err = error_of(f"s3://{BUCKET}/photos/gdp.jpg", settings)
    assert err.code is ErrorCode.OBJECT_STORE_UNAVAILABLE and err.retryable


def test_prefix_listing_is_paginated_and_lazy(bucket: str, s3_settings: Settings) -> None:
    client = s3_client(s3_settings)
    keys = [f"many/{i:04d}.jpg" for i in range(25)] + ["many/readme.txt", "many/sub/"]
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    calls: list[str] = []

    def count(**kwargs: object) -> None:
        calls.append("ListObjectsV2")

    client.meta.events.register("before-call.s3.ListObjectsV2", count)
    try:
        listing = expand_sources([f"s3://{bucket}/many/"], s3_settings, s3_page_size=10)
        first = next(listing)
        assert first == f"s3://{bucket}/many/0000.jpg"
        assert len(calls) == 1  # only the first page has been fetched
        rest = list(listing)
    finally:
        client.meta.events.unregister("before-call.s3.ListObjectsV2", count)
    expected = [f"s3://{bucket}/{k}" for k in keys if k.endswith(".jpg")]
    assert [first, *rest] == expected  # images only, in key order; no .txt, no folder marker
    assert len(calls) == 3  # 27 keys at 10 per page
    # a key without the trailing slash is a single object and passes through
    assert list(expand_sources([f"s3://{bucket}/many"], s3_settings)) == [f"s3://{bucket}/many"]


def test_listing_of_missing_bucket(s3_settings: Settings) -> None:
    with pytest.raises(FacepipeError) as info:
        list(expand_sources(["s3://no-such-bucket-xyz/"], s3_settings))
    assert info.value.code is ErrorCode.SOURCE_NOT_FOUND


def test_one_client_per_settings(s3_settings: Settings) -> None:
    assert s3_client(s3_settings) is s3_client(s3_settings.model_copy())
    other_region = s3_settings.model_copy(update={"s3_region": "eu-west-1"})
    assert s3_client(other_region) is not s3_client(s3_settings)


def test_detect_and_enroll_listings_see_the_same_keys(bucket: str, s3_settings: Settings) -> None:
    from pipeline.jobs.producers import list_items_page
    from pipeline.sources.location import S3Location

    client = s3_client(s3_settings)
    keys = [
        "same/top.jpg",
        "same/ann/1.JPEG",
        "same/ann/2.jfif",
        "same/ann/3.heic",
        "same/ann/4.gif",
        "same/ann/5.tiff",
        "same/ann/notes.txt",
        "same/bob/",
        "same/bob/6.webp",
        "same/bob/7.dib",
    ]
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    detect = list(expand_sources([f"s3://{bucket}/same/"], s3_settings, s3_page_size=3))
    enroll, persons, token = [], [], None
    while True:  # what the ingest task does, one page per call
        page = list_items_page(S3Location(bucket, "same/"), s3_settings, token=token, page_size=3)
        enroll += [s.uri for s in page.specs]
        persons += [s.person_id for s in page.specs]
        if (token := page.next_token) is None:
            break
    expected = [f"s3://{bucket}/{k}" for k in sorted(keys) if not k.endswith(("/", ".txt"))]
    assert detect == enroll == expected
    assert persons == ["ann"] * 5 + ["bob"] * 2 + ["same"]
