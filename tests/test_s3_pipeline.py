"""S3 producers and triggers against a moto server over HTTP, with real Celery workers.

The S3 -> SQS path is the real one: the bucket's notification configuration makes the moto
server deliver ObjectCreated events to the SQS queue, and the listener (the same code as
``facepipe s3-listen``) long-polls that queue.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.jobs.model import ItemStatus, JobKind, JobStatus
from pipeline.jobs.runtime import get_runtime
from pipeline.jobs.s3_listener import SqsListener, handle_s3_event
from pipeline.jobs.sample import build_sample_archive
from pipeline.jobs.submit import submit_job
from pipeline.store import jobs as store
from tests.fixtures.services import S3Events, enrolled_faces, items_of, wait_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, engine: Any) -> Path:
    root = tmp_path_factory.mktemp("s3-archive")
    build_sample_archive(root, engine, persons=2)
    return root


def _upload_archive(events: S3Events, archive: Path, prefix: str) -> int:
    n = 0
    for path in sorted(archive.rglob("*.jpg")):
        events.s3.upload_file(str(path), events.bucket, f"{prefix}{path.parent.name}/{path.name}")
        n += 1
    return n


def _drain(listener: SqsListener, want_jobs: int, timeout_s: float = 30.0) -> list[Any]:
    handled: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while sum(len(h.jobs) for h in handled) < want_jobs and time.monotonic() < deadline:
        handled += listener.poll_once(wait_s=1)
    return handled


def test_enrol_s3_prefix_page_by_page_and_export_to_s3(
    clean_database: Any,
    start_worker: Callable[..., Any],
    s3_events: S3Events,
    archive: Path,
    players_jpg: Path,
) -> None:
    n = _upload_archive(s3_events, archive, "archive/")
    start_worker()
    job = wait_job(
        submit_job(
            JobKind.ENROLL, f"s3://{s3_events.bucket}/archive/", groups=["s3team"], page_size=3
        ).id
    )
    assert job.status == JobStatus.DONE and job.n_items == n == 10
    items = items_of(job.id)
    assert [i.seq for i in items] == list(range(n))
    assert {i.person_id for i in items} == {"player_01", "player_02"}
    assert all(i.status == ItemStatus.DONE or i.error_name == "NEAR_DUPLICATE_FACE" for i in items)
    assert len(enrolled_faces()) == job.n_done >= 4

    s3_events.s3.upload_file(str(players_jpg), s3_events.bucket, "group/players.jpg")
    dest = f"s3://{s3_events.bucket}/exports/run1.jsonl"
    rjob = wait_job(
        submit_job(
            JobKind.REIDENTIFY,
            f"s3://{s3_events.bucket}/group/players.jpg",
            groups=["s3team"],
            export=dest,
        ).id
    )
    assert (rjob.status, rjob.n_faces) == (JobStatus.DONE, 22)
    deadline = time.monotonic() + 30
    body = None
    while body is None and time.monotonic() < deadline:
        try:
            body = s3_events.s3.get_object(Bucket=s3_events.bucket, Key="exports/run1.jsonl")
        except s3_events.s3.exceptions.NoSuchKey:
            time.sleep(0.3)
    assert body is not None
    records = [json.loads(x) for x in body["Body"].read().decode().splitlines()]
    assert len(records) == 22
    assert {
        r["matches"][0]["person_id"] for r in records if r["matches"][0]["confidence"] > 90
    } == {"player_01", "player_02"}


def test_s3_upload_triggers_processing_through_the_listener(
    clean_database: Any,
    start_worker: Callable[..., Any],
    s3_events: S3Events,
    archive: Path,
    players_jpg: Path,
) -> None:
    start_worker()
    listener = SqsListener(s3_events.queue_url)
    # moto, like S3, first sends an s3:TestEvent; add a malformed message of our own
    s3_events.sqs.send_message(QueueUrl=s3_events.queue_url, MessageBody="{not json")
    photo = sorted((archive / "player_01").glob("*.jpg"))[0]
    s3_events.s3.upload_file(str(photo), s3_events.bucket, "enroll/s3group/ann_lee/photo one.jpg")
    handled = _drain(listener, 1)
    enroll_jobs = [j for h in handled for j in h.jobs]
    assert len(enroll_jobs) == 1
    job = wait_job(enroll_jobs[0])
    assert (job.kind, job.status, job.n_done) == (JobKind.ENROLL, JobStatus.DONE, 1), [
        i.to_dict() for i in items_of(job.id)
    ]
    assert enrolled_faces()[0][0] == "ann_lee"
    assert items_of(job.id)[0].uri.endswith("/ann_lee/photo one.jpg")

    started = time.monotonic()
    s3_events.s3.put_object(Bucket=s3_events.bucket, Key="elsewhere/x.jpg", Body=b"x")
    s3_events.s3.upload_file(str(players_jpg), s3_events.bucket, "incoming/cam1/players.jpg")
    handled += _drain(listener, 1)
    for _ in range(5):  # the unrouted key's event may come in a later receive
        if sum(h.ignored for h in handled):
            break
        handled += listener.poll_once(wait_s=1)
    reid = [j for h in handled for j in h.jobs if j not in enroll_jobs]
    assert len(reid) == 1
    rjob = wait_job(reid[0])
    latency = time.monotonic() - started
    assert (rjob.kind, rjob.status, rjob.n_faces) == (JobKind.REIDENTIFY, JobStatus.DONE, 22)
    with get_runtime().db.connection() as conn:
        best = conn.execute(
            "SELECT max(confidence) FROM matches WHERE job_id = %s AND person_id = 'ann_lee'",
            (rjob.id,),
        ).fetchone()
    assert best is not None and best[0] > 90
    assert latency < 60
    # the test event, the malformed message and the unrouted key were dropped, not kept
    assert any(h.dropped for h in handled)
    assert sum(h.ignored for h in handled) == 1
    attrs = s3_events.sqs.get_queue_attributes(
        QueueUrl=s3_events.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attrs == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }


def test_lambda_handler_is_idempotent_per_event(
    clean_database: Any, pipeline_env: Any, pipeline_redis: Any
) -> None:
    event = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": "b"},
                    "object": {"key": "incoming/cam+2/shot.jpg", "sequencer": "0A1"},
                },
            }
        ]
    }
    first = handle_s3_event(event)
    again = handle_s3_event(event)
    assert len(first["jobs"]) == 1 and first["jobs"] == again["jobs"]
    with get_runtime().db.connection() as conn:
        items = store.list_items(conn, first["jobs"][0])
    assert [i.uri for i in items] == ["s3://b/incoming/cam 2/shot.jpg"]
    assert handle_s3_event({"Event": "s3:TestEvent"}) == {"jobs": [], "dropped": "s3:TestEvent"}
    assert handle_s3_event({"nonsense": 1})["jobs"] == []
    # the chunk was sent to the broker's infer queue (no worker here to take it)
    assert pipeline_redis.llen("infer") >= 1
