"""Caller-given locations can never reach the server's files (issue: a URL becoming a path).

Every hostile shape is refused with URL_FORBIDDEN / ILLEGAL_PARAMETER, and the tests assert
that nothing was read or created on disk: they run in an empty working directory (a URL
reinterpreted as a relative path would create ``http:/`` folders there) next to a real image
and a real folder that a reinterpretation could reach.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.exportdest import parse_export_destination, resolve_inside
from pipeline.jobs.exporter import JsonLinesExport, export_records
from pipeline.jobs.model import Origin
from pipeline.sources import read_source_bytes
from pipeline.sources.location import (
    HttpLocation,
    InlineLocation,
    LocalLocation,
    S3Location,
    Trust,
    parse_location,
)

# Shapes that a prefix check would take for remote URLs, or that name local files.
HOSTILE = [
    "http:/../../etc/passwd",
    "http:/..%2f..%2fetc/passwd",
    "https:..\\..\\etc\\passwd",
    "http:\\\\127.0.0.1\\x.jpg",
    "s3:/../etc/passwd",
    "s3:/bucket/key.jpg",
    "s3://../etc/passwd",
    "s3://bucket/../../etc/passwd",
    "s3://bucket/a/%2e%2e/%2E%2e/etc/passwd",
    "s3://bucket/a/%252e%252e/b",
    "s3://Bad_Bucket/key",
    "file:///etc/passwd",
    "file:/etc/passwd",
    "FILE:///etc/passwd",
    "/etc/passwd",
    "../../etc/passwd",
    "~/.ssh/id_rsa",
    "etc/passwd",
    "gopher://127.0.0.1/x",
    "ftp://example.com/x.jpg",
    "http://user:pw@example.com/x.jpg",
    "http://example.com/x.jpg\x00.png",
    "javascript:alert(1)",
]


@pytest.fixture()
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("text", HOSTILE)
def test_a_callers_hostile_location_is_refused(text: str, empty_cwd: Path) -> None:
    with pytest.raises(FacepipeError) as info:
        parse_location(text, Trust.CALLER)
    assert info.value.code is ErrorCode.URL_FORBIDDEN, info.value
    with pytest.raises(FacepipeError) as read:
        read_source_bytes(text, Settings(), Trust.CALLER)
    assert read.value.code is ErrorCode.URL_FORBIDDEN
    assert tree(empty_cwd) == []


def test_a_callers_real_local_image_is_not_read(players_jpg: Path, empty_cwd: Path) -> None:
    """The file exists and is an image: refused all the same, in every spelling."""
    for text in (str(players_jpg), f"file://{players_jpg}", os.path.relpath(players_jpg)):
        with pytest.raises(FacepipeError) as info:
            read_source_bytes(text, Settings(), Trust.CALLER)
        assert info.value.code is ErrorCode.URL_FORBIDDEN
    # an operator may read it
    assert read_source_bytes(str(players_jpg), Settings()) == players_jpg.read_bytes()


@pytest.mark.parametrize(
    "text", ["http:/../../x", "https:x.jpg", "s3:/../x", "s3:bucket/key", "img:1.jpg"]
)
def test_url_shapes_are_never_paths_even_for_operators(text: str, empty_cwd: Path) -> None:
    (empty_cwd / "http:").mkdir()  # a folder a reinterpretation would find
    with pytest.raises(FacepipeError) as info:
        parse_location(text, Trust.OPERATOR)
    assert info.value.code is ErrorCode.ILLEGAL_PARAMETER


def test_good_locations_parse_into_typed_values(tmp_path: Path) -> None:
    http = parse_location(" https://Example.com/a b.jpg?x=1 ", Trust.CALLER)
    assert isinstance(http, HttpLocation) and http.url == "https://example.com/a%20b.jpg?x=1"
    s3 = parse_location("s3://my-bucket/enroll/ann/1.jpg", Trust.CALLER)
    assert s3 == S3Location("my-bucket", "enroll/ann/1.jpg") and not s3.is_prefix
    assert parse_location("s3://my-bucket", Trust.CALLER) == S3Location("my-bucket", "")
    assert parse_location("base64:AAAA", Trust.CALLER) == InlineLocation("base64:AAAA")
    assert parse_location(str(tmp_path), Trust.OPERATOR) == LocalLocation(tmp_path)
    assert parse_location(f"file://{tmp_path}", Trust.OPERATOR) == LocalLocation(tmp_path)
    with pytest.raises(FacepipeError) as narrowed:
        parse_location("s3://b-1/k.jpg", Trust.CALLER, remote_schemes=frozenset({"https"}))
    assert narrowed.value.code is ErrorCode.URL_FORBIDDEN
    with pytest.raises(FacepipeError) as inline:
        parse_location("base64:AAAA", Trust.CALLER, inline=False)
    assert inline.value.code is ErrorCode.URL_FORBIDDEN
    with pytest.raises(FacepipeError) as empty:
        parse_location("  ", Trust.CALLER)
    assert empty.value.code is ErrorCode.EMPTY_PARAMETER


def test_job_origin_decides_trust() -> None:
    assert Origin.CLI.trust is Trust.OPERATOR and Origin.SCHEDULE.trust is Trust.OPERATOR
    assert Origin.HTTP.trust is Trust.CALLER and Origin.S3_EVENT.trust is Trust.CALLER


# --- export destinations ------------------------------------------------------------------------


@pytest.fixture()
def export_settings(tmp_path: Path) -> Settings:
    (tmp_path / "exports").mkdir()
    (tmp_path / "outside").mkdir()
    return Settings(home=tmp_path, export_dir=tmp_path / "exports")


@pytest.mark.parametrize(
    "dest",
    [
        "http:/../../outside/x.jsonl",
        "../outside/x.jsonl",
        "a/../../outside/x.jsonl",
        "%2e%2e/outside/x.jsonl",
        "..\\outside\\x.jsonl",
        "file:///tmp/x.jsonl",
        "https://example.com/x.jsonl",
        "/etc/cron.d/x",
        "s3://bucket/",
        "s3:/../x.jsonl",
        "./",
    ],
)
def test_hostile_export_destinations_are_refused(
    dest: str, export_settings: Settings, tmp_path: Path
) -> None:
    before = tree(tmp_path)
    for trust, code in (
        (Trust.CALLER, ErrorCode.URL_FORBIDDEN),
        (Trust.OPERATOR, ErrorCode.ILLEGAL_PARAMETER),
    ):
        with pytest.raises(FacepipeError) as info:
            parse_export_destination(dest, export_settings, trust)
        assert info.value.code is code, (dest, info.value)
    assert tree(tmp_path) == before


def test_symlink_out_of_the_export_folder_is_refused(
    export_settings: Settings, tmp_path: Path
) -> None:
    exports = tmp_path / "exports"
    (exports / "escape").symlink_to(tmp_path / "outside")
    with pytest.raises(FacepipeError) as info:
        parse_export_destination("escape/x.jsonl", export_settings, Trust.CALLER)
    assert info.value.code is ErrorCode.URL_FORBIDDEN
    (exports / "loop").symlink_to(exports / "loop")
    with pytest.raises(FacepipeError):
        resolve_inside(exports, "loop/x.jsonl")
    assert not (tmp_path / "outside" / "x.jsonl").exists()


def test_good_export_destinations(export_settings: Settings, tmp_path: Path) -> None:
    local = parse_export_destination("nightly/2026-12-02.jsonl", export_settings, Trust.CALLER)
    assert local.path == (tmp_path / "exports" / "nightly" / "2026-12-02.jsonl").resolve()
    assert local.s3 is None and local.text == "nightly/2026-12-02.jsonl"
    inside = str(tmp_path / "exports" / "a.jsonl")
    assert parse_export_destination(inside, export_settings, Trust.OPERATOR).path is not None
    remote = parse_export_destination("s3://out-bucket/run/1.jsonl", export_settings, Trust.CALLER)
    assert remote.s3 == S3Location("out-bucket", "run/1.jsonl") and remote.path is None


def test_an_export_never_writes_through_a_symlink(
    export_settings: Settings, tmp_path: Path
) -> None:
    """A symlink at the destination that leads out is refused; one placed there after the
    check is replaced by the export, never followed (the file outside keeps its content)."""
    exports = tmp_path / "exports"
    victim = tmp_path / "outside" / "victim.txt"
    victim.write_text("keep")
    (exports / "link.jsonl").symlink_to(victim)
    with pytest.raises(FacepipeError) as info:
        export_records([{"a": 1}], "link.jsonl", export_settings, Trust.CALLER)
    assert info.value.code is ErrorCode.URL_FORBIDDEN

    late = JsonLinesExport("late.jsonl", export_settings, Trust.CALLER)
    late.write({"a": 1})
    (exports / "late.jsonl").symlink_to(victim)  # between the check and the write
    assert late.finish() == 1
    assert victim.read_text() == "keep"
    written = exports / "late.jsonl"
    assert not written.is_symlink() and written.read_text() == '{"a":1}\n'
    assert sorted(p.name for p in exports.iterdir()) == ["late.jsonl", "link.jsonl"]
