"""Baidu Face v2 (``/rest/2.0/face/v2/*``) and its OAuth token (``/oauth/2.0/token``), as
``baidu-aip`` 2.2.2.0's ``AipFace`` sends them.

Form-urlencoded bodies with base64 images; ``access_token`` in the query string (issued by the
client-credentials grant of ``/oauth/2.0/token`` for a key's API Key / Secret Key, stored hashed
with its expiry). Every answer carries ``log_id``; errors are ``error_code`` / ``error_msg``
with Baidu's numbers. Translation only: the same library / engine calls as ``/v1``.

Where the SDK and the reference disagree, the SDK wins and both are accepted: identify, verify
and user/add take ``image`` (the SDK) or ``images`` (the reference); the token endpoint takes
GET (the SDK) or POST.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from pipeline import similarity
from pipeline.api import vendor_answers as va
from pipeline.api.answers import answers
from pipeline.api.auth import ANONYMOUS, Caller, Refused
from pipeline.api.calls import create_person_with_face, detect_faces, raise_first_error
from pipeline.api.deps import PayloadDep, StateDep, keyring
from pipeline.api.scope import Needs, enforce, split_values, visible_groups
from pipeline.api.state import ApiState
from pipeline.api_io import Payload, inline_source
from pipeline.attributes_vendor import baidu_attributes, baidu_qualities
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.sources.location import Location
from pipeline.types import Face

TOKEN_SCOPE = "public brain_all_scope vis-faceverify_faceverify"
"""The scopes a token reports; ``brain_all_scope`` is what makes the SDK use tokens."""

_CODES: dict[ErrorCode, int] = {
    ErrorCode.NO_FACE: 216402,
    ErrorCode.EMPTY_IMAGE: 216200,
    ErrorCode.DECODE_FAILED: 216201,
    ErrorCode.ILLEGAL_FORMAT: 216201,
    ErrorCode.IMAGE_TOO_LARGE: 216202,
    ErrorCode.IMAGE_TOO_SMALL: 216202,
    ErrorCode.EMPTY_PARAMETER: 216101,
    ErrorCode.PARAMETER_TOO_LONG: 216103,
    ErrorCode.PERSON_NOT_FOUND: 216611,
    ErrorCode.GROUP_NOT_FOUND: 216618,
    ErrorCode.GROUP_LIST_NOT_FOUND: 216618,
    ErrorCode.NEAR_DUPLICATE_FACE: 216616,
    ErrorCode.FEATURE_FAILED: 216615,
    ErrorCode.DATABASE_UNAVAILABLE: 216300,
    ErrorCode.STORAGE_FAILED: 216300,
    ErrorCode.RATE_LIMITED: 18,
    ErrorCode.SERVICE_BUSY: 18,
    ErrorCode.INTERNAL: 216401,
    ErrorCode.PERMISSION_DENIED: 6,  # Baidu's "No permission to access data"
}
INVALID_TOKEN_PARAM = 100
TOKEN_INVALID = 110
TOKEN_EXPIRED = 111
QPS_LIMIT = 18


def baidu_code(exc: FacepipeError) -> int:
    """Baidu's number for a catalogue error (anything else about the request: 216100)."""
    if exc.code in _CODES:
        return _CODES[exc.code]
    return 216500 if exc.retryable else 216100


def baidu_score(confidence: float) -> float:
    """The one place a facepipe confidence (0-100) becomes a Baidu score: Baidu's scale, on
    which 80 is "same person" (pipeline.similarity.baidu_score)."""
    return round(float(similarity.baidu_score(confidence)), 2)


def log_id() -> int:
    return secrets.randbits(52)


def error_body(code: int, message: str) -> dict[str, Any]:
    return {"error_code": code, "error_msg": message, "log_id": log_id()}


def error_response(_: Request, exc: FacepipeError) -> Response:
    return JSONResponse(error_body(baidu_code(exc), exc.message))


