"""How an identify call or job searches: the one home of the search plan.

Two pure decisions, the second inside the first:

* :func:`choose_engine`: pgvector or a FAISS snapshot (below);
* :func:`choose_pgvector_plan`: how pgvector searches the groups: walk the members' faces by
  index and compare exactly, read the whole faces table exactly, or the HNSW index (see its
  docstring).

The engine decision (:func:`choose_engine`) takes the gallery size of the scope, the number of
probes and the snapshot's freshness, and applies, in order:

1. no snapshot of every group searched -> pgvector (a FAISS search needs one);
2. gallery < ``faiss_min_gallery`` (10,000 faces) -> pgvector: below it the library's exact
   scan costs ~11 ms a probe (2,000 faces measured), always fresh, and a group that small is
   not worth a snapshot to maintain; from 10,000 faces up pgvector costs 60-210 ms a probe
   here against 1-2 ms for FAISS in batches;
3. probes < ``faiss_min_probes`` (10) -> pgvector: a cold FAISS call (snapshot load + delta,
   tombstone and look-up queries) costs 0.16-0.31 s at 10k-100k faces, which the per-probe
   saving repays after 1-3 probes; 10 leaves room for loads from S3 and keeps one-face online
   calls on the always-fresh path;
4. faces added since the snapshot > ``faiss_max_delta`` (50,000) -> pgvector, flagged
   ``reindex_due``: the exact delta scan adds ~0.9 ms a probe per 1,000 delta faces, so around
   50,000 it costs what pgvector does on the whole group;
5. otherwise FAISS.

The figures come from ``bench/search.py`` at 100,000 faces on this project's 2-core CPU machine
under load (README, "Large-scale search"); the thresholds are settings, to be re-measured on
other hardware. For exact indexes both engines return the same ranking
(tests/test_index_engines.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from pipeline.config import Settings, get_settings
from pipeline.store.db import Database


class SearchEngine(StrEnum):
    """The two search engines."""

    PGVECTOR = "pgvector"
    FAISS = "faiss"


@dataclass(frozen=True)
class Thresholds:
    """The planner's thresholds (defaults: the settings ``faiss_*``)."""

    min_gallery: int
    min_probes: int
    max_delta: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(settings.faiss_min_gallery, settings.faiss_min_probes, settings.faiss_max_delta)


@dataclass(frozen=True)
class Plan:
    """The chosen engine and why."""

    engine: SearchEngine
    reason: str
    gallery_size: int
    probes: int
    delta: int | None
    reindex_due: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "engine": self.engine.value,
            "reason": self.reason,
            "gallery_size": self.gallery_size,
            "probes": self.probes,
            "delta": self.delta,
            "reindex_due": self.reindex_due,
        }


def choose_engine(
    gallery_size: int, probes: int, delta: int | None, thresholds: Thresholds
) -> Plan:
    """The engine for ``probes`` probes over ``gallery_size`` faces; ``delta`` is the number of
    faces added since the snapshot, None when some group has no snapshot."""
    if delta is None:
        return Plan(SearchEngine.PGVECTOR, "no snapshot", gallery_size, probes, delta)
    if gallery_size < thresholds.min_gallery:
        return Plan(
            SearchEngine.PGVECTOR,
            f"gallery {gallery_size} < {thresholds.min_gallery}",
            gallery_size,
            probes,
            delta,
        )
    if probes < thresholds.min_probes:
        return Plan(
            SearchEngine.PGVECTOR,
            f"probes {probes} < {thresholds.min_probes}",
            gallery_size,
            probes,
            delta,
        )
    if delta > thresholds.max_delta:
        return Plan(
            SearchEngine.PGVECTOR,
            f"snapshot stale: {delta} faces added > {thresholds.max_delta}",
            gallery_size,
            probes,
            delta,
            reindex_due=True,
        )
    return Plan(SearchEngine.FAISS, "large gallery, batch of probes", gallery_size, probes, delta)


SCAN_TABLE_SHARE = 0.2
"""An exact search reads the whole faces table when the groups hold more than this share of
the gallery, and walks the members' faces by index otherwise (measured crossover between 10%
and 25% of a 20k gallery: README library section)."""


class PgvectorPlan(StrEnum):
    """How one pgvector identify call searches."""

    EXACT_MEMBERS = "exact-members"
    EXACT_SCAN = "exact-scan"
    HNSW = "hnsw"


def choose_pgvector_plan(group_faces: int, gallery_faces: int, exact_max: int) -> PgvectorPlan:
    """The pgvector plan for groups holding about ``group_faces`` of the gallery's
    ``gallery_faces`` faces: groups above ``exact_max`` faces (``exact_search_max_faces``) use
    the HNSW index (approximate); smaller ones are compared exactly, by reading the whole
    table when they hold more than :data:`SCAN_TABLE_SHARE` of the gallery, else by walking
    their members' faces."""
    if group_faces > exact_max:
        return PgvectorPlan.HNSW
    if group_faces > SCAN_TABLE_SHARE * gallery_faces:
        return PgvectorPlan.EXACT_SCAN
    return PgvectorPlan.EXACT_MEMBERS


def plan_identify(
    db: Database,
    groups: Sequence[str],
    model_id: str,
    probes: int,
    settings: Settings | None = None,
) -> Plan:
    """Measure the scope (faces, snapshots, delta) and choose the engine."""
    # the snapshot modules load FAISS: only a caller measuring a scope needs them
    from pipeline.index.snapshot import Scope
    from pipeline.store import gallery
    from pipeline.store.snapshots import newest_snapshot

    settings = settings or get_settings()
    size = 0
    delta: int | None = 0
    with db.connection() as conn:
        for group in dict.fromkeys(groups):
            scope = Scope(model_id=model_id, group=group)
            size += gallery.count_scope(conn, scope)
            record = newest_snapshot(conn, scope)
            if record is None:
                delta = None
            elif delta is not None:
                delta += gallery.delta_count(conn, scope, record.max_face_id, record.watermark)
    return choose_engine(size, probes, delta, Thresholds.from_settings(settings))
