"""Tencent Cloud IAI (API 3.0, versions 2018-03-01 and 2020-03-03) at ``/``, as
``tencentcloud-sdk-python-iai``'s ``IaiClient`` sends it.

``POST /`` with a JSON body (the SDK's default), or the query-string form (``GET`` or ``POST``
``/?Action=CreateFace&PersonId=1001&Urls.0=...``, lists spelled ``Name.N``, objects
``Name.N.Field``). The action comes from ``X-TC-Action`` (or ``Action``), the version from
``X-TC-Version`` (or ``Version``). Requests are signed with TC3-HMAC-SHA256
(:mod:`pipeline.api.tc3`): the body, host, content type and a timestamp within 5 minutes.

Every answer is HTTP 200 ``{"Response": {..., "RequestId"}}``; errors are
``{"Response": {"Error": {"Code", "Message"}, "RequestId"}}`` with IAI's string codes.
Translation only: each action makes the same library / engine calls as ``/v1``.
"""

from __future__ import annotations

import hmac
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from pipeline.api import tc3
from pipeline.api import vendor_answers as va
from pipeline.api.auth import ANONYMOUS, Caller, Refused
from pipeline.api.body import body_limit, content_type, parse_json_object, read_body
from pipeline.api.calls import create_person_with_face, detect_faces
from pipeline.api.deps import get_state, keyring
from pipeline.api.images import ImageSource
from pipeline.api.scope import READ, Needs, enforce, visible_groups
from pipeline.api.state import ApiState
from pipeline.api_io import caller_location, inline_source
from pipeline.attributes_vendor import iai_attributes, iai_quality
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.library.results import FaceRect, IdentifyResult
from pipeline.similarity import tencent_score
from pipeline.sources.location import Location
from pipeline.store.records import GroupDetails

VERSIONS = ("2018-03-01", "2020-03-03")
SERVICE = "iai"
MAX_SKEW_S = 300
"""A signed request's X-TC-Timestamp may be at most 5 minutes off."""
MAX_IMAGES_PER_CREATE_FACE = 4
"""IAI's per-call upload limit (UploadFaceNumExceed); the per-person cap is the library's."""

_CODES: dict[ErrorCode, str] = {
    ErrorCode.NO_FACE: "InvalidParameterValue.NoFaceInPhoto",
    ErrorCode.DECODE_FAILED: "FailedOperation.ImageDecodeFailed",
    ErrorCode.ILLEGAL_FORMAT: "FailedOperation.ImageDecodeFailed",
    ErrorCode.EMPTY_IMAGE: "InvalidParameterValue.ImageEmpty",
    ErrorCode.IMAGE_TOO_LARGE: "FailedOperation.ImageSizeExceed",
    ErrorCode.IMAGE_TOO_SMALL: "FailedOperation.ImageResolutionTooSmall",
    ErrorCode.DOWNLOAD_FAILED: "FailedOperation.ImageDownloadError",
    ErrorCode.URL_DOWNLOAD_FAILED: "FailedOperation.ImageDownloadError",
    ErrorCode.URL_FORBIDDEN: "InvalidParameterValue.UrlIllegal",
    ErrorCode.SOURCE_NOT_FOUND: "FailedOperation.ImageDownloadError",
    ErrorCode.FEATURE_FAILED: "FailedOperation.ServerError",
    ErrorCode.QUALITY_TOO_LOW: "FailedOperation.FaceQualityNotQualified",
    ErrorCode.FACE_MATCH_BELOW_THRESHOLD: "InvalidParameterValue.FaceMatchThresholdIllegal",
    ErrorCode.PERSON_EXISTS: "InvalidParameterValue.PersonIdAlreadyExist",
    ErrorCode.PERSON_NOT_FOUND: "InvalidParameterValue.PersonIdNotExist",
    ErrorCode.GROUP_NOT_FOUND: "InvalidParameterValue.GroupIdNotExist",
    ErrorCode.GROUP_LIST_NOT_FOUND: "InvalidParameterValue.GroupIdNotExist",
    ErrorCode.GROUP_EXISTS: "InvalidParameterValue.GroupIdAlreadyExist",
    ErrorCode.TOO_MANY_FACES: "InvalidParameterValue.PersonFaceNumExceed",
    ErrorCode.TOO_MANY_GROUPS: "InvalidParameterValue.GroupNumPerPersonExceed",
    ErrorCode.TOO_MANY_PERSONS: "InvalidParameterValue.GroupFaceNumExceed",
    ErrorCode.EMPTY_PARAMETER: "MissingParameter.ErrorParameterEmpty",
    ErrorCode.RATE_LIMITED: "RequestLimitExceeded",
    ErrorCode.SERVICE_BUSY: "FailedOperation.RequestTimeout",
    ErrorCode.PERMISSION_DENIED: "AuthFailure.UnauthorizedOperation",
}


