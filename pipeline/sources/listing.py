"""The image files of a folder or an S3 prefix, one page at a time: the only lister.

``facepipe detect DIR`` (through :func:`pipeline.sources.expand_sources`) and the jobs' ingest
(:mod:`pipeline.jobs.producers`) both list through here, so they see the same files: those
ending in :data:`pipeline.sources.formats.IMAGE_EXTENSIONS`, in the same order.

Every page carries the token its successor starts from (None on the last page), so a listing
can stop after any page and resume in another process (the ingest task stores it with the job:
``listing_token``). The token of an S3 listing is S3's continuation token; that of a folder is
the relative path (``/``-separated) of the page's last file: folders wholly before it are
pruned unread on resumption. :func:`iter_pages` goes through every page without walking a
folder twice.

Folder order: in each folder its files (sorted by name) come before its subfolders (sorted),
i.e. the order of the key ``((1, dir), ..., (0, file))``. Hidden entries (names starting with
``.``) are skipped and symlinked folders are not followed (no cycles); other entries with an
image name are listed whatever they are (a FIFO, a dangling link): reading one then fails for
that item with its code.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.sources.formats import has_image_extension
from pipeline.sources.location import LocalLocation, S3Location
from pipeline.sources.s3 import list_s3_keys

ListedLocation = LocalLocation | S3Location
_WalkKey = tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class ListingPage:
    """One page of a listing.

    ``sources`` are the files as readable sources: ``s3://bucket/key`` URIs, or paths joined to
    the folder as it was given (absolute only when it was). ``next_token`` is where the next
    page starts (None: this is the last one).
    """

    sources: tuple[str, ...]
    next_token: str | None


def iter_pages(
    location: ListedLocation, settings: Settings, *, page_size: int, token: str | None = None
) -> Iterator[ListingPage]:
    """The pages of a folder or an S3 prefix from ``token`` on, fetched as they are consumed.

    A folder that does not exist (or is not a folder) is SOURCE_NOT_FOUND; S3 errors are
    translated by :mod:`pipeline.sources.s3`.
    """
    if page_size < 1:
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"page size {page_size} is below 1")
    if isinstance(location, S3Location):
        yield from _s3_pages(location, settings, page_size, token)
    else:
        yield from _folder_pages(location.path, page_size, token)


def list_page(
    location: ListedLocation, settings: Settings, *, page_size: int, token: str | None = None
) -> ListingPage:
    """The one page that starts at ``token`` (the first page when None)."""
    return next(iter_pages(location, settings, page_size=page_size, token=token))


def _s3_pages(
    location: S3Location, settings: Settings, page_size: int, token: str | None
) -> Iterator[ListingPage]:
    while True:
        page = list_s3_keys(location, settings, token=token, page_size=page_size)
        sources = tuple(
            f"s3://{location.bucket}/{key}" for key in page.keys if has_image_extension(key)
        )
        yield ListingPage(sources, page.next_token)
        if page.next_token is None:
            return
        token = page.next_token


def _folder_pages(root: Path, page_size: int, token: str | None) -> Iterator[ListingPage]:
    walk = walk_folder(root, after=token)
    page = list(islice(walk, page_size + 1))  # one more than a page: is there a next one?
    while True:
        more = len(page) > page_size
        listed = page[:page_size]
        sources = tuple(os.path.join(root, *rel.split("/")) for rel in listed)
        yield ListingPage(sources, listed[-1] if more else None)
        if not more:
            return
        page = [page[-1], *islice(walk, page_size)]


def walk_folder(root: Path, after: str | None = None) -> Iterator[str]:
    """Relative paths (``/``-separated) of the image files under ``root`` in listing order,
    lazily, starting after the file ``after`` (a previous page's token)."""
    if not root.is_dir():
        raise FacepipeError(ErrorCode.SOURCE_NOT_FOUND, f"{root} is not a folder", source=str(root))
    stop = _walk_key(after) if after else None
    yield from _walk(root, (), stop)


def _walk(root: Path, rel: tuple[str, ...], stop: _WalkKey | None) -> Iterator[str]:
    try:
        with os.scandir(root.joinpath(*rel)) as entries:
            found = [
                (entry.name, entry.is_dir(follow_symlinks=False))
                for entry in entries
                if not entry.name.startswith(".")
            ]
    except OSError:  # unreadable or vanished since it was listed: nothing to list in it
        return
    prefix = tuple((1, part) for part in rel)
    for name in sorted(n for n, is_dir in found if not is_dir and has_image_extension(n)):
        if stop is None or (*prefix, (0, name)) > stop:
            yield "/".join((*rel, name))
    level = stop[: len(prefix) + 1] if stop is not None else None
    for name in sorted(n for n, is_dir in found if is_dir):
        # a subfolder wholly before the resume point is pruned unread
        if level is None or (*prefix, (1, name)) >= level:
            yield from _walk(root, (*rel, name), stop)


def _walk_key(rel: str) -> _WalkKey:
    parts = rel.split("/")
    return (*((1, p) for p in parts[:-1]), (0, parts[-1]))
