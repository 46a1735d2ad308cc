"""Listing a job's source into items, page by page, and handing each page's chunks on.

Every page is committed (items inserted with ``ON CONFLICT DO NOTHING``) before its chunks are
handed to ``on_chunk`` (which enqueues them), so a chunk never names items that do not exist;
a redelivered listing re-inserts nothing and re-enqueues chunks whose items are already done
(they skip). S3 prefixes are listed one ``list_objects_v2`` page per call, local folders
``DIRECTORY_PAGE_SIZE`` files per call: the caller carries the continuation token (S3's, or the
relative path of the last file listed) to the next call (the ingest task re-enqueues itself),
so no process holds more than one page and no listing task runs long enough to be redelivered
while it is still alive. URL lists and manifests are streamed in one call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path

from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.model import OBSERVED_PREFIX, ItemSpec, Job
from pipeline.jobs.producers import (
    SourceType,
    apply_override,
    iter_local_source,
    list_items_page,
    read_manifest,
    read_s3_manifest,
    source_type,
)
from pipeline.jobs.runtime import Runtime
from pipeline.sources.location import LocalLocation, S3Location, parse_location
from pipeline.store import jobs as store
from pipeline.store import repo

log = logging.getLogger(__name__)

ChunkSink = Callable[[int, int], None]
S3_PAGE_SIZE = 1000
DIRECTORY_PAGE_SIZE = 10_000
"""Files listed per ingest task run: bounds its duration well below the visibility timeout."""


@dataclass(frozen=True)
class ListingStep:
    """Where a listing call stopped: ``next_token`` set means call again from there."""

    listed: int
    next_seq: int
    next_token: str | None = None

    @property
    def finished(self) -> bool:
        return self.next_token is None


def list_step(
    rt: Runtime,
    job: Job,
    on_chunk: ChunkSink,
    *,
    token: str | None = None,
    next_seq: int = 0,
) -> ListingStep:
    """List (part of) the job's source; marks the listing done when the source is exhausted.

    The source (and manifest) are parsed under the trust of whoever submitted the job: a job
    that came in over HTTP is never listed from a local folder, whatever its params say.
    """
    source = job.params.get("source")
    since = job.params.get("since")
    chunk = max(1, int(job.params.get("chunk_size") or rt.settings.chunk_size))
    trust = job.origin.trust
    if since is not None:
        step = _list_observed(
            rt, job, datetime.fromisoformat(since), on_chunk, chunk, token, next_seq
        )
    elif source is None:
        raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "the job has no source")
    else:
        location = parse_location(source, trust, inline=False)
        kind = source_type(location, trust)
        if kind in (SourceType.S3_PREFIX, SourceType.DIRECTORY) and isinstance(
            location, S3Location | LocalLocation
        ):
            # one page of the one lister (pipeline/sources/listing.py) a task run
            is_s3 = isinstance(location, S3Location)
            page_size = int(
                job.params.get("page_size") or (S3_PAGE_SIZE if is_s3 else DIRECTORY_PAGE_SIZE)
            )
            page = list_items_page(location, rt.settings, token=token, page_size=page_size)
            base = None if isinstance(location, S3Location) else location.path
            specs = _with_defaults(job, _override(rt, job, page.specs, base))
            listed = _add_pages(rt, job.id, specs, next_seq, chunk, on_chunk)
            step = ListingStep(listed, next_seq + listed, page.next_token)
        elif isinstance(location, LocalLocation):
            specs_iter = _with_defaults(
                job, iter_local_source(str(location.path), job.params.get("manifest"))
            )
            listed = _add_pages(rt, job.id, specs_iter, next_seq, chunk, on_chunk)
            step = ListingStep(listed, next_seq + listed)
        else:  # one remote image
            specs_one = _with_defaults(job, _override(rt, job, [ItemSpec(uri=str(location))], None))
            listed = _add_pages(rt, job.id, specs_one, next_seq, chunk, on_chunk)
            step = ListingStep(listed, next_seq + listed)
    with rt.db.transaction() as conn:
        if step.finished:
            store.mark_listing_done(conn, job.id)
        store.save_listing_progress(conn, job.id, step.next_token, step.next_seq)
    if step.finished:
        log.info("job %s: listing done (%d items in the last step)", job.id, step.listed)
    return step


def _override(
    rt: Runtime, job: Job, specs: Sequence[ItemSpec], root: Path | None
) -> list[ItemSpec]:
    """Apply the job's manifest (if any) to listed items; relative rows resolve from ``root``."""
    manifest = job.params.get("manifest")
    if not manifest:
        return list(specs)
    location = parse_location(manifest, job.origin.trust, inline=False)
    if isinstance(location, S3Location):
        rows_iter = read_s3_manifest(location, rt.settings)
    elif isinstance(location, LocalLocation):
        rows_iter = read_manifest(location.path, root)
    else:
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER, f"{manifest}: a manifest is read from s3:// or a path"
        )
    rows = {m.uri: m for m in rows_iter}
    return [apply_override(s, rows.get(s.uri)) for s in specs]


def _with_defaults(job: Job, specs: Iterable[ItemSpec]) -> Iterator[ItemSpec]:
    """A job-wide person id (``--person``) wins over the folder name."""
    person = job.params.get("person_id")
    for spec in specs:
        if person:
            yield ItemSpec(spec.uri, person, spec.person_name, spec.groups)
        else:
            yield spec


def _add_pages(
    rt: Runtime,
    job_id: str,
    specs: Iterable[ItemSpec],
    first_seq: int,
    chunk: int,
    on_chunk: ChunkSink,
) -> int:
    it = iter(specs)
    seq = first_seq
    while True:
        page = list(islice(it, chunk))
        if not page:
            return seq - first_seq
        with rt.db.transaction() as conn:
            store.add_items(conn, job_id, page, seq)
        on_chunk(seq, seq + len(page) - 1)
        seq += len(page)


def _list_observed(
    rt: Runtime,
    job: Job,
    since: datetime,
    on_chunk: ChunkSink,
    chunk: int,
    token: str | None,
    first_seq: int,
) -> ListingStep:
    """Observed faces stored since ``since``, keyset-paged by id (one page of 10 000 per call)."""
    after = int(token) if token else 0
    page_size = 10_000
    with rt.db.connection() as conn:
        ids = repo.observed_ids_since(conn, since, after, page_size)
    specs = [ItemSpec(uri=f"{OBSERVED_PREFIX}{i}") for i in ids]
    listed = _add_pages(rt, job.id, specs, first_seq, chunk, on_chunk)
    next_token = str(ids[-1]) if len(ids) == page_size else None
    return ListingStep(listed, first_seq + listed, next_token)
