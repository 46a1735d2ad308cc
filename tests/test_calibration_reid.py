"""Re-identification jobs with a threshold or a target false-match rate, and their summary of
expected false matches (real Postgres, real engine, the chunk functions the workers call)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.calibration import confidence_for_false_match_rate, expected_false_matches
from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.chunks import process_chunk
from pipeline.jobs.listing import list_step
from pipeline.jobs.model import JobKind, JobStatus
from pipeline.jobs.reid_threshold import job_threshold, reid_params, reidentify_summary
from pipeline.jobs.runtime import Runtime
from pipeline.jobs.sample import build_sample_archive
from pipeline.store import jobs as store
from pipeline.store.db import Database


@pytest.fixture()
def runtime(clean_database: Database, engine: object) -> Runtime:
    settings = Settings(database_url=clean_database.url, chunk_size=8)
    return Runtime(settings, db=clean_database, engine=engine)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, engine: object) -> Path:
    root = tmp_path_factory.mktemp("reid-archive")
    build_sample_archive(root, engine, persons=3)
    return root


def test_reid_params_are_checked() -> None:
    assert reid_params(None, None) == {}
    assert reid_params(75, None) == {"match_threshold": 75.0}
    assert reid_params(None, 0.01) == {"false_match_rate": 0.01}
    for threshold, rate in (
        (70.0, 0.01),
        (101.0, None),
        (-1.0, None),
        (None, 0.0),
        (None, 1.0),
        (None, float("nan")),
    ):
        with pytest.raises(FacepipeError) as err:
            reid_params(threshold, rate)
        assert err.value.code is ErrorCode.ILLEGAL_PARAMETER


def test_job_threshold_rules() -> None:
    settings = Settings()
    assert job_threshold({}, 10, settings).confidence == settings.identify_match_threshold
    assert job_threshold({"match_threshold": 55}, 10, settings).confidence == 55
    by_rate = job_threshold({"false_match_rate": 0.01}, 10_000, settings)
    assert by_rate.rule == "false_match_rate"
    assert by_rate.confidence == pytest.approx(confidence_for_false_match_rate(0.01, 10_000))
    assert by_rate.confidence == pytest.approx(70.0, abs=0.05)  # Tencent's 1:N table (0.995%)
    # a larger gallery needs a stricter threshold for the same rate
    assert job_threshold({"false_match_rate": 0.01}, 100_000, settings).confidence > 79.9


def test_reidentify_with_a_target_false_match_rate(
    runtime: Runtime, archive: Path, players_jpg: Path, tmp_path: Path
) -> None:
    with runtime.db.transaction() as conn:
        enroll, _ = store.create_job(
            conn, JobKind.ENROLL, {"source": str(archive), "groups": ["team"]}
        )
    list_step(runtime, enroll, lambda lo, hi: process_chunk(runtime, enroll.id, lo, hi))
    urls = tmp_path / "photos.txt"
    urls.write_text(f"{players_jpg}\n")
    params = {"source": str(urls), "groups": ["team"], "top_n": 2, **reid_params(None, 0.001)}
    with runtime.db.transaction() as conn:
        job, _ = store.create_job(conn, JobKind.REIDENTIFY, params)
    list_step(runtime, job, lambda lo, hi: process_chunk(runtime, job.id, lo, hi))
    with runtime.db.connection() as conn:
        job = store.get_job(conn, job.id)
        items = store.list_items(conn, job.id)
        summary = reidentify_summary(
            conn, job.id, job.params, runtime.engine.model_id, runtime.settings
        )
    assert job.status == JobStatus.DONE and job.n_faces == 22
    faces = items[0].result["faces"]
    # the three enrolled players are matched to themselves, the 19 other players to nobody
    matched = sorted(f["match"] for f in faces if f["match"] is not None)
    assert matched == ["player_01", "player_02", "player_03"]
    gallery = summary["gallery_comparisons"]
    assert summary["person_template"] == "mean" and gallery == 3  # one template per person
    threshold = confidence_for_false_match_rate(0.001, gallery)
    assert summary["threshold"]["confidence"] == pytest.approx(threshold, abs=1e-3)
    assert summary["threshold"]["rule"] == "false_match_rate"
    assert (summary["faces_searched"], summary["faces_matched"]) == (22, 3)
    assert summary["expected_false_matches"] == pytest.approx(
        expected_false_matches(threshold, gallery, 22), abs=1e-3
    )
    assert summary["expected_false_matches"] == pytest.approx(22 * 0.001, rel=1e-3)
    # the same summary comes with the job over HTTP and in `facepipe jobs show`
    from fastapi.testclient import TestClient

    from pipeline.api import create_app

    settings = runtime.settings.model_copy(update={"api_auth": False})
    app = create_app(settings, engine=runtime.engine, database=runtime.db, preload=False)
    with TestClient(app) as client:
        shown = client.get(f"/v1/jobs/{job.id}", params={"items": 0}).json()
    assert shown["summary"] == summary