def iai_code(exc: FacepipeError) -> str:
    """IAI's string code for a catalogue error."""
    if exc.code in _CODES:
        return _CODES[exc.code]
    return (
        "InternalError"
        if exc.code is ErrorCode.INTERNAL or exc.retryable
        else ("InvalidParameter.InvalidParameter")
    )


def iai_score(confidence: float) -> float:
    """The one place a facepipe confidence (0-100) becomes an IAI Score: the calibrated
    Tencent 3.0 scale, which facepipe's confidence already follows."""
    return round(float(tencent_score(confidence)), 2)


def _request_id() -> str:
    return str(uuid.uuid4())


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": _request_id()}}


def error_response(_: Request, exc: FacepipeError) -> Response:
    return JSONResponse(error_body(iai_code(exc), exc.message))


def _refuse(code: str, message: str) -> Refused:
    return Refused(JSONResponse(error_body(code, message)))


# --- parameters ----------------------------------------------------------------------------------

_INDEX = re.compile(r"^\d{1,4}$")


def unflatten(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Query-string parameters (``Urls.0``, ``Infos.1.Field``) as the JSON body they stand for."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        *path, last = key.split(".")
        node = root
        for part in path:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"{key}: conflicting parameters")
            node = child
        node[last] = value
    return _lists(root)  # type: ignore[no-any-return]


def _lists(node: Any) -> Any:
    """Turn dicts keyed 0..N into lists (in index order)."""
    if not isinstance(node, dict):
        return node
    fixed = {k: _lists(v) for k, v in node.items()}
    if fixed and all(_INDEX.match(k) for k in fixed):
        return [fixed[k] for k in sorted(fixed, key=int)]
    return fixed


def checked_url(url: str, settings: Any) -> Location:
    """A caller's URL parsed by :func:`caller_location`; a refused one is IAI's UrlIllegal."""
    try:
        return caller_location(url, settings)
    except FacepipeError as exc:
        raise FacepipeError(exc.code, exc.message, iai="InvalidParameterValue.UrlIllegal") from exc


class Params:
    """An action's parameters, typed on access (IAI names, e.g. ``PersonId``), and who calls."""

    def __init__(self, data: dict[str, Any], caller: Caller = ANONYMOUS) -> None:
        self.data = data
        self.caller = caller

    def ids(self, name: str) -> list[str]:
        """A parameter holding one id or a list of ids, as a list (for the scope checks)."""
        value = self.data.get(name)
        if isinstance(value, list):
            return [str(v) for v in value if isinstance(v, str | int)]
        return [] if value is None or isinstance(value, dict) else [str(value)]

    def text(self, name: str) -> str | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, dict | list):
            raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"{name} must be a string")
        return str(value)

    def required(self, name: str) -> str:
        value = self.text(name)
        if value is None or value == "":
            raise FacepipeError(ErrorCode.EMPTY_PARAMETER, f"{name} is required")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.data.get(name)
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except (TypeError, ValueError) as exc:
            raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"{name} must be an integer") from exc
        if not low <= number <= high:
            raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"{name} must be in [{low}, {high}]")
        return number

    def number(self, name: str) -> float | None:
        value = self.data.get(name)
        if value is None or value == "":
            return None
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"{name} must be a number") from exc

    def strings(self, name: str) -> list[str]:
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
            raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"{name} must be a list of strings")
        return [str(v) for v in value]

    def objects(self, name: str) -> list[dict[str, Any]]:
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"{name} must be a list of objects")
        return value

    def image(self, settings: Any, suffix: str = "") -> Location:
        """``Url<suffix>`` (preferred when both are given, as IAI says) or base64
        ``Image<suffix>``."""
        url = self.text(f"Url{suffix}")
        if url:
            return checked_url(url, settings)
        image = self.text(f"Image{suffix}")
        if image:
            return inline_source(image)
        raise FacepipeError(
            ErrorCode.EMPTY_PARAMETER, f"give Image{suffix} (base64) or Url{suffix}"
        )

    def has_image(self) -> bool:
        return bool(self.text("Url") or self.text("Image"))


