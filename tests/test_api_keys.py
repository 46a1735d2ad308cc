"""Application keys: `facepipe keys` (real CLI subprocess on the embedded Postgres), secrets
encrypted at rest, /v1 Bearer by hash, revocation, and the per-key token bucket in real Redis."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pipeline import apikeys
from pipeline.api import create_app
from pipeline.apikeys import SecretCipher
from pipeline.config import Settings
from pipeline.engine import FaceEngine
from pipeline.errors import FacepipeError
from pipeline.store import apikeys as key_store
from pipeline.store.db import Database
from tests.fixtures.services import REDIS_BROKER

SERVER_KEY = "test-server-key-0123456789-abcdefghijklmnop"


def keys_cli(database: Database, *args: str, server_key: str | None = SERVER_KEY) -> Any:
    env = {**os.environ, "FACEPIPE_DATABASE_URL": database.url}
    env.pop("FACEPIPE_SECRET_KEY", None)
    if server_key:
        env["FACEPIPE_SECRET_KEY"] = server_key
    code = (
        "import sys; import pipeline.cli.keys_cmds; from pipeline.cli.app import app; "
        "sys.argv = ['facepipe'] + sys.argv[1:]; app()"
    )
    return subprocess.run(
        [sys.executable, "-c", code, "keys", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def keyed_settings(engine: FaceEngine, **changes: Any) -> Settings:
    return Settings(
        **{
            **engine.settings.model_dump(),
            "secret_key": SERVER_KEY,
            "broker_url": REDIS_BROKER,
            **changes,
        }
    )


@pytest.fixture()
def keyed(engine: FaceEngine, database: Database) -> Iterator[TestClient]:
    app = create_app(keyed_settings(engine), engine=engine, database=database, preload=False)
    with TestClient(app) as client:
        yield client


def test_keys_cli_create_list_revoke(database: Database) -> None:
    made = keys_cli(database, "create", "cli test", "--json")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert set(key) == {"key_id", "secret", "appid"}
    assert key["key_id"].startswith("AKID") and len(key["key_id"]) == 36
    assert len(key["secret"]) == 32 and key["appid"].isdigit()

    listed = json.loads(keys_cli(database, "list", "--json").stdout)["keys"]
    mine = next(k for k in listed if k["key_id"] == key["key_id"])
    assert mine["name"] == "cli test" and mine["revoked_at"] is None
    assert key["secret"] not in keys_cli(database, "list").stdout

    # At rest: neither the secret nor anything containing it in plain text.
    with database.connection() as conn:
        row = conn.execute(
            "SELECT secret_sha256, secret_enc FROM api_keys WHERE key_id = %s", (key["key_id"],)
        ).fetchone()
    assert row is not None and key["secret"].encode() not in bytes(row[1])
    assert row[0] == apikeys.sha256_hex(key["secret"])
    assert SecretCipher(SERVER_KEY).decrypt(bytes(row[1])) == key["secret"]
    with pytest.raises(FacepipeError):
        SecretCipher("another server key").decrypt(bytes(row[1]))

    revoked = keys_cli(database, "revoke", key["key_id"], "--json")
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["revoked_at"]
    assert keys_cli(database, "revoke", "AKIDnope").returncode == 1

    no_server_key = keys_cli(database, "create", "x", server_key=None)
    assert no_server_key.returncode == 1 and "FACEPIPE_SECRET_KEY" in no_server_key.stderr


def test_v1_bearer_by_key_and_revocation(keyed: TestClient, database: Database) -> None:
    with database.transaction() as conn:
        key = key_store.create_key(conn, "bearer test", SecretCipher(SERVER_KEY))
    ok = keyed.get("/v1/groups", headers={"Authorization": f"Bearer {key.secret}"})
    assert ok.status_code == 200, ok.text
    for header in (
        {},
        {"Authorization": f"Bearer {key.secret}x"},
        {"Authorization": f"Bearer {key.key_id}"},
        {"Authorization": key.secret},
    ):
        refused = keyed.get("/v1/groups", headers=header)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == -1313
    assert keyed.get("/openapi.json", headers={"Authorization": f"Bearer {key.secret}"}).json()[
        "paths"
    ]
    with database.transaction() as conn:
        key_store.revoke_key(conn, key.key_id)
    gone = keyed.get("/v1/groups", headers={"Authorization": f"Bearer {key.secret}"})
    assert gone.status_code == 401


def test_v1_credentials_are_checked_before_the_body_is_read(
    engine: FaceEngine, database: Database
) -> None:
    """An upload without credentials is refused 401 before its body is read: a body past the
    limit would otherwise be 413 (and, below it, parsed for nobody)."""
    settings = keyed_settings(engine, max_image_bytes=64 * 1024)
    app = create_app(settings, engine=engine, database=database, preload=False)

    def body() -> Iterator[bytes]:
        yield b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
        for _ in range(64):
            yield b"A" * 65536

    with TestClient(app) as client:
        resp = client.post(
            "/v1/detect",
            content=body(),
            headers={"content-type": "multipart/form-data; boundary=xyz"},
        )
        assert resp.status_code == 401 and resp.json()["error"]["code"] == -1313
        with database.transaction() as conn:
            key = key_store.create_key(conn, "body order", SecretCipher(SERVER_KEY))
        resp = client.post(
            "/v1/detect",
            content=body(),
            headers={
                "content-type": "multipart/form-data; boundary=xyz",
                "Authorization": f"Bearer {key.secret}",
            },
        )
        assert resp.status_code == 413 and resp.json()["error"]["name"] == "IMAGE_TOO_LARGE"


def test_rate_limit_per_key(engine: FaceEngine, database: Database) -> None:
    settings = keyed_settings(engine, api_rate_per_s=0.5, api_rate_burst=3)
    app = create_app(settings, engine=engine, database=database, preload=False)
    with database.transaction() as conn:
        a = key_store.create_key(conn, "rate a", SecretCipher(SERVER_KEY))
        b = key_store.create_key(conn, "rate b", SecretCipher(SERVER_KEY))
    with TestClient(app) as client:
        codes = [
            client.get("/v1/groups", headers={"Authorization": f"Bearer {a.secret}"}).status_code
            for _ in range(5)
        ]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
        limited = client.get("/v1/groups", headers={"Authorization": f"Bearer {a.secret}"})
        assert limited.json()["error"]["name"] == "RATE_LIMITED"
        # Another key has its own bucket.
        other = client.get("/v1/groups", headers={"Authorization": f"Bearer {b.secret}"})
        assert other.status_code == 200


def test_access_tokens_expire_and_die_with_their_key(database: Database) -> None:
    from datetime import timedelta

    with database.transaction() as conn:
        key = key_store.create_key(conn, "token test", SecretCipher(SERVER_KEY))
        token, _ = key_store.issue_token(conn, key.key_id, timedelta(hours=1))
        stale, _ = key_store.issue_token(conn, key.key_id, timedelta(seconds=-1))
    with database.connection() as conn:
        assert key_store.key_by_token(conn, token) is not None
        assert key_store.key_by_token(conn, stale) is None
        row = conn.execute("SELECT count(*) FROM api_tokens WHERE token_sha256 = %s", (token,))
        assert row.fetchone() == (0,)  # stored hashed only
    with database.transaction() as conn:
        key_store.revoke_key(conn, key.key_id)
    with database.connection() as conn:
        assert key_store.key_by_token(conn, token) is None


# --- scoped keys ---------------------------------------------------------------------------------


def test_scope_rules_without_a_database() -> None:
    from pipeline.api.scope import Needs, check_call
    from pipeline.apikeys import KeyScope, parse_scope_groups

    assert parse_scope_groups(" a, b ,,a") == frozenset({"a", "b"})
    assert parse_scope_groups(None) is None and parse_scope_groups(" , ") is None
    with pytest.raises(FacepipeError):
        parse_scope_groups("a,b\x00")
    read_only, mine = KeyScope(read_only=True), KeyScope(frozenset({"a"}))
    assert KeyScope().unlimited and not read_only.unlimited and not mine.unlimited
    assert mine.describe() == "groups a, read-write"
    check_call(read_only, Needs(groups=("g",)), ["b"])  # reads of any group
    with pytest.raises(FacepipeError) as refused:
        check_call(read_only, Needs(write=True), [])
    assert refused.value.code.value == "PERMISSION_DENIED" and refused.value.numeric_code == -1911
    check_call(mine, Needs(write=True), ["a"])
    for needs, groups in ((Needs(), ["a", "b"]), (Needs(any_group=True), [])):
        with pytest.raises(FacepipeError):
            check_call(mine, needs, groups)


def test_keys_cli_scopes(database: Database) -> None:
    made = keys_cli(database, "create", "scoped", "--groups", "g2,g1", "--read-only", "--json")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    listed = json.loads(keys_cli(database, "list", "--json").stdout)["keys"]
    mine = next(k for k in listed if k["key_id"] == key["key_id"])
    assert (mine["group_ids"], mine["read_only"]) == (["g1", "g2"], True)
    plain = keys_cli(database, "create", "plain").stdout
    assert "scope   all groups, read-write" in plain
    text = keys_cli(database, "list").stdout
    line = next(x for x in text.splitlines() if key["key_id"] in x)
    assert "groups g1,g2, read-only" in line and "scoped" in line
    bad = keys_cli(database, "create", "bad", "--groups", "a\tb")
    assert bad.returncode == 1 and "group ids" in bad.stderr


def test_v1_scoped_keys(
    keyed: TestClient, clean_database: Database, yaoming_jpg: Path, gdp_jpg: Path
) -> None:
    """/v1 with a read-only key and a key limited to one group: 403 PERMISSION_DENIED for
    every call beyond them, the others answered as usual."""
    from pipeline.apikeys import KeyScope

    cipher = SecretCipher(SERVER_KEY)
    with clean_database.transaction() as conn:
        admin = key_store.create_key(conn, "admin", cipher)
        ro = key_store.create_key(conn, "ro", cipher, KeyScope(read_only=True))
        mine = key_store.create_key(conn, "mine", cipher, KeyScope(frozenset({"g1"})))

    def as_(key: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {key.secret}"}

    def denied(resp: Any) -> bool:
        return resp.status_code == 403 and resp.json()["error"]["name"] == "PERMISSION_DENIED"

    yao = base64.b64encode(yaoming_jpg.read_bytes()).decode()
    gdp = base64.b64encode(gdp_jpg.read_bytes()).decode()
    made = keyed.post(
        "/v1/persons",
        headers=as_(admin),
        json={"person_id": "p1", "group_ids": ["g1"], "image": yao},
    )
    assert made.status_code == 201, made.text
    face_id = made.json()["SucFaceIds"][0]
    assert keyed.post(
        "/v1/persons",
        headers=as_(admin),
        json={"person_id": "p2", "group_ids": ["g2"], "image": gdp},
    ).is_success

    # Read-only: detect, identify, reads; no change.
    assert keyed.post("/v1/detect", headers=as_(ro), json={"image": yao}).status_code == 200
    found = keyed.post("/v1/identify", headers=as_(ro), json={"image": yao, "group_ids": ["g1"]})
    assert found.json()["candidates"][0]["person_id"] == "p1"
    assert keyed.get("/v1/persons/p2", headers=as_(ro)).status_code == 200
    assert denied(
        keyed.post("/v1/persons", headers=as_(ro), json={"person_id": "p3", "group_ids": ["g1"]})
    )
    assert denied(keyed.delete("/v1/persons/p1", headers=as_(ro)))
    assert denied(keyed.patch("/v1/persons/p1", headers=as_(ro), json={"name": "x"}))
    assert denied(keyed.post("/v1/persons/p1/faces", headers=as_(ro), json={"images": [gdp]}))
    assert denied(
        keyed.post(
            "/v1/jobs/enroll", headers=as_(ro), json={"source": "s3://b/p/", "group_ids": ["g1"]}
        )
    )
    assert keyed.get("/v1/jobs", headers=as_(ro)).status_code == 200

    # Limited to g1: nothing of g2, not even a look; its listing shows g1 only.
    assert (
        keyed.post(
            "/v1/identify", headers=as_(mine), json={"image": yao, "group_ids": ["g1"]}
        ).status_code
        == 200
    )
    assert denied(
        keyed.post("/v1/identify", headers=as_(mine), json={"image": yao, "group_ids": "g1,g2"})
    )
    assert denied(keyed.get("/v1/persons/p2", headers=as_(mine)))
    assert denied(
        keyed.post("/v1/verify", headers=as_(mine), json={"image": gdp, "person_id": "p2"})
    )
    assert denied(keyed.delete("/v1/persons/p2", headers=as_(mine)))
    assert denied(keyed.get("/v1/groups/g2/persons", headers=as_(mine)))
    assert denied(
        keyed.post("/v1/persons/p1/groups", headers=as_(mine), json={"group_ids": ["g2"]})
    )
    assert denied(keyed.get("/v1/jobs", headers=as_(mine)))
    groups = keyed.get("/v1/groups", headers=as_(mine)).json()
    assert [g["group_id"] for g in groups["items"]] == ["g1"] and groups["total"] == 1
    assert keyed.get(f"/v1/faces/{face_id}", headers=as_(mine)).status_code == 200
    # The multipart form of the same call is checked the same way.
    with open(gdp_jpg, "rb") as fh:
        upload = keyed.post(
            "/v1/persons",
            headers=as_(mine),
            data={"person_id": "p3", "group_ids": "g2"},
            files={"image": ("g.jpg", fh, "image/jpeg")},
        )
    assert denied(upload)
    assert keyed.delete("/v1/persons/p1", headers=as_(mine)).json()["deleted"] is True
    assert keyed.get("/v1/persons/p2", headers=as_(admin)).status_code == 200
