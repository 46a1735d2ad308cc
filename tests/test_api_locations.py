"""Over HTTP, no caller-given location reaches the server's files (the API's side of it), and a
job that came in over HTTP is never listed or read from the local file system by a worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pipeline.api import create_app
from pipeline.config import Settings
from pipeline.engine import FaceEngine
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.chunks import process_chunk
from pipeline.jobs.listing import list_step
from pipeline.jobs.model import ItemSpec, ItemStatus, JobKind, Origin
from pipeline.jobs.runtime import Runtime
from pipeline.store import jobs as store
from pipeline.store.db import Database

HOSTILE_URLS = [
    "http:/../../etc/passwd",
    "s3:/../etc/passwd",
    "file:///etc/passwd",
    "/etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "http:\\\\localhost\\x",
]


@pytest.fixture()
def client(
    engine: FaceEngine, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    monkeypatch.chdir(tmp_path)  # a path reinterpretation would create folders here
    settings = Settings(
        **{**engine.settings.model_dump(), "home": tmp_path / "home", "api_auth": False}
    )
    app = create_app(settings, engine=engine, database=database, preload=False)
    with TestClient(app) as c:
        yield c


def _code(resp: object) -> tuple[int, str]:
    body = resp.json()  # type: ignore[attr-defined]
    return resp.status_code, body["error"]["name"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_detect_refuses_local_shapes(client: TestClient, url: str, tmp_path: Path) -> None:
    assert _code(client.post("/v1/detect", json={"url": url})) == (400, "URL_FORBIDDEN")
    assert _code(client.post("/v1/compare", json={"url_a": url, "url_b": url})) == (
        400,
        "URL_FORBIDDEN",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_jobs_refuse_local_sources_and_exports(
    client: TestClient, clean_database: Database, tmp_path: Path, players_jpg: Path
) -> None:
    for source in [*HOSTILE_URLS, str(players_jpg.parent)]:
        resp = client.post("/v1/jobs/enroll", json={"source": source, "group_ids": ["g"]})
        assert _code(resp) == (400, "URL_FORBIDDEN"), source
        manifest = client.post(
            "/v1/jobs/enroll",
            json={"source": "s3://bucket/p/", "manifest": source, "group_ids": ["g"]},
        )
        assert _code(manifest) == (400, "URL_FORBIDDEN"), source
    for export in [
        "../../x.jsonl",
        "http:/../../x.jsonl",
        str(tmp_path / "x.jsonl"),
        "%2e%2e/x.jsonl",
        "a\\..\\..\\x",
    ]:
        resp = client.post(
            "/v1/jobs/reidentify",
            json={"source": "s3://bucket/a.jpg", "group_ids": ["g"], "export": export},
        )
        assert _code(resp) == (400, "URL_FORBIDDEN"), export
    with clean_database.connection() as conn:
        assert store.list_jobs(conn) == []  # nothing was created
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_http_job_is_never_listed_or_read_locally(
    clean_database: Database, engine: FaceEngine, players_jpg: Path, tmp_path: Path
) -> None:
    """Even with a local path in its row (an old row, a bug elsewhere), a job that came in
    over HTTP refuses to list it, and its local items fail with URL_FORBIDDEN."""
    rt = Runtime(Settings(database_url=clean_database.url), db=clean_database, engine=engine)
    with clean_database.transaction() as conn:
        listed, _ = store.create_job(
            conn, JobKind.DETECT, {"source": str(players_jpg.parent)}, origin=Origin.HTTP
        )
    with pytest.raises(FacepipeError) as info:
        list_step(rt, listed, lambda lo, hi: None)
    assert info.value.code is ErrorCode.URL_FORBIDDEN

    with clean_database.transaction() as conn:
        job, _ = store.create_job(conn, JobKind.DETECT, {"groups": []}, origin=Origin.HTTP)
        store.add_items(
            conn, job.id, [ItemSpec(str(players_jpg)), ItemSpec(f"file://{players_jpg}")], 0
        )
        store.mark_listing_done(conn, job.id)
    process_chunk(rt, job.id, 0, 1)
    with clean_database.connection() as conn:
        items = store.list_items(conn, job.id)
        job = store.get_job(conn, job.id)
    assert [(i.status, i.error_name) for i in items] == [
        (ItemStatus.FAILED, "URL_FORBIDDEN"),
        (ItemStatus.FAILED, "URL_FORBIDDEN"),
    ]
    assert job.status.value == "done" and job.n_faces == 0
