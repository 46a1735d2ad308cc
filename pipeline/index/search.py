"""Identify against a FAISS snapshot, merged with the delta and filtered by tombstones.

For a batch of probes and one scope:

1. the newest snapshot of the scope (cached per process; reloaded when a newer row lands);
2. FAISS top-``k`` per probe, ``k = top_n * HITS_PER_PERSON`` plus the number of face
   tombstones since the snapshot (deleted faces must not crowd out live ones);
3. exact top-``k`` in pgvector over the faces added after the snapshot's watermark (delta);
4. tombstones since the snapshot drop deleted faces, deleted persons and persons removed from
   the group (a deleted person is never returned, even from an old snapshot);
5. the surviving candidates are looked up in Postgres (still existing, still in scope); for
   lossy indexes (IVF-PQ) they are re-ranked exactly against the stored vectors;
6. face hits become persons: each person once with its best face, best first, ``top_n``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from pipeline.calibration import calibration_for
from pipeline.config import Settings, get_settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.index import templates
from pipeline.index.faiss_index import SearchableIndex, as_matrix
from pipeline.index.snapshot import Scope, SnapshotStore, load_snapshot, store_for
from pipeline.index.spec import IndexKind
from pipeline.observability.metrics import time_identify
from pipeline.store import gallery, repo
from pipeline.store.db import Database
from pipeline.store.records import Candidate
from pipeline.store.snapshots import SnapshotRecord, newest_snapshot

logger = logging.getLogger(__name__)

HITS_PER_PERSON = 4
"""Face hits fetched per wanted person: persons have several faces, and each counts once."""
MAX_K = 2048


@dataclass
class LoadedIndex:
    """A snapshot ready to search."""

    record: SnapshotRecord
    index: SearchableIndex
    load_seconds: float


class SnapshotCache:
    """Per-process cache of loaded snapshots, one per scope, replaced when a newer one lands."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, str], LoadedIndex] = {}
        self._lock = threading.Lock()

    def get(
        self,
        db: Database,
        scope: Scope,
        settings: Settings | None = None,
        store: SnapshotStore | None = None,
    ) -> LoadedIndex | None:
        """The newest snapshot of ``scope`` (None when there is none), from the store it was
        written to."""
        settings = settings or get_settings()
        with db.connection() as conn:
            record = newest_snapshot(conn, scope)
        if record is None:
            return None
        key = (scope.key, scope.model_id)
        with self._lock:
            cached = self._loaded.get(key)
            if cached is not None and cached.record.snapshot_id == record.snapshot_id:
                return cached
            started = time.perf_counter()
            if store is None or store.uri != record.meta.get("store"):
                store = store_for(settings, record.meta.get("store"))
            snap = load_snapshot(store, record.prefix)
            index = SearchableIndex.from_wrapped(
                snap.index,
                IndexKind(record.kind),
                nprobe=settings.index_nprobe or record.meta.get("nprobe"),
            )
            loaded = LoadedIndex(record, index, time.perf_counter() - started)
            self._loaded[key] = loaded
            logger.info(
                "loaded snapshot %s of %s (%d faces, %s) in %.2f s",
                record.snapshot_id,
                scope.key,
                record.count,
                record.kind,
                loaded.load_seconds,
            )
            return loaded

    def clear(self) -> None:
        with self._lock:
            self._loaded.clear()


_CACHE = SnapshotCache()


def process_cache() -> SnapshotCache:
    """The snapshot cache of this process (shared by every search in it)."""
    return _CACHE


@dataclass
class SearchStats:
    """Where a batch search spent its time (seconds) and what it saw."""

    faiss_s: float = 0.0
    delta_s: float = 0.0
    fetch_s: float = 0.0
    probes: int = 0
    delta_faces: int = 0
    tombstones: int = 0
    snapshots: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "faiss_s": round(self.faiss_s, 3),
            "delta_s": round(self.delta_s, 3),
            "fetch_s": round(self.fetch_s, 3),
            "probes": self.probes,
            "tombstones": self.tombstones,
            "snapshots": self.snapshots,
        }


