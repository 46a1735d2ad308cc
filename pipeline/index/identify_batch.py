"""identify-batch: match many probe faces against groups, write matches, optionally export.

Probes are observed faces (``observed_faces``: those of a job, or stored since a time) or the
faces of a source the engine analyses now (recorded as observed faces first, so every match
points at a stored probe). The planner picks pgvector or FAISS for the whole run; probes are
read with a server-side cursor and searched ``search_batch_size`` at a time; each batch's
matches are written in one transaction (``matches``: rank 1..N per observed face and job,
replaced on a re-run, so a retried task never duplicates) and appended to the JSON Lines
export (:mod:`pipeline.jobs.exporter`: ``s3://bucket/key`` or a file under the export folder,
checked under the trust of whoever started the run), put in place at the end.

The run is a row in ``jobs`` (kind ``identify-batch``) so ``facepipe jobs list/show`` see it.
Like a reidentify job (the nightly run is one or the other by the planner's choice) it takes a
match threshold or a target false-match rate (:mod:`pipeline.jobs.reid_threshold`; neither
means ``Settings.identify_match_threshold``): every top-N candidate is still written, and its
``summary`` says how many probes reached the threshold and how many of those to expect to be
false given the gallery's size.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray
from psycopg.types.json import Jsonb

from pipeline.config import Settings, get_settings
from pipeline.errors import ErrorCode, FacepipeError, error_dict
from pipeline.index.batch_params import run_params
from pipeline.index.planner import Plan, SearchEngine, plan_identify
from pipeline.index.search import SearchStats, identify_faiss
from pipeline.jobs.exporter import JsonLinesExport
from pipeline.jobs.lease import holding_job_lease, new_owner
from pipeline.jobs.reid_threshold import reidentify_summary
from pipeline.store import jobs as job_store
from pipeline.store import observations
from pipeline.store.db import Database
from pipeline.store.gallery import as_vector
from pipeline.store.records import Candidate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeBatch:
    """Observed faces to search: ids, vectors and what the export shows of them."""

    observed_ids: list[int]
    vectors: NDArray[np.float32]
    sources: list[str | None]
    face_indexes: list[int]
    boxes: list[list[float]]


@dataclass(frozen=True)
class IdentifyBatchResult:
    """What a run did."""

    job_id: str
    plan: Plan
    probes: int
    matched: int
    matches_written: int
    exported: int
    export: str | None
    seconds: float
    errors: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    """Probes matched at the run's threshold and the false matches to expect
    (:func:`pipeline.jobs.reid_threshold.reidentify_summary`); ``matched`` counts probes with
    any candidate."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "plan": self.plan.to_dict(),
            "probes": self.probes,
            "matched": self.matched,
            "matches_written": self.matches_written,
            "exported": self.exported,
            "export": self.export,
            "seconds": round(self.seconds, 3),
            "probes_per_s": round(self.probes / self.seconds, 1) if self.seconds else None,
            "errors": self.errors[:20],
            "stats": self.stats,
            "summary": self.summary,
        }


def probe_model(conn: psycopg.Connection, job: str | None, since: datetime | None) -> str:
    """The model of the selected observed faces (the most common one), or INDEX_NOT_FOUND."""
    model = observations.probes_model(conn, job, since)
    if model is None:
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, "no observed faces match the selection")
    return model


def count_probes(
    conn: psycopg.Connection, job: str | None, since: datetime | None, model_id: str
) -> int:
    return observations.count_probes(conn, job, since, model_id)


def iter_observed(
    db: Database, job: str | None, since: datetime | None, model_id: str, batch: int
) -> Iterator[ProbeBatch]:
    """Selected observed faces in id order, ``batch`` at a time (server-side cursor)."""
    with db.connection() as conn:
        for rows in observations.stream_probes(conn, job, since, model_id, batch):
            yield ProbeBatch(
                observed_ids=[int(r[0]) for r in rows],
                vectors=np.stack([as_vector(r[1]) for r in rows]),
                sources=[r[2] for r in rows],
                face_indexes=[int(r[3]) for r in rows],
                boxes=[[round(float(v), 1) for v in r[4]] for r in rows],
            )


