"""Baidu Face v2 served to Baidu's own SDK: ``baidu-aip`` 2.2.2.0's ``AipFace`` (the last release
calling Face v2), unmodified, against ``facepipe api`` in a subprocess.

The SDK has no endpoint setting (only an HTTP proxy, which cannot reach an https URL without
TLS interception): its URLs are name-mangled class constants (``AipBase.__accessTokenUrl``,
``AipFace.__detectUrl``...), which these tests point at facepipe. Its token handling, request
building and parsing are untouched.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from pipeline.similarity import baidu_score
from tests.fixtures.api_server import ApiServer

aip = pytest.importorskip("aip")
from aip import AipFace  # noqa: E402
from aip.base import AipBase  # noqa: E402

BAIDU = "https://aip.baidubce.com"


@pytest.fixture()
def sdk_at(api_server: ApiServer) -> Iterator[Any]:
    """Point the SDK's URL constants at facepipe; returns a client factory."""
    patched: dict[tuple[type, str], str] = {}
    for cls in (AipBase, AipFace):
        for name, value in list(vars(cls).items()):
            if name.endswith("Url") and isinstance(value, str) and value.startswith(BAIDU):
                patched[(cls, name)] = value
                setattr(cls, name, api_server.url + value[len(BAIDU) :])

    def make(api_key: str, secret_key: str) -> Any:
        return AipFace("appid", api_key, secret_key)

    try:
        yield make
    finally:
        for (cls, name), value in patched.items():
            setattr(cls, name, value)


@pytest.fixture()
def client(sdk_at: Any, api_server: ApiServer) -> Any:
    return sdk_at(api_server.key.key_id, api_server.key.secret)


def ok(resp: dict[str, Any]) -> dict[str, Any]:
    assert "error_code" not in resp, resp
    assert isinstance(resp["log_id"], int)
    return resp


def test_users_groups_and_recognition_through_the_sdk(
    client: Any, yaoming_jpg: Path, gdp_jpg: Path, players_jpg: Path, yao_gdp_confidence: float
) -> None:
    run = uuid.uuid4().hex[:8]
    uid, g1, g2 = f"yao_{run}", f"nba_{run}", f"cn_{run}"
    yao, gdp = yaoming_jpg.read_bytes(), gdp_jpg.read_bytes()

    ok(client.addUser(uid, "Yao Ming, center", f"{g1},{g2}", yao))
    got = ok(client.getUser(uid))["result"][0]
    assert got["uid"] == uid and got["user_info"] == "Yao Ming, center"
    assert sorted(got["groups"]) == sorted([g1, g2])
    assert {g1, g2} <= set(ok(client.getGroupList({"start": 0, "end": 1000}))["result"])
    users = ok(client.getGroupUsers(g1))
    assert users["result"] == [{"uid": uid, "user_info": "Yao Ming, center"}]

    found = ok(client.identifyUser(f"{g1},nobody_{run}", yao))["result"][0]
    assert (found["uid"], found["group_id"], found["user_info"]) == (uid, g1, "Yao Ming, center")
    assert found["scores"][0] > 90
    same = ok(client.verifyUser(uid, g2, yao))
    other = ok(client.verifyUser(uid, g2, gdp))
    assert same["result"][0] > 90 and other["result"][0] < same["result"][0]
    pair = ok(client.match([yao, gdp, yao]))
    scores = {(r["index_i"], r["index_j"]): r["score"] for r in pair["result"]}
    assert set(scores) == {(0, 1), (0, 2), (1, 2)} and scores[(0, 2)] > 99
    assert scores[(0, 1)] < scores[(0, 2)]
    # Baidu's routes answer on Baidu's scale (80 = same person), not on the Tencent confidence
    assert scores[(0, 1)] == pytest.approx(baidu_score(yao_gdp_confidence), abs=0.02)
    assert scores[(0, 1)] > yao_gdp_confidence + 10

    detected = ok(
        client.detect(players_jpg.read_bytes(), {"max_face_num": 30, "face_fields": "landmark,age"})
    )
    assert detected["result_num"] == 22
    face = detected["result"][0]
    assert len(face["landmark"]) == 4 and face["location"]["width"] > 0
    assert "beauty" not in face and "race" not in face and "glasses" not in face
    assert len(ok(client.detect(gdp))["result"]) == 1

    ok(client.addGroupUser(g1, f"extra_{run}", uid))
    assert f"extra_{run}" in ok(client.getUser(uid))["result"][0]["groups"]
    ok(client.deleteGroupUser(f"extra_{run}", uid))
    ok(client.updateUser(uid, "Yao", g1, yao))
    assert ok(client.getUser(uid))["result"][0]["user_info"] == "Yao"
    ok(client.deleteUser(uid, {"group_id": g2}))
    assert ok(client.getUser(uid))["result"][0]["groups"] == [g1]
    ok(client.deleteUser(uid))
    assert client.getUser(uid)["error_code"] == 216611


