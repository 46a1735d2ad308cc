"""Producers: turn a source (folder, S3 prefix, URL list, CSV manifest) into job items.

Listing is lazy and paged, so a source of millions of images never sits in memory: folders are
walked in sorted order, S3 prefixes are listed one ``list_objects_v2`` page at a time (the
ingest task carries the continuation token from page to page).

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
from typing import Any

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.aws import s3_client
from pipeline.jobs.model import ItemSpec
from pipeline.sources.location import (
    HttpLocation,
    InlineLocation,
    LocalLocation,
    Location,
    S3Location,
    Trust,
    parse_location,
)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
"""File name endings listed from folders and prefixes (GIF is listed, then refused per item)."""
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
        if location.is_prefix or Path(location.key).suffix.lower() not in IMAGE_SUFFIXES:
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
    """Image files under ``root``, recursively, in sorted order; person = parent folder name."""
    for _, spec in walk_directory_from(root):
        yield spec


def walk_directory_from(root: Path, after: str | None = None) -> Iterator[tuple[str, ItemSpec]]:
    """``(relative path, item)`` of the image files under ``root`` in walk order, after ``after``.

    Walk order: in each folder its files (sorted) come before its subfolders (sorted), i.e. the
    order of the key ``((1, dir), ..., (0, file))``. ``after`` is the relative path of the last
    item a previous page listed: subfolders wholly before it are pruned unread, so a listing can
    resume page by page (the ingest task carries it like an S3 continuation token) and no task
    walks for longer than a page.
    """
    if not root.is_dir():
        raise FacepipeError(ErrorCode.SOURCE_NOT_FOUND, f"{root} is not a folder")
    stop = _walk_key(after) if after else None
    for dirpath, dirnames, filenames in os.walk(root):
        parent = Path(dirpath)
        rel_dir = parent.relative_to(root).parts
        prefix = tuple((1, d) for d in rel_dir)
        dirnames.sort()
        if stop is not None:
            level = stop[: len(prefix) + 1]
            dirnames[:] = [d for d in dirnames if (*prefix, (1, d)) >= level]
        for name in sorted(filenames):
            if Path(name).suffix.lower() not in IMAGE_SUFFIXES or name.startswith("."):
                continue
            if stop is not None and (*prefix, (0, name)) <= stop:
                continue
            # abspath, not resolve(): see _resolve
            spec = ItemSpec(uri=os.path.abspath(parent / name), person_id=parent.name)
            yield "/".join((*rel_dir, name)), spec


def _walk_key(rel: str) -> tuple[tuple[int, str], ...]:
    parts = rel.split("/")
    return (*((1, p) for p in parts[:-1]), (0, parts[-1]))


@dataclass(frozen=True)
class S3Page:
    """One page of an S3 listing and where the next one starts (None: last page)."""

    specs: list[ItemSpec]
    next_token: str | None


def list_s3_page(
    location: S3Location, settings: Settings, *, token: str | None = None, page_size: int = 1000
) -> S3Page:
    """One ``list_objects_v2`` page of image keys under ``s3://bucket/prefix``."""
    uri, bucket, prefix = location.uri, location.bucket, location.key
    args: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
    if token:
        args["ContinuationToken"] = token
    try:
        resp = s3_client(settings).list_objects_v2(**args)
    except Exception as exc:  # botocore raises many types; all mean the listing failed
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket", "AccessDenied"):
            raise FacepipeError(ErrorCode.SOURCE_NOT_FOUND, f"{uri}: {code}") from exc
        raise FacepipeError(
            ErrorCode.OBJECT_STORE_UNAVAILABLE, f"listing {uri} failed: {exc}"
        ) from exc
    specs = []
    for obj in resp.get("Contents", []):
        key = obj["Key"]
        if Path(key).suffix.lower() not in IMAGE_SUFFIXES or key.endswith("/"):
            continue
        parts = key.split("/")
        person = parts[-2] if len(parts) >= 2 else None
        specs.append(ItemSpec(uri=f"s3://{bucket}/{key}", person_id=person))
    token_out = resp.get("NextContinuationToken") if resp.get("IsTruncated") else None
    return S3Page(specs, token_out)


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
