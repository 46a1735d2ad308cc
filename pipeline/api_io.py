"""Request and response plumbing of the HTTP API: payloads (JSON or multipart), images in
requests, parameter models, and the mapping of catalogue errors to HTTP statuses.

Kept apart from :mod:`pipeline.api` (the routers) so the rules are plain functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.sources.location import (
    InlineLocation,
    Location,
    RemoteLocation,
    Trust,
    parse_location,
    require_remote,
)
from pipeline.types import DetectMode

# --- errors -> HTTP statuses -----------------------------------------------------------------

_STATUS: dict[ErrorCode, int] = {
    ErrorCode.IMAGE_TOO_LARGE: 413,
    ErrorCode.NO_FACE: 422,
    ErrorCode.FEATURE_FAILED: 422,
    ErrorCode.QUALITY_TOO_LOW: 422,
    ErrorCode.FACE_MATCH_BELOW_THRESHOLD: 422,
    ErrorCode.NEAR_DUPLICATE_FACE: 422,
    ErrorCode.MODEL_MISMATCH: 422,
    ErrorCode.PERSON_NOT_FOUND: 404,
    ErrorCode.FACE_NOT_FOUND: 404,
    ErrorCode.GROUP_NOT_FOUND: 404,
    ErrorCode.GROUP_LIST_NOT_FOUND: 404,
    ErrorCode.JOB_NOT_FOUND: 404,
    ErrorCode.INDEX_NOT_FOUND: 404,
    ErrorCode.PERSON_EXISTS: 409,
    ErrorCode.GROUP_EXISTS: 409,
    ErrorCode.JOB_STATE: 409,
    ErrorCode.TOO_MANY_FACES: 409,
    ErrorCode.TOO_MANY_PERSONS: 409,
    ErrorCode.TOO_MANY_GROUPS: 409,
    ErrorCode.DOWNLOAD_FAILED: 502,
    ErrorCode.STORAGE_FAILED: 503,
    ErrorCode.DATABASE_UNAVAILABLE: 503,
    ErrorCode.BROKER_UNAVAILABLE: 503,
    ErrorCode.OBJECT_STORE_UNAVAILABLE: 503,
    ErrorCode.SERVICE_BUSY: 503,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.MODEL_INVALID: 500,
    ErrorCode.INTERNAL: 500,
}


def http_status(code: ErrorCode) -> int:
    """The HTTP status of an error: 4xx for the caller's input, 5xx for the service's state.

    Anything not listed is a bad request (400): bad images, illegal or missing parameters.
    """
    return _STATUS.get(code, 400)


def error_body(exc: FacepipeError) -> dict[str, Any]:
    """``{"error": {"code": int, "name": str, "message": str}}``."""
    return {"error": exc.to_dict()}


# --- payloads ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """A file part of a multipart request."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class Payload:
    """A request body: its fields (JSON object, or form fields) and uploaded files by name."""

    fields: dict[str, Any] = field(default_factory=dict)
    files: dict[str, list[Upload]] = field(default_factory=dict)


# --- images in requests ----------------------------------------------------------------------


def caller_location(url: str, settings: Settings) -> RemoteLocation:
    """A caller-given image URL or job source, parsed once: an ``http(s)://`` or ``s3://``
    location of an allowed scheme, never a local path (URL_FORBIDDEN otherwise)."""
    schemes = frozenset(s.lower() for s in settings.api_url_schemes)
    location = parse_location(url, Trust.CALLER, remote_schemes=schemes, inline=False)
    return require_remote(location, "a URL")


def check_url(url: str, settings: Settings) -> str:
    """:func:`caller_location` as its canonical string (job params store strings)."""
    return str(caller_location(url, settings))


def inline_source(b64: str) -> InlineLocation:
    """A base64 string (or a ``data:image/...;base64,`` URI) as an inline image."""
    return InlineLocation(b64 if b64[:5].lower() == "data:" else f"base64:{b64}")


def image_source(payload: Payload, settings: Settings, suffix: str = "") -> Location | Upload:
    """The one image of a call: multipart file ``image<suffix>``, base64 ``image<suffix>`` or
    ``url<suffix>``. EMPTY_PARAMETER when none is given."""
    name, url_name = f"image{suffix}", f"url{suffix}"
    if payload.files.get(name):
        return payload.files[name][0]
    value = payload.fields.get(name)
    if value is not None:
        if not isinstance(value, str):
            raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"{name} must be a base64 string")
        return inline_source(value)
    url = payload.fields.get(url_name)
    if url is not None:
        if not isinstance(url, str) or not url.strip():
            raise FacepipeError(ErrorCode.EMPTY_PARAMETER, f"{url_name} is empty")
        return caller_location(url, settings)
    raise FacepipeError(
        ErrorCode.EMPTY_PARAMETER,
        f"no image: give {name} (base64), {url_name}, or a multipart file named {name}",
    )


