"""The HTTP API as a producer, end to end: jobs submitted over HTTP (and a MinIO-style S3
webhook event) run on a real Celery worker subprocess, with real Redis (DB 9), the embedded
Postgres, an S3 served by moto over HTTP and the real models; results read back over HTTP."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient

from pipeline.api import create_app
from pipeline.config import get_settings
from pipeline.engine import FaceEngine
from pipeline.store.db import Database

pytestmark = pytest.mark.slow


def wait_done(client: TestClient, job_id: str, timeout_s: float = 150.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} not finished: {job}")
        time.sleep(0.5)


def test_jobs_and_s3_webhook_over_http(
    pipeline_env: dict[str, str],
    moto_server: str,
    start_worker: Callable[..., Any],
    clean_database: Database,
    engine: FaceEngine,
    yaoming_jpg: Path,
    gdp_jpg: Path,
) -> None:
    bucket = f"api-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="archive/yao/1.jpg", Body=yaoming_jpg.read_bytes())
    s3.put_object(Bucket=bucket, Key="archive/gdp/1.jpg", Body=gdp_jpg.read_bytes())
    s3.put_object(Bucket=bucket, Key="enroll/vip/yao2/a.jpg", Body=yaoming_jpg.read_bytes())

    start_worker(queues=("ingest", "infer"))
    settings = get_settings().model_copy(update={"api_auth": False})  # a loopback-only trial
    app = create_app(settings, engine=engine, database=clean_database, preload=False)
    with TestClient(app) as client:
        submitted = client.post(
            "/v1/jobs/enroll",
            json={
                "source": f"s3://{bucket}/archive/",
                "group_ids": ["staff"],
                "idempotency_key": f"api-test-{bucket}",
            },
        )
        assert submitted.status_code == 202, submitted.text
        job = wait_done(client, submitted.json()["id"])
        assert (job["status"], job["items"], job["done"], job["failed"]) == ("done", 2, 2, 0)
        again = client.post(
            "/v1/jobs/enroll",
            json={
                "source": f"s3://{bucket}/archive/",
                "group_ids": ["staff"],
                "idempotency_key": f"api-test-{bucket}",
            },
        )
        assert again.json()["id"] == job["id"]

        image = base64.b64encode(yaoming_jpg.read_bytes()).decode()
        found = client.post("/v1/identify", json={"group_ids": ["staff"], "image": image})
        assert found.json()["candidates"][0]["person_id"] == "yao"

        # What MinIO's webhook target posts for a PUT (eventName with the "s3:" prefix).
        record = {
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "eventName": "s3:ObjectCreated:Put",
            "s3": {
                "bucket": {"name": bucket},
                "object": {
                    "key": "enroll/vip/yao2/a.jpg",
                    "size": yaoming_jpg.stat().st_size,
                    "sequencer": "17A1B2C3D4E5F6",
                },
            },
        }
        event = {
            "EventName": "s3:ObjectCreated:Put",
            "Key": f"{bucket}/enroll/vip/yao2/a.jpg",
            "Records": [record],
        }
        posted = client.post("/v1/events/s3", json=event)
        assert posted.status_code == 200, posted.text
        (event_job,) = posted.json()["jobs"]
        assert client.post("/v1/events/s3", json=event).json()["jobs"] == [event_job]
        assert wait_done(client, event_job)["done"] == 1
        person = client.get("/v1/persons/yao2").json()
        assert person["group_ids"] == ["vip"] and len(person["face_ids"]) == 1