def answer(**fields: Any) -> dict[str, Any]:
    return {"log_id": log_id(), **fields}


# --- tokens ------------------------------------------------------------------------------------


token_router = APIRouter(tags=["baidu"])


async def token(request: Request, state: StateDep, payload: PayloadDep) -> JSONResponse:
    """Client-credentials grant: ``client_id`` = key id (API Key), ``client_secret`` = its
    secret (Secret Key); the token expires after ``api_access_token_ttl_s``."""
    params = {
        **dict(request.query_params),
        **{k: v for k, v in payload.fields.items() if isinstance(v, str)},
    }
    if params.get("grant_type") != "client_credentials":
        return JSONResponse(
            {"error": "unsupported_grant_type", "error_description": "use client_credentials"},
            status_code=400,
        )
    client_id, client_secret = params.get("client_id", ""), params.get("client_secret", "")
    ring = keyring(state)

    def issue() -> tuple[str, int] | None:
        caller = ring.bearer(client_secret) if client_secret else None
        if caller is None or caller.key is None or caller.key.key_id != client_id:
            return None
        return ring.issue_token(client_id, timedelta(seconds=state.settings.api_access_token_ttl_s))

    issued = await state.blocking(issue)
    if issued is None:
        return JSONResponse(
            {"error": "invalid_client", "error_description": "unknown client id or secret"},
            status_code=401,
        )
    access_token, expires_in = issued
    return JSONResponse(
        {
            "access_token": access_token,
            "expires_in": expires_in,
            "scope": TOKEN_SCOPE,
            "session_key": "",
            "session_secret": "",
            "refresh_token": "",
        }
    )


for _method in ("GET", "POST"):
    token_router.add_api_route(
        "/oauth/2.0/token",
        token,
        methods=[_method],
        operation_id=f"baidu_token_{_method.lower()}",
        responses={
            200: {"model": va.BaiduToken, "description": "A new access token."},
            400: {"model": va.OAuthError, "description": "Not the client-credentials grant."},
            401: {"model": va.OAuthError, "description": "Unknown client id or secret."},
        },
    )


async def baidu_caller(request: Request, state: StateDep) -> Caller:
    """The ``access_token`` of the query string: issued, unexpired, its key active."""
    if not state.settings.api_auth:
        return ANONYMOUS
    given = request.query_params.get("access_token", "")
    if not given:
        raise Refused(JSONResponse(error_body(INVALID_TOKEN_PARAM, "Invalid parameter")))
    ring = keyring(state)
    caller = await state.blocking(lambda: ring.token(given))
    if caller is None:
        code = TOKEN_INVALID
        raise Refused(JSONResponse(error_body(code, "Access token invalid or no longer valid")))
    if not await state.blocking(lambda: ring.allow(caller)):
        raise Refused(JSONResponse(error_body(QPS_LIMIT, "Open api qps request limit reached")))
    return caller


CallerDep = Annotated[Caller, Depends(baidu_caller)]
router = APIRouter(
    prefix="/rest/2.0/face/v2",
    tags=["baidu"],
    dependencies=[Depends(baidu_caller)],
    responses={"default": {"model": va.BaiduError, "description": "Errors (HTTP 200 too)."}},
)


# --- request fields -------------------------------------------------------------------------------


