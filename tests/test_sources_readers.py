"""Readers: base64 / data URIs, local paths, and expand_sources over directories."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from PIL import Image

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.sources import expand_sources, load_image, read_source_bytes

SETTINGS = Settings()


def code_of(source: str, settings: Settings = SETTINGS) -> ErrorCode:
    with pytest.raises(FacepipeError) as info:
        load_image(source, settings)
    return info.value.code


def test_base64_forms(yaoming_jpg: Path) -> None:
    data = yaoming_jpg.read_bytes()
    b64 = base64.b64encode(data).decode()
    reference = load_image(str(yaoming_jpg), SETTINGS)
    for source in (
        f"data:image/jpeg;base64,{b64}",
        f"DATA:image/jpg;base64,{b64}",
        f"data:;base64,{b64}",
        f"base64:{b64}",
        f"base64:{b64.rstrip('=')}",  # padding dropped
        "base64:" + "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76)),  # MIME lines
        "base64:" + base64.urlsafe_b64encode(data).decode(),
    ):
        image = load_image(source, SETTINGS)
        assert image.content_sha256 == reference.content_sha256
        assert len(image.source) < 60  # the label never carries the whole payload


def test_invalid_base64_is_decode_failed() -> None:
    assert code_of("base64:not*base64!") is ErrorCode.DECODE_FAILED
    assert code_of("data:image/png;base64,@@@@") is ErrorCode.DECODE_FAILED
    assert code_of("base64:") is ErrorCode.EMPTY_IMAGE
    # valid base64 of bytes that are no image
    assert code_of("base64:" + base64.b64encode(b"hello world").decode()) is (
        ErrorCode.ILLEGAL_FORMAT
    )
    assert code_of("data:text/plain;base64,aGVsbG8=") is ErrorCode.ILLEGAL_FORMAT
    assert code_of("data:image/png,rawdata") is ErrorCode.ILLEGAL_PARAMETER


def test_base64_above_byte_cap_refused_before_decoding() -> None:
    payload = base64.b64encode(b"\xff" * 4000).decode()
    assert code_of(f"base64:{payload}", Settings(max_image_bytes=1000)) is (
        ErrorCode.IMAGE_TOO_LARGE
    )


def test_local_paths(tmp_path: Path, gdp_jpg: Path) -> None:
    assert code_of(str(tmp_path / "missing.jpg")) is ErrorCode.SOURCE_NOT_FOUND
    assert code_of(str(tmp_path)) is ErrorCode.ILLEGAL_PARAMETER
    assert code_of("") is ErrorCode.EMPTY_PARAMETER
    assert load_image(f"file://{gdp_jpg}", SETTINGS).width == 500
    assert code_of(str(gdp_jpg), Settings(max_image_bytes=1000)) is ErrorCode.IMAGE_TOO_LARGE
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert code_of(str(empty)) is ErrorCode.EMPTY_IMAGE
    assert read_source_bytes(str(gdp_jpg)) == gdp_jpg.read_bytes()


def test_expand_directory_recursive_sorted(tmp_path: Path) -> None:
    card = Image.new("RGB", (80, 80), "gray")
    for rel in ("b.jpg", "a.PNG", "sub/z.webp", "sub/deeper/c.jpeg", "a2/x.bmp", "anim.gif"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        card.save(path, "GIF" if rel.endswith("gif") else None)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.jpg").write_bytes(b"x")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "thumb.jpg").write_bytes(b"x")
    expanded = list(expand_sources([str(tmp_path)]))
    rel = [str(Path(p).relative_to(tmp_path)) for p in expanded]
    # the jobs' listing order: in each folder its files (sorted) before its subfolders (sorted)
    assert rel == ["a.PNG", "anim.gif", "b.jpg", "a2/x.bmp", "sub/z.webp", "sub/deeper/c.jpeg"]


def test_expand_passes_other_sources_through(tmp_path: Path) -> None:
    sources = [
        "https://example.com/a.jpg",
        "s3://bucket/key.jpg",
        "base64:AAAA",
        "data:image/png;base64,AAAA",
        str(tmp_path / "missing.jpg"),
        "",  # not the current directory: reading it reports EMPTY_PARAMETER
        "ftp://host/a.jpg",
    ]
    assert list(expand_sources(sources)) == sources


def test_unsupported_scheme_is_illegal_parameter() -> None:
    for source in ("ftp://host/a.jpg", "gs://bucket/a.jpg"):
        with pytest.raises(FacepipeError) as exc:
            read_source_bytes(source)
        assert exc.value.code is ErrorCode.ILLEGAL_PARAMETER and "scheme" in exc.value.message


def test_expand_is_lazy(tmp_path: Path) -> None:
    def sources():
        yield str(tmp_path / "first.jpg")
        raise RuntimeError("consumed too far")

    assert next(expand_sources(sources())) == str(tmp_path / "first.jpg")