# --- authentication ------------------------------------------------------------------------------


async def iai_caller(request: Request, state: ApiState, raw: bytes) -> Caller:
    """Check the TC3 signature of a request (and the key's rate)."""
    if not state.settings.api_auth:
        return ANONYMOUS
    auth = tc3.parse_authorization(request.headers.get("authorization", ""))
    if auth is None:
        raise _refuse("AuthFailure.InvalidAuthorization", "Authorization is not TC3-HMAC-SHA256")
    if request.headers.get("x-tc-content-sha256", "").upper() == "UNSIGNED-PAYLOAD":
        raise _refuse("AuthFailure.InvalidAuthorization", "unsigned payloads are not accepted")
    if not {"content-type", "host"} <= set(auth.signed_headers) or auth.service != SERVICE:
        raise _refuse("AuthFailure.InvalidAuthorization", "sign content-type and host for iai")
    try:
        timestamp = int(request.headers.get("x-tc-timestamp", ""))
    except ValueError as exc:
        raise _refuse("AuthFailure.InvalidAuthorization", "X-TC-Timestamp is missing") from exc
    if abs(time.time() - timestamp) > MAX_SKEW_S:
        raise _refuse("AuthFailure.SignatureExpire", "the request timestamp is over 5 min off")
    if auth.date != tc3.date_of(timestamp):
        raise _refuse("AuthFailure.SignatureFailure", "the credential date is not the timestamp's")
    ring = keyring(state)
    found = await state.blocking(lambda: ring.signing_secret(auth.secret_id))
    if found is None:
        raise _refuse("AuthFailure.SecretIdNotFound", "the SecretId does not exist or is revoked")
    key, secret = found
    query = request.scope.get("query_string", b"").decode("latin-1")
    expected = tc3.signature(
        secret,
        method=request.method,
        uri=request.url.path,
        query=query if request.method == "GET" else "",
        headers={k.lower(): v for k, v in request.headers.items()},
        signed_headers=auth.signed_headers,
        payload=raw if request.method != "GET" else b"",
        timestamp=timestamp,
        service=SERVICE,
    )
    if not hmac.compare_digest(expected, auth.signature):
        raise _refuse("AuthFailure.SignatureFailure", "the signature does not match the request")
    caller = Caller(key)
    if not await state.blocking(lambda: ring.allow(caller)):
        raise _refuse("RequestLimitExceeded", "too many requests for this key")
    return caller


# --- the actions ---------------------------------------------------------------------------------

Action = Callable[[ApiState, Params], Awaitable[dict[str, Any]]]
ACTIONS: dict[str, Action] = {}


def action(fn: Action) -> Action:
    ACTIONS[fn.__name__] = fn
    return fn


def _rect(box: Any) -> dict[str, int]:
    r = FaceRect.from_box(box)
    return {"X": r.x, "Y": r.y, "Width": r.width, "Height": r.height}


def _group_info(g: GroupDetails, model: str) -> dict[str, Any]:
    return {
        "GroupName": g.name,
        "GroupId": g.group_id,
        "GroupExDescriptions": list(g.ex_fields),
        "Tag": g.tag,
        "FaceModelVersion": model,
        "CreationTimestamp": int(g.created_at.timestamp() * 1000),
    }


