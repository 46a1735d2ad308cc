"""The one JSON Lines exporter (pipeline.jobs.exporter), used by job exports and identify-batch:
checked destinations, all-or-nothing files, S3 uploads (moto server over HTTP)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.aws import s3_client
from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.exporter import JsonLinesExport, export_records
from pipeline.sources.location import Trust
from tests.fixtures.services import AWS_ENV

RECORDS = [{"observed_id": i, "matches": [{"rank": 1, "person_id": f"p{i}"}]} for i in range(5)]


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, export_dir=tmp_path / "exports")


def test_records_land_under_the_export_folder_whole(settings: Settings, tmp_path: Path) -> None:
    assert export_records(iter(RECORDS), "runs/night.jsonl", settings, Trust.CALLER) == 5
    out = tmp_path / "exports" / "runs" / "night.jsonl"
    assert [json.loads(line) for line in out.read_text().splitlines()] == RECORDS
    # an absolute path inside the export folder is accepted too, and replaced whole
    assert export_records(iter(RECORDS[:2]), str(out), settings, Trust.OPERATOR) == 2
    assert len(out.read_text().splitlines()) == 2
    assert _files(tmp_path) == ["exports/runs/night.jsonl"]  # no .part file left


def test_a_failed_export_leaves_nothing(settings: Settings, tmp_path: Path) -> None:
    def failing() -> Iterator[dict[str, object]]:
        yield RECORDS[0]
        raise RuntimeError("the query failed")

    with pytest.raises(RuntimeError):
        export_records(failing(), "x.jsonl", settings, Trust.OPERATOR)
    assert _files(tmp_path) == []
    out = JsonLinesExport("y.jsonl", settings, Trust.OPERATOR)
    out.write(RECORDS[0])
    out.abort()
    assert _files(tmp_path) == []


@pytest.mark.parametrize(
    "dest",
    [
        "../outside.jsonl",
        "/tmp/elsewhere/x.jsonl",
        "file:///tmp/x.jsonl",
        "s3://bucket/",
    ],
)
def test_destinations_outside_are_refused_before_writing(
    dest: str, settings: Settings, tmp_path: Path
) -> None:
    # identify-batch used to write wherever it was told: now it goes through the same checks
    for trust, code in (
        (Trust.CALLER, ErrorCode.URL_FORBIDDEN),
        (Trust.OPERATOR, ErrorCode.ILLEGAL_PARAMETER),
    ):
        with pytest.raises(FacepipeError) as info:
            export_records(iter(RECORDS), dest, settings, trust)
        assert info.value.code is code
    assert _files(tmp_path) == []


def test_s3_export_is_uploaded_as_ndjson(
    moto_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    settings = Settings(home=tmp_path, s3_endpoint_url=moto_server)
    client = s3_client(settings)
    client.create_bucket(Bucket="exporter-test")
    assert (
        export_records(iter(RECORDS), "s3://exporter-test/a/b.jsonl", settings, Trust.CALLER) == 5
    )
    obj = client.get_object(Bucket="exporter-test", Key="a/b.jsonl")
    assert obj["ContentType"] == "application/x-ndjson"
    assert [json.loads(x) for x in obj["Body"].read().decode().splitlines()] == RECORDS
    with pytest.raises(FacepipeError) as info:
        export_records(iter(RECORDS), "s3://no-such-bucket-xyz/a.jsonl", settings, Trust.CALLER)
    assert info.value.code is ErrorCode.OBJECT_STORE_UNAVAILABLE
    assert _files(tmp_path) == []
