"""Jobs against the real embedded Postgres: the item/job state machine and chunk processing
in-process with the real engine (the same functions the Celery tasks call)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import pytest

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.chunks import process_chunk
from pipeline.jobs.listing import list_step
from pipeline.jobs.model import ItemOutcome, ItemSpec, ItemStatus, JobKind, JobStatus
from pipeline.jobs.producers import walk_directory
from pipeline.jobs.runtime import Runtime
from pipeline.jobs.sample import build_sample_archive
from pipeline.store import jobs as store
from pipeline.store.db import Database


@pytest.fixture()
def runtime(clean_database: Database, engine: object, tmp_path: Path) -> Runtime:
    settings = Settings(database_url=clean_database.url, chunk_size=4, export_dir=tmp_path)
    return Runtime(settings, db=clean_database, engine=engine)


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory, engine: object) -> Path:
    root = tmp_path_factory.mktemp("archive")
    build_sample_archive(root, engine, persons=3)
    return root


def _faces(db: Database) -> list[tuple[str, str]]:
    with db.connection() as conn:
        rows = conn.execute("SELECT person_id, content_sha256 FROM faces").fetchall()
    return [(r[0], r[1]) for r in rows]


def test_items_are_keyed_and_counters_follow_them(clean_database: Database) -> None:
    with clean_database.transaction() as conn:
        job, created = store.create_job(
            conn, JobKind.ENROLL, {"groups": ["g"]}, idempotency_key="k1"
        )
        again, created_again = store.create_job(conn, JobKind.ENROLL, {}, idempotency_key="k1")
        assert created and not created_again and again.id == job.id
        specs = [ItemSpec(f"/x/{i}.jpg", "p") for i in range(5)]
        assert store.add_items(conn, job.id, specs, 0) == 5
        assert store.add_items(conn, job.id, specs, 0) == 0  # a redelivered listing page
        assert not store.mark_listing_done(conn, job.id)
        items = store.claim_chunk(conn, job.id, 0, 2, "run-1", 30)
        assert [i.status for i in items] == [ItemStatus.RUNNING] * 3
        # a second delivery of the same chunk while the first run is alive claims nothing
        assert store.claim_chunk(conn, job.id, 0, 2, "run-2", 30) == []
        assert store.get_job(conn, job.id).status == JobStatus.RUNNING
    with clean_database.transaction() as conn:
        assert store.lock_unfinished(conn, [i.id for i in items], "run-2") == set()
        locked = store.lock_unfinished(conn, [i.id for i in items], "run-1")
        outcomes = [ItemOutcome(i.id, ItemStatus.DONE, n_faces=1) for i in items[:2]]
        err = {"code": -1101, "name": "NO_FACE", "message": "no face"}
        outcomes.append(ItemOutcome(items[2].id, ItemStatus.FAILED, error=err))
        assert len(locked) == 3
        assert not store.write_outcomes(conn, job.id, outcomes)
    with clean_database.transaction() as conn:
        # the same chunk delivered again finds nothing left to write
        assert store.lock_unfinished(conn, [i.id for i in items], "run-1") == set()
        rest = store.claim_chunk(conn, job.id, 3, 4, "run-3", 30)
        assert store.write_outcomes(
            conn, job.id, [ItemOutcome(i.id, ItemStatus.DONE) for i in rest]
        )
        job = store.get_job(conn, job.id)
        assert (job.status, job.n_items, job.n_done, job.n_failed, job.n_faces) == (
            JobStatus.DONE,
            5,
            4,
            1,
            2,
        )
        assert store.error_counts(conn, job.id) == {"NO_FACE": 1}
        with pytest.raises(FacepipeError) as exc:
            store.cancel_job(conn, job.id)
        assert exc.value.code == ErrorCode.JOB_STATE
        assert store.reset_failed_items(conn, job.id) == [2]
        job = store.get_job(conn, job.id)
        assert (job.status, job.n_failed) == (JobStatus.RUNNING, 0)
        assert store.cancel_job(conn, job.id).status == JobStatus.CANCELLED
        assert store.cleanup_items(conn, 0.0) == 5
        with pytest.raises(FacepipeError) as missing:
            store.get_job(conn, "not-a-uuid")
        assert missing.value.code == ErrorCode.JOB_NOT_FOUND


def test_enroll_directory_in_process_exactly_once(runtime: Runtime, archive: Path) -> None:
    with runtime.db.transaction() as conn:
        job, _ = store.create_job(
            conn, JobKind.ENROLL, {"source": str(archive), "groups": ["team"]}
        )
    chunks: list[tuple[int, int]] = []
    step = list_step(runtime, job, lambda lo, hi: chunks.append((lo, hi)))
    assert step.finished and step.listed == 15 and chunks[0] == (0, 3)
    # a worker that claimed the first chunk and died before committing anything (its lease,
    # 0 s here, has run out)
    with runtime.db.transaction() as conn:
        store.claim_chunk(conn, job.id, *chunks[0], "dead-worker", 0)
    for lo, hi in chunks:
        process_chunk(runtime, job.id, lo, hi)
    # every chunk delivered a second time: nothing changes
    for lo, hi in chunks:
        assert process_chunk(runtime, job.id, lo, hi).skipped is not None
    with runtime.db.connection() as conn:
        job = store.get_job(conn, job.id)
        items = store.list_items(conn, job.id)
    assert job.status == JobStatus.DONE and job.n_done + job.n_failed == 15
    assert {i.status for i in items} <= {ItemStatus.DONE, ItemStatus.FAILED}
    assert [i.attempts for i in items[:4]] == [2, 2, 2, 2]
    faces = _faces(runtime.db)
    assert len(faces) == len(set(faces)) == job.n_faces >= 6
    assert {p for p, _ in faces} == {"player_01", "player_02", "player_03"}
    refused = {i.error_name for i in items if i.status == ItemStatus.FAILED}
    assert refused <= {"NEAR_DUPLICATE_FACE"}


def test_face_cap_keeps_the_best_faces(runtime: Runtime, archive: Path, tmp_path: Path) -> None:
    capped = Runtime(
        runtime.settings.model_copy(update={"max_faces_per_person": 2}),
        db=runtime.db,
        engine=runtime.engine,
    )
    person = archive / "player_01"
    with capped.db.transaction() as conn:
        job, _ = store.create_job(conn, JobKind.ENROLL, {"source": str(person), "groups": ["team"]})
    list_step(capped, job, lambda lo, hi: None)
    # one image per chunk, worst quality first: only replacement can keep the best faces
    order = sorted(range(5), key=lambda s: _quality_of_seq(capped, job.id, s))
    for seq in order:
        process_chunk(capped, job.id, seq, seq)
    with capped.db.connection() as conn:
        kept = sorted(
            r[0]
            for r in conn.execute(
                "SELECT quality_score FROM faces WHERE person_id = 'player_01'"
            ).fetchall()
        )
        done = store.list_items(conn, job.id, status=ItemStatus.DONE)
    assert len(kept) == 2
    # images arrived worst first: the better ones replaced the enrolled faces
    assert any(i.result and "replaced_face_id" in i.result for i in done)
    best_two = sorted(_enrollable_qualities(capped, person))[-2:]
    assert kept == pytest.approx(best_two, abs=1e-3)


def _quality_of_seq(rt: Runtime, job_id: str, seq: int) -> float:
    from pipeline.sources import load_image

    with rt.db.connection() as conn:
        uri = store.list_items(conn, job_id)[seq].uri
    return float(rt.engine.analyze([load_image(uri)], mode="largest")[0].faces[0].quality.score)


def _enrollable_qualities(rt: Runtime, folder: Path) -> list[float]:
    """Quality of the largest face of each photo that is not a near-duplicate of a better one."""
    from pipeline.sources import load_image

    images = [load_image(str(p)) for p in sorted(folder.glob("*.jpg"))]
    faces = [a.faces[0] for a in rt.engine.analyze(images, mode="largest")]
    faces.sort(key=lambda f: -f.quality.score)
    kept: list = []
    for f in faces:
        if all(
            float(f.embedding @ k.embedding) < rt.settings.near_duplicate_similarity for k in kept
        ):
            kept.append(f)
    return [float(f.quality.score) for f in kept]


def test_reidentify_writes_observations_and_matches(
    runtime: Runtime, archive: Path, players_jpg: Path, tmp_path: Path
) -> None:
    from pipeline.jobs.export import export_matches

    with runtime.db.transaction() as conn:
        enroll, _ = store.create_job(
            conn, JobKind.ENROLL, {"source": str(archive), "groups": ["team"]}
        )
    list_step(runtime, enroll, lambda lo, hi: process_chunk(runtime, enroll.id, lo, hi))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    urls = tmp_path / "photos.txt"
    urls.write_text(f"{players_jpg}\n{bad}\n")
    with runtime.db.transaction() as conn:
        job, _ = store.create_job(
            conn, JobKind.REIDENTIFY, {"source": str(urls), "groups": ["team"], "top_n": 2}
        )
    list_step(runtime, job, lambda lo, hi: process_chunk(runtime, job.id, lo, hi))
    with runtime.db.connection() as conn:
        job = store.get_job(conn, job.id)
        items = store.list_items(conn, job.id)
    assert (job.status, job.n_done, job.n_failed, job.n_faces) == (JobStatus.DONE, 1, 1, 22)
    assert items[1].error_name == "DECODE_FAILED" and items[1].error_code == -1102
    out = tmp_path / "out" / "matches.jsonl"
    assert export_matches(runtime, job.id, str(out)) == 22
    import json

    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(len(r["matches"]) == 2 for r in records)
    best = {r["matches"][0]["person_id"] for r in records if r["matches"][0]["confidence"] > 90}
    assert best == {"player_01", "player_02", "player_03"}

    # re-identify the stored observations (no image read again), e.g. the nightly run
    since = datetime.now(UTC) - timedelta(hours=1)
    with runtime.db.transaction() as conn:
        again, _ = store.create_job(
            conn, JobKind.REIDENTIFY, {"since": since.isoformat(), "groups": ["team"], "top_n": 1}
        )
    list_step(runtime, again, lambda lo, hi: process_chunk(runtime, again.id, lo, hi))
    with runtime.db.connection() as conn:
        again = store.get_job(conn, again.id)
        uris = {i.uri for i in store.list_items(conn, again.id)}
        n_matches = conn.execute(
            "SELECT count(*) FROM matches WHERE job_id = %s", (again.id,)
        ).fetchone()
    assert (again.status, again.n_done, again.n_faces) == (JobStatus.DONE, 22, 22)
    assert uris == {f"observed:{r['observed_id']}" for r in records}
    assert n_matches is not None and n_matches[0] == 22


def test_cancelled_job_skips_its_chunks(runtime: Runtime, archive: Path) -> None:
    with runtime.db.transaction() as conn:
        job, _ = store.create_job(
            conn, JobKind.ENROLL, {"source": str(archive), "groups": ["team"]}
        )
    list_step(runtime, job, lambda lo, hi: None)
    with runtime.db.transaction() as conn:
        store.cancel_job(conn, job.id)
    assert process_chunk(runtime, job.id, 0, 3).skipped == "job is cancelled"
    assert _faces(runtime.db) == []


def test_unreadable_chunk_sources_fail_per_item(runtime: Runtime, tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    cv2.imwrite(
        str(tmp_path / "p" / "blank.png"), 255 * __import__("numpy").ones((200, 200, 3), "uint8")
    )
    (tmp_path / "p" / "empty.jpg").write_bytes(b"")
    with runtime.db.transaction() as conn:
        job, _ = store.create_job(
            conn, JobKind.ENROLL, {"source": str(tmp_path / "p"), "groups": ["g"]}
        )
    list_step(runtime, job, lambda lo, hi: process_chunk(runtime, job.id, lo, hi))
    with runtime.db.connection() as conn:
        items = {Path(i.uri).name: i for i in store.list_items(conn, job.id)}
    assert items["blank.png"].error_name == "NO_FACE"
    assert items["empty.jpg"].error_name == "EMPTY_IMAGE"


def test_an_item_whose_worker_keeps_dying_fails_instead_of_looping(
    runtime: Runtime, archive: Path
) -> None:
    with runtime.db.transaction() as conn:
        job, _ = store.create_job(
            conn, JobKind.ENROLL, {"source": str(archive / "player_01"), "groups": ["team"]}
        )
    list_step(runtime, job, lambda lo, hi: None)
    for n in range(runtime.settings.item_max_attempts):  # three deliveries, three dead workers
        with runtime.db.transaction() as conn:
            store.claim_chunk(conn, job.id, 0, 0, f"dead-{n}", 0)
    result = process_chunk(runtime, job.id, 0, 1)
    assert (result.failed, result.done) == (1, 1)
    with runtime.db.connection() as conn:
        first, second = store.list_items(conn, job.id)[:2]
    assert (first.status, first.error_name, first.attempts) == (ItemStatus.FAILED, "INTERNAL", 4)
    assert "interrupted 3 times" in (first.error_message or "")
    assert second.status == ItemStatus.DONE and second.attempts == 1


def test_reidentify_against_no_existing_group_is_refused_at_submission(
    runtime: Runtime, archive: Path
) -> None:
    from pipeline.jobs.submit import submit_job

    with pytest.raises(FacepipeError) as err:
        submit_job(JobKind.REIDENTIFY, str(archive), groups=["nosuch"], rt=runtime)
    assert err.value.code == ErrorCode.GROUP_NOT_FOUND
    with pytest.raises(FacepipeError) as err:
        submit_job(JobKind.REIDENTIFY, str(archive), groups=["a", "b"], rt=runtime)
    assert err.value.code == ErrorCode.GROUP_LIST_NOT_FOUND
    with runtime.db.connection() as conn:
        assert store.list_jobs(conn) == []


def test_directory_is_listed_page_by_page_with_a_resume_token(
    runtime: Runtime, archive: Path, tmp_path: Path
) -> None:
    walked = list(walk_directory(archive))
    manifest = tmp_path / "m.csv"  # overrides the person of the 8th file (second page)
    rel = Path(walked[7].uri).relative_to(archive.resolve())
    manifest.write_text(f"uri,person_id,name,groups\n{rel},boss,The Boss,\n")
    with runtime.db.transaction() as conn:
        job, _ = store.create_job(
            conn,
            JobKind.ENROLL,
            {"source": str(archive), "groups": ["team"], "page_size": 6, "manifest": str(manifest)},
        )
    chunks: list[tuple[int, int]] = []
    steps = [list_step(runtime, job, lambda lo, hi: chunks.append((lo, hi)))]
    while not steps[-1].finished:
        # what the ingest task does: call again (possibly redelivered: the same page twice)
        for _ in range(2):
            step = list_step(
                runtime,
                job,
                lambda lo, hi: chunks.append((lo, hi)),
                token=steps[-1].next_token,
                next_seq=steps[-1].next_seq,
            )
        steps.append(step)
    assert [s.listed for s in steps] == [6, 6, 3]
    with runtime.db.connection() as conn:
        job = store.get_job(conn, job.id)
        items = store.list_items(conn, job.id)
    assert job.listing_done and job.n_items == 15
    assert [i.seq for i in items] == list(range(15))
    assert [i.uri for i in items] == [s.uri for s in walked]
    assert [i.person_id for i in items] == [
        "boss" if n == 7 else s.person_id for n, s in enumerate(walked)
    ]
    assert items[7].person_name == "The Boss"