@action
async def CreateGroup(state: ApiState, p: Params) -> dict[str, Any]:
    group_id, name = p.required("GroupId"), p.required("GroupName")
    fields, tag = p.strings("GroupExDescriptions"), p.text("Tag")
    await state.blocking(lambda: state.library.create_group(group_id, name, tag, fields))
    return {"FaceModelVersion": state.engine.model_id}


@action
async def DeleteGroup(state: ApiState, p: Params) -> dict[str, Any]:
    group_id = p.required("GroupId")
    await state.blocking(lambda: state.library.delete_group(group_id))
    return {}


@action
async def ModifyGroup(state: ApiState, p: Params) -> dict[str, Any]:
    group_id = p.required("GroupId")
    name, tag = p.text("GroupName"), p.text("Tag")
    changes = p.objects("GroupExDescriptionInfos")

    def run() -> dict[str, Any]:
        fields: list[str] | None = None
        if changes:
            fields = list(state.library.get_group(group_id).ex_fields)
            for change in changes:
                index = Params(change).integer("GroupExDescriptionIndex", -1, 0, 4)
                text = Params(change).required("GroupExDescription")
                if index < len(fields):
                    fields[index] = text
                elif index == len(fields):
                    fields.append(text)
                else:
                    raise FacepipeError(
                        ErrorCode.ILLEGAL_PARAMETER,
                        f"GroupExDescriptionIndex {index} is past the end",
                    )
        state.library.modify_group(group_id, name, tag, fields)
        return {}

    return await state.blocking(run)


@action
async def GetGroupList(state: ApiState, p: Params) -> dict[str, Any]:
    offset, limit = p.integer("Offset", 0, 0, 10**9), p.integer("Limit", 10, 1, 1000)

    def run() -> dict[str, Any]:
        page = visible_groups(state.library, p.caller.scope, offset, limit)
        infos = [state.library.get_group(g.group_id) for g in page.items]
        model = state.engine.model_id
        return {"GroupInfos": [_group_info(g, model) for g in infos], "GroupNum": page.total}

    return await state.blocking(run)


@action
async def GetGroupInfo(state: ApiState, p: Params) -> dict[str, Any]:
    group_id = p.required("GroupId")
    group = await state.blocking(lambda: state.library.get_group(group_id))
    return _group_info(group, state.engine.model_id)


@action
async def CreatePerson(state: ApiState, p: Params) -> dict[str, Any]:
    """In an existing group (IAI groups are created with CreateGroup), with the largest face of
    Image/Url and the person's PersonExDescriptionInfos. Gender is accepted and not stored."""
    group_id, person_id = p.required("GroupId"), p.required("PersonId")
    name = p.required("PersonName")
    values = _ex_values(p)
    qc = p.integer("QualityControl", 0, 0, 4)
    source = p.image(state.settings) if p.has_image() else None
    fetched = await state.fetch(source) if source else None

    def run() -> dict[str, Any]:
        state.library.get_group(group_id)  # GroupIdNotExist before anything is created
        _person, added = create_person_with_face(
            state.library,
            person_id,
            [group_id],
            name,
            None,
            fetched.decode_or_error(state.settings) if fetched else None,
            quality_control=qc,
        )
        if values:
            try:
                state.library.set_person_group_values(person_id, group_id, values)
            except FacepipeError:
                state.library.delete_person(person_id)
                raise
        out: dict[str, Any] = {"FaceModelVersion": state.engine.model_id}
        if added is not None:
            out["FaceId"] = added.suc_face_ids[0]
            rect = added.suc_face_rects[0]
            out["FaceRect"] = {"X": rect.x, "Y": rect.y, "Width": rect.width, "Height": rect.height}
        return out

    return await state.with_model(run)


@action
async def DeletePerson(state: ApiState, p: Params) -> dict[str, Any]:
    person_id = p.required("PersonId")
    await state.blocking(lambda: state.library.delete_person(person_id))
    return {}


@action
async def DeletePersonFromGroup(state: ApiState, p: Params) -> dict[str, Any]:
    """Out of one group; a person in no other group is deleted (as IAI does)."""
    person_id, group_id = p.required("PersonId"), p.required("GroupId")
    await state.blocking(lambda: state.library.delete_person(person_id, group_id))
    return {}


