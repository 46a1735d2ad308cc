"""pgvector vs FAISS on real embeddings, the planner, identify-batch end to end, CLI and worker.

Real faces: every face of players.jpg and gdp.jpg enrolled as its own person (the engine
fixture on the default model pack); probes are the faces of the mirrored photos.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.config import Settings, get_settings
from pipeline.index.identify_batch import identify_batch
from pipeline.index.planner import SearchEngine, Thresholds, choose_engine
from pipeline.index.reindex import reindex
from pipeline.index.search import SnapshotCache, identify_faiss
from pipeline.index.snapshot import Scope
from pipeline.jobs.exportdest import export_root
from pipeline.library import FaceLibrary
from pipeline.sources import load_image
from pipeline.store.observations import record_observed_faces
from pipeline.types import DecodedImage

GROUP = "photos"


@pytest.fixture(scope="module")
def analyses(engine, players_jpg: Path, gdp_jpg: Path):
    """(gallery analyses, mirrored probe analyses) of the two sample photos."""
    images = [load_image(str(p)) for p in (players_jpg, gdp_jpg)]
    mirrored = [
        DecodedImage(
            f"{im.source}#mirror",
            np.ascontiguousarray(im.pixels[:, ::-1]),
            "mirror-" + im.content_sha256,
            im.format,
        )
        for im in images
    ]
    return engine.analyze(images), engine.analyze(mirrored)


@pytest.fixture
def enrolled(clean_database, analyses, engine):
    gallery, _ = analyses
    library = FaceLibrary(clean_database, engine)
    n = 0
    for a in gallery:
        for face in a.faces:
            pid = f"{Path(a.source).stem}-{face.index:02d}"
            library.create_person(pid, [GROUP], name=pid.upper())
            library.add_analyzed_face(pid, a, face, face_match_threshold=0)
            n += 1
    assert n >= 25  # players.jpg has 22 faces, gdp.jpg 5
    return clean_database, library, engine.model_id


def probe_matrix(analyses) -> np.ndarray:
    _, mirrored = analyses
    return np.stack([f.embedding for a in mirrored for f in a.faces])


def test_pgvector_exact_and_faiss_flat_rank_real_faces_identically(enrolled, analyses, tmp_path):
    db, library, model = enrolled
    settings = Settings(home=tmp_path, snapshot_uri=str(tmp_path / "snaps"))
    rec = reindex(db, Scope(model_id=model, group=GROUP), settings)
    assert rec.kind == "flat"
    probes = probe_matrix(analyses)
    pg = library.identify_embeddings(probes, [GROUP], 5, model_id=model)
    fa = identify_faiss(db, probes, [GROUP], model, 5, cache=SnapshotCache(), settings=settings)
    assert [[c.person_id for c in r] for r in fa] == [[c.person_id for c in r] for r in pg]
    assert [[c.face_id for c in r] for r in fa] == [[c.face_id for c in r] for r in pg]
    np.testing.assert_allclose(
        [[c.score for c in r] for r in fa], [[c.score for c in r] for r in pg], atol=1e-4
    )
    # a mirrored face finds its own original first
    assert float(np.mean([r[0].score > 0.5 for r in fa])) > 0.8


def test_planner_applies_the_documented_thresholds() -> None:
    t = Thresholds.from_settings(Settings())
    assert (t.min_gallery, t.min_probes, t.max_delta) == (10_000, 10, 50_000)
    assert choose_engine(1_000_000, 10_000, None, t).engine is SearchEngine.PGVECTOR
    assert choose_engine(9_999, 10_000, 0, t).engine is SearchEngine.PGVECTOR
    assert choose_engine(1_000_000, 9, 0, t).engine is SearchEngine.PGVECTOR
    stale = choose_engine(1_000_000, 10_000, 50_001, t)
    assert stale.engine is SearchEngine.PGVECTOR and stale.reindex_due
    assert choose_engine(10_000, 10, 50_000, t).engine is SearchEngine.FAISS


def test_identify_batch_writes_matches_and_exports_the_same_with_both_engines(
    enrolled, analyses, tmp_path, pipeline_env, moto_server
):
    import boto3

    db, _, model = enrolled
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="exports")
    settings = Settings(
        home=tmp_path,
        snapshot_uri=str(tmp_path / "snaps"),
        s3_endpoint_url=moto_server,
        search_batch_size=8,
        export_dir=tmp_path,
    )
    _, mirrored = analyses
    with db.transaction() as conn:
        for a in mirrored:
            record_observed_faces(conn, a, job_id="night-1")
    reindex(db, Scope(model_id=model, group=GROUP), settings)
    runs = {}
    for eng, dest in (
        (SearchEngine.FAISS, str(tmp_path / "out.jsonl")),
        (SearchEngine.PGVECTOR, "s3://exports/run/pg.jsonl"),
    ):
        res = identify_batch(
            db,
            [GROUP],
            probe_job="night-1",
            top_n=3,
            export=dest,
            settings=settings,
            force_engine=eng,
        )
        assert res.plan.engine is eng and res.probes == len(probe_matrix(analyses))
        assert res.matched == res.probes and res.exported == res.probes
        with db.connection() as conn:
            rows = conn.execute(
                "SELECT observed_id, rank, person_id, face_id FROM matches WHERE job_id = %s "
                "ORDER BY observed_id, rank",
                (res.job_id,),
            ).fetchall()
            status = conn.execute("SELECT status FROM jobs WHERE id = %s", (res.job_id,))
            assert status.fetchone()[0] == "done"
        assert len(rows) == 3 * res.probes
        runs[eng] = [r[1:] for r in rows]
    assert runs[SearchEngine.FAISS] == runs[SearchEngine.PGVECTOR]
    local = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    remote = [
        json.loads(x)
        for x in s3.get_object(Bucket="exports", Key="run/pg.jsonl")["Body"]
        .read()
        .decode()
        .splitlines()
    ]
    assert [[m["person_id"] for m in r["matches"]] for r in local] == [
        [m["person_id"] for m in r["matches"]] for r in remote
    ]
    assert local[0]["engine"] == "faiss" and remote[0]["engine"] == "pgvector"


def test_cli_reindex_inline_and_index_list(enrolled, pipeline_env) -> None:
    from pipeline.cli.index_cmds import app

    runner = CliRunner()
    out = runner.invoke(app, ["reindex", "--group", GROUP, "--inline", "--json"])
    assert out.exit_code == 0, out.output
    rec = json.loads(out.output)
    listed = runner.invoke(app, ["index", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert rec["snapshot_id"] in [r["snapshot_id"] for r in json.loads(listed.output)]
    bad = runner.invoke(app, ["reindex", "--inline"])
    assert bad.exit_code == 2


def test_celery_worker_reindexes_and_identifies(enrolled, analyses, start_worker, tmp_path):
    from pipeline.cli.index_cmds import app

    db, _, _ = enrolled
    _, mirrored = analyses
    with db.transaction() as conn:
        for a in mirrored:
            record_observed_faces(conn, a, job_id="night-2")
    start_worker(queues=("index", "search"))
    runner = CliRunner()
    out = runner.invoke(app, ["reindex", "--group", GROUP, "--wait", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["snapshots"][0]["scope"] == f"group={GROUP}"
    # a name under the export folder (FACEPIPE_HOME/exports, the worker's too)
    dest = export_root(get_settings()) / "worker.jsonl"
    out = runner.invoke(
        app,
        [
            "identify-batch",
            "--group",
            GROUP,
            "--job",
            "night-2",
            "--engine",
            "faiss",
            "--export",
            "worker.jsonl",
            "--wait",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["status"] == "done"
    assert len(dest.read_text().splitlines()) == len(probe_matrix(analyses))


def test_identify_batch_of_a_source_records_probes_then_matches(
    enrolled, tmp_path, engine, gdp_jpg
) -> None:
    db, _, model = enrolled
    settings = Settings(home=tmp_path, snapshot_uri=str(tmp_path / "snaps"))
    reindex(db, Scope(model_id=model, group=GROUP), settings)
    res = identify_batch(
        db,
        [GROUP],
        sources=[str(gdp_jpg), str(tmp_path / "missing.jpg")],
        top_n=1,
        engine=engine,
        settings=settings,
        force_engine=SearchEngine.FAISS,
    )
    assert res.probes == 5 and res.matched == 5
    assert [e["name"] for e in res.errors] == ["SOURCE_NOT_FOUND"]
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT m.person_id FROM matches m JOIN observed_faces o USING (observed_id) "
            "WHERE m.job_id = %s AND o.job_id = %s ORDER BY o.face_index",
            (res.job_id, res.job_id),
        ).fetchall()
    # the very same photo: each face's best match is its own enrolled person
    assert [r[0] for r in rows] == [f"gdp-{i:02d}" for i in range(5)]


def test_cli_identify_batch_accepts_the_short_job_id_jobs_list_prints(
    enrolled, analyses, pipeline_env
) -> None:
    from pipeline.cli.index_cmds import app
    from pipeline.jobs.model import JobKind
    from pipeline.store import jobs as store

    db, _, _ = enrolled
    _, mirrored = analyses
    with db.transaction() as conn:
        job, _ = store.create_job(conn, JobKind.REIDENTIFY, {"groups": [GROUP]})
        for a in mirrored:
            record_observed_faces(conn, a, job_id=job.id)
    out = CliRunner().invoke(
        app, ["identify-batch", "--group", GROUP, "--job", job.id[:8], "--inline", "--json"]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["probes"] == len(probe_matrix(analyses))


def test_cli_identify_batch_stores_what_it_sends_so_a_resend_is_the_same_run(
    enrolled, pipeline_env, pipeline_redis
) -> None:
    """The message the CLI queues is the one the watchdog rebuilds from the stored run (a
    forced engine and a false-match rate included): a re-sent run is the run asked for."""
    from pipeline.cli.index_cmds import app
    from pipeline.index.batch_params import task_kwargs
    from pipeline.store import jobs as store

    db, _, _ = enrolled
    out = CliRunner().invoke(
        app,
        ["identify-batch", "--group", GROUP, "--since", "2026-01-01T00:00:00+00:00",
         "--engine", "faiss", "--false-match-rate", "0.01", "--json"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    run_id = json.loads(out.output)["job_id"]
    (raw,) = pipeline_redis.lrange("search", 0, -1)
    _, sent, _ = json.loads(base64.b64decode(json.loads(raw)["body"]))
    with db.connection() as conn:
        stored = store.get_job(conn, run_id).params
    assert stored["engine"] == "faiss" and stored["false_match_rate"] == 0.01
    assert sent == task_kwargs(stored, run_id)
    assert (sent["engine"], sent["false_match_rate"], sent["match_threshold"]) == (
        "faiss",
        0.01,
        None,
    )


def test_nightly_run_goes_through_identify_batch_when_the_planner_picks_faiss(
    enrolled, analyses, pipeline_env, pipeline_redis, tmp_path
) -> None:
    from datetime import UTC, datetime, timedelta

    from pipeline.jobs.runtime import Runtime
    from pipeline.store import jobs as store
    from workers.tasks import run_nightly

    db, _, model = enrolled
    _, mirrored = analyses
    with db.transaction() as conn:
        for a in mirrored:
            record_observed_faces(conn, a, job_id="seen-today")
    settings = Settings(
        database_url=db.url,
        home=tmp_path,
        snapshot_uri=str(tmp_path / "snaps"),
        reidentify_groups=[GROUP],
        faiss_min_gallery=10,
        faiss_min_probes=5,
        nightly_false_match_rate=0.01,
    )
    rt = Runtime(settings, db=db)
    since = datetime.now(UTC) - timedelta(hours=1)
    # no snapshot yet: the chunked reidentify job (pgvector) on the ingest queue
    first = run_nightly(rt, "2026-01-01", since)
    assert first["kind"] == "reidentify" and pipeline_redis.llen("ingest") == 1
    with db.connection() as conn:  # the night's target false-match rate goes with the job
        assert store.get_job(conn, first["job_id"]).params["false_match_rate"] == 0.01
    reindex(db, Scope(model_id=model, group=GROUP), settings)
    night = run_nightly(rt, "2026-01-02", since)
    assert night["kind"] == "identify-batch" and pipeline_redis.llen("search") == 1
    assert run_nightly(rt, "2026-01-02", since) == night  # the same night: the same run
    assert pipeline_redis.llen("search") == 1
    with db.connection() as conn:
        job = store.get_job(conn, night["job_id"])
    assert job.params["plan"]["engine"] == "faiss" and job.params["false_match_rate"] == 0.01
    (raw,) = pipeline_redis.lrange("search", 0, -1)
    _, sent, _ = json.loads(base64.b64decode(json.loads(raw)["body"]))
    assert sent["false_match_rate"] == 0.01
    # what the search worker runs with that message: every probe matched through FAISS, the
    # summary's threshold following the gallery's size for the night's false-match rate
    res = identify_batch(
        db, [GROUP], since=since, job_id=job.id, settings=settings, false_match_rate=0.01
    )
    assert res.plan.engine is SearchEngine.FAISS and res.probes == len(probe_matrix(analyses))
    assert res.summary["threshold"]["rule"] == "false_match_rate"


def test_identify_batch_with_a_target_false_match_rate_or_threshold(
    enrolled, tmp_path, engine, gdp_jpg
) -> None:
    import cv2
    from fastapi.testclient import TestClient

    from pipeline.api import create_app
    from pipeline.calibration import confidence_for_false_match_rate, expected_false_matches

    db, _, _ = enrolled
    settings = Settings(home=tmp_path, database_url=db.url, api_auth=False)
    mirrored = tmp_path / "gdp-mirrored.png"  # not the enrolled pixels: confidences below 100
    assert cv2.imwrite(str(mirrored), cv2.imread(str(gdp_jpg))[:, ::-1])
    by_rate = identify_batch(
        db,
        [GROUP],
        sources=[str(mirrored)],
        top_n=2,
        engine=engine,
        settings=settings,
        false_match_rate=0.001,
    )
    summary = by_rate.summary
    persons = summary["gallery_comparisons"]
    assert persons == 27 and summary["person_template"] == "mean"  # one template per person
    threshold = confidence_for_false_match_rate(0.001, persons)
    assert summary["threshold"] == {
        "confidence": round(threshold, 3),
        "rule": "false_match_rate",
        "false_match_rate": 0.001,
    }
    # the mirrored photo: every face found is matched (to itself), far above the threshold
    faces = by_rate.probes
    assert faces >= 3 and (summary["faces_searched"], summary["faces_matched"]) == (faces, faces)
    assert summary["expected_false_matches"] == pytest.approx(
        expected_false_matches(threshold, persons, faces), abs=1e-3
    )
    with db.connection() as conn:
        best = sorted(
            r[0]
            for r in conn.execute(
                "SELECT confidence FROM matches WHERE job_id = %s AND rank = 1", (by_rate.job_id,)
            )
        )
    assert threshold < best[0] < best[1] < 100.0
    # a threshold just above the weakest best match leaves that face unmatched
    by_threshold = identify_batch(
        db,
        [GROUP],
        sources=[str(mirrored)],
        top_n=2,
        engine=engine,
        settings=settings,
        match_threshold=best[0] + (best[1] - best[0]) / 2,
    )
    assert by_threshold.summary["threshold"]["rule"] == "match_threshold"
    assert by_threshold.summary["faces_matched"] == faces - 1 and by_threshold.matched == faces
    # the summary comes with the run over HTTP as it does with a reidentify job
    app = create_app(settings, engine=engine, database=db, preload=False)
    with TestClient(app) as client:
        shown = client.get(f"/v1/jobs/{by_rate.job_id}", params={"items": 0}).json()
    assert shown["kind"] == "identify-batch" and shown["summary"] == summary


def test_identify_batch_holds_its_job_lease_and_a_second_delivery_changes_nothing(
    enrolled, analyses, tmp_path
):
    """The run holds its job's lease (the watchdog re-sends the task of a run that died, see
    tests/test_reliability_units.py); a delivery while a live run holds it is refused."""
    from pipeline.errors import ErrorCode, FacepipeError
    from pipeline.index.identify_batch import create_run
    from pipeline.store import jobs as job_store

    db, _, _ = enrolled
    settings = Settings(home=tmp_path, snapshot_uri=str(tmp_path / "snaps"))
    _, mirrored = analyses
    with db.transaction() as conn:
        for a in mirrored:
            record_observed_faces(conn, a, job_id="night-2")
    job_id = create_run(db, {"groups": [GROUP], "probe_job": "night-2"})
    with db.transaction() as conn:
        assert job_store.claim_job_lease(conn, job_id, "live-run", 600)
    with pytest.raises(FacepipeError) as info:
        identify_batch(db, [GROUP], probe_job="night-2", job_id=job_id, settings=settings)
    assert info.value.code is ErrorCode.JOB_STATE

    def row() -> tuple[str, str | None, int]:
        with db.connection() as conn:
            found = conn.execute(
                "SELECT status, lease_owner, (SELECT count(*) FROM matches WHERE job_id = %s) "
                "FROM jobs WHERE id = %s",
                (job_id, job_id),
            ).fetchone()
        return found[0], found[1], found[2]

    assert row() == ("pending", "live-run", 0)
    with db.transaction() as conn:
        job_store.release_job_lease(conn, job_id, "live-run")  # that run died and let go
    res = identify_batch(db, [GROUP], probe_job="night-2", job_id=job_id, settings=settings)
    assert res.matched == res.probes > 0
    status, owner, matches = row()
    assert (status, owner) == ("done", None) and matches > 0