def image_sources(payload: Payload, settings: Settings) -> list[Location | Upload]:
    """Every image of a multi-image call (add faces), in order: files ``image``/``images``,
    base64 ``image``/``images``, then ``url``/``urls`` (uploads as they are, the others as
    pipeline.sources sources)."""
    out: list[Location | Upload] = []
    for name in ("image", "images"):
        out.extend(payload.files.get(name, []))
    for name in ("image", "images"):
        out.extend(inline_source(_text(v, name)) for v in _as_list(payload.fields.get(name)))
    for name in ("url", "urls"):
        out.extend(
            caller_location(_text(v, name), settings) for v in _as_list(payload.fields.get(name))
        )
    if not out:
        raise FacepipeError(
            ErrorCode.EMPTY_PARAMETER,
            "no image: give images (base64 list), urls, or multipart files named image",
        )
    return out


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"{name} must hold strings")
    return value


# --- parameter models --------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], fields: dict[str, Any]) -> M:
    """Validate fields into ``model``; a missing field is EMPTY_PARAMETER, a bad one
    ILLEGAL_PARAMETER, each with a message naming the field."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        code = (
            ErrorCode.EMPTY_PARAMETER
            if first.get("type") == "missing"
            else (ErrorCode.ILLEGAL_PARAMETER)
        )
        raise FacepipeError(code, f"{where}: {first.get('msg')}") from exc


def _split_list(value: Any) -> Any:
    """Accept a list, or one comma-separated string (handy in forms and query strings)."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class _Params(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class DetectParams(_Params):
    mode: DetectMode = DetectMode.ALL
    """``all`` (or 0) every face; ``largest`` (or 1) the largest only (reference ``mode``)."""
    max_faces: int | None = Field(default=None, ge=1, le=1000)
    rotate: bool | None = None
    embed: bool = False
    attributes: bool = True
    """Gender and age per face (``attributes: null`` when the engine has no attribute model)."""

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Any:
        if value in (0, "0"):
            return DetectMode.ALL
        if value in (1, "1"):
            return DetectMode.LARGEST
        return value


class _GroupsParams(_Params):
    group_ids: list[str] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _single_group(cls, data: Any) -> Any:
        if isinstance(data, dict) and "group_ids" not in data and "group_id" in data:
            return {**data, "group_ids": data["group_id"]}
        return data

    @field_validator("group_ids", mode="before")
    @classmethod
    def _groups(cls, value: Any) -> Any:
        return _split_list(value)


class VerifyParams(_Params):
    person_id: str


class IdentifyParams(_GroupsParams):
    top_n: int | None = Field(default=None, ge=1)
    all_faces: bool = False


class PersonCreate(_GroupsParams):
    person_id: str
    name: str | None = None
    tag: str | None = None
    quality_control: int = 0
    face_match_threshold: float | None = None


class PersonUpdate(_Params):
    name: str | None = None
    tag: str | None = None


class GroupsBody(_GroupsParams):
    pass


class AddFacesParams(_Params):
    quality_control: int = 0
    face_match_threshold: float | None = None


class DeleteFacesBody(_Params):
    face_ids: list[str] = Field(min_length=1)

    @field_validator("face_ids", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        value = _split_list(value)
        return [str(v) for v in value] if isinstance(value, list) else value


class EnrollJob(_GroupsParams):
    source: str
    manifest: str | None = None
    person_id: str | None = None
    idempotency_key: str | None = None


class ReidentifyJob(_Params):
    source: str | None = None
    since: datetime | None = None
    group_ids: list[str] | None = None
    export: str | None = None
    top_n: int | None = Field(default=None, ge=1)
    idempotency_key: str | None = None
    match_threshold: float | None = None
    """A face counts as matched at or above this confidence (Tencent 3.0 scale)."""
    false_match_rate: float | None = None
    """...or: the share of strangers' faces accepted to be matched (threshold derived)."""

    @field_validator("group_ids", mode="before")
    @classmethod
    def _groups(cls, value: Any) -> Any:
        return _split_list(value)


# --- OpenAPI descriptions of the hand-parsed bodies ---------------------------------------------


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """Replace ``{"$ref": "#/$defs/X"}`` by X's schema (the routes' schemas stand alone)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.rsplit("/", 1)[1]], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def openapi_body(
    model: type[BaseModel] | None, images: tuple[str, ...] = ("image",), *, many: bool = False
) -> dict[str, Any]:
    """``openapi_extra`` documenting a route's body: JSON (base64 ``image``/``url``) or
    multipart (file parts), with the parameter model's fields."""
    schema = model.model_json_schema() if model is not None else {"properties": {}}
    fields = _inline_refs(schema, schema.get("$defs", {})).get("properties", {})
    required = list(schema.get("required", []))
    as_json: dict[str, Any] = dict(fields)
    as_form: dict[str, Any] = dict(fields)
    for name in images:
        suffix = name[len("image") :]
        b64 = {"type": "string", "description": "the image, base64 (or a data: URI)"}
        url = {"type": "string", "description": "http(s):// or s3:// URL of the image"}
        if many:
            as_json[f"{name}s"] = {"type": "array", "items": b64}
            as_json["urls"] = {"type": "array", "items": url}
        else:
            as_json[name] = b64
            as_json[f"url{suffix}"] = url
        upload = {"type": "string", "format": "binary"}
        as_form[name] = {"type": "array", "items": upload} if many else upload
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "object", "properties": as_json, "required": required}
                },
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": as_form, "required": required}
                },
            },
        }
    }