def test_baidu_error_codes(client: Any, yaoming_jpg: Path) -> None:
    run = uuid.uuid4().hex[:8]
    ok_png, grey = cv2.imencode(".png", np.full((200, 200, 3), 128, np.uint8))
    assert ok_png
    assert client.detect(grey.tobytes())["error_code"] == 216402
    assert client.detect(b"GIF89a" + b"\0" * 64)["error_code"] == 216201
    assert client.detect(b"")["error_code"] == 216200
    assert client.identifyUser(f"none_{run}", yaoming_jpg.read_bytes())["error_code"] == 216618
    assert client.verifyUser(f"none_{run}", "g", yaoming_jpg.read_bytes())["error_code"] == 216611
    assert (
        client.updateUser(f"none_{run}", "x", "g", yaoming_jpg.read_bytes())["error_code"] == 216611
    )
    assert (
        client.addUser(f"bad id {run}", "x", "g", yaoming_jpg.read_bytes())["error_code"] == 216100
    )
    assert client.addUser(f"ghost_{run}", "x", "g", grey.tobytes())["error_code"] == 216402
    assert client.getUser(f"ghost_{run}")["error_code"] == 216611


def test_tokens(sdk_at: Any, api_server: ApiServer, yaoming_jpg: Path) -> None:
    key = api_server.key
    url = api_server.url + "/oauth/2.0/token"
    issued = httpx.get(
        url,
        params={
            "grant_type": "client_credentials",
            "client_id": key.key_id,
            "client_secret": key.secret,
        },
    ).json()
    assert issued["expires_in"] == 30 * 24 * 3600 and "brain_all_scope" in issued["scope"]
    bad = httpx.post(
        url,
        data={
            "grant_type": "client_credentials",
            "client_id": key.key_id,
            "client_secret": key.secret + "x",
        },
    )
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    assert httpx.get(url, params={"grant_type": "password"}).status_code == 400

    detect = api_server.url + "/rest/2.0/face/v2/detect"
    image = base64.b64encode(yaoming_jpg.read_bytes()).decode()
    with_token = httpx.post(
        detect, params={"access_token": issued["access_token"]}, data={"image": image}
    ).json()
    assert with_token["result_num"] == 1
    assert httpx.post(detect, data={"image": image}).json()["error_code"] == 100
    forged = httpx.post(
        detect, params={"access_token": issued["access_token"] + "0"}, data={"image": image}
    ).json()
    assert forged["error_code"] == 110

    # A revoked key's tokens stop at once; the SDK's wrong secret gets no token at all.
    revoked = api_server.new_key("baidu revoked")
    client = sdk_at(revoked.key_id, revoked.secret)
    assert "error_code" not in client.getGroupList()
    sdk_token = client._authObj["access_token"]
    api_server.revoke(revoked.key_id)
    stale = httpx.post(detect, params={"access_token": sdk_token}, data={"image": image})
    assert stale.json()["error_code"] == 110
    # The SDK answers 110 by asking for a new token, is refused it, then calls without one.
    assert client.getGroupList()["error_code"] == 100
    wrong = sdk_at(key.key_id, "not-the-secret")
    assert wrong.getGroupList()["error_code"] == 100


