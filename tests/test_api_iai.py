"""Tencent Cloud IAI served to Tencent's own SDK: ``tencentcloud-sdk-python-iai``'s ``IaiClient``
(both API versions, 2018-03-01 and 2020-03-03), unmodified, pointed at ``facepipe api`` through
its ``HttpProfile(endpoint=..., protocol="http")``; TC3 signatures checked by the server."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.api import tc3
from tests.fixtures.api_server import ApiServer

pytest.importorskip("tencentcloud.iai")
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
    TencentCloudSDKException,
)
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.iai.v20180301 import iai_client as client_2018
from tencentcloud.iai.v20180301 import models as models_2018
from tencentcloud.iai.v20200303 import iai_client as client_2020
from tencentcloud.iai.v20200303 import models as models_2020

VERSIONS = {"2018-03-01": (client_2018, models_2018), "2020-03-03": (client_2020, models_2020)}


def make_client(
    server: ApiServer, version: str, secret_id: str, secret_key: str, method: str = "POST"
) -> Any:
    module, _ = VERSIONS[version]
    http = HttpProfile(endpoint=server.host_port, protocol="http", reqMethod=method)
    return module.IaiClient(
        credential.Credential(secret_id, secret_key),
        "ap-guangzhou",
        ClientProfile(httpProfile=http),
    )


def call(client: Any, models: Any, action: str, **params: Any) -> Any:
    request = getattr(models, f"{action}Request")()
    request.from_json_string(json.dumps(params))
    return getattr(client, action)(request)


def code_of(client: Any, models: Any, action: str, **params: Any) -> str:
    with pytest.raises(TencentCloudSDKException) as err:
        call(client, models, action, **params)
    return str(err.value.code)


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_iai_library_and_search_through_the_sdk(
    api_server: ApiServer,
    version: str,
    photo_server: str,
    yaoming_jpg: Path,
    gdp_jpg: Path,
    players_jpg: Path,
    yao_gdp_confidence: float,
) -> None:
    key = api_server.key
    client, models = make_client(api_server, version, key.key_id, key.secret), VERSIONS[version][1]
    run = uuid.uuid4().hex[:8]
    group, other, pid = f"iai-{run}", f"iai2-{run}", f"p-{run}"

    made = call(
        client,
        models,
        "CreateGroup",
        GroupId=group,
        GroupName="Staff",
        Tag="hq",
        GroupExDescriptions=["badge"],
    )
    assert made.FaceModelVersion and made.RequestId
    assert code_of(client, models, "CreateGroup", GroupId=group, GroupName="x") == (
        "InvalidParameterValue.GroupIdAlreadyExist"
    )
    info = call(client, models, "GetGroupInfo", GroupId=group)
    assert (info.GroupName, info.Tag, info.GroupExDescriptions) == ("Staff", "hq", ["badge"])
    call(
        client,
        models,
        "ModifyGroup",
        GroupId=group,
        GroupName="Team",
        GroupExDescriptionInfos=[{"GroupExDescriptionIndex": 1, "GroupExDescription": "floor"}],
    )
    assert call(client, models, "GetGroupInfo", GroupId=group).GroupExDescriptions == [
        "badge",
        "floor",
    ]
    listed = call(client, models, "GetGroupList", Offset=0, Limit=1000)
    assert group in [g.GroupId for g in listed.GroupInfos] and listed.GroupNum >= 1
    call(client, models, "CreateGroup", GroupId=other, GroupName="Other")

    person = call(
        client,
        models,
        "CreatePerson",
        GroupId=group,
        PersonId=pid,
        PersonName="Yao",
        Image=b64(yaoming_jpg),
        PersonExDescriptionInfos=[{"PersonExDescriptionIndex": 0, "PersonExDescription": "B-17"}],
    )
    assert person.FaceId and person.FaceRect.Width > 20
    assert code_of(
        client,
        models,
        "CreatePerson",
        GroupId=group,
        PersonId=pid,
        PersonName="Yao",
        Url=photo_server + "yaoming.jpg",
    ) == ("InvalidParameterValue.PersonIdAlreadyExist")
    no_group = code_of(
        client,
        models,
        "CreatePerson",
        GroupId=f"none-{run}",
        PersonId=f"q-{run}",
        PersonName="Q",
        Image=b64(yaoming_jpg),
    )
    assert no_group == "InvalidParameterValue.GroupIdNotExist"
    faceless = code_of(
        client,
        models,
        "CreatePerson",
        GroupId=group,
        PersonId=f"g-{run}",
        PersonName="G",
        Url=photo_server + "missing.jpg",
    )
    assert faceless == "FailedOperation.ImageDownloadError"

    # CreateFace exactly as the reference: a code per image, in order.
    added = call(
        client,
        models,
        "CreateFace",
        PersonId=pid,
        Urls=[photo_server + "gdp.jpg", photo_server + "missing.jpg"],
        QualityControl=0,
    )
    assert len(added.RetCode) == 2 and added.RetCode[1] != 0
    assert added.SucFaceNum == len(added.SucFaceIds) == added.RetCode.count(0)
    assert added.SucIndexes == [i for i, c in enumerate(added.RetCode) if c == 0]
    assert added.FaceModelVersion
    assert code_of(client, models, "CreateFace", PersonId=pid, Images=[b64(gdp_jpg)] * 5) == (
        "InvalidParameterValue.UploadFaceNumExceed"
    )
    base = call(client, models, "GetPersonBaseInfo", PersonId=pid)
    assert base.PersonName == "Yao" and person.FaceId in base.FaceIds
    if added.SucFaceIds:
        deleted = call(client, models, "DeleteFace", PersonId=pid, FaceIds=added.SucFaceIds)
        assert deleted.SucDeletedNum == len(added.SucFaceIds)
    call(client, models, "ModifyPersonBaseInfo", PersonId=pid, PersonName="Yao Ming")
    copied = call(client, models, "CopyPerson", PersonId=pid, GroupIds=[other])
    assert copied.SucGroupNum == 1 and copied.SucGroupIds == [other]
    call(
        client,
        models,
        "ModifyPersonGroupInfo",
        GroupId=group,
        PersonId=pid,
        PersonExDescriptionInfos=[
            {"PersonExDescriptionIndex": 1, "PersonExDescription": "floor 3"}
        ],
    )
    assert code_of(
        client,
        models,
        "ModifyPersonGroupInfo",
        GroupId=other,
        PersonId=pid,
        PersonExDescriptionInfos=[{"PersonExDescriptionIndex": 0, "PersonExDescription": "x"}],
    ) == (
        "InvalidParameter.InvalidParameter"  # the other group has no custom fields
    )
    groups = call(client, models, "GetPersonGroupInfo", PersonId=pid)
    values = {g.GroupId: g.PersonExDescriptions for g in groups.PersonGroupInfos}
    assert values == {group: ["B-17", "floor 3"], other: []}
    people = call(client, models, "GetPersonList", GroupId=group)
    assert [p.PersonId for p in people.PersonInfos] == [pid] and people.FaceNum == 1
    assert people.PersonInfos[0].PersonExDescriptions == ["B-17", "floor 3"]
    nums = call(client, models, "GetPersonListNum", GroupId=group)
    assert (nums.PersonNum, nums.FaceNum) == (1, 1)

    # Recognition.
    detected = call(
        client,
        models,
        "DetectFace",
        Image=b64(players_jpg),
        MaxFaceNum=30,
        NeedFaceAttributes=1,
        NeedQualityDetection=1,
    )
    assert len(detected.FaceInfos) == 22 and detected.ImageWidth > 0
    first = detected.FaceInfos[0]
    assert first.FaceAttributesInfo.Yaw is not None and first.FaceQualityInfo.Score > 0
    one = call(client, models, "DetectFace", Url=photo_server + "players.jpg")
    assert len(one.FaceInfos) == 1 and one.FaceInfos[0].X == first.X
    compared = call(
        client, models, "CompareFace", ImageA=b64(yaoming_jpg), UrlB=photo_server + "yaoming.jpg"
    )
    assert compared.Score > 99
    different = call(client, models, "CompareFace", ImageA=b64(yaoming_jpg), ImageB=b64(gdp_jpg))
    assert different.Score < compared.Score
    # Tencent's routes answer on the Tencent 3.0 scale: the calibrated confidence itself
    assert different.Score == pytest.approx(yao_gdp_confidence, abs=0.02)
    found = call(
        client, models, "SearchFaces", GroupIds=[group], Image=b64(yaoming_jpg), NeedPersonInfo=1
    )
    top = found.Results[0].Candidates[0]
    assert (top.PersonId, top.FaceId, top.PersonName) == (pid, person.FaceId, "Yao Ming")
    assert top.Score > 90 and found.FaceNum == 1
    persons = call(
        client, models, "SearchPersons", GroupIds=[group, other], Url=photo_server + "yaoming.jpg"
    )
    assert persons.Results[0].Candidates[0].PersonId == pid and persons.PersonNum == 1
    by_group = call(
        client, models, "SearchFacesReturnsByGroup", GroupIds=[group, other], Image=b64(yaoming_jpg)
    )
    cands = by_group.ResultsReturnsByGroup[0].GroupCandidates
    assert [c.GroupId for c in cands] == [group, other]
    assert all(c.Candidates[0].PersonId == pid for c in cands)
    verify_action = "VerifyFace" if version == "2018-03-01" else "VerifyPerson"
    same = call(client, models, verify_action, PersonId=pid, Image=b64(yaoming_jpg))
    assert same.IsMatch is True and same.Score > 90
    nope = call(client, models, verify_action, PersonId=pid, Url=photo_server + "gdp.jpg")
    assert nope.IsMatch is False
    assert code_of(client, models, "DetectFace", Url="file:///etc/passwd") == (
        "InvalidParameterValue.UrlIllegal"
    )
    assert code_of(client, models, "SearchFaces", GroupIds=[f"x-{run}"], Image=b64(gdp_jpg)) == (
        "InvalidParameterValue.GroupIdNotExist"
    )
    assert code_of(client, models, verify_action, PersonId=f"x-{run}", Image=b64(gdp_jpg)) == (
        "InvalidParameterValue.PersonIdNotExist"
    )

    # Removal: out of one group, then the whole person; the explicit group stays, empty.
    call(client, models, "DeletePersonFromGroup", PersonId=pid, GroupId=other)
    assert [
        g.GroupId for g in call(client, models, "GetPersonGroupInfo", PersonId=pid).PersonGroupInfos
    ] == [group]
    call(client, models, "DeletePerson", PersonId=pid)
    assert code_of(client, models, "GetPersonBaseInfo", PersonId=pid) == (
        "InvalidParameterValue.PersonIdNotExist"
    )
    assert call(client, models, "GetPersonListNum", GroupId=group).PersonNum == 0
    call(client, models, "DeleteGroup", GroupId=group)
    call(client, models, "DeleteGroup", GroupId=other)
    assert code_of(client, models, "GetGroupInfo", GroupId=group) == (
        "InvalidParameterValue.GroupIdNotExist"
    )


def test_query_string_form_through_the_sdk(api_server: ApiServer, yaoming_jpg: Path) -> None:
    """The SDK's GET mode sends every parameter in the query string (``GroupIds.0``...)."""
    key = api_server.key
    client = make_client(api_server, "2020-03-03", key.key_id, key.secret, method="GET")
    run = uuid.uuid4().hex[:8]
    call(
        client,
        models_2020,
        "CreateGroup",
        GroupId=f"q-{run}",
        GroupName="Q",
        GroupExDescriptions=["a", "b"],
    )
    info = call(client, models_2020, "GetGroupInfo", GroupId=f"q-{run}")
    assert info.GroupExDescriptions == ["a", "b"]
    call(client, models_2020, "DeleteGroup", GroupId=f"q-{run}")


