"""Reindex: build a scope's FAISS index from Postgres, save, record and collect snapshots.

The build reads the scope in one REPEATABLE READ transaction, so the count, the training
sample, the vectors and the watermark all describe one consistent state of the library:

1. the watermark is read just before that transaction starts: the start of the oldest
   transaction then open, else now (:func:`gallery.open_transactions_since`); every face the
   snapshot lacks was created at or after it, every deletion it misses is tombstoned after it;
2. the index type comes from the count (:mod:`pipeline.index.spec`);
3. IVF indexes train on a sample Postgres draws (only the sample crosses the wire);
4. vectors stream through a server-side cursor, ``index_stream_batch`` rows at a time, into
   the index (on the GPU when FAISS has one);
5. the snapshot goes to the object store, then a row in ``index_snapshots`` records it, then
   snapshots beyond the newest ``snapshot_keep`` of the scope are deleted (files, then row).
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime

import numpy as np

from pipeline.config import Settings, get_settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.index.faiss_index import IndexBuilder
from pipeline.index.snapshot import (
    Scope,
    SnapshotMeta,
    SnapshotStore,
    save_snapshot,
    snapshot_prefix,
    store_for,
)
from pipeline.index.spec import IndexKind, choose_spec
from pipeline.store import gallery, snapshots
from pipeline.store.db import Database
from pipeline.store.reembed import scope_model
from pipeline.store.snapshots import SnapshotRecord, list_snapshots, newest_snapshot

logger = logging.getLogger(__name__)


def _new_snapshot_id(now: datetime) -> str:
    # Sortable by time, unique across concurrent builds.
    return f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}"


def reindex(
    db: Database,
    scope: Scope,
    settings: Settings | None = None,
    *,
    kind: IndexKind | None = None,
    store: SnapshotStore | None = None,
    use_gpu: bool | None = None,
) -> SnapshotRecord:
    """Build, save and record a snapshot of ``scope``; collects the scope's old snapshots.

    ``kind`` (default: ``settings.index_kind``, else by size) forces an index family. An empty
    scope raises ``INDEX_NOT_FOUND`` (there is nothing to index).
    """
    settings = settings or get_settings()
    store = store or store_for(settings)
    if kind is None and settings.index_kind:
        kind = IndexKind(settings.index_kind)
    started = time.perf_counter()
    with db.connection() as conn:
        # Read before the build's snapshot exists (see gallery.open_transactions_since).
        watermark = gallery.open_transactions_since(conn)
    with db.connection() as conn:
        snapshot_time = gallery.begin_repeatable_read(conn)
        count = gallery.count_scope(conn, scope)
        dim = gallery.scope_dim(conn, scope)
        if count == 0 or dim is None:
            raise FacepipeError(
                ErrorCode.INDEX_NOT_FOUND,
                f"scope {scope.key} of model {scope.model_id} has no faces to index",
            )
        spec = choose_spec(count, dim, kind)
        builder = IndexBuilder(spec, use_gpu=use_gpu)
        t_train = time.perf_counter()
        if spec.needs_training:
            sample = gallery.sample_scope(conn, scope, spec.train_size, count)
            builder.train(sample)
            del sample
        train_s = time.perf_counter() - t_train
        # The labels are the face ids (integers): one int64 per vector, preallocated.
        labels = np.empty(count, dtype=np.int64)
        t_add = time.perf_counter()
        for ids, vecs in gallery.stream_scope(conn, scope, settings.index_stream_batch):
            if builder.count + ids.shape[0] > count:
                raise FacepipeError(ErrorCode.INTERNAL, "scope grew inside its read snapshot")
            labels[builder.count : builder.count + ids.shape[0]] = ids
            builder.add(vecs)
        add_s = time.perf_counter() - t_add
    labels = labels[: builder.count]
    index = builder.finish(labels)
    build_s = time.perf_counter() - started
    now = datetime.now(UTC)
    meta = SnapshotMeta(
        snapshot_id=_new_snapshot_id(now),
        scope=scope.key,
        model_id=scope.model_id,
        kind=spec.kind.value,
        dim=dim,
        count=builder.count,
        watermark=watermark.isoformat(),
        max_face_id=int(labels.max()) if labels.size else None,
        build_seconds=round(build_s, 3),
        created_at=now.isoformat(),
        nlist=spec.nlist,
        nprobe=settings.index_nprobe or spec.nprobe,
        train_size=spec.train_size,
        ids_integer=True,
    )
    t_save = time.perf_counter()
    location = save_snapshot(store, meta, index, labels)
    save_s = time.perf_counter() - t_save
    prefix = snapshot_prefix(meta)
    extra = {
        "prefix": prefix,
        "store": store.uri,
        "nlist": spec.nlist,
        "nprobe": meta.nprobe,
        "train_size": spec.train_size,
        "on_gpu": builder.on_gpu,
        "train_seconds": round(train_s, 3),
        "add_seconds": round(add_s, 3),
        "save_seconds": round(save_s, 3),
        "faiss_version": meta.faiss_version,
        "snapshot_time": snapshot_time.isoformat(),
    }
    with db.transaction() as conn:
        record = snapshots.insert_snapshot(
            conn,
            snapshot_id=meta.snapshot_id,
            scope=meta.scope,
            model_id=meta.model_id,
            location=location,
            kind=meta.kind,
            dim=dim,
            count=meta.count,
            max_face_id=meta.max_face_id,
            watermark=watermark,
            build_seconds=build_s,
            meta=extra,
        )
    logger.info(
        "reindexed %s (%s): %d faces, %s, %.2f s (train %.2f, add %.2f, save %.2f) -> %s",
        scope.key,
        scope.model_id,
        meta.count,
        spec.factory_string,
        build_s,
        train_s,
        add_s,
        save_s,
        location,
    )
    collect_garbage(db, scope, settings.snapshot_keep, store, settings)
    return record


def collect_garbage(
    db: Database,
    scope: Scope,
    keep: int,
    store: SnapshotStore | None = None,
    settings: Settings | None = None,
) -> list[str]:
    """Delete all but the newest ``keep`` snapshots of the scope (files, then mark the row);
    prune tombstones older than every live snapshot. The ids collected."""
    keep = max(1, keep)
    with db.connection() as conn:
        records = list_snapshots(conn, scope)
    collected: list[str] = []
    for rec in records[keep:]:
        # A snapshot is deleted from the store it was written to (settings may have changed).
        target = store if store is not None and store.uri == rec.meta.get("store") else None
        if target is None:
            target = store_for(settings or get_settings(), rec.meta.get("store"))
        target.delete_prefix(rec.prefix)
        with db.transaction() as conn:
            snapshots.mark_collected(conn, rec.snapshot_id)
        collected.append(rec.snapshot_id)
    with db.transaction() as conn:
        oldest = snapshots.oldest_live_watermark(conn)
        if oldest is not None:
            pruned = gallery.prune_tombstones(conn, oldest)
            if pruned:
                logger.info("pruned %d tombstones older than %s", pruned, oldest)
    if collected:
        logger.info("collected %d old snapshots of %s", len(collected), scope.key)
    return collected


def default_model(db: Database, group: str | None = None) -> str:
    """The model of most enrolled faces (of the group), for commands given no ``--model``;
    a scope switched by a reembed job uses the model it was switched to."""
    with db.connection() as conn:
        model = scope_model(conn, group)
    if model is None:
        raise FacepipeError(
            ErrorCode.INDEX_NOT_FOUND,
            "no enrolled faces" + ("" if group is None else f" in group {group!r}"),
        )
    return model


def due_scopes(db: Database, settings: Settings | None = None) -> list[Scope]:
    """Scopes the scheduled reindex rebuilds: every group of at least ``faiss_min_gallery``
    faces, and every scope that has a snapshot, unless nothing changed since its newest one
    (no face added, no tombstone)."""
    settings = settings or get_settings()
    with db.connection() as conn:
        big = gallery.large_groups(conn, settings.faiss_min_gallery)
        candidates = {Scope(model_id=m, group=g) for g, m in big}
        candidates |= {Scope.parse(s, m) for s, m in snapshots.live_scopes(conn)}
        due: list[Scope] = []
        for scope in sorted(candidates, key=lambda s: (s.key, s.model_id)):
            record = newest_snapshot(conn, scope)
            if record is None:
                due.append(scope)
                continue
            # Strictly newer than the snapshot (no margin): an unchanged scope is not rebuilt.
            if gallery.scope_changed_since(conn, scope, record.max_face_id, record.watermark):
                due.append(scope)
    return due