@action
async def CopyPerson(state: ApiState, p: Params) -> dict[str, Any]:
    person_id, groups = p.required("PersonId"), p.strings("GroupIds")
    if not groups:
        raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "GroupIds is required")

    def run() -> dict[str, Any]:
        for group in groups:
            state.library.get_group(group)
        before = set(state.library.get_person(person_id).group_ids)
        state.library.add_person_to_groups(person_id, groups)
        new = [g for g in groups if g not in before]
        return {"SucGroupNum": len(new), "SucGroupIds": new}

    return await state.blocking(run)


@action
async def ModifyPersonBaseInfo(state: ApiState, p: Params) -> dict[str, Any]:
    person_id, name = p.required("PersonId"), p.text("PersonName")
    await state.blocking(lambda: state.library.set_person_info(person_id, name, None))
    return {}


def _ex_values(p: Params) -> dict[int, str]:
    """PersonExDescriptionInfos as {field index: value}."""
    out: dict[int, str] = {}
    for info in p.objects("PersonExDescriptionInfos"):
        item = Params(info)
        out[item.integer("PersonExDescriptionIndex", -1, 0, 4)] = (
            item.text("PersonExDescription") or ""
        )
    return out


@action
async def ModifyPersonGroupInfo(state: ApiState, p: Params) -> dict[str, Any]:
    """Set a person's values of its group's custom fields (by field index)."""
    group_id, person_id = p.required("GroupId"), p.required("PersonId")
    values = _ex_values(p)
    if not values:
        raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "PersonExDescriptionInfos is required")
    await state.blocking(lambda: state.library.set_person_group_values(person_id, group_id, values))
    return {}


@action
async def GetPersonBaseInfo(state: ApiState, p: Params) -> dict[str, Any]:
    """Name and face ids (Gender is not stored: left out)."""
    person_id = p.required("PersonId")
    info = await state.blocking(lambda: state.library.get_person(person_id))
    return {"PersonName": info.name, "FaceIds": list(info.face_ids)}


@action
async def GetPersonGroupInfo(state: ApiState, p: Params) -> dict[str, Any]:
    person_id = p.required("PersonId")
    offset, limit = p.integer("Offset", 0, 0, 10**9), p.integer("Limit", 10, 1, 100)
    values = await state.blocking(lambda: state.library.person_group_values(person_id))
    groups = sorted(values)
    return {
        "PersonGroupInfos": [
            {"GroupId": g, "PersonExDescriptions": list(values[g])}
            for g in groups[offset : offset + limit]
        ],
        "GroupNum": len(groups),
        "FaceModelVersion": state.engine.model_id,
    }


@action
async def GetPersonList(state: ApiState, p: Params) -> dict[str, Any]:
    group_id = p.required("GroupId")
    offset, limit = p.integer("Offset", 0, 0, 10**9), p.integer("Limit", 10, 1, 1000)

    def run() -> dict[str, Any]:
        group = state.library.get_group(group_id)
        page = state.library.list_persons(group_id, offset, limit)
        persons = [state.library.get_person(s.person_id) for s in page.items]
        values = [state.library.person_group_values(x.person_id).get(group_id, ()) for x in persons]
        return {
            "PersonInfos": [
                {
                    "PersonName": x.name,
                    "PersonId": x.person_id,
                    "FaceIds": list(x.face_ids),
                    "PersonExDescriptions": list(v),
                    "CreationTimestamp": int(x.created_at.timestamp() * 1000),
                }
                for x, v in zip(persons, values, strict=True)
            ],
            "PersonNum": group.person_count,
            "FaceNum": group.face_count,
            "FaceModelVersion": state.engine.model_id,
        }

    return await state.blocking(run)


@action
async def GetPersonListNum(state: ApiState, p: Params) -> dict[str, Any]:
    group_id = p.required("GroupId")
    group = await state.blocking(lambda: state.library.get_group(group_id))
    return {"PersonNum": group.person_count, "FaceNum": group.face_count}


