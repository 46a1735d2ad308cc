"""Tencent YouTu v2 (``POST /face/*``), as Tencent's ``qcloud-image`` SDK sends it.

Translation only: each call reads the vendor's request shape, makes the same library / engine
call as ``/v1``, and answers ``{"code", "message", "data"}`` with YouTu's numeric codes.

Request shapes served (what the SDK and the reference send):

* JSON (``url``, ``urls``, ``group_ids`` as a list, base64 ``image``) or multipart (file
  ``image``, ``imageA``/``imageB``, ``images[N]``; lists spelled ``group_ids[N]``). The SDK sends
  every multipart field, text ones too, as a file part; small parts of known text fields are read
  as text.
* ``appid`` (must be the signing key's appid) and ``bucket`` (accepted, not used).
* ``Authorization``: the YouTu multi-use signature, base64(HMAC-SHA1(SecretKey, text) + text)
  with text ``a=<appid>&b=<bucket>&k=<SecretId>&e=<expiry>&t=<now>&r=<random>&f=``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Sequence
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from pipeline.api import vendor_answers as va
from pipeline.api.answers import answers
from pipeline.api.auth import ANONYMOUS, Caller, Refused
from pipeline.api.calls import create_person_with_face
from pipeline.api.deps import PayloadDep, StateDep, keyring
from pipeline.api.images import ImageSource
from pipeline.api.scope import Needs, enforce, visible_groups
from pipeline.api_io import Payload, caller_location, inline_source
from pipeline.attributes_vendor import youtu_attributes
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.similarity import tencent_score
from pipeline.store.records import FaceInfo
from pipeline.types import DetectMode, Face

SIGNATURE_MAX_AGE_S = 300
"""How far a signature's ``t`` may lie in the future (clock skew)."""

TOP_N = 5
"""YouTu identify returns the top 5 persons."""

_TEXT_PART_MAX = 4096
_INDEXED = re.compile(r"^(?P<name>[A-Za-z_]+)\[(?P<index>\d{1,4})\]$")

# YouTu's authentication and throttling codes (reference error table).
SIGNATURE_EMPTY = 4
SIGNATURE_MALFORMED = 5
APPID_MISMATCH = 6
"""The reference's "the signature's APPID / bucket does not match the operation's target": what
a key scope refusal (PERMISSION_DENIED) is answered with."""
SIGNATURE_EXPIRED = 9
SECRET_ID_UNKNOWN = 11
APPID_SECRET_ID_MISMATCH = 12
SIGNATURE_INVALID = 14
TOO_FREQUENT = 15
BODY_TOO_LARGE = 23

_CODES: dict[ErrorCode, int] = {
    ErrorCode.RATE_LIMITED: TOO_FREQUENT,
    ErrorCode.PERMISSION_DENIED: APPID_MISMATCH,
    ErrorCode.URL_DOWNLOAD_FAILED: -1308,
    ErrorCode.DOWNLOAD_FAILED: -1403,
}


def youtu_code(exc: FacepipeError) -> int:
    """YouTu's code for a catalogue error (the catalogue's numbers are YouTu's where one
    exists). A request body over the limit is 23; an image over the byte or pixel cap keeps
    the catalogue's number."""
    if exc.code is ErrorCode.IMAGE_TOO_LARGE and "request body" in exc.message:
        return BODY_TOO_LARGE
    return _CODES.get(exc.code, exc.numeric_code)


def youtu_score(confidence: float) -> float:
    """The one place a facepipe confidence (0-100) becomes a YouTu confidence/similarity: the
    calibrated Tencent scale, which facepipe's confidence already follows."""
    return round(float(tencent_score(confidence)), 2)


def answer(data: dict[str, Any]) -> dict[str, Any]:
    return {"code": 0, "message": "OK", "data": {"session_id": "", **data}}


_STATUS = {ErrorCode.RATE_LIMITED: 429, ErrorCode.PERMISSION_DENIED: 403}


def error_response(_: Request, exc: FacepipeError) -> Response:
    status = _STATUS.get(exc.code, 200)
    return JSONResponse(
        {"code": youtu_code(exc), "message": exc.message, "data": {"session_id": ""}},
        status_code=status,
    )


def _refuse(code: int, message: str, status: int = 401) -> Refused:
    body = {"code": code, "message": message, "data": {"session_id": ""}}
    return Refused(JSONResponse(body, status_code=status))


# --- the signature -------------------------------------------------------------------------------