class Form:
    """A Baidu form body's fields, and who calls."""

    def __init__(self, payload: Payload, caller: Caller = ANONYMOUS) -> None:
        self.fields = payload.fields
        self.caller = caller

    def ids(self, name: str) -> list[str]:
        """A field's ids (comma-separated), none when absent (for the scope checks)."""
        value = self.fields.get(name)
        return split_values(value) if isinstance(value, str) else []

    def text(self, name: str) -> str | None:
        value = self.fields.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"{name} must be a string")
        return value

    def required(self, name: str) -> str:
        value = self.text(name)
        if not value:
            raise FacepipeError(ErrorCode.EMPTY_PARAMETER, f"{name} is required")
        return value

    def listed(self, name: str) -> list[str]:
        """A comma-separated field (``group_id=a,b``)."""
        return [v.strip() for v in self.required(name).split(",") if v.strip()]

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.text(name)
        if value is None or value == "":
            return default
        if not value.isdigit() or not low <= int(value) <= high:
            raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"{name} must be in [{low}, {high}]")
        return int(value)

    def image(self) -> Location:
        """The one base64 image: ``image`` (the SDK) or ``images`` (the reference)."""
        value = self.text("image") or self.text("images")
        if not value:
            raise FacepipeError(ErrorCode.EMPTY_IMAGE, "image is empty")
        return inline_source(value)

    def images(self) -> list[Location]:
        """Several base64 images, comma-separated in ``images`` (or one in ``image``)."""
        value = self.text("images") or self.text("image")
        if not value:
            raise FacepipeError(ErrorCode.EMPTY_IMAGE, "images is empty")
        return [inline_source(v.strip()) for v in value.split(",")]


def _form(payload: PayloadDep, caller: CallerDep) -> Form:
    return Form(payload, caller)


FormDep = Annotated[Form, Depends(_form)]


def needs(rule: Needs) -> list[Any]:
    """A route's scope check: what its form fields name."""

    async def check(state: StateDep, form: FormDep) -> None:
        await enforce(state, form.caller.scope, rule, form.ids)

    return [Depends(check)]


_USER = ("uid",)
_GROUPS = ("group_id",)
_CHANGE_USER = Needs(write=True, groups=_GROUPS, persons=_USER)


# --- calls ----------------------------------------------------------------------------------------


def face_result(face: Face, fields: set[str]) -> dict[str, Any]:
    """A detect result: location, probability and angles; age / gender only when asked for
    and an attribute model gave them; the 4 landmarks (eyes, nose tip, mouth centre) when
    asked; qualities (blur, illumination, completeness) when asked. Fields with no model behind
    them (beauty, expression, glasses, race, faceshape, occlusion, human/cartoon type) are left
    out (pipeline/attributes_vendor.py)."""
    x1, y1, x2, y2 = (float(v) for v in face.box)
    out: dict[str, Any] = {
        "location": {
            "left": round(x1),
            "top": round(y1),
            "width": round(x2 - x1),
            "height": round(y2 - y1),
        },
        "face_probability": round(float(face.score), 4),
        "rotation_angle": round(face.pose.roll),
        "yaw": round(face.pose.yaw, 2),
        "pitch": round(face.pose.pitch, 2),
        "roll": round(face.pose.roll, 2),
    }
    attrs = baidu_attributes(face.attributes)
    if "age" in fields and "age" in attrs:
        out["age"] = attrs["age"]
    if "gender" in fields and "gender" in attrs:
        out["gender"] = attrs["gender"]
        if "gender_probability" in attrs:
            out["gender_probability"] = attrs["gender_probability"]
    if "qualities" in fields:
        out["qualities"] = baidu_qualities(face.quality)
    if "landmark" in fields:
        pts = [(float(x), float(y)) for x, y in face.landmarks]
        eye_l, eye_r, nose, mouth_l, mouth_r = pts[:5]
        mouth = ((mouth_l[0] + mouth_r[0]) / 2, (mouth_l[1] + mouth_r[1]) / 2)
        out["landmark"] = [{"x": round(x), "y": round(y)} for x, y in (eye_l, eye_r, nose, mouth)]
    return out


@router.post("/detect", **answers(va.BaiduAnswer), dependencies=needs(Needs()))
async def detect(state: StateDep, form: FormDep) -> dict[str, Any]:
    max_faces = form.integer("max_face_num", 1, 1, 100)
    fields = {f.strip() for f in (form.text("face_fields") or "").split(",") if f.strip()}
    source = form.image()
    fetched = await state.fetch(source)

    def run() -> dict[str, Any]:
        analysis = detect_faces(state.engine, fetched.decode(state.settings), max_faces)
        results = [face_result(f, fields) for f in analysis.faces]
        return answer(result_num=len(results), result=results)

    return await state.with_model(run)