@action
async def CreateFace(state: ApiState, p: Params) -> dict[str, Any]:
    """Add up to 4 images to a person: RetCode per image, in order (the reference call)."""
    person_id = p.required("PersonId")
    urls, images = p.strings("Urls"), p.strings("Images")
    qc = p.integer("QualityControl", 0, 0, 4)
    threshold = p.number("FaceMatchThreshold")
    sources: list[ImageSource] = (
        [checked_url(u, state.settings) for u in urls]
        if urls
        else [inline_source(i) for i in images]
    )
    if not sources:
        raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "give Images (base64) or Urls")
    if len(sources) > MAX_IMAGES_PER_CREATE_FACE:
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER,
            f"at most {MAX_IMAGES_PER_CREATE_FACE} images per CreateFace",
            iai="InvalidParameterValue.UploadFaceNumExceed",
        )
    fetched = await state.fetch_all(sources)

    def run() -> dict[str, Any]:
        result = state.library.add_faces(
            person_id,
            [f.decode_or_error(state.settings) for f in fetched],
            quality_control=qc,
            face_match_threshold=threshold,
        )
        out = result.to_dict()
        out.pop("PersonId")
        out.pop("Errors")
        return out

    return await state.with_model(run)


@action
async def DeleteFace(state: ApiState, p: Params) -> dict[str, Any]:
    person_id, face_ids = p.required("PersonId"), p.strings("FaceIds")
    if not face_ids:
        raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "FaceIds is required")
    deleted = await state.blocking(lambda: state.library.delete_faces(person_id, face_ids))
    return {"SucDeletedNum": len(deleted), "SucFaceIds": deleted}


@action
async def DetectFace(state: ApiState, p: Params) -> dict[str, Any]:
    """Up to MaxFaceNum faces (default 1, largest first). FaceAttributesInfo (with
    NeedFaceAttributes=1) carries the pose, and Age/Gender only when an attribute model gave
    them; FaceQualityInfo (NeedQualityDetection=1) carries Score, Sharpness, Brightness and
    Completeness (scales: pipeline/attributes_vendor.py)."""
    max_faces = p.integer("MaxFaceNum", 1, 1, 120)
    need_attributes = p.integer("NeedFaceAttributes", 0, 0, 1) == 1
    need_quality = p.integer("NeedQualityDetection", 0, 0, 1) == 1
    source = p.image(state.settings)
    fetched = await state.fetch(source)

    def run() -> dict[str, Any]:
        analysis = detect_faces(state.engine, fetched.decode(state.settings), max_faces)
        infos = []
        for face in analysis.faces:
            info: dict[str, Any] = _rect(face.box)
            if need_attributes:
                attrs: dict[str, Any] = {
                    "Yaw": round(face.pose.yaw),
                    "Pitch": round(face.pose.pitch),
                    "Roll": round(face.pose.roll),
                }
                attrs |= iai_attributes(face.attributes)
                info["FaceAttributesInfo"] = attrs
            if need_quality:
                info["FaceQualityInfo"] = iai_quality(face.quality)
            infos.append(info)
        return {
            "ImageWidth": analysis.width,
            "ImageHeight": analysis.height,
            "FaceInfos": infos,
            "FaceModelVersion": analysis.model_id,
        }

    return await state.with_model(run)


@action
async def CompareFace(state: ApiState, p: Params) -> dict[str, Any]:
    sources = [p.image(state.settings, "A"), p.image(state.settings, "B")]
    fa, fb = await state.fetch_all(sources)

    def run() -> dict[str, Any]:
        result = state.library.compare(fa.decode(state.settings), fb.decode(state.settings))
        return {"Score": iai_score(result.similarity), "FaceModelVersion": state.engine.model_id}

    return await state.with_model(run)