def sign(
    appid: str, bucket: str, secret_id: str, secret_key: str, expires: int, now: int, rand: int
) -> str:
    """A YouTu multi-use signature (what the SDK's ``Auth.get_sign`` makes)."""
    text = f"a={appid}&b={bucket}&k={secret_id}&e={expires}&t={now}&r={rand}&f="
    mac = hmac.new(secret_key.encode(), text.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac + text.encode()).decode()


def parse_signature(header: str) -> tuple[bytes, bytes, dict[str, str]]:
    """(mac, signed text, its fields) of an Authorization header; raises ``Refused``."""
    try:
        raw = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _refuse(SIGNATURE_MALFORMED, "the signature is not base64") from exc
    mac, text = raw[:20], raw[20:]
    try:
        fields = dict(parse_qsl(text.decode("ascii"), keep_blank_values=True, strict_parsing=True))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _refuse(SIGNATURE_MALFORMED, "the signed text is malformed") from exc
    if len(mac) != 20 or not {"a", "k", "e", "t"} <= set(fields):
        raise _refuse(SIGNATURE_MALFORMED, "the signature lacks a, k, e or t")
    return mac, text, fields


async def youtu_caller(request: Request, state: StateDep) -> Caller:
    """Check the YouTu signature (and the key's rate); ANONYMOUS when auth is off."""
    if not state.settings.api_auth:
        return ANONYMOUS
    header = request.headers.get("authorization", "")
    if not header.strip():
        raise _refuse(SIGNATURE_EMPTY, "the Authorization signature is empty")
    mac, text, fields = parse_signature(header)
    ring = keyring(state)
    found = await state.blocking(lambda: ring.signing_secret(fields["k"]))
    if found is None:
        raise _refuse(SECRET_ID_UNKNOWN, "SecretId does not exist (or was revoked)")
    key, secret = found
    expected = hmac.new(secret.encode(), text, hashlib.sha1).digest()
    if not hmac.compare_digest(mac, expected):
        raise _refuse(SIGNATURE_INVALID, "signature check failed")
    if fields["a"] != key.appid:
        raise _refuse(APPID_SECRET_ID_MISMATCH, "the APPID does not belong to the SecretId")
    try:
        expires, signed_at = int(fields["e"]), int(fields["t"])
    except ValueError as exc:
        raise _refuse(SIGNATURE_MALFORMED, "e and t must be integers") from exc
    now = int(time.time())
    if expires <= now:
        raise _refuse(SIGNATURE_EXPIRED, "the signature has expired")
    if signed_at > now + SIGNATURE_MAX_AGE_S:
        raise _refuse(SIGNATURE_INVALID, "the signature's time is in the future")
    caller = Caller(key)
    if not await state.blocking(lambda: ring.allow(caller)):
        raise _refuse(TOO_FREQUENT, "too many requests for this key", 429)
    return caller


CallerDep = Annotated[Caller, Depends(youtu_caller)]
_REFUSALS = {
    status: {"model": va.YoutuError, "description": text}
    for status, text in (
        (401, "A missing, malformed, expired or wrong signature."),
        (403, "The key is limited to other groups or to read-only calls."),
        (429, "Too many calls for this key."),
    )
}
router = APIRouter(prefix="/face", tags=["youtu"], responses=_REFUSALS)  # type: ignore[arg-type]


# --- request fields ------------------------------------------------------------------------------