def observe_sources(
    db: Database, engine: Any, sources: Sequence[str], job_id: str, settings: Settings
) -> tuple[str, list[dict[str, Any]]]:
    """Analyse ``sources`` with the engine and record their faces as observed faces of the job.

    Returns the engine's model id and the per-source errors (a bad image never stops the run).
    """
    from pipeline.sources import expand_sources
    from pipeline.store.observations import record_observed_faces

    errors: list[dict[str, Any]] = []
    for outcome in engine.analyze_stream(expand_sources(sources, settings)):
        if outcome.error is not None or outcome.analysis is None:
            err = outcome.error or FacepipeError(ErrorCode.INTERNAL, "no analysis")
            errors.append({"source": outcome.source, **error_dict(err)})
            continue
        if not outcome.analysis.faces:
            errors.append({"source": outcome.source, **FacepipeError(ErrorCode.NO_FACE).to_dict()})
            continue
        with db.transaction() as conn:
            record_observed_faces(conn, outcome.analysis, job_id=job_id)
    return str(engine.model_id), errors


def _write_matches(
    conn: psycopg.Connection,
    observed_ids: Sequence[int],
    results: Sequence[list[Candidate]],
    job_id: str,
) -> int:
    from pipeline.store.observations import record_matches

    return sum(
        record_matches(conn, oid, cands, job_id=job_id)
        for oid, cands in zip(observed_ids, results, strict=True)
    )


def _open_export(db: Database, job_id: str, dest: str, settings: Settings) -> JsonLinesExport:
    """The run's export, its destination checked under the trust of whoever made the run."""
    with db.connection() as conn:
        trust = job_store.get_job(conn, job_id).origin.trust
    return JsonLinesExport(dest, settings, trust)


def create_run(db: Database, params: dict[str, Any], job_id: str | None = None) -> str:
    """The ``jobs`` row of a run (created unless ``job_id`` names an existing one)."""
    from pipeline.jobs.model import JobKind

    with db.transaction() as conn:
        if job_id is not None:
            return job_store.get_job(conn, job_id).id
        job, _ = job_store.create_job(conn, JobKind.IDENTIFY_BATCH, params)
        return job.id


def _set_job(db: Database, job_id: str, **fields: Any) -> None:
    with db.transaction() as conn:
        job_store.set_job_fields(conn, job_id, **fields)


def identify_batch(
    db: Database,
    groups: Sequence[str],
    *,
    probe_job: str | None = None,
    since: datetime | None = None,
    sources: Sequence[str] = (),
    top_n: int | None = None,
    export: str | None = None,
    model_id: str | None = None,
    engine: Any = None,
    settings: Settings | None = None,
    job_id: str | None = None,
    force_engine: SearchEngine | None = None,
    match_threshold: float | None = None,
    false_match_rate: float | None = None,
) -> IdentifyBatchResult:
    """Run identify-batch (see the module docstring); returns what it did.

    Exactly one probe selection is expected: ``probe_job`` (observed faces of that job),
    ``since`` (observed faces stored since then) or ``sources`` (analysed now with ``engine``).
    ``job_id`` is the run's ``jobs`` row (created when None). ``match_threshold`` (confidence)
    or ``false_match_rate`` (share of strangers' faces allowed to match someone) sets which
    candidates count as matches in the summary. The parameters are stored on the run (the forced
    engine too), so that the watchdog re-sends a dead run as it was asked for.
    """
    settings = settings or get_settings()
    chosen = sum(x is not None and x != () for x in (probe_job, since, tuple(sources) or None))
    if chosen != 1:
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER, "give exactly one of --job, --since or --source"
        )
    if not groups:
        raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "at least one group is needed")
    top_n = settings.identify_top_n if top_n is None else top_n
    params = run_params(
        groups,
        probe_job=probe_job,
        since=since,
        sources=sources,
        top_n=top_n,
        export=export,
        force_engine=force_engine,
        match_threshold=match_threshold,
        false_match_rate=false_match_rate,
    )
    job_id = create_run(db, params, job_id)
    owner = _claim(db, job_id, settings)
    with holding_job_lease(db, job_id, owner, settings.lease_s):
        return _identify_batch(
            db, groups, job_id, probe_job, since, sources, top_n, export, model_id, engine,
            settings, force_engine, params,
        )  # fmt: skip


def _claim(db: Database, job_id: str, settings: Settings) -> str:
    """Take the run's lease (renewed while it works): when the process dies, the watchdog
    re-sends the task once the lease ran out (:mod:`pipeline.jobs.watchdog`). A second
    delivery while a live run holds it is refused (JOB_STATE) and changes nothing."""
    owner = new_owner()
    with db.transaction() as conn:
        if not job_store.claim_job_lease(conn, job_id, owner, settings.lease_s):
            raise FacepipeError(
                ErrorCode.JOB_STATE, f"identify-batch {job_id} is being run by a live worker"
            )
    return owner


