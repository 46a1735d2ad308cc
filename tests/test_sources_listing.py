"""The one lister (pipeline.sources.listing): folders page by page with a resume token, and
``facepipe detect DIR`` and the jobs' listing seeing the same files."""

from __future__ import annotations

import os
from itertools import pairwise
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.producers import list_items_page, walk_directory
from pipeline.sources import IMAGE_EXTENSIONS, expand_sources
from pipeline.sources.formats import ACCEPTED_EXTENSIONS, REFUSED_EXTENSIONS, ImageFormat
from pipeline.sources.listing import iter_pages, list_page, walk_folder
from pipeline.sources.location import LocalLocation

SETTINGS = Settings()


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def _mixed_tree(root: Path) -> list[str]:
    """Every listed extension (lower and upper case) among files that must not be listed;
    returns the relative paths the listing must yield, in its order."""
    names = sorted(f"p{i:02d}{ext}" for i, ext in enumerate(sorted(IMAGE_EXTENSIONS)))
    upper = sorted(f"u{i:02d}{ext.upper()}" for i, ext in enumerate(sorted(IMAGE_EXTENSIONS)))
    for name in (*names, *upper):
        _touch(root / "ann" / name)
    for other in ("notes.txt", "x.pdf", "x.psd", "x.jp2", "x.ico", "jpg", ".hidden.jpg"):
        _touch(root / "ann" / other)
    _touch(root / ".cache" / "thumb.jpg")  # hidden folders are not walked
    _touch(root / "top.jpg")
    _touch(root / "bob" / "deep" / "1.webp")
    _touch(root / "bob" / "2.png")
    return [
        "top.jpg",
        *(f"ann/{n}" for n in sorted((*names, *upper))),
        "bob/2.png",
        "bob/deep/1.webp",
    ]


def test_one_extension_list_from_the_decoder_formats() -> None:
    accepted = {e for exts in ACCEPTED_EXTENSIONS.values() for e in exts}
    refused = {e for exts in REFUSED_EXTENSIONS.values() for e in exts}
    assert set(ACCEPTED_EXTENSIONS) == set(ImageFormat)  # every decodable format is listed
    assert accepted | refused == IMAGE_EXTENSIONS
    assert not accepted & refused
    assert {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"} <= IMAGE_EXTENSIONS


def test_detect_and_enroll_listings_see_the_same_files(tmp_path: Path) -> None:
    expected = _mixed_tree(tmp_path)
    detect = list(expand_sources([str(tmp_path)]))
    enroll = [s.uri for s in walk_directory(tmp_path)]
    paged: list[str] = []
    token = None
    while True:  # what the ingest task does, one page per call
        page = list_items_page(LocalLocation(tmp_path), SETTINGS, token=token, page_size=7)
        paged += [s.uri for s in page.specs]
        if (token := page.next_token) is None:
            break
    assert [os.path.relpath(p, tmp_path) for p in detect] == expected
    assert enroll == paged == [os.path.abspath(p) for p in detect]


def test_folder_pages_resume_from_any_token(tmp_path: Path) -> None:
    expected = _mixed_tree(tmp_path)
    pages = list(iter_pages(LocalLocation(tmp_path), SETTINGS, page_size=5))
    assert [len(p.sources) for p in pages] == [5] * (len(expected) // 5) + (
        [len(expected) % 5] if len(expected) % 5 else []
    )
    assert pages[-1].next_token is None
    for previous, page in pairwise(pages):
        # the token is the last file of its page, and the next page starts right after it
        assert previous.next_token == os.path.relpath(previous.sources[-1], tmp_path)
        again = list_page(LocalLocation(tmp_path), SETTINGS, page_size=5, token=previous.next_token)
        assert again == page
    for i, rel in enumerate(expected):
        assert list(walk_folder(tmp_path, after=rel)) == expected[i + 1 :]


def test_exactly_full_last_page_has_no_token(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        _touch(tmp_path / name)
    pages = list(iter_pages(LocalLocation(tmp_path), SETTINGS, page_size=2))
    assert [p.next_token for p in pages] == ["b.jpg", None]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert list(iter_pages(LocalLocation(empty), SETTINGS, page_size=2)) == [
        list_page(LocalLocation(empty), SETTINGS, page_size=2)
    ]
    assert list_page(LocalLocation(empty), SETTINGS, page_size=2).sources == ()


def test_missing_folder_and_bad_page_size_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FacepipeError) as info:
        list_page(LocalLocation(tmp_path / "nope"), SETTINGS, page_size=10)
    assert info.value.code is ErrorCode.SOURCE_NOT_FOUND
    with pytest.raises(FacepipeError) as info:
        list_page(LocalLocation(tmp_path), SETTINGS, page_size=0)
    assert info.value.code is ErrorCode.ILLEGAL_PARAMETER