class YoutuRequest:
    """The fields of one YouTu request, however the SDK spelled them."""

    def __init__(self, payload: Payload, caller: Caller) -> None:
        self.payload = payload
        self.caller = caller
        appid = self.text("appid")
        if caller.key is not None and appid is not None and appid != caller.key.appid:
            raise FacepipeError(
                ErrorCode.ILLEGAL_PARAMETER, "appid does not match the signature's APPID"
            )

    def text(self, name: str) -> str | None:
        """A text field: a JSON / form value, or a small file part (the SDK's multipart)."""
        value = self.payload.fields.get(name)
        if value is None:
            parts = self.payload.files.get(name)
            if not parts or len(parts[0].data) > _TEXT_PART_MAX:
                return None
            try:
                return parts[0].data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"{name} is not text") from exc
        if isinstance(value, list | dict):
            raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"{name} must be a single value")
        return str(value)

    def required(self, name: str) -> str:
        value = self.text(name)
        if value is None or not value.strip():
            raise FacepipeError(ErrorCode.EMPTY_PARAMETER, f"{name} is required")
        return value

    def text_list(self, name: str) -> list[str]:
        """``name`` as a JSON list or one value, or multipart ``name[0]``, ``name[1]``..."""
        value = self.payload.fields.get(name)
        if isinstance(value, list):
            return [self._str(v, name) for v in value]
        if value is not None or self.payload.files.get(name):
            single = self.text(name)
            return [single] if single is not None else []
        indexed: list[tuple[int, str]] = []
        for key in (*self.payload.fields, *self.payload.files):
            match = _INDEXED.match(key)
            if match and match["name"] == name:
                indexed.append((int(match["index"]), self.required(key)))
        return [v for _, v in sorted(indexed)]

    @staticmethod
    def _str(value: Any, name: str) -> str:
        if not isinstance(value, str | int):
            raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"{name} must hold strings")
        return str(value)

    def image(self, settings: Any, suffix: str = "") -> ImageSource:
        """The one image: ``url<suffix>`` (preferred when both are given, as the reference
        says), else file or base64 ``image<suffix>``."""
        url = self.text(f"url{suffix}")
        if url is not None and url.strip():
            return caller_location(url, settings)
        parts = self.payload.files.get(f"image{suffix}")
        if parts:
            return parts[0]
        b64 = self.payload.fields.get(f"image{suffix}")
        if isinstance(b64, str) and b64:
            return inline_source(b64)
        raise FacepipeError(
            ErrorCode.EMPTY_PARAMETER, f"no image: give url{suffix} or image{suffix}"
        )

    def images(self, settings: Any) -> list[ImageSource]:
        """Every image of addface: ``urls``, else files ``images[N]`` (or base64 ``images``)."""
        urls = self.text_list("urls")
        if urls:
            return [caller_location(u, settings) for u in urls]
        out: list[tuple[int, ImageSource]] = []
        for key, parts in self.payload.files.items():
            match = _INDEXED.match(key)
            if match and match["name"] == "images" and parts:
                out.append((int(match["index"]), parts[0]))
        for key, value in self.payload.fields.items():
            match = _INDEXED.match(key)
            if match and match["name"] == "images" and isinstance(value, str):
                out.append((int(match["index"]), inline_source(value)))
        listed = self.payload.fields.get("images")
        if isinstance(listed, list):
            out.extend((i, inline_source(self._str(v, "images"))) for i, v in enumerate(listed))
        if not out:
            raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "no image: give urls or images[N]")
        return [src for _, src in sorted(out, key=lambda pair: pair[0])]


def _request(payload: PayloadDep, caller: CallerDep) -> YoutuRequest:
    return YoutuRequest(payload, caller)


RequestDep = Annotated[YoutuRequest, Depends(_request)]


def needs(rule: Needs) -> list[Any]:
    """A route's scope check: what its fields name, read as the SDK spelled them."""

    async def check(state: StateDep, req: RequestDep) -> None:
        await enforce(state, req.caller.scope, rule, req.text_list)

    return [Depends(check)]


_PERSON = Needs(persons=("person_id",))
_CHANGE_PERSON = Needs(write=True, persons=("person_id",))


# --- answers -------------------------------------------------------------------------------------


def _box(box: Sequence[float]) -> dict[str, Any]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return {"x": round(x1), "y": round(y1), "width": round(x2 - x1, 1), "height": round(y2 - y1, 1)}


def face_item(face: Face, face_id: str) -> dict[str, Any]:
    """A detect FaceItem: box and pose; age and gender only when an attribute model gave them
    (expression, glass and beauty have no model in facepipe and are left out)."""
    item: dict[str, Any] = {"face_id": face_id, **_box(face.box)}
    item |= {
        "pitch": round(face.pose.pitch),
        "yaw": round(face.pose.yaw),
        "roll": round(face.pose.roll),
    }
    # age, and gender on 0 (female) .. 100 (male) from P(male): pipeline/attributes_vendor.py
    item |= youtu_attributes(face.attributes)
    return item


def face_info_item(info: FaceInfo) -> dict[str, Any]:
    return {"face_id": info.face_id, **_box(info.box)}


# --- calls ---------------------------------------------------------------------------------------


