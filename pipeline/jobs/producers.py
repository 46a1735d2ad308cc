"""Producers: turn a source (folder, S3 prefix, URL list, CSV manifest) into job items.

Listing is lazy and paged, so a source of millions of images never sits in memory: folders and
S3 prefixes are listed by :mod:`pipeline.sources.listing` (the lister ``facepipe detect DIR``
uses too) one page at a time, and the ingest task carries the page's token to the next.

Person ids for enrolment: the parent folder name (or the key segment before the file name),
unless a CSV manifest names the person. Manifest columns: ``uri,person_id,name,groups`` where
``groups`` is separated by ``;`` or ``|`` (a comma would clash with CSV).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from pipeline.aws import s3_client
from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.model import ItemSpec
from pipeline.sources.formats import has_image_extension
from pipeline.sources.listing import list_page, walk_folder
from pipeline.sources.location import (
    HttpLocation,
    InlineLocation,
    LocalLocation,
    Location,
    S3Location,
    Trust,
    parse_location,
)

URL_LIST_SUFFIXES = frozenset({".txt", ".urls", ".list", ".lst"})
_GROUP_SPLIT = re.compile(r"[;|]")


class SourceType(StrEnum):
    DIRECTORY = "directory"
    S3_PREFIX = "s3-prefix"
    URL_LIST = "url-list"
    MANIFEST = "manifest"
    SINGLE = "single"


def source_type(source: str | Location, trust: Trust = Trust.OPERATOR) -> SourceType:
    """Which producer lists ``source`` (parsed under ``trust`` when it is a string).

    A caller's source can only be remote (an S3 prefix or key, a URL): folders, URL lists and
    manifests on this machine are an operator's.
    """
    location = parse_location(source, trust) if isinstance(source, str) else source
    if isinstance(location, S3Location):
        if location.is_prefix or not has_image_extension(location.key):
            return SourceType.S3_PREFIX
        return SourceType.SINGLE
    if isinstance(location, HttpLocation | InlineLocation):
        return SourceType.SINGLE
    path = location.path
    if path.is_dir():
        return SourceType.DIRECTORY
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return SourceType.MANIFEST
    if suffix in URL_LIST_SUFFIXES:
        return SourceType.URL_LIST
    if not path.exists():
        raise FacepipeError(
            ErrorCode.SOURCE_NOT_FOUND, f"{source} does not exist", source=str(source)
        )
    return SourceType.SINGLE


def split_groups(text: str | None) -> tuple[str, ...] | None:
    """``"a;b|c"`` -> ``("a", "b", "c")``; empty -> None."""
    if not text:
        return None
    groups = tuple(g.strip() for g in _GROUP_SPLIT.split(text) if g.strip())
    return groups or None


def _resolve(uri: str, base: Path) -> str:
    """A manifest's relative path made absolute against its folder.

    ``abspath``, not ``resolve``: a symlink loop among the listed files must fail its own item
    when it is read, not the listing (``resolve`` raises on loops).
    """
    if "://" in uri or uri.startswith(("data:", "base64:")) or os.path.isabs(uri):
        return uri
    return os.path.abspath(base / uri)


def read_manifest(path: Path, base: Path | None = None) -> Iterator[ItemSpec]:
    """Rows of a ``uri,person_id,name,groups`` CSV; relative URIs resolve against ``base``."""
    base = base if base is not None else path.parent
    try:
        fh = path.open(newline="", encoding="utf-8")
    except FileNotFoundError as exc:
        raise FacepipeError(ErrorCode.SOURCE_NOT_FOUND, f"{path} does not exist") from exc
    except OSError as exc:
        raise FacepipeError(
            ErrorCode.SOURCE_NOT_FOUND, f"{path}: cannot be read ({exc.strerror})"
        ) from exc
    with fh:
        yield from manifest_rows(fh, str(path), lambda uri: _resolve(uri, base))


def read_s3_manifest(location: S3Location, settings: Settings) -> Iterator[ItemSpec]:
    """Rows of a manifest stored in S3, streamed; relative keys resolve against its prefix."""
    folder = location.key.rpartition("/")[0]

    def resolve(uri: str) -> str:
        if "://" in uri or uri.startswith(("data:", "base64:")):
            return uri
        return f"s3://{location.bucket}/{folder + '/' if folder else ''}{uri.lstrip('/')}"

    try:
        body = s3_client(settings).get_object(Bucket=location.bucket, Key=location.key)["Body"]
    except Exception as exc:  # botocore raises many types; all mean the manifest is unreadable
        raise FacepipeError(
            ErrorCode.SOURCE_NOT_FOUND, f"manifest {location.uri} cannot be read: {exc}"
        ) from exc
    try:
        lines = (line.decode("utf-8") for line in body.iter_lines())
        yield from manifest_rows(lines, location.uri, resolve)
    finally:
        body.close()


def manifest_rows(
    lines: Iterable[str], label: str, resolve: Callable[[str], str]
) -> Iterator[ItemSpec]:
    """Parse manifest CSV lines (header ``uri,person_id,name,groups``) into items."""
    reader = csv.DictReader(lines)
    if reader.fieldnames is None or "uri" not in reader.fieldnames:
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER,
            f"{label}: a manifest needs a header line with at least 'uri' "
            "(uri,person_id,name,groups)",
        )
    for row in reader:
        uri = (row.get("uri") or "").strip()
        if not uri:
            continue
        yield ItemSpec(
            uri=resolve(uri),
            person_id=(row.get("person_id") or "").strip() or None,
            person_name=(row.get("name") or "").strip() or None,
            groups=split_groups(row.get("groups")),
        )


def read_url_list(path: Path) -> Iterator[ItemSpec]:
    """One URI per line (http(s) URLs, s3:// keys or paths); blank lines and ``#`` skipped."""
    try:
        fh = path.open(encoding="utf-8")
    except FileNotFoundError as exc:
        raise FacepipeError(ErrorCode.SOURCE_NOT_FOUND, f"{path} does not exist") from exc
    with fh:
        for line in fh:
            uri = line.strip()
            if uri and not uri.startswith("#"):
                yield ItemSpec(uri=_resolve(uri, path.parent))


def walk_directory(root: Path) -> Iterator[ItemSpec]:
    """Image files under ``root`` in listing order (that of
    :func:`pipeline.sources.listing.walk_folder`); person = parent folder name."""
    for rel in walk_folder(root):
        yield _folder_item(os.path.join(root, *rel.split("/")))


@dataclass(frozen=True)
class ItemPage:
    """One page of a folder or S3 listing as items, and where the next one starts (None: last
    page)."""

    specs: list[ItemSpec]
    next_token: str | None


def list_items_page(
    location: LocalLocation | S3Location,
    settings: Settings,
    *,
    token: str | None = None,
    page_size: int = 1000,
) -> ItemPage:
    """One page of the image files of a folder or S3 prefix, from ``token`` on, as items."""
    page = list_page(location, settings, page_size=page_size, token=token)
    if isinstance(location, S3Location):
        in_bucket = len(S3Location(location.bucket, "").uri)  # "s3://bucket/"
        specs = [_s3_item(uri, uri[in_bucket:]) for uri in page.sources]
    else:
        specs = [_folder_item(path) for path in page.sources]
    return ItemPage(specs, page.next_token)


def _folder_item(path: str) -> ItemSpec:
    """A listed file as an item, its person the folder it lies in (``abspath``, not
    ``resolve``: see :func:`_resolve`)."""
    path = os.path.abspath(path)
    return ItemSpec(uri=path, person_id=Path(path).parent.name)


def _s3_item(uri: str, key: str) -> ItemSpec:
    """A listed object as an item, its person the key segment before the file name."""
    parts = key.split("/")
    return ItemSpec(uri=uri, person_id=parts[-2] if len(parts) >= 2 else None)


def iter_local_source(source: str, manifest: str | None = None) -> Iterator[ItemSpec]:
    """Items of a non-S3-prefix source (folder, URL list, manifest or single image).

    With ``manifest``, rows of the manifest override person id, name and groups of the listed
    items with the same URI; a manifest given as the source itself lists its rows.
    """
    kind = source_type(source, Trust.OPERATOR)
    if kind == SourceType.DIRECTORY:
        specs: Iterator[ItemSpec] = walk_directory(Path(source))
    elif kind == SourceType.MANIFEST:
        specs = read_manifest(Path(source))
    elif kind == SourceType.URL_LIST:
        specs = read_url_list(Path(source))
    elif kind == SourceType.SINGLE:
        location = parse_location(source, Trust.OPERATOR)
        uri = os.path.abspath(location.path) if isinstance(location, LocalLocation) else source
        specs = iter([ItemSpec(uri=uri)])
    else:
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"{source} is an S3 prefix")
    if manifest is None:
        yield from specs
        return
    base = Path(source) if kind == SourceType.DIRECTORY else Path(manifest).parent
    overrides = {m.uri: m for m in read_manifest(Path(manifest), base)}
    for spec in specs:
        yield apply_override(spec, overrides.get(spec.uri))


def apply_override(spec: ItemSpec, row: ItemSpec | None) -> ItemSpec:
    """The manifest row's non-empty fields win over what the listing guessed."""
    if row is None:
        return spec
    return replace(
        spec,
        person_id=row.person_id or spec.person_id,
        person_name=row.person_name or spec.person_name,
        groups=row.groups or spec.groups,
    )