def _identify_batch(
    db: Database,
    groups: Sequence[str],
    job_id: str,
    probe_job: str | None,
    since: datetime | None,
    sources: Sequence[str],
    top_n: int,
    export: str | None,
    model_id: str | None,
    engine: Any,
    settings: Settings,
    force_engine: SearchEngine | None,
    params: dict[str, Any],
) -> IdentifyBatchResult:
    started = time.perf_counter()
    _set_job(db, job_id, status="running", started_at=datetime.now().astimezone())
    errors: list[dict[str, Any]] = []
    try:
        if sources:
            if engine is None:
                from pipeline.engine import FaceEngine

                engine = FaceEngine.from_settings(settings)
            model_id, errors = observe_sources(db, engine, sources, job_id, settings)
            probe_job = job_id
        with db.connection() as conn:
            model_id = model_id or probe_model(conn, probe_job, since)
            n_probes = count_probes(conn, probe_job, since, model_id)
        plan = plan_identify(db, groups, model_id, n_probes, settings)
        if force_engine is not None and force_engine is not plan.engine:
            plan = Plan(
                force_engine,
                f"forced ({plan.reason})",
                plan.gallery_size,
                plan.probes,
                plan.delta,
                plan.reindex_due,
            )
        logger.info(
            "identify-batch %s: %d probes, %s (%s)",
            job_id,
            n_probes,
            plan.engine.value,
            plan.reason,
        )
        result = _run(db, groups, model_id, probe_job, since, top_n, export, plan, job_id, settings)
        with db.connection() as conn:
            summary = reidentify_summary(conn, job_id, params, model_id, settings)
    except BaseException as exc:
        _set_job(
            db,
            job_id,
            status="failed",
            error=Jsonb(error_dict(exc)),
            finished_at=datetime.now().astimezone(),
        )
        raise
    seconds = time.perf_counter() - started
    _set_job(
        db,
        job_id,
        status="done",
        listing_done=True,
        n_items=result.probes,
        n_done=result.probes,
        n_failed=len(errors),
        finished_at=datetime.now().astimezone(),
    )
    return IdentifyBatchResult(
        job_id=job_id,
        plan=plan,
        probes=result.probes,
        matched=result.matched,
        matches_written=result.written,
        exported=result.exported,
        export=export,
        seconds=seconds,
        errors=errors,
        stats=result.stats,
        summary=summary,
    )


@dataclass(frozen=True)
class _Searched:
    """What searching every probe batch did."""

    probes: int
    matched: int
    written: int
    exported: int
    stats: dict[str, Any]


def _run(
    db: Database,
    groups: Sequence[str],
    model_id: str,
    probe_job: str | None,
    since: datetime | None,
    top_n: int,
    export: str | None,
    plan: Plan,
    job_id: str,
    settings: Settings,
) -> _Searched:
    from pipeline.library import FaceLibrary

    library = FaceLibrary(db, None, settings)
    out = _open_export(db, job_id, export, settings) if export else None
    stats = SearchStats()
    probes = matched = written = 0
    search_s = write_s = 0.0
    try:
        for batch in iter_observed(db, probe_job, since, model_id, settings.search_batch_size):
            t0 = time.perf_counter()
            if plan.engine is SearchEngine.FAISS:
                results = identify_faiss(
                    db, batch.vectors, groups, model_id, top_n, stats=stats, settings=settings
                )
            else:
                results = library.identify_embeddings(
                    batch.vectors, groups, top_n, model_id=model_id
                )
            t1 = time.perf_counter()
            with db.transaction() as conn:
                written += _write_matches(conn, batch.observed_ids, results, job_id)
            write_s += time.perf_counter() - t1
            search_s += t1 - t0
            probes += len(batch.observed_ids)
            matched += sum(1 for r in results if r)
            if out is not None:
                for i, cands in enumerate(results):
                    out.write(
                        {
                            "job_id": job_id,
                            "observed_id": batch.observed_ids[i],
                            "source": batch.sources[i],
                            "face_index": batch.face_indexes[i],
                            "box": batch.boxes[i],
                            "engine": plan.engine.value,
                            "matches": [
                                {"rank": r, **c.to_dict()} for r, c in enumerate(cands, start=1)
                            ],
                        }
                    )
        if out is not None:
            out.finish()
    except BaseException:
        if out is not None:
            out.abort()
        raise
    info = {"search_s": round(search_s, 3), "write_s": round(write_s, 3), **stats.to_dict()}
    return _Searched(probes, matched, written, out.count if out else 0, info)