@router.post("/detect", **answers(va.YoutuAnswer[va.YoutuDetect]), dependencies=needs(Needs()))
async def detect(state: StateDep, req: RequestDep) -> dict[str, Any]:
    """Faces of one image (``mode`` 0: all, 1: the largest)."""
    mode_text = (req.text("mode") or "0").strip()
    if mode_text not in ("0", "1"):
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, "mode must be 0 or 1")
    fetched = await state.fetch(req.image(state.settings))

    def run() -> dict[str, Any]:
        mode = DetectMode.LARGEST if mode_text == "1" else DetectMode.ALL
        analysis = state.engine.analyze([fetched.decode(state.settings)], mode=mode, embed=False)[0]
        if not analysis.faces:
            raise FacepipeError(ErrorCode.NO_FACE, source=analysis.source)
        # A detected face is named by its image's content hash and its rank in the image.
        return answer(
            {
                "image_width": analysis.width,
                "image_height": analysis.height,
                "face": [
                    face_item(f, f"{analysis.content_sha256[:16]}-{f.index}")
                    for f in analysis.faces
                ],
            }
        )

    return await state.with_model(run)


@router.post(
    "/identify",
    **answers(va.YoutuAnswer[va.YoutuIdentify]),
    dependencies=needs(Needs(groups=("group_ids", "group_id"))),
)
async def identify(state: StateDep, req: RequestDep) -> dict[str, Any]:
    """Top-5 persons of ``group_id`` / ``group_ids`` for the image's largest face."""
    groups = req.text_list("group_ids") or [req.required("group_id")]
    fetched = await state.fetch(req.image(state.settings))

    def run() -> dict[str, Any]:
        result = state.library.identify(fetched.decode(state.settings), groups, TOP_N)
        return answer(
            {
                "candidates": [
                    {
                        "person_id": c.person_id,
                        "face_id": c.face_id,
                        "confidence": youtu_score(c.confidence),
                        "tag": c.tag,
                    }
                    for c in result.candidates
                ]
            }
        )

    return await state.with_model(run)


@router.post("/verify", **answers(va.YoutuAnswer[va.YoutuVerify]), dependencies=needs(_PERSON))
async def verify(state: StateDep, req: RequestDep) -> dict[str, Any]:
    """Is the image's largest face ``person_id``?"""
    person_id = req.required("person_id")
    fetched = await state.fetch(req.image(state.settings))

    def run() -> dict[str, Any]:
        result = state.library.verify(fetched.decode(state.settings), person_id)
        return answer({"confidence": youtu_score(result.confidence), "ismatch": result.is_match})

    return await state.with_model(run)


@router.post("/compare", **answers(va.YoutuAnswer[va.YoutuCompare]), dependencies=needs(Needs()))
async def compare(state: StateDep, req: RequestDep) -> dict[str, Any]:
    """Similarity of the largest faces of ``imageA``/``urlA`` and ``imageB``/``urlB``."""
    sources = [req.image(state.settings, "A"), req.image(state.settings, "B")]
    fa, fb = await state.fetch_all(sources)

    def run() -> dict[str, Any]:
        result = state.library.compare(fa.decode(state.settings), fb.decode(state.settings))
        return answer({"similarity": youtu_score(result.similarity)})

    return await state.with_model(run)


@router.post(
    "/newperson",
    **answers(va.YoutuAnswer[va.YoutuNewPerson]),
    dependencies=needs(Needs(write=True, groups=("group_ids",))),
)
async def newperson(state: StateDep, req: RequestDep) -> dict[str, Any]:
    """Create a person in ``group_ids`` with the largest face of the image."""
    person_id = req.required("person_id")
    groups = req.text_list("group_ids")
    if not groups:
        raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "group_ids is required")
    name, tag = req.text("person_name"), req.text("tag")
    fetched = await state.fetch(req.image(state.settings))

    def run() -> dict[str, Any]:
        person, added = create_person_with_face(
            state.library, person_id, groups, name, tag, fetched.decode_or_error(state.settings)
        )
        assert added is not None
        return answer(
            {
                "person_id": person.person_id,
                "suc_group": len(person.group_ids),
                "suc_face": added.suc_face_num,
                "face_id": added.suc_face_ids[0],
                "group_ids": list(person.group_ids),
            }
        )

    return await state.with_model(run)


@router.post(
    "/delperson", **answers(va.YoutuAnswer[va.YoutuDelPerson]), dependencies=needs(_CHANGE_PERSON)
)
async def delperson(state: StateDep, req: RequestDep) -> dict[str, Any]:
    person_id = req.required("person_id")

    def run() -> dict[str, Any]:
        state.library.delete_person(person_id)
        return answer({"person_id": person_id, "deleted": 1})

    return await state.blocking(run)


