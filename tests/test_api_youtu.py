"""Tencent YouTu v2 served to Tencent's own SDK: ``qcloud-image`` 1.0.0 from PyPI, unmodified,
against ``facepipe api`` in a subprocess (real models, embedded Postgres, auth on).

The SDK has no endpoint setting: its host is the class constant ``Conf.__SERVICE_ADDR``
(name-mangled ``Conf._Conf__SERVICE_ADDR``), which these tests point at facepipe; its signing,
request building and parsing are untouched.
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

from pipeline.api.youtu import parse_signature, sign
from tests.fixtures.api_server import ApiServer

qcloud_image = pytest.importorskip("qcloud_image")
from qcloud_image import CIBuffer, CIBuffers, CIFile, CIFiles, CIUrl, CIUrls, Client  # noqa: E402
from qcloud_image.conf import Conf  # noqa: E402


@pytest.fixture()
def sdk_at(api_server: ApiServer) -> Iterator[Any]:
    """Point the SDK's (only) endpoint constant at facepipe; returns a client factory."""
    original = Conf._Conf__SERVICE_ADDR  # type: ignore[attr-defined]
    Conf._Conf__SERVICE_ADDR = api_server.host_port  # type: ignore[attr-defined]

    def make(appid: str, secret_id: str, secret_key: str) -> Any:
        client = Client(appid, secret_id, secret_key, "facepipe-bucket")
        client.use_http()
        return client

    try:
        yield make
    finally:
        Conf._Conf__SERVICE_ADDR = original  # type: ignore[attr-defined]


@pytest.fixture()
def client(sdk_at: Any, api_server: ApiServer) -> Any:
    key = api_server.key
    return sdk_at(key.appid, key.key_id, key.secret)