async def _search(state: ApiState, p: Params) -> tuple[IdentifyResult, int, float | None]:
    groups = p.strings("GroupIds")
    if not groups:
        raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "GroupIds is required")
    max_faces = p.integer("MaxFaceNum", 1, 1, 10)
    top_n = p.integer("MaxPersonNum", 5, 1, 100)
    if p.text("MaxPersonNumPerGroup"):
        top_n = p.integer("MaxPersonNumPerGroup", 5, 1, 10)
    threshold = p.number("FaceMatchThreshold")
    source = p.image(state.settings)
    fetched = await state.fetch(source)

    def run() -> IdentifyResult:
        return state.library.identify(
            fetched.decode(state.settings), groups, top_n, all_faces=max_faces > 1
        )

    result = await state.with_model(run)
    return result, max_faces, threshold


def _candidates(face: Any, threshold: float | None, names: bool) -> list[dict[str, Any]]:
    out = []
    for c in face.candidates:
        score = iai_score(c.confidence)
        if threshold is not None and score < threshold:
            continue
        item = {"PersonId": c.person_id, "FaceId": c.face_id, "Score": score}
        if names:
            item["PersonName"] = c.name
        out.append(item)
    return out


async def _search_faces(state: ApiState, p: Params, persons: bool) -> dict[str, Any]:
    names = p.integer("NeedPersonInfo", 0, 0, 1) == 1
    result, max_faces, threshold = await _search(state, p)
    faces = result.faces[:max_faces]
    out: dict[str, Any] = {
        "Results": [
            {"Candidates": _candidates(f, threshold, names), "FaceRect": _rect(f.box), "RetCode": 0}
            for f in faces
        ],
        "FaceModelVersion": result.model_id,
    }
    if persons:
        out["PersonNum"] = len({c["PersonId"] for r in out["Results"] for c in r["Candidates"]})
    else:
        out["FaceNum"] = len(faces)
    return out


@action
async def SearchFaces(state: ApiState, p: Params) -> dict[str, Any]:
    """Each person once, with its best face (facepipe's identify ranks persons)."""
    return await _search_faces(state, p, persons=False)


@action
async def SearchPersons(state: ApiState, p: Params) -> dict[str, Any]:
    return await _search_faces(state, p, persons=True)


@action
async def SearchFacesReturnsByGroup(state: ApiState, p: Params) -> dict[str, Any]:
    """The search of SearchFaces, once per group (each group's own top persons)."""
    groups = p.strings("GroupIds")
    if not groups:
        raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "GroupIds is required")
    names = p.integer("NeedPersonInfo", 0, 0, 1) == 1
    per_group = []
    model = state.engine.model_id
    faces: Any = ()
    threshold = None
    for group in groups:
        result, max_faces, threshold = await _search(state, Params({**p.data, "GroupIds": [group]}))
        faces = result.faces[:max_faces]
        per_group.append((group, faces))
    results = []
    for i, face in enumerate(faces):
        results.append(
            {
                "FaceRect": _rect(face.box),
                "GroupCandidates": [
                    {"GroupId": g, "Candidates": _candidates(fs[i], threshold, names)}
                    for g, fs in per_group
                ],
                "RetCode": 0,
            }
        )
    return {"ResultsReturnsByGroup": results, "FaceNum": len(results), "FaceModelVersion": model}


async def _verify(state: ApiState, p: Params) -> dict[str, Any]:
    person_id = p.required("PersonId")
    source = p.image(state.settings)
    fetched = await state.fetch(source)

    def run() -> dict[str, Any]:
        result = state.library.verify(fetched.decode(state.settings), person_id)
        return {
            "Score": iai_score(result.confidence),
            "IsMatch": result.is_match,
            "FaceModelVersion": state.engine.model_id,
        }

    return await state.with_model(run)


@action
async def VerifyFace(state: ApiState, p: Params) -> dict[str, Any]:
    return await _verify(state, p)


@action
async def VerifyPerson(state: ApiState, p: Params) -> dict[str, Any]:
    return await _verify(state, p)


# --- what each action touches (the key scope checks) ---------------------------------------------