@router.post("/match", **answers(va.BaiduAnswer), dependencies=needs(Needs()))
async def match(state: StateDep, form: FormDep) -> dict[str, Any]:
    """Every pair of the comma-separated images, scored."""
    sources = form.images()
    if len(sources) < 2:
        raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "match needs at least 2 images")
    fetched = await state.fetch_all(sources)

    def run() -> dict[str, Any]:
        decoded = [f.decode(state.settings) for f in fetched]
        pairs = []
        for i in range(len(decoded)):
            for j in range(i + 1, len(decoded)):
                result = state.library.compare(decoded[i], decoded[j])
                pairs.append({"index_i": i, "index_j": j, "score": baidu_score(result.similarity)})
        return answer(result_num=len(pairs), result=pairs)

    return await state.with_model(run)


@router.post("/identify", **answers(va.BaiduAnswer), dependencies=needs(Needs(groups=_GROUPS)))
async def identify(state: StateDep, form: FormDep) -> dict[str, Any]:
    groups = form.listed("group_id")
    top_n = form.integer("user_top_num", 1, 1, 5)
    source = form.image()
    fetched = await state.fetch(source)

    def run() -> dict[str, Any]:
        result = state.library.identify(fetched.decode(state.settings), groups, top_n)
        rows = []
        for c in result.candidates:
            in_groups = [g for g in state.library.get_person(c.person_id).group_ids if g in groups]
            rows.append(
                {
                    "group_id": in_groups[0] if in_groups else groups[0],
                    "uid": c.person_id,
                    "user_info": c.tag,
                    "scores": [baidu_score(c.confidence)],
                }
            )
        return answer(result_num=len(rows), result=rows)

    return await state.with_model(run)


@router.post(
    "/verify",
    **answers(va.BaiduAnswer),
    dependencies=needs(Needs(groups=_GROUPS, persons=_USER)),
)
async def verify(state: StateDep, form: FormDep) -> dict[str, Any]:
    uid, groups = form.required("uid"), form.listed("group_id")
    source = form.image()
    fetched = await state.fetch(source)

    def run() -> dict[str, Any]:
        person = state.library.get_person(uid)
        if not set(groups) & set(person.group_ids):
            raise FacepipeError(ErrorCode.PERSON_NOT_FOUND, f"user {uid!r} is not in {groups}")
        result = state.library.verify(fetched.decode(state.settings), uid)
        return answer(result_num=1, result=[baidu_score(result.confidence)])

    return await state.with_model(run)


async def _enrol(state: ApiState, form: Form, *, update: bool) -> dict[str, Any]:
    """user/add (append, or replace with action_type=replace) and user/update (replace; the
    user must exist unless action_type=replace). user_info is the person's tag."""
    uid = form.required("uid")
    user_info = form.text("user_info")
    groups = form.listed("group_id") if (form.text("group_id") or not update) else []
    replace = update or form.text("action_type") == "replace"
    creates = not update or form.text("action_type") == "replace"
    sources = form.images() if update else [form.image()]
    fetched = await state.fetch_all(sources)

    def run() -> dict[str, Any]:
        lib = state.library
        images = [f.decode_or_error(state.settings) for f in fetched]
        try:
            lib.get_person(uid)
        except FacepipeError as exc:
            if exc.code is not ErrorCode.PERSON_NOT_FOUND or not creates or not groups:
                raise
            create_person_with_face(lib, uid, groups, None, user_info, images[0])
            if len(images) > 1:
                raise_first_error(lib.add_faces(uid, images[1:]))
            return answer()
        method = lib.replace_faces if replace else lib.add_faces
        result = method(uid, images)
        if not result.suc_face_ids:
            raise_first_error(result)
        if groups:
            lib.add_person_to_groups(uid, groups)
        if user_info is not None:
            lib.set_person_info(uid, None, user_info)
        return answer()

    return await state.with_model(run)