@router.post(
    "/addface", **answers(va.YoutuAnswer[va.YoutuAddFace]), dependencies=needs(_CHANGE_PERSON)
)
async def addface(state: StateDep, req: RequestDep) -> dict[str, Any]:
    """Add the largest face of each image to a person: one ``ret_codes`` entry per image.
    (The SDK's per-face ``tag`` is accepted and not stored: faces carry no tag in facepipe.)"""
    person_id = req.required("person_id")
    sources = req.images(state.settings)
    fetched = await state.fetch_all(sources)

    def run() -> dict[str, Any]:
        result = state.library.add_faces(
            person_id, [f.decode_or_error(state.settings) for f in fetched]
        )
        return answer(
            {
                "added": result.suc_face_num,
                "face_ids": list(result.suc_face_ids),
                "ret_codes": list(result.ret_codes),
            }
        )

    return await state.with_model(run)


@router.post(
    "/delface", **answers(va.YoutuAnswer[va.YoutuDelFace]), dependencies=needs(_CHANGE_PERSON)
)
async def delface(state: StateDep, req: RequestDep) -> dict[str, Any]:
    person_id = req.required("person_id")
    face_ids = req.text_list("face_ids")
    if not face_ids:
        raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "face_ids is required")

    def run() -> dict[str, Any]:
        deleted = state.library.delete_faces(person_id, face_ids)
        return answer({"deleted": len(deleted), "face_ids": deleted})

    return await state.blocking(run)


@router.post(
    "/setinfo", **answers(va.YoutuAnswer[va.YoutuPersonId]), dependencies=needs(_CHANGE_PERSON)
)
async def setinfo(state: StateDep, req: RequestDep) -> dict[str, Any]:
    person_id = req.required("person_id")
    name, tag = req.text("person_name"), req.text("tag")

    def run() -> dict[str, Any]:
        state.library.set_person_info(person_id, name, tag)
        return answer({"person_id": person_id})

    return await state.blocking(run)


@router.post("/getinfo", **answers(va.YoutuAnswer[va.YoutuGetInfo]), dependencies=needs(_PERSON))
async def getinfo(state: StateDep, req: RequestDep) -> dict[str, Any]:
    person_id = req.required("person_id")

    def run() -> dict[str, Any]:
        info = state.library.get_person(person_id)
        return answer(
            {
                "person_id": info.person_id,
                "person_name": info.name,
                "tag": info.tag,
                "face_ids": list(info.face_ids),
                "group_ids": list(info.group_ids),
            }
        )

    return await state.blocking(run)


def _all_pages(page_of: Any) -> list[Any]:
    items: list[Any] = []
    while True:
        page = page_of(len(items))
        items.extend(page.items)
        if not page.items or len(items) >= page.total:
            return items


@router.post(
    "/getgroupids", **answers(va.YoutuAnswer[va.YoutuGroupIds]), dependencies=needs(Needs())
)
async def getgroupids(state: StateDep, req: RequestDep) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        scope = req.caller.scope
        groups = _all_pages(lambda offset: visible_groups(state.library, scope, offset, 1000))
        return answer({"group_ids": [g.group_id for g in groups]})

    return await state.blocking(run)


@router.post(
    "/getpersonids",
    **answers(va.YoutuAnswer[va.YoutuPersonIds]),
    dependencies=needs(Needs(groups=("group_id",))),
)
async def getpersonids(state: StateDep, req: RequestDep) -> dict[str, Any]:
    group_id = req.required("group_id")

    def run() -> dict[str, Any]:
        persons = _all_pages(lambda offset: state.library.list_persons(group_id, offset, 1000))
        return answer({"person_ids": [p.person_id for p in persons]})

    return await state.blocking(run)


@router.post("/getfaceids", **answers(va.YoutuAnswer[va.YoutuFaceIds]), dependencies=needs(_PERSON))
async def getfaceids(state: StateDep, req: RequestDep) -> dict[str, Any]:
    person_id = req.required("person_id")

    def run() -> dict[str, Any]:
        return answer({"face_ids": state.library.list_faces(person_id)})

    return await state.blocking(run)


@router.post(
    "/getfaceinfo",
    **answers(va.YoutuAnswer[va.YoutuFaceInfo]),
    dependencies=needs(Needs(faces=("face_id",))),
)
async def getfaceinfo(state: StateDep, req: RequestDep) -> dict[str, Any]:
    face_id = req.required("face_id")

    def run() -> dict[str, Any]:
        return answer({"face_info": face_info_item(state.library.get_face(face_id))})

    return await state.blocking(run)