def _signed_post(
    server: ApiServer,
    secret_id: str,
    secret_key: str,
    body: bytes,
    *,
    timestamp: int,
    send: bytes | None = None,
    action: str = "GetGroupList",
) -> Any:
    headers = {"content-type": "application/json", "host": server.host_port}
    signature = tc3.signature(
        secret_key,
        method="POST",
        uri="/",
        query="",
        headers=headers,
        signed_headers=("content-type", "host"),
        payload=body,
        timestamp=timestamp,
        service="iai",
    )
    auth = (
        f"TC3-HMAC-SHA256 Credential={secret_id}/{tc3.date_of(timestamp)}/iai/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={signature}"
    )
    return httpx.post(
        server.url + "/",
        content=send if send is not None else body,
        headers={
            **headers,
            "Authorization": auth,
            "X-TC-Action": action,
            "X-TC-Version": "2020-03-03",
            "X-TC-Timestamp": str(timestamp),
        },
    ).json()["Response"]


def test_tc3_signatures_refused_and_accepted(api_server: ApiServer) -> None:
    key = api_server.key
    now = int(time.time())
    body = b'{"Offset": 0, "Limit": 1}'
    assert "GroupNum" in _signed_post(api_server, key.key_id, key.secret, body, timestamp=now)
    tampered = _signed_post(
        api_server, key.key_id, key.secret, body, timestamp=now, send=b'{"Offset": 0, "Limit": 2}'
    )
    assert tampered["Error"]["Code"] == "AuthFailure.SignatureFailure"
    wrong = _signed_post(api_server, key.key_id, key.secret + "x", body, timestamp=now)
    assert wrong["Error"]["Code"] == "AuthFailure.SignatureFailure"
    stale = _signed_post(api_server, key.key_id, key.secret, body, timestamp=now - 301)
    assert stale["Error"]["Code"] == "AuthFailure.SignatureExpire"
    within = _signed_post(api_server, key.key_id, key.secret, body, timestamp=now - 200)
    assert "GroupNum" in within
    unknown = _signed_post(api_server, "AKIDnobody", key.secret, body, timestamp=now)
    assert unknown["Error"]["Code"] == "AuthFailure.SecretIdNotFound"
    bad_action = _signed_post(
        api_server, key.key_id, key.secret, body, timestamp=now, action="DoSomethingElse"
    )
    assert bad_action["Error"]["Code"] == "InvalidAction"
    plain = httpx.post(api_server.url + "/", json={}, headers={"X-TC-Action": "GetGroupList"})
    assert plain.status_code == 200
    assert plain.json()["Response"]["Error"]["Code"] == "AuthFailure.InvalidAuthorization"

    revoked = api_server.new_key("iai revoked")
    client = make_client(api_server, "2020-03-03", revoked.key_id, revoked.secret)
    assert call(client, models_2020, "GetGroupList").GroupNum >= 0
    api_server.revoke(revoked.key_id)
    assert code_of(client, models_2020, "GetGroupList") == "AuthFailure.SecretIdNotFound"


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_scoped_keys_through_the_sdk(
    api_server: ApiServer, version: str, yaoming_jpg: Path, gdp_jpg: Path
) -> None:
    """A read-only key detects, searches and reads, but creates and deletes nothing; a key
    limited to groups cannot reach another group, nor a person in one. Both are refused with
    AuthFailure.UnauthorizedOperation."""
    from pipeline.apikeys import KeyScope

    denied = "AuthFailure.UnauthorizedOperation"
    key, models = api_server.key, VERSIONS[version][1]
    admin = make_client(api_server, version, key.key_id, key.secret)
    run = uuid.uuid4().hex[:8]
    mine, theirs, pid, other = f"mine-{run}", f"theirs-{run}", f"p-{run}", f"q-{run}"
    for group in (mine, theirs):
        call(admin, models, "CreateGroup", GroupId=group, GroupName=group)
    call(
        admin,
        models,
        "CreatePerson",
        GroupId=mine,
        PersonId=pid,
        PersonName="Yao",
        Image=b64(yaoming_jpg),
    )
    call(
        admin,
        models,
        "CreatePerson",
        GroupId=theirs,
        PersonId=other,
        PersonName="G",
        Image=b64(gdp_jpg),
    )

    ro = api_server.new_key("iai read-only", KeyScope(read_only=True))
    reader = make_client(api_server, version, ro.key_id, ro.secret)
    assert call(reader, models, "DetectFace", Image=b64(yaoming_jpg)).FaceInfos
    found = call(reader, models, "SearchFaces", GroupIds=[mine], Image=b64(yaoming_jpg))
    assert found.Results[0].Candidates[0].PersonId == pid
    assert call(reader, models, "GetPersonBaseInfo", PersonId=pid).PersonName == "Yao"
    assert (
        code_of(
            reader,
            models,
            "CreatePerson",
            GroupId=mine,
            PersonId=f"n-{run}",
            PersonName="N",
            Image=b64(gdp_jpg),
        )
        == denied
    )
    assert code_of(reader, models, "DeletePerson", PersonId=pid) == denied
    assert code_of(reader, models, "CreateGroup", GroupId=f"g-{run}", GroupName="g") == denied
    assert code_of(reader, models, "CreateFace", PersonId=pid, Images=[b64(gdp_jpg)]) == denied

    limited = api_server.new_key("iai mine", KeyScope(frozenset({mine})))
    scoped = make_client(api_server, version, limited.key_id, limited.secret)
    assert call(scoped, models, "SearchPersons", GroupIds=[mine], Image=b64(yaoming_jpg))
    assert (
        code_of(scoped, models, "SearchFaces", GroupIds=[mine, theirs], Image=b64(yaoming_jpg))
        == denied
    )
    assert code_of(scoped, models, "GetPersonBaseInfo", PersonId=other) == denied
    assert code_of(scoped, models, "VerifyFace", PersonId=other, Image=b64(gdp_jpg)) == denied
    assert code_of(scoped, models, "DeletePerson", PersonId=other) == denied
    assert code_of(scoped, models, "GetPersonList", GroupId=theirs) == denied
    assert code_of(scoped, models, "DeleteGroup", GroupId=theirs) == denied
    assert code_of(scoped, models, "CopyPerson", PersonId=pid, GroupIds=[theirs]) == denied
    listed = call(scoped, models, "GetGroupList", Offset=0, Limit=1000)
    assert [g.GroupId for g in listed.GroupInfos] == [mine] and listed.GroupNum == 1
    call(scoped, models, "DeletePerson", PersonId=pid)
    assert call(admin, models, "GetPersonBaseInfo", PersonId=other).PersonName == "G"
    for group in (mine, theirs):
        call(admin, models, "DeleteGroup", GroupId=group)