def _hits_for_scope(
    db: Database,
    loaded: LoadedIndex,
    scope: Scope,
    probes: NDArray[np.float32],
    top_n: int,
    stats: SearchStats,
    rerank: bool | None,
) -> list[dict[int, tuple[str, float]]]:
    """Per probe: face id -> (person id, cosine) of the scope's valid candidates."""
    record = loaded.record
    with db.connection() as conn:
        tomb = gallery.tombstones_since(conn, record.watermark)
    stats.tombstones = max(stats.tombstones, len(tomb))
    k = min(MAX_K, top_n * HITS_PER_PERSON + len(tomb.face_ids))
    t0 = time.perf_counter()
    scores, labels = loaded.index.search(probes, k)
    stats.faiss_s += time.perf_counter() - t0
    t0 = time.perf_counter()
    with db.connection() as conn:
        delta = gallery.delta_search(
            conn, scope, probes, top_n * HITS_PER_PERSON, record.max_face_id, record.watermark
        )
    stats.delta_s += time.perf_counter() - t0
    per_probe: list[dict[int, float]] = [{} for _ in range(probes.shape[0])]
    for i in range(probes.shape[0]):
        for score, label in zip(scores[i], labels[i], strict=True):
            if label >= 0 and int(label) not in tomb.face_ids:
                per_probe[i][int(label)] = float(score)
    delta_ids: set[int] = set()
    for hit in delta:
        per_probe[hit.probe][hit.face_id] = hit.score
        delta_ids.add(hit.face_id)
    # Lossy codes (PQ) give approximate scores: re-rank exactly on the stored vectors.
    exact_scores = not IndexKind(record.kind).lossy if rerank is None else not rerank
    t0 = time.perf_counter()
    wanted = sorted({f for d in per_probe for f in d})
    with db.connection() as conn:
        stored = gallery.fetch_faces(conn, scope, wanted, with_vectors=not exact_scores)
    stats.fetch_s += time.perf_counter() - t0
    out: list[dict[int, tuple[str, float]]] = []
    for i, cands in enumerate(per_probe):
        valid: dict[int, tuple[str, float]] = {}
        for face_id, score in cands.items():
            face = stored.get(face_id)
            if face is None:
                continue  # deleted, or no longer in the scope
            # Snapshot faces of deleted persons / removed members are dropped; a face from
            # the delta is current by construction (fetch_faces checked it).
            if face_id not in delta_ids and tomb.excludes(face_id, face.person_id, scope.group):
                continue
            if face.embedding is not None:
                score = float(np.dot(face.embedding, probes[i]))
            valid[face_id] = (face.person_id, score)
        out.append(valid)
    return out


def best_per_person(hits: dict[int, tuple[str, float]], top_n: int) -> list[tuple[str, int, float]]:
    """(person, best face, cosine), each person once, best first, at most ``top_n``."""
    best: dict[str, tuple[int, float]] = {}
    for face_id, (person, score) in hits.items():
        cur = best.get(person)
        if cur is None or score > cur[1] or (score == cur[1] and face_id < cur[0]):
            best[person] = (face_id, score)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1][1], kv[0]))
    return [(p, f, s) for p, (f, s) in ranked[:top_n]]


def identify_faiss(
    db: Database,
    probes: NDArray[np.float32] | Sequence[NDArray[np.float32]],
    groups: Sequence[str],
    model_id: str,
    top_n: int,
    *,
    cache: SnapshotCache | None = None,
    stats: SearchStats | None = None,
    rerank: bool | None = None,
    settings: Settings | None = None,
) -> list[list[Candidate]]:
    """For each probe, up to ``top_n`` persons across ``groups`` from their FAISS snapshots.

    Each group needs a snapshot (``INDEX_NOT_FOUND`` otherwise); with several groups the
    per-group candidates are merged, each person once with its best face.
    """
    q = as_matrix(np.asarray(probes, dtype=np.float32))
    if q.shape[0] == 0:
        return []
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    cache = cache or process_cache()
    stats = stats if stats is not None else SearchStats()
    stats.probes += q.shape[0]
    merged: list[dict[int, tuple[str, float]]] = [{} for _ in range(q.shape[0])]
    with time_identify("faiss", q.shape[0]):
        for group in dict.fromkeys(groups):
            scope = Scope(model_id=model_id, group=group)
            loaded = cache.get(db, scope, settings)
            if loaded is None:
                raise FacepipeError(
                    ErrorCode.INDEX_NOT_FOUND,
                    f"no index snapshot for group {group!r} (model {model_id}); run "
                    f"`facepipe reindex --group {group}`",
                )
            if loaded.record.snapshot_id not in stats.snapshots:
                stats.snapshots.append(loaded.record.snapshot_id)
            for i, hits in enumerate(_hits_for_scope(db, loaded, scope, q, top_n, stats, rerank)):
                merged[i].update(hits)
        settings = settings or get_settings()
        if settings.identify_person_template == templates.MEAN:
            # persons found by their nearest faces, ranked by their fused templates
            wide = [best_per_person(h, top_n * templates.CANDIDATE_FACTOR) for h in merged]
            with db.connection() as conn:
                vectors = repo.persons_vectors(
                    conn, sorted({p for r in wide for p, _, _ in r}), model_id
                )
            ranked = [
                templates.rank_by_template(q[i], r, vectors, top_n) for i, r in enumerate(wide)
            ]
        else:
            ranked = [best_per_person(h, top_n) for h in merged]
    with db.connection() as conn:
        names = repo.person_tags(conn, sorted({p for r in ranked for p, _, _ in r}))
    results: list[list[Candidate]] = []
    calibration = calibration_for(model_id, settings.calibration_dir)
    for r in ranked:
        cands = []
        for person, face_id, score in r:
            name, tag = names.get(person, ("", ""))
            cands.append(
                Candidate(
                    person_id=person,
                    face_id=str(face_id),
                    score=score,
                    confidence=calibration.confidence(float(score)),
                    tag=tag,
                    name=name,
                )
            )
        results.append(cands)
    return results