def ok(resp: dict[str, Any]) -> dict[str, Any]:
    assert resp.get("code") == 0, resp
    assert resp["message"] == "OK" and resp["httpcode"] == 200
    return resp["data"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def faceless_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("youtu") / "grey.png"
    cv2.imwrite(str(path), np.full((200, 200, 3), 128, np.uint8))
    return path


def test_person_lifecycle_through_the_sdk(
    client: Any, photo_server: str, yaoming_jpg: Path, gdp_jpg: Path, faceless_png: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    pid, g1, g2 = f"yao-{run}", f"nba-{run}", f"tall-{run}"

    made = ok(client.face_newperson(pid, [g1, g2], CIFile(str(yaoming_jpg)), "Yao Ming", "c"))
    assert made["person_id"] == pid and made["suc_face"] == 1 and made["suc_group"] == 2
    face_id = made["face_id"]
    assert made["group_ids"] == [g1, g2]
    again = client.face_newperson(pid, [g1], CIUrl(photo_server + "yaoming.jpg"))
    assert again["code"] == -1302

    info = ok(client.face_getinfo(pid))
    assert (info["person_name"], info["tag"], info["face_ids"]) == ("Yao Ming", "c", [face_id])
    assert sorted(info["group_ids"]) == sorted([g1, g2])
    ok(client.face_setinfo(pid, "Ming Yao", "center"))
    assert ok(client.face_getinfo(pid))["person_name"] == "Ming Yao"
    assert {g1, g2} <= set(ok(client.face_getgroupids())["group_ids"])
    assert ok(client.face_getpersonids(g1))["person_ids"] == [pid]
    assert ok(client.face_getfaceids(pid))["face_ids"] == [face_id]
    face_info = ok(client.face_getfaceinfo(face_id))["face_info"]
    assert face_info["face_id"] == face_id and face_info["width"] > 20

    # Recognition, the image given each way the SDK allows.
    ident = ok(client.face_identify(g1, CIBuffer(yaoming_jpg.read_bytes())))
    top = ident["candidates"][0]
    assert (top["person_id"], top["face_id"], top["tag"]) == (pid, face_id, "center")
    assert top["confidence"] > 90
    same = ok(client.face_verify(pid, CIUrl(photo_server + "yaoming.jpg")))
    assert same["ismatch"] is True and same["confidence"] > 90
    other = ok(client.face_verify(pid, CIFile(str(gdp_jpg))))
    assert other["ismatch"] is False and other["confidence"] < same["confidence"]
    pair = ok(client.face_compare(CIFile(str(yaoming_jpg)), CIUrl(photo_server + "gdp.jpg")))
    twin = ok(
        client.face_compare(
            CIUrl(photo_server + "yaoming.jpg"), CIUrl(photo_server + "yaoming.jpg")
        )
    )
    assert twin["similarity"] > 99 and pair["similarity"] < twin["similarity"]

    # addface: one code per image, in order.
    added = ok(client.face_addface(pid, CIFiles([str(faceless_png), str(gdp_jpg)])))
    assert len(added["ret_codes"]) == 2 and added["ret_codes"][0] == -1101
    assert added["added"] == added["ret_codes"].count(0) == len(added["face_ids"])
    by_url = ok(client.face_addface(pid, CIUrls([photo_server + "missing.jpg"])))
    assert by_url["ret_codes"] == [-1308] and by_url["added"] == 0
    gif = CIBuffer(b"GIF89a" + b"\0" * 64)
    assert ok(client.face_addface(pid, CIBuffers([gif])))["ret_codes"] == [-1400]

    extra = added["face_ids"]
    if extra:
        gone = ok(client.face_delface(pid, extra))
        assert gone["deleted"] == len(extra)
    assert ok(client.face_getfaceids(pid))["face_ids"] == [face_id]

    ok(client.face_delperson(pid))
    assert client.face_getinfo(pid)["code"] == -1303


def test_detect_modes_and_errors(
    client: Any, photo_server: str, players_jpg: Path, faceless_png: Path, engine: Any
) -> None:
    every = ok(client.face_detect(CIFile(str(players_jpg)), 0))
    assert len(every["face"]) == 22 and every["image_width"] > 0
    largest = ok(client.face_detect(CIUrl(photo_server + "players.jpg"), 1))
    (face,) = largest["face"]
    assert face == every["face"][0]
    assert {"face_id", "x", "y", "width", "height", "pitch", "yaw", "roll"} <= set(face)
    # Age and gender only when the pack has an attribute model; never beauty & co (no model).
    has_attributes = engine.attributes is not None
    assert ("age" in face) == ("gender" in face) == has_attributes
    assert "beauty" not in face and "expression" not in face and "glass" not in face

    assert client.face_detect(CIFile(str(faceless_png)))["code"] == -1101
    assert client.face_detect(CIBuffer(b"GIF89a" + b"\0" * 64))["code"] == -1400
    assert client.face_detect(CIBuffer(b"\xff\xd8\xff garbage"))["code"] in (-1102, -1400)
    assert client.face_detect(CIUrl("file:///etc/passwd"))["code"] == -1313
    assert client.face_verify("nobody-here", CIFile(str(players_jpg)))["code"] == -1303
    assert client.face_identify("no-such-group", CIUrl(photo_server + "gdp.jpg"))["code"] == -1306


def test_signatures_both_ways(
    sdk_at: Any, api_server: ApiServer, client: Any, gdp_jpg: Path
) -> None:
    key = api_server.key
    # The SDK's signature is what facepipe's sign() makes for the same inputs.
    header = client._auth.get_sign("facepipe-bucket").decode()
    _mac, _text, fields = parse_signature(header)
    assert header == sign(
        fields["a"],
        "facepipe-bucket",
        key.key_id,
        key.secret,
        int(fields["e"]),
        int(fields["t"]),
        int(fields["r"]),
    )

    photo = CIFile(str(gdp_jpg))
    # The secret with its last character changed (a fixed "x" equals it 1 time in 62).
    wrong_secret = key.secret[:-1] + ("y" if key.secret.endswith("x") else "x")
    assert sdk_at(key.appid, key.key_id, wrong_secret).face_detect(photo)["code"] == 14
    assert sdk_at(key.appid, "AKIDunknown", key.secret).face_detect(photo)["code"] == 11
    assert sdk_at("1000000001", key.key_id, key.secret).face_detect(photo)["code"] == 12

    import time

    now = int(time.time())
    url = api_server.url + "/face/getgroupids"

    def post(authorization: str | None, **body: Any) -> dict[str, Any]:
        headers = {"Authorization": authorization} if authorization is not None else {}
        return httpx.post(url, json={"appid": key.appid, **body}, headers=headers).json()  # type: ignore[no-any-return]

    expired = sign(key.appid, "b", key.key_id, key.secret, now - 1, now - 60, 1)
    assert post(expired)["code"] == 9
    assert post(None)["code"] == 4
    assert post(base64.b64encode(b"short").decode())["code"] == 5
    fresh = sign(key.appid, "b", key.key_id, key.secret, now + 60, now, 2)
    assert post(fresh)["code"] == 0
    assert post(fresh, appid="999")["code"] == -1313  # the body's appid is not the key's
    detect = httpx.post(
        api_server.url + "/face/detect",
        headers={"Authorization": fresh},
        json={"url": "http://127.0.0.1:9/x.jpg", "mode": 7},
    ).json()
    assert detect["code"] == -1313 and "mode" in detect["message"]  # (the SDK refuses 7 itself)

    revoked = api_server.new_key("youtu revoked")
    signed = sign(revoked.appid, "b", revoked.key_id, revoked.secret, now + 60, now, 3)
    assert httpx.post(url, json={}, headers={"Authorization": signed}).json()["code"] == 0
    api_server.revoke(revoked.key_id)
    assert httpx.post(url, json={}, headers={"Authorization": signed}).json()["code"] == 11


def test_enrolled_through_youtu_found_through_v1(
    client: Any, api_server: ApiServer, yaoming_jpg: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    pid, group = f"cross-{run}", f"cross-{run}"
    ok(client.face_newperson(pid, [group], CIFile(str(yaoming_jpg))))
    image = base64.b64encode(yaoming_jpg.read_bytes()).decode()
    found = httpx.post(
        api_server.url + "/v1/identify",
        json={"group_ids": [group], "image": image},
        headers={"Authorization": f"Bearer {api_server.key.secret}"},
        timeout=60,
    )
    assert found.status_code == 200, found.text
    assert found.json()["candidates"][0]["person_id"] == pid
    ok(client.face_delperson(pid))


def test_scoped_keys_through_the_sdk(
    sdk_at: Any, client: Any, api_server: ApiServer, yaoming_jpg: Path, gdp_jpg: Path
) -> None:
    """A read-only key detects, identifies and reads, but creates and deletes nothing; a key
    limited to groups cannot reach another group, nor a person or face in one (code 6)."""
    from pipeline.apikeys import KeyScope

    run = uuid.uuid4().hex[:8]
    mine, theirs, pid, other = f"mine-{run}", f"theirs-{run}", f"p-{run}", f"q-{run}"
    face_id = ok(client.face_newperson(pid, [mine], CIFile(str(yaoming_jpg))))["face_id"]
    other_face = ok(client.face_newperson(other, [theirs], CIFile(str(gdp_jpg))))["face_id"]

    ro = api_server.new_key("youtu read-only", KeyScope(read_only=True))
    reader = sdk_at(ro.appid, ro.key_id, ro.secret)
    assert ok(reader.face_detect(CIFile(str(yaoming_jpg))))["face"]
    assert (
        ok(reader.face_identify(mine, CIFile(str(yaoming_jpg))))["candidates"][0]["person_id"]
        == pid
    )
    assert ok(reader.face_getinfo(pid))["face_ids"] == [face_id]
    refused = reader.face_newperson(f"new-{run}", [mine], CIFile(str(gdp_jpg)))
    assert (refused["code"], refused["httpcode"]) == (6, 403)
    assert reader.face_delperson(pid)["code"] == 6
    assert reader.face_setinfo(pid, "x")["code"] == 6
    assert ok(client.face_getinfo(pid))["person_name"] != "x"

    limited = api_server.new_key("youtu mine", KeyScope(frozenset({mine})))
    scoped = sdk_at(limited.appid, limited.key_id, limited.secret)
    assert ok(scoped.face_identify(mine, CIFile(str(yaoming_jpg))))["candidates"]
    assert scoped.face_identify(theirs, CIFile(str(gdp_jpg)))["code"] == 6
    assert scoped.face_getinfo(other)["code"] == 6
    assert scoped.face_getfaceinfo(other_face)["code"] == 6
    assert scoped.face_delperson(other)["code"] == 6
    assert scoped.face_getpersonids(theirs)["code"] == 6
    assert scoped.face_newperson(f"n-{run}", [theirs], CIFile(str(gdp_jpg)))["code"] == 6
    assert ok(scoped.face_getgroupids())["group_ids"] == [mine]
    assert ok(scoped.face_getfaceinfo(face_id))["face_info"]["face_id"] == face_id
    ok(scoped.face_delperson(pid))
    assert ok(client.face_getinfo(other))["person_id"] == other  # untouched
    ok(client.face_delperson(other))
