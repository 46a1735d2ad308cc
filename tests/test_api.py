"""The HTTP API through FastAPI's TestClient, against the real engine (ONNX models), the real
embedded Postgres + pgvector and the package's real photos."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from pipeline.api import create_app
from pipeline.config import Settings
from pipeline.engine import FaceEngine
from pipeline.store.db import Database


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def error_of(resp: Any) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "name", "message"}
    return body["error"]  # type: ignore[no-any-return]


def trial_settings(settings: Settings, **changes: Any) -> Settings:
    """The settings of a local trial: authentication off (the app is only reached in-process)."""
    return Settings(**{**settings.model_dump(), "api_auth": False, **changes})


@pytest.fixture(scope="module")
def client(engine: FaceEngine, database: Database) -> Iterator[TestClient]:
    settings = trial_settings(engine.settings)
    app = create_app(settings, engine=engine, database=database, preload=False)
    with TestClient(app) as c:
        yield c


@pytest.fixture()
def api(client: TestClient, clean_database: Database) -> TestClient:
    """The client over an emptied library."""
    return client


def test_healthz(client: TestClient, engine: FaceEngine) -> None:
    resp = client.get("/healthz")
    assert resp.status_code == 200
    body = resp.json()
    assert body.pop("load") == {"slots": 2, "in_use": 0, "waiting": 0}
    assert body == {"status": "ok", "model": engine.model_id, "database": "ok"}


def test_detect_players_json_and_multipart(client: TestClient, players_jpg: Path) -> None:
    resp = client.post("/v1/detect", json={"image": b64(players_jpg)})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert len(body["faces"]) == 22
    assert body["width"] > 0 and body["model"]
    face = body["faces"][0]
    assert len(face["box"]) == 4 and len(face["landmarks"]) == 5
    assert {"yaw", "pitch", "roll"} <= set(face["pose"]) and "level" in face["quality"]
    assert "embedding" not in face
    areas = [(f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]) for f in body["faces"]]
    assert areas == sorted(areas, reverse=True)

    with players_jpg.open("rb") as fh:
        multi = client.post(
            "/v1/detect",
            files={"image": ("players.jpg", fh, "image/jpeg")},
            data={"mode": "1", "embed": "true"},
        )
    assert multi.status_code == 200, multi.text
    (largest,) = multi.json()["faces"]
    assert largest["box"] == face["box"]
    vec = np.asarray(largest["embedding"], dtype=np.float32)
    assert vec.shape == (512,) and abs(float(np.linalg.norm(vec)) - 1.0) < 1e-3


def _png(pixels: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", pixels)
    assert ok
    return base64.b64encode(buf.tobytes()).decode()


@pytest.mark.parametrize(
    ("body", "status", "code", "name"),
    [
        ({"image": "@@not*base64@@"}, 400, -1102, "DECODE_FAILED"),
        ({"image": ""}, 400, -1300, "EMPTY_IMAGE"),
        (
            {"image": base64.b64encode(b"GIF89a" + b"\0" * 64).decode()},
            400,
            -1400,
            "ILLEGAL_FORMAT",
        ),
        ({}, 400, -1301, "EMPTY_PARAMETER"),
        # a caller's local location is refused as forbidden, not merely malformed
        ({"url": "file:///etc/passwd"}, 400, -1313, "URL_FORBIDDEN"),
        ({"url": "http://127.0.0.1:9/x.jpg"}, 400, -1313, "URL_FORBIDDEN"),
        ({"image": _png(np.full((200, 200, 3), 128, np.uint8))}, 422, -1101, "NO_FACE"),
        ({"image": _png(np.full((20, 20, 3), 128, np.uint8))}, 400, -1109, "IMAGE_TOO_SMALL"),
        ({"image": "x", "mode": "sideways"}, 400, -1313, "ILLEGAL_PARAMETER"),
    ],
)
def test_detect_errors_map_to_codes(
    client: TestClient, body: dict[str, Any], status: int, code: int, name: str
) -> None:
    resp = client.post("/v1/detect", json=body)
    assert resp.status_code == status, resp.text
    err = error_of(resp)
    assert (err["code"], err["name"]) == (code, name)


def test_malformed_json_and_unknown_route(client: TestClient) -> None:
    resp = client.post(
        "/v1/detect", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400 and error_of(resp)["code"] == -1313
    resp = client.get("/v1/nowhere")
    assert resp.status_code == 404 and error_of(resp)["name"] == "ILLEGAL_PARAMETER"


def test_compare(client: TestClient, yaoming_jpg: Path, gdp_jpg: Path) -> None:
    pair = {"image_a": b64(yaoming_jpg), "image_b": b64(yaoming_jpg)}
    same = client.post("/v1/compare", json=pair)
    assert same.status_code == 200, same.text
    assert same.json()["similarity"] > 99 and same.json()["ismatch"] is True
    with yaoming_jpg.open("rb") as fa, gdp_jpg.open("rb") as fb:
        other = client.post(
            "/v1/compare",
            files={"image_a": ("a.jpg", fa, "image/jpeg"), "image_b": ("b.jpg", fb, "image/jpeg")},
        )
    assert other.status_code == 200, other.text
    assert other.json()["similarity"] < same.json()["similarity"]
    assert other.json()["ismatch"] is False
    missing = client.post("/v1/compare", json={"image_a": b64(yaoming_jpg)})
    assert missing.status_code == 400 and error_of(missing)["code"] == -1301


def test_person_round_trip(api: TestClient, yaoming_jpg: Path, gdp_jpg: Path) -> None:
    created = api.post(
        "/v1/persons",
        json={
            "person_id": "yao",
            "group_ids": ["nba", "tall"],
            "name": "Yao Ming",
            "tag": "center",
            "image": b64(yaoming_jpg),
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["RetCode"] == [0] and body["SucFaceNum"] == 1
    assert body["person"]["group_ids"] == ["nba", "tall"]
    (face_id,) = body["person"]["face_ids"]

    again = api.post("/v1/persons", json={"person_id": "yao", "group_ids": ["nba"]})
    assert again.status_code == 409 and error_of(again)["code"] == -1302

    person = api.get("/v1/persons/yao").json()
    assert person["name"] == "Yao Ming" and person["face_ids"] == [face_id]
    assert api.patch("/v1/persons/yao", json={"tag": "hall-of-fame"}).json()["tag"] == (
        "hall-of-fame"
    )
    face = api.get(f"/v1/faces/{face_id}").json()
    assert face["person_id"] == "yao" and len(face["landmarks"]) == 5
    crop = api.get(f"/v1/faces/{face_id}/crop")
    assert crop.headers["content-type"] == "image/png"
    assert cv2.imdecode(np.frombuffer(crop.content, np.uint8), cv2.IMREAD_COLOR).shape == (
        112,
        112,
        3,
    )

    with yaoming_jpg.open("rb") as fh:
        ident = api.post(
            "/v1/identify",
            files={"image": ("y.jpg", fh, "image/jpeg")},
            data={"group_ids": "nba,other"},
        )
    assert ident.status_code == 200, ident.text
    (top,) = ident.json()["candidates"]
    assert top["person_id"] == "yao" and top["face_id"] == face_id and top["confidence"] > 90

    match = api.post("/v1/verify", json={"person_id": "yao", "image": b64(yaoming_jpg)}).json()
    assert match["ismatch"] is True and match["confidence"] > 90
    other = api.post("/v1/verify", json={"person_id": "yao", "image": b64(gdp_jpg)}).json()
    assert other["ismatch"] is False and other["confidence"] < match["confidence"]

    groups = api.get("/v1/groups").json()
    assert {g["group_id"]: g["person_count"] for g in groups["items"]} == {"nba": 1, "tall": 1}
    members = api.get("/v1/groups/nba/persons").json()
    assert [p["person_id"] for p in members["items"]] == ["yao"] and members["total"] == 1

    assert api.delete("/v1/persons/yao/groups/tall").json()["group_ids"] == ["nba"]
    last = api.delete("/v1/persons/yao/groups/nba")
    assert last.status_code == 400 and error_of(last)["name"] == "LAST_GROUP"

    assert api.delete(f"/v1/persons/yao/faces/{face_id}").json()["deleted"] == [face_id]
    assert api.get("/v1/persons/yao/faces").json()["face_ids"] == []
    assert api.delete("/v1/persons/yao").json() == {"person_id": "yao", "deleted": True}
    gone = api.get("/v1/persons/yao")
    assert gone.status_code == 404 and error_of(gone)["code"] == -1303


def test_add_faces_reports_each_image(api: TestClient, yaoming_jpg: Path) -> None:
    assert api.post("/v1/persons", json={"person_id": "p1", "group_ids": "g"}).status_code == 201
    gif = base64.b64encode(b"GIF89a" + b"\0" * 64).decode()
    resp = api.post(
        "/v1/persons/p1/faces",
        json={"images": [gif, b64(yaoming_jpg), ""], "quality_control": 0},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["RetCode"][0] == -1400 and body["RetCode"][1] == 0 and body["RetCode"][2] == -1300
    assert body["SucIndexes"] == [1] and body["Errors"][0]["name"] == "ILLEGAL_FORMAT"
    bad_qc = api.post("/v1/persons/p1/faces", json={"images": [gif], "quality_control": 9})
    assert bad_qc.status_code == 400 and error_of(bad_qc)["code"] == -1313


def test_unknown_person_is_1303(api: TestClient, yaoming_jpg: Path) -> None:
    for resp in (
        api.post("/v1/verify", json={"person_id": "nobody", "image": b64(yaoming_jpg)}),
        api.post("/v1/persons/nobody/faces", json={"images": [b64(yaoming_jpg)]}),
        api.delete("/v1/persons/nobody"),
    ):
        assert resp.status_code == 404, resp.text
        assert error_of(resp)["code"] == -1303
    probe = {"group_ids": ["none"], "image": b64(yaoming_jpg)}
    unknown_group = api.post("/v1/identify", json=probe)
    assert unknown_group.status_code == 404 and error_of(unknown_group)["code"] == -1306
    bad_id = api.post("/v1/persons", json={"person_id": "no spaces", "group_ids": ["g"]})
    assert bad_id.status_code == 400 and error_of(bad_id)["code"] == -1313


def test_person_with_faceless_image_is_not_created(api: TestClient) -> None:
    resp = api.post(
        "/v1/persons",
        json={
            "person_id": "ghost",
            "group_ids": ["g"],
            "image": _png(np.full((200, 200, 3), 90, np.uint8)),
        },
    )
    assert resp.status_code == 422 and error_of(resp)["code"] == -1101
    assert api.get("/v1/persons/ghost").status_code == 404


def test_jobs_list_show_cancel(api: TestClient, clean_database: Database) -> None:
    from pipeline.jobs.model import JobKind
    from pipeline.store import jobs as store

    with clean_database.transaction() as conn:
        job, _ = store.create_job(conn, JobKind.ENROLL, {"source": "s3://b/p/", "groups": ["g"]})
    listed = api.get("/v1/jobs").json()["jobs"]
    assert [j["id"] for j in listed] == [job.id]
    shown = api.get(f"/v1/jobs/{job.id}")
    assert shown.status_code == 200 and shown.json()["items_shown"] == []
    cancelled = api.post(f"/v1/jobs/{job.id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert api.get("/v1/jobs", params={"status": "cancelled"}).json()["jobs"][0]["id"] == job.id
    missing = api.get("/v1/jobs/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and error_of(missing)["code"] == -1903
    local = api.post("/v1/jobs/enroll", json={"source": "/etc", "group_ids": ["g"]})
    assert local.status_code == 400 and error_of(local)["code"] == -1313


def test_s3_event_endpoint_drops_test_events(client: TestClient) -> None:
    resp = client.post("/v1/events/s3", json={"Event": "s3:TestEvent", "Bucket": "b"})
    assert resp.json() == {"jobs": [], "dropped": "s3:TestEvent"}
    bad = client.post("/v1/events/s3", json={"hello": 1})
    assert bad.status_code == 400 and error_of(bad)["code"] == -1313


def test_api_token(engine: FaceEngine, database: Database) -> None:
    settings = Settings(**{**engine.settings.model_dump(), "api_token": "s3cret"})
    app = create_app(settings, engine=engine, database=database, preload=False)
    with TestClient(app) as c:
        refused = c.get("/v1/groups")
        assert refused.status_code == 401 and error_of(refused)["code"] == -1313
        assert c.get("/v1/groups", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/healthz").status_code == 200


def test_facepipe_api_command_serves(database: Database) -> None:
    """``facepipe api`` in a subprocess: uvicorn serving create_app, /healthz green."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "FACEPIPE_DATABASE_URL": database.url}
    code = (
        "import sys; import pipeline.cli.api_cmds; from pipeline.cli.app import app; "
        "sys.argv = ['facepipe'] + sys.argv[1:]; app()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "api", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                resp = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    pytest.fail(f"facepipe api did not come up: {out[-2000:]}")
                time.sleep(0.3)
        assert resp.status_code == 200 and resp.json()["database"] == "ok"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_openapi_documents_the_bodies(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    detect = spec["paths"]["/v1/detect"]["post"]["requestBody"]["content"]
    assert set(detect) == {"application/json", "multipart/form-data"}
    json_fields = set(detect["application/json"]["schema"]["properties"])
    assert {"image", "url", "mode", "embed"} <= json_fields
    assert detect["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"
    faces = spec["paths"]["/v1/persons/{person_id}/faces"]["post"]["requestBody"]["content"]
    assert {"images", "urls", "quality_control"} <= set(
        faces["application/json"]["schema"]["properties"]
    )
    # The request bodies stand alone; answers name their models' components.
    assert "$ref" not in str(spec["paths"]["/v1/detect"]["post"]["requestBody"])


def test_reidentify_job_threshold_options_are_checked(api: TestClient) -> None:
    """A re-identify job takes a match threshold or a target false-match rate, not both; bad
    values are refused before any job exists."""
    base = {"source": "s3://bucket/new/a.jpg", "group_ids": ["g"]}
    both = api.post(
        "/v1/jobs/reidentify", json={**base, "match_threshold": 70, "false_match_rate": 0.01}
    )
    assert both.status_code == 400 and "not both" in error_of(both)["message"]
    bad_rate = api.post("/v1/jobs/reidentify", json={**base, "false_match_rate": 2})
    assert bad_rate.status_code == 400 and error_of(bad_rate)["name"] == "ILLEGAL_PARAMETER"
    bad_threshold = api.post("/v1/jobs/reidentify", json={**base, "match_threshold": 170})
    assert bad_threshold.status_code == 400
    assert api.get("/v1/jobs").json()["jobs"] == []
