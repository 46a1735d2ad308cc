"""What detection and re-identification share: every face of an image becomes an observed
face (keyed by image hash, face index and model), and each item's outcome lists them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from psycopg import Connection

from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.kinds.analysis import Prepared, analyse_items
from pipeline.jobs.kinds.outcomes import failed
from pipeline.jobs.model import Item, ItemOutcome, ItemStatus, Job
from pipeline.jobs.runtime import Runtime
from pipeline.store.observations import record_observed_faces
from pipeline.types import DetectMode


class ObservingKind:
    """The analysis step of the kinds that observe faces: every face of each image."""

    def analyse(self, rt: Runtime, job: Job, items: Sequence[Item]) -> Prepared:
        return analyse_items(rt, job, items, DetectMode.ALL)


@dataclass(frozen=True)
class Probe:
    """An observed face to search with: its item, id, vector and the model that made it."""

    item: Item
    observed_id: int
    embedding: NDArray[np.float32]
    model_id: str


@dataclass
class Observed:
    """The chunk's observed faces once recorded, and the items that failed on the way."""

    failed: dict[int, ItemOutcome] = field(default_factory=dict)
    probes: list[Probe] = field(default_factory=list)
    faces_of: dict[int, list[int]] = field(default_factory=dict)
    """item id -> its observed face ids"""
    sha_of: dict[int, str] = field(default_factory=dict)
    """item id -> its image's content hash"""


def record(
    rt: Runtime, conn: Connection, job: Job, items: Sequence[Item], prepared: Prepared
) -> Observed:
    """Store every face of the chunk's images as an observed face; ``observed:<id>`` items
    bring their stored face."""
    seen = Observed()
    for item in items:
        oid = item.observed_id
        if oid is not None:
            vec = prepared.observed.get(oid)
            if vec is None:
                seen.failed[item.id] = failed(
                    item, FacepipeError(ErrorCode.FACE_NOT_FOUND, f"no observed face {oid}")
                )
                continue
            seen.faces_of[item.id] = [oid]
            seen.probes.append(Probe(item, oid, vec, rt.engine.model_id))
            continue
        outcome = prepared.outcomes[item.id]
        if outcome.error is not None or outcome.analysis is None:
            seen.failed[item.id] = failed(
                item, outcome.error or FacepipeError(ErrorCode.INTERNAL, "no analysis")
            )
            continue
        analysis = outcome.analysis
        seen.sha_of[item.id] = analysis.content_sha256
        ids = record_observed_faces(conn, analysis, source_uri=item.uri, job_id=job.id)
        seen.faces_of[item.id] = ids
        embedded = [f for f in analysis.faces if f.embedding is not None]
        for oid, face in zip(ids, embedded, strict=True):
            assert face.embedding is not None
            seen.probes.append(Probe(item, oid, face.embedding, analysis.model_id))
    return seen


def item_outcomes(
    items: Sequence[Item],
    seen: Observed,
    top: dict[int, list[dict[str, Any]]],
    matched: dict[int, str | None] | None,
) -> dict[int, ItemOutcome]:
    """Each item's outcome: its failure, or its observed faces with their ``top`` candidates
    (and, when searched, the ``match`` each reached: ``matched`` by observed face id)."""
    out = dict(seen.failed)
    for item in items:
        if item.id in out:
            continue
        ids = seen.faces_of.get(item.id, [])
        faces: list[dict[str, Any]] = [{"observed_id": i, "top": top.get(i, [])} for i in ids]
        if matched is not None:
            for face in faces:
                face["match"] = matched.get(face["observed_id"])
        out[item.id] = ItemOutcome(
            item.id,
            ItemStatus.DONE,
            content_sha256=seen.sha_of.get(item.id),
            n_faces=len(ids),
            observed_ids=tuple(str(i) for i in ids),
            result={"faces": faces},
        )
    return out