def test_one_library_behind_every_protocol(
    client: Any,
    api_server: ApiServer,
    monkeypatch: pytest.MonkeyPatch,
    yaoming_jpg: Path,
    gdp_jpg: Path,
) -> None:
    """A photo enrolled through one protocol is found through the three others."""
    from qcloud_image import CIBuffer, CIFile, Client
    from qcloud_image.conf import Conf

    from tests.test_api_iai import call, make_client, models_2020

    key = api_server.key
    monkeypatch.setattr(Conf, "_Conf__SERVICE_ADDR", api_server.host_port)
    youtu = Client(key.appid, key.key_id, key.secret, "b")
    youtu.use_http()
    iai = make_client(api_server, "2020-03-03", key.key_id, key.secret)
    bearer = {"Authorization": f"Bearer {key.secret}"}
    run = uuid.uuid4().hex[:8]
    yao, gdp = yaoming_jpg.read_bytes(), gdp_jpg.read_bytes()
    b64 = base64.b64encode

    def found_everywhere(group: str, uid: str, photo: bytes) -> None:
        assert (
            youtu.face_identify(group, CIBuffer(photo))["data"]["candidates"][0]["person_id"] == uid
        )
        assert ok(client.identifyUser(group, photo))["result"][0]["uid"] == uid
        persons = call(
            iai, models_2020, "SearchPersons", GroupIds=[group], Image=b64(photo).decode()
        )
        assert persons.Results[0].Candidates[0].PersonId == uid
        native = httpx.post(
            api_server.url + "/v1/identify",
            headers=bearer,
            timeout=60,
            json={"group_ids": [group], "image": b64(photo).decode()},
        ).json()
        assert native["candidates"][0]["person_id"] == uid

    # Through Baidu, found by YouTu, IAI and /v1.
    ok(client.addUser(f"b_{run}", "via baidu", f"bg_{run}", yao))
    found_everywhere(f"bg_{run}", f"b_{run}", yao)
    # Through YouTu.
    assert youtu.face_newperson(f"y_{run}", [f"yg_{run}"], CIFile(str(gdp_jpg)))["code"] == 0
    found_everywhere(f"yg_{run}", f"y_{run}", gdp)
    # Through IAI (an explicit group first).
    call(iai, models_2020, "CreateGroup", GroupId=f"ig_{run}", GroupName="iai")
    call(
        iai,
        models_2020,
        "CreatePerson",
        GroupId=f"ig_{run}",
        PersonId=f"i_{run}",
        PersonName="via iai",
        Image=b64(yao).decode(),
    )
    found_everywhere(f"ig_{run}", f"i_{run}", yao)


def test_scoped_keys_through_the_sdk(
    sdk_at: Any, client: Any, api_server: ApiServer, yaoming_jpg: Path, gdp_jpg: Path
) -> None:
    """A read-only key detects, identifies and reads, but adds and deletes nothing; a key
    limited to groups cannot reach another group, nor a user in one (error_code 6)."""
    from pipeline.apikeys import KeyScope

    run = uuid.uuid4().hex[:8]
    mine, theirs, uid, other = f"mine_{run}", f"theirs_{run}", f"u_{run}", f"v_{run}"
    yao, gdp = yaoming_jpg.read_bytes(), gdp_jpg.read_bytes()
    ok(client.addUser(uid, "Yao", mine, yao))
    ok(client.addUser(other, "G", theirs, gdp))

    ro = api_server.new_key("baidu read-only", KeyScope(read_only=True))
    reader = sdk_at(ro.key_id, ro.secret)
    assert ok(reader.detect(yao))["result_num"] == 1
    assert ok(reader.identifyUser(mine, yao))["result"][0]["uid"] == uid
    assert ok(reader.getUser(uid))["result"][0]["user_info"] == "Yao"
    assert reader.addUser(f"n_{run}", "N", mine, gdp)["error_code"] == 6
    assert reader.deleteUser(uid)["error_code"] == 6
    assert reader.updateUser(uid, "x", mine, gdp)["error_code"] == 6

    limited = api_server.new_key("baidu mine", KeyScope(frozenset({mine})))
    scoped = sdk_at(limited.key_id, limited.secret)
    assert ok(scoped.identifyUser(mine, yao))["result"]
    assert scoped.identifyUser(f"{mine},{theirs}", yao)["error_code"] == 6
    assert scoped.getUser(other)["error_code"] == 6
    assert scoped.verifyUser(other, theirs, gdp)["error_code"] == 6
    assert scoped.deleteUser(other)["error_code"] == 6
    assert scoped.getGroupUsers(theirs)["error_code"] == 6
    assert scoped.addGroupUser(mine, theirs, uid)["error_code"] == 6
    assert scoped.addUser(f"n_{run}", "N", theirs, gdp)["error_code"] == 6
    assert ok(scoped.getGroupList())["result"] == [mine]
    ok(scoped.deleteUser(uid))
    assert ok(client.getUser(other))["result"][0]["groups"] == [theirs]
    ok(client.deleteUser(other))
