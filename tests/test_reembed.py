"""`facepipe reembed`: enrolled faces moved to another pack from their stored crops, on the real
Postgres + pgvector, the real default pack and a real INT8 pack made from it; the Celery task in
a real worker subprocess."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.index.reindex import default_model
from pipeline.jobs.model import JobStatus
from pipeline.jobs.reembed import (
    ReembedParams,
    create_reembed_job,
    load_recognizer,
    run_reembed,
)
from pipeline.library import FaceLibrary
from pipeline.models.quantize import QuantizeReport, quantize_pack
from pipeline.sources import load_image
from pipeline.store import jobs as job_store
from pipeline.store.crops import decode_crop
from pipeline.store.db import Database
from pipeline.store.reembed import ScopeCount, active_model, count_scope, scope_key
from pipeline.types import ImageAnalysis

PEOPLE = 12
"""Faces of players.jpg enrolled into group g1 (one person each); two more go to g2."""


class Killed(Exception):
    """Stands for a worker lost mid-run (raised from the progress callback)."""


@pytest.fixture(scope="module")
def int8_pack(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> QuantizeReport:
    """A real other pack: the default pack with its recognizer quantized to INT8."""
    photos = sorted(sample_dir.glob("*.jpg"))
    return quantize_pack(Settings(), photos, tmp_path_factory.mktemp("int8"), detector=False)


@pytest.fixture(scope="module")
def players(engine, players_jpg: Path) -> ImageAnalysis:  # type: ignore[no-untyped-def]
    return engine.analyze([load_image(str(players_jpg))])[0]


@pytest.fixture
def library(clean_database: Database, engine, players: ImageAnalysis) -> FaceLibrary:  # type: ignore[no-untyped-def]
    lib = FaceLibrary(clean_database, engine, Settings())
    for k, face in enumerate(players.faces[: PEOPLE + 2]):
        person = f"p{k:02d}"
        lib.ensure_person(person, ["g1"] if k < PEOPLE else ["g2"])
        lib.add_analyzed_face(person, players, face, source_uri="players.jpg")
    return lib


def _params(db: Database, pack: QuantizeReport, group: str | None, batch: int = 5) -> ReembedParams:
    from pipeline.jobs.reembed import recognizer_model_id, source_model_of

    with db.connection() as conn:
        source = source_model_of(conn, group)
    target = recognizer_model_id(pack.folder, Settings())
    return ReembedParams(group, source, target, str(pack.folder), batch)


def test_reembed_writes_beside_resumes_and_switches(
    library: FaceLibrary,
    clean_database: Database,
    int8_pack: QuantizeReport,
    engine,  # type: ignore[no-untyped-def]
    players: ImageAnalysis,
) -> None:
    db = clean_database
    params = _params(db, int8_pack, "g1")
    assert params.source_model == engine.model_id
    job = create_reembed_job(db, params)
    assert (job.kind.value, job.n_items, job.n_done) == ("reembed", PEOPLE, 0)
    recognizer = load_recognizer(int8_pack.folder, Settings())
    seen: list[tuple[int, int]] = []

    def die_after_first_batch(done: int, total: int) -> None:
        seen.append((done, total))
        raise Killed

    with pytest.raises(Killed):
        run_reembed(
            db, job.id, Settings(), recognizer=recognizer, on_progress=die_after_first_batch
        )
    assert seen == [(5, PEOPLE)]
    with db.connection() as conn:
        half = job_store.get_job(conn, job.id)
        assert half.status is JobStatus.RUNNING and half.n_done == 5
        assert active_model(conn, "g1") is None  # not switched yet
    # resumed: only the 7 faces without their twin are embedded
    progress: list[tuple[int, int]] = []
    result = run_reembed(
        db,
        job.id,
        Settings(),
        recognizer=recognizer,
        on_progress=lambda d, t: progress.append((d, t)),
    )
    assert (result.embedded, result.done, result.total, result.switched) == (7, 12, 12, True)
    assert progress == [(10, 12), (12, 12)]
    with db.connection() as conn:
        done = job_store.get_job(conn, job.id)
        assert (done.status, done.n_done, done.n_failed) == (JobStatus.DONE, PEOPLE, 0)
        assert active_model(conn, "g1") == params.target_model
        assert active_model(conn, "g2") is None and active_model(conn, None) is None
        rows = conn.execute(
            "SELECT o.embedding, n.embedding, n.crop, o.box, n.box, o.quality_score, "
            "n.quality_score FROM faces o JOIN faces n ON n.person_id = o.person_id "
            "AND n.content_sha256 = o.content_sha256 AND n.face_index = o.face_index "
            "WHERE o.model_id = %s AND n.model_id = %s",
            (params.source_model, params.target_model),
        ).fetchall()
        g2_models = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT model_id FROM faces WHERE person_id IN ('p12', 'p13')"
            )
        }
    # beside, not instead: every old vector is still there, with its twin
    assert len(rows) == PEOPLE
    assert g2_models == {params.source_model}
    from pipeline.store.repo import as_array

    for old, new, crop, old_box, new_box, old_q, new_q in rows:
        expected = recognizer.embed([decode_crop(bytes(crop))])[0]
        np.testing.assert_allclose(as_array(new), expected, atol=1e-5)
        assert float(np.dot(as_array(old), as_array(new))) > 0.8
        assert list(old_box) == list(new_box) and old_q == new_q
    # the switched scope is what reindex/identify-batch pick without --model
    assert default_model(db, "g1") == params.target_model
    assert default_model(db, "g2") == params.source_model
    # the new vectors identify: each face's int8 vector finds its own person in g1
    probes = recognizer.embed([f.aligned_crop for f in players.faces[:PEOPLE]])
    found = library.identify_embeddings(probes, ["g1"], 1, model_id=params.target_model)
    assert [c[0].person_id for c in found] == [f"p{k:02d}" for k in range(PEOPLE)]
    # a finished job is not run again; a new job the same way has nothing to move
    with pytest.raises(FacepipeError) as info:
        run_reembed(db, job.id, Settings(), recognizer=recognizer)
    assert info.value.code is ErrorCode.JOB_STATE
    with pytest.raises(FacepipeError) as info:
        _params(db, int8_pack, "g1")
    assert info.value.code is ErrorCode.ILLEGAL_PARAMETER  # already on that model


def test_faces_without_crop_fail_the_job_and_keep_the_scope(
    library: FaceLibrary, clean_database: Database, int8_pack: QuantizeReport
) -> None:
    db = clean_database
    with db.transaction() as conn:
        lost = conn.execute(
            "UPDATE faces SET crop = NULL WHERE person_id = 'p03' RETURNING face_id"
        ).fetchone()[0]
    params = _params(db, int8_pack, None, batch=64)
    job = create_reembed_job(db, params)
    assert job.n_items == PEOPLE + 2
    result = run_reembed(db, job.id, Settings())
    assert (result.embedded, result.done, result.without_crop, result.switched) == (
        PEOPLE + 1,
        PEOPLE + 1,
        1,
        False,
    )
    with db.connection() as conn:
        failed = job_store.get_job(conn, job.id)
        assert failed.status is JobStatus.FAILED
        assert failed.n_failed == 1
        assert failed.error["name"] == "FACE_NOT_FOUND"
        assert lost in failed.error["face_ids"]
        assert active_model(conn, None) is None
        assert count_scope(conn, params.scope) == ScopeCount(PEOPLE + 2, PEOPLE + 1, 1)


def test_params_are_checked() -> None:
    with pytest.raises(FacepipeError) as info:
        ReembedParams(None, "m-1", "m-1", "/x")
    assert info.value.code is ErrorCode.ILLEGAL_PARAMETER
    with pytest.raises(FacepipeError):
        ReembedParams(None, "m-1", "m-2", "/x", batch=0)
    with pytest.raises(FacepipeError):
        ReembedParams.from_dict({"group": None})
    assert scope_key(None) == "all" and scope_key("g") == "group=g"


def test_empty_scope_is_refused(clean_database: Database, int8_pack: QuantizeReport) -> None:
    with pytest.raises(FacepipeError) as info:
        create_reembed_job(clean_database, ReembedParams("nobody", "a-1", "b-2", "/x"))
    assert info.value.code is ErrorCode.FACE_NOT_FOUND


@pytest.mark.slow
def test_reembed_task_in_a_worker(
    start_worker,
    pipeline_env: dict[str, str],
    engine,
    players: ImageAnalysis,  # type: ignore[no-untyped-def]
    int8_pack: QuantizeReport,
) -> None:
    from pipeline.jobs.runtime import get_runtime
    from tests.fixtures.db import truncate_all
    from tests.fixtures.services import wait_job
    from workers.reembed_tasks import reembed_task

    db = get_runtime().db
    truncate_all(db)
    lib = FaceLibrary(db, engine, Settings())
    for k, face in enumerate(players.faces[:6]):
        lib.ensure_person(f"w{k}", ["wg"])
        lib.add_analyzed_face(f"w{k}", players, face)
    job = create_reembed_job(db, _params(db, int8_pack, "wg", batch=4))
    start_worker(queues=("infer",))
    reembed_task.apply_async(kwargs={"job_id": job.id})
    final = wait_job(job.id, timeout_s=180)
    assert (final.status, final.n_done, final.n_items) == (JobStatus.DONE, 6, 6)
    with db.connection() as conn:
        assert active_model(conn, "wg") == job.params["target_model"]