_GROUP, _GROUPS, _PERSON = ("GroupId",), ("GroupIds",), ("PersonId",)
NEEDS: dict[str, Needs] = {
    "CreateGroup": Needs(write=True, groups=_GROUP),
    "DeleteGroup": Needs(write=True, groups=_GROUP),
    "ModifyGroup": Needs(write=True, groups=_GROUP),
    "GetGroupList": READ,  # lists only the key's groups
    "GetGroupInfo": Needs(groups=_GROUP),
    "CreatePerson": Needs(write=True, groups=_GROUP),
    "DeletePerson": Needs(write=True, persons=_PERSON),
    "DeletePersonFromGroup": Needs(write=True, groups=_GROUP, persons=_PERSON),
    "CopyPerson": Needs(write=True, groups=_GROUPS, persons=_PERSON),
    "ModifyPersonBaseInfo": Needs(write=True, persons=_PERSON),
    "ModifyPersonGroupInfo": Needs(write=True, groups=_GROUP, persons=_PERSON),
    "GetPersonBaseInfo": Needs(persons=_PERSON),
    "GetPersonGroupInfo": Needs(persons=_PERSON),
    "GetPersonList": Needs(groups=_GROUP),
    "GetPersonListNum": Needs(groups=_GROUP),
    "CreateFace": Needs(write=True, persons=_PERSON),
    "DeleteFace": Needs(write=True, persons=_PERSON),
    "DetectFace": READ,
    "CompareFace": READ,
    "SearchFaces": Needs(groups=_GROUPS),
    "SearchFacesReturnsByGroup": Needs(groups=_GROUPS),
    "SearchPersons": Needs(groups=_GROUPS),
    "VerifyFace": Needs(persons=_PERSON),
    "VerifyPerson": Needs(persons=_PERSON),
}

# --- the endpoint --------------------------------------------------------------------------------

router = APIRouter(tags=["iai"])


async def iai(request: Request) -> JSONResponse:
    """Tencent Cloud IAI API 3.0: the action in X-TC-Action (or Action), TC3-signed."""
    state = get_state(request)
    raw = await read_body(request, body_limit(state.settings))
    caller = await iai_caller(request, state, raw)
    query = unflatten(parse_qsl(request.url.query, keep_blank_values=True))
    if request.method == "POST" and raw.strip():
        if content_type(request) == "application/x-www-form-urlencoded":
            body = unflatten(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        else:
            body = parse_json_object(raw)
    else:
        body = {}
    params = {**query, **body}
    name = request.headers.get("x-tc-action") or str(params.pop("Action", "") or "")
    version = request.headers.get("x-tc-version") or str(params.pop("Version", "") or "")
    for common in ("Action", "Version", "Region", "Timestamp", "Nonce", "Language"):
        params.pop(common, None)
    if version not in VERSIONS:
        return JSONResponse(
            error_body(
                "InvalidParameter.NoSuchVersion",
                f"version {version!r}: use one of {', '.join(VERSIONS)}",
            )
        )
    handler = ACTIONS.get(name)
    if handler is None or name not in NEEDS:
        return JSONResponse(error_body("InvalidAction", f"action {name!r} is not served"))
    try:
        call = Params(params, caller)
        await enforce(state, caller.scope, NEEDS[name], call.ids)
        answer = await handler(state, call)
    except FacepipeError as exc:
        code = exc.context.get("iai") or iai_code(exc)
        return JSONResponse(error_body(str(code), exc.message))
    return JSONResponse({"Response": {**answer, "RequestId": _request_id()}})


def _header(name: str, text: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": text,
        "schema": {"type": "string"},
    }


_HEADERS = [
    _header("X-TC-Action", "The action, e.g. CreateFace (or the Action query parameter)."),
    _header("X-TC-Version", f"One of {', '.join(VERSIONS)} (or the Version query parameter)."),
    _header("X-TC-Timestamp", "Unix seconds; at most 5 minutes off."),
    _header("Authorization", "TC3-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..."),
]
_BODY = {
    "required": False,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "description": "The action's parameters (IAI API 3.0 names).",
            }
        }
    },
}

for _method in ("POST", "GET"):
    router.add_api_route(
        "/",
        iai,
        methods=[_method],
        operation_id=f"iai_{_method.lower()}",
        responses={200: {"model": va.IaiAnswer, "description": "Every answer, errors too."}},
        openapi_extra={"parameters": _HEADERS}
        | ({"requestBody": _BODY} if _method == "POST" else {}),
    )
