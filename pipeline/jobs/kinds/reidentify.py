"""Re-identification: every face becomes an observed face, is identified against the job's
groups and gets its top-N candidates written as matches of this job; its best candidate is its
``match`` when it reaches the job's threshold (:mod:`pipeline.jobs.reid_threshold`: a
confidence or a target false-match rate). Items ``observed:<id>`` re-identify an observed face
stored earlier (no image is read)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from psycopg import Connection

from pipeline.errors import FacepipeError
from pipeline.jobs.kinds.analysis import Prepared
from pipeline.jobs.kinds.observe import ObservingKind, Probe, item_outcomes, record
from pipeline.jobs.kinds.outcomes import failed, job_groups
from pipeline.jobs.model import Item, ItemOutcome, Job
from pipeline.jobs.reid_threshold import gallery_comparisons, job_threshold
from pipeline.jobs.runtime import Runtime
from pipeline.library import FaceLibrary
from pipeline.store.observations import record_matches


class Reidentify(ObservingKind):
    """The reidentify kind's steps."""

    def write(
        self, rt: Runtime, conn: Connection, job: Job, items: Sequence[Item], prepared: Prepared
    ) -> dict[int, ItemOutcome]:
        seen = record(rt, conn, job, items, prepared)
        top: dict[int, list[dict[str, Any]]] = {}
        matched: dict[int, str | None] = {}
        if seen.probes:
            try:
                _search(rt, conn, job, seen.probes, top, matched)
            except FacepipeError as exc:
                out = dict(seen.failed)
                for item in items:
                    if item.id not in out:
                        out[item.id] = failed(item, exc, seen.sha_of.get(item.id))
                return out
        return item_outcomes(items, seen, top, matched)


def _search(
    rt: Runtime,
    conn: Connection,
    job: Job,
    probes: Sequence[Probe],
    top: dict[int, list[dict[str, Any]]],
    matched: dict[int, str | None],
) -> None:
    """Identify the probes, record their matches, fill ``top`` (best three) and ``matched`` by
    observed face id."""
    library = FaceLibrary(rt.db, None, rt.settings)
    top_n = int(job.params.get("top_n") or rt.settings.identify_top_n)
    # items of one job share groups and model unless a manifest set groups per item
    batches: dict[tuple[str, tuple[str, ...]], list[Probe]] = {}
    for probe in probes:
        batches.setdefault((probe.model_id, job_groups(job, probe.item)), []).append(probe)
    for (model, groups), batch in batches.items():
        cands = library.identify_embeddings(
            np.stack([p.embedding for p in batch]),
            list(groups),
            top_n,
            model_id=model,
            conn=conn,
        )
        # a target false-match rate needs the gallery's size; a threshold does not
        size = (
            gallery_comparisons(conn, list(groups), model, rt.settings)
            if job.params.get("false_match_rate") is not None
            else 0
        )
        limit = job_threshold(job.params, size, rt.settings).confidence
        for probe, cand in zip(batch, cands, strict=True):
            record_matches(conn, probe.observed_id, cand, job_id=job.id)
            top[probe.observed_id] = [c.to_dict() for c in cand[:3]]
            hit = cand[0] if cand and cand[0].confidence >= limit else None
            matched[probe.observed_id] = hit.person_id if hit is not None else None
