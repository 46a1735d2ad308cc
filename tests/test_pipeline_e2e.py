"""The pipeline end to end: real Redis, real embedded Postgres, real Celery worker subprocesses.

The test process submits jobs exactly as the CLI does (``pipeline.jobs.submit``) and watches the
database; the workers (``celery -A workers.app worker``) run the chunks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from pipeline.jobs.model import ItemStatus, JobKind, JobStatus
from pipeline.jobs.sample import build_sample_archive
from pipeline.jobs.submit import submit_job
from tests.fixtures.services import enrolled_faces, items_of, wait_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, engine: Any) -> Path:
    root = tmp_path_factory.mktemp("e2e-archive")
    build_sample_archive(root, engine, persons=3)
    return root


def _poison(folder: Path, gdp_jpg: Path) -> dict[str, str]:
    """Bad inputs next to good ones; the error each must end with."""
    folder.mkdir(parents=True)
    (folder / "corrupt.jpg").write_bytes(gdp_jpg.read_bytes()[:200])
    (folder / "empty.jpg").write_bytes(b"")
    gif = cv2.imencode(".png", np.zeros((80, 80, 3), np.uint8))[1].tobytes()
    (folder / "anim.gif").write_bytes(b"GIF89a" + gif[6:])
    cv2.imwrite(str(folder / "huge.png"), np.zeros((2600, 2000, 3), np.uint8))
    cv2.imwrite(str(folder / "noface.png"), np.full((300, 300, 3), 200, np.uint8))
    return {
        "corrupt.jpg": "DECODE_FAILED",
        "empty.jpg": "EMPTY_IMAGE",
        "anim.gif": "ILLEGAL_FORMAT",
        "huge.png": "IMAGE_TOO_LARGE",
        "noface.png": "NO_FACE",
        "x.jpg": "DOWNLOAD_FAILED",
    }


def test_enrol_manifest_with_poison_inputs_then_reidentify_and_export(
    clean_database: Any,
    start_worker: Callable[..., Any],
    archive: Path,
    gdp_jpg: Path,
    players_jpg: Path,
    tmp_path: Path,
) -> None:
    expected = _poison(tmp_path / "poison", gdp_jpg)
    rows = ["uri,person_id,name,groups"]
    rows += [f"{p},{p.parent.name},,team" for p in sorted(archive.rglob("*.jpg"))]
    rows += [f"{p},bad,,team" for p in sorted((tmp_path / "poison").iterdir())]
    rows.append("http://127.0.0.1:9/x.jpg,bad,,team")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    start_worker(FACEPIPE_MAX_IMAGE_PIXELS="4000000")

    job = wait_job(submit_job(JobKind.ENROLL, str(manifest), groups=["ignored"]).id)
    assert job.status == JobStatus.DONE and job.n_items == 21
    items = items_of(job.id)
    by_name = {Path(i.uri).name: i for i in items if i.person_id == "bad"}
    assert {n: i.error_name for n, i in by_name.items()} == expected
    assert by_name["x.jpg"].attempts == 3  # transient: retried, then failed
    assert all(i.error_code is not None for i in by_name.values())
    good = [i for i in items if i.person_id != "bad"]
    assert all(i.status != ItemStatus.PENDING for i in good)
    assert {i.error_name for i in good if i.status == ItemStatus.FAILED} <= {"NEAR_DUPLICATE_FACE"}
    faces = enrolled_faces()
    assert len(faces) == len(set(faces)) == job.n_faces == job.n_done >= 6

    # a local export is a name under the export folder (FACEPIPE_HOME/exports here)
    export = Path(os.environ["FACEPIPE_HOME"]) / "exports" / "out" / "matches.jsonl"
    rjob = wait_job(
        submit_job(
            JobKind.REIDENTIFY,
            str(players_jpg),
            groups=["team"],
            export="out/matches.jsonl",
            top_n=3,
        ).id
    )
    assert (rjob.status, rjob.n_done, rjob.n_faces) == (JobStatus.DONE, 1, 22)
    deadline = time.monotonic() + 30
    while not export.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    records = [json.loads(line) for line in export.read_text().splitlines()]
    assert len(records) == 22 and all(r["job_id"] == rjob.id for r in records)
    confident = {
        r["matches"][0]["person_id"]
        for r in records
        if r["matches"] and r["matches"][0]["confidence"] >= 90
    }
    assert confident == {"player_01", "player_02", "player_03"}


def test_kill_9_mid_chunk_loses_nothing_and_duplicates_nothing(
    clean_database: Any,
    start_worker: Callable[..., Any],
    archive: Path,
    tmp_path: Path,
) -> None:
    photos = sorted(archive.rglob("*.jpg"))
    root = tmp_path / "big"
    n = 48
    for i in range(n):  # one photo per person: every item should enrol exactly one face
        (root / f"p{i:02d}").mkdir(parents=True)
        shutil.copy(photos[i % len(photos)], root / f"p{i:02d}" / "photo.jpg")
    first = start_worker()
    job = submit_job(JobKind.ENROLL, str(root), groups=["big"], chunk_size=n)
    deadline = time.monotonic() + 60
    while not any(i.status == ItemStatus.RUNNING for i in items_of(job.id)):
        assert time.monotonic() < deadline, first.log_text()[-2000:]
        time.sleep(0.1)
    # at once: the 48 small photos take about a second on a quiet machine, and the items turn
    # running when the chunk is claimed, before anything is read (a second's sleep here let
    # the chunk finish first)
    first.kill(signal.SIGKILL)
    first.proc.wait(10)
    killed = items_of(job.id)
    assert {i.status for i in killed} == {ItemStatus.RUNNING}, "the chunk finished too soon"
    assert enrolled_faces() == []

    start_worker()  # Redis redelivers the unacknowledged chunk after the visibility timeout
    job = wait_job(job.id, timeout_s=90)
    items = items_of(job.id)
    assert job.status == JobStatus.DONE and (job.n_done, job.n_failed) == (n, 0)
    assert all(i.status == ItemStatus.DONE and i.attempts == 2 for i in items)
    faces = enrolled_faces()
    assert len(faces) == n and len(set(faces)) == n
    face_ids = [f for i in items for f in i.face_ids]
    assert len(face_ids) == len(set(face_ids)) == n
