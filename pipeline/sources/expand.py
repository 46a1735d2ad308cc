"""Turn user-given sources into image sources: directories and S3 prefixes are listed lazily."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pipeline.config import Settings, get_settings
from pipeline.errors import FacepipeError
from pipeline.sources.listing import iter_pages
from pipeline.sources.location import LocalLocation, S3Location, Trust, parse_location

FOLDER_PAGE_SIZE = 1000
"""Files per page of a folder listed here (pages only bound memory: the walk is not redone)."""


def expand_sources(
    sources: Iterable[str],
    settings: Settings | None = None,
    *,
    s3_page_size: int = 1000,
    trust: Trust = Trust.OPERATOR,
) -> Iterator[str]:
    """Expand each source lazily, in order.

    * a local directory -> its image files;
    * ``s3://bucket/prefix/`` (a key ending in '/') or ``s3://bucket`` -> the keys under it with
      an image extension, listed page by page (``s3_page_size`` keys per request);

    both listed by :mod:`pipeline.sources.listing` (the jobs' lister too: the same files, in
    the same order);
    * anything else (files, ``s3://`` keys, URLs, base64) passes through unchanged, even when
      it does not exist or is refused: reading it later reports the error for that item.

    Each source is parsed under ``trust`` (:mod:`pipeline.sources.location`): a caller's
    string is never listed as a local folder.
    """
    settings = settings or get_settings()
    for source in sources:
        try:
            location = parse_location(source, trust)
        except FacepipeError:
            yield source  # reading it reports the same refusal for this item
            continue
        if isinstance(location, S3Location) and location.is_prefix:
            listed: LocalLocation | S3Location = location
            page_size = s3_page_size
        elif isinstance(location, LocalLocation) and location.path.is_dir():
            listed, page_size = location, FOLDER_PAGE_SIZE
        else:
            yield source
            continue
        for page in iter_pages(listed, settings, page_size=page_size):
            yield from page.sources