@router.post("/faceset/user/add", **answers(va.BaiduAnswer), dependencies=needs(_CHANGE_USER))
async def user_add(state: StateDep, form: FormDep) -> dict[str, Any]:
    return await _enrol(state, form, update=False)


@router.post("/faceset/user/update", **answers(va.BaiduAnswer), dependencies=needs(_CHANGE_USER))
async def user_update(state: StateDep, form: FormDep) -> dict[str, Any]:
    return await _enrol(state, form, update=True)


@router.post("/faceset/user/delete", **answers(va.BaiduAnswer), dependencies=needs(_CHANGE_USER))
async def user_delete(state: StateDep, form: FormDep) -> dict[str, Any]:
    """Delete a user; with group_id only from those groups (deleted when none is left)."""
    uid = form.required("uid")
    groups = form.listed("group_id") if form.text("group_id") else [None]

    def run() -> dict[str, Any]:
        for group in groups:
            state.library.delete_person(uid, group)
        return answer()

    return await state.blocking(run)


@router.post(
    "/faceset/user/get",
    **answers(va.BaiduAnswer),
    dependencies=needs(Needs(persons=_USER)),
)
async def user_get(state: StateDep, form: FormDep) -> dict[str, Any]:
    uid = form.required("uid")
    person = await state.blocking(lambda: state.library.get_person(uid))
    row = {"uid": person.person_id, "user_info": person.tag, "groups": list(person.group_ids)}
    return answer(result_num=1, result=[row])


@router.post("/faceset/group/getlist", **answers(va.BaiduAnswer), dependencies=needs(Needs()))
async def group_getlist(state: StateDep, form: FormDep) -> dict[str, Any]:
    start, count = form.integer("start", 0, 0, 10**9), form.integer("end", 100, 1, 1000)
    scope = form.caller.scope
    page = await state.blocking(lambda: visible_groups(state.library, scope, start, count))
    ids = [g.group_id for g in page.items]
    return answer(result_num=len(ids), result=ids)


@router.post(
    "/faceset/group/getusers",
    **answers(va.BaiduAnswer),
    dependencies=needs(Needs(groups=_GROUPS)),
)
async def group_getusers(state: StateDep, form: FormDep) -> dict[str, Any]:
    group = form.required("group_id")
    start, count = form.integer("start", 0, 0, 10**9), form.integer("end", 100, 1, 1000)
    page = await state.blocking(lambda: state.library.list_persons(group, start, count))
    rows = [{"uid": p.person_id, "user_info": p.tag} for p in page.items]
    return answer(result_num=len(rows), result=rows)


@router.post(
    "/faceset/group/adduser",
    **answers(va.BaiduAnswer),
    dependencies=needs(Needs(write=True, groups=("group_id", "src_group_id"), persons=_USER)),
)
async def group_adduser(state: StateDep, form: FormDep) -> dict[str, Any]:
    """Copy a user of ``src_group_id`` into ``group_id`` (comma-separated)."""
    src, groups, uid = form.required("src_group_id"), form.listed("group_id"), form.required("uid")

    def run() -> dict[str, Any]:
        if src not in state.library.get_person(uid).group_ids:
            raise FacepipeError(ErrorCode.PERSON_NOT_FOUND, f"user {uid!r} is not in {src!r}")
        state.library.add_person_to_groups(uid, groups)
        return answer()

    return await state.blocking(run)


@router.post(
    "/faceset/group/deleteuser",
    **answers(va.BaiduAnswer),
    dependencies=needs(_CHANGE_USER),
)
async def group_deleteuser(state: StateDep, form: FormDep) -> dict[str, Any]:
    groups, uid = form.listed("group_id"), form.required("uid")

    def run() -> dict[str, Any]:
        for group in groups:
            state.library.delete_person(uid, group)
        return answer()

    return await state.blocking(run)
