"""The vendor protocols' answers as Pydantic models, for the OpenAPI document and (YouTu, Baidu)
FastAPI's check of each answer: the envelopes of ``../shared/reference/`` and, where a call's
answer is fixed, its fields.

* YouTu v2: ``{"code", "message", "data": {"session_id", ...}}``, one data model per call.
* Tencent IAI: HTTP 200 ``{"Response": {..., "RequestId"}}`` or ``{"Response": {"Error":
  {"Code", "Message"}, "RequestId"}}``; the fields between depend on the action (one route
  serves them all), so the document gives the envelope.
* Baidu Face v2: ``{"log_id", "result_num", "result"}`` or ``{"error_code", "error_msg",
  "log_id"}``; the OAuth token answer.

A field an answer carries only sometimes (a detected face's age and gender, with an attribute
model) defaults to None and is left out when absent (``exclude_unset``), never sent as null.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field


class _Fixed(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- YouTu v2 ------------------------------------------------------------------------------------


class YoutuData(_Fixed):
    session_id: str = Field(description="Always empty: facepipe keeps no sessions.")


D = TypeVar("D", bound=YoutuData)


class YoutuAnswer(BaseModel, Generic[D]):
    """A YouTu answer. Errors come in the same envelope with a non-zero ``code`` (the reference
    table) and ``data: {"session_id": ""}``."""

    model_config = ConfigDict(extra="forbid")

    code: int = Field(description="0 on success, else the reference's error code.")
    message: str
    data: D


class YoutuError(_Fixed):
    code: int
    message: str
    data: YoutuData


class YoutuFace(_Fixed):
    face_id: str
    x: int
    y: int
    width: float
    height: float
    pitch: int
    yaw: int
    roll: int
    gender: int | float | None = Field(default=None, description="0 female - 100 male")
    age: int | float | None = None


class YoutuDetect(YoutuData):
    image_width: int
    image_height: int
    face: list[YoutuFace]


class YoutuCandidate(_Fixed):
    person_id: str
    face_id: str
    confidence: float
    tag: str


class YoutuIdentify(YoutuData):
    candidates: list[YoutuCandidate]


class YoutuVerify(YoutuData):
    confidence: float
    ismatch: bool


class YoutuCompare(YoutuData):
    similarity: float


class YoutuNewPerson(YoutuData):
    person_id: str
    suc_group: int
    suc_face: int
    face_id: str
    group_ids: list[str]


class YoutuDelPerson(YoutuData):
    person_id: str
    deleted: int


class YoutuAddFace(YoutuData):
    added: int
    face_ids: list[str]
    ret_codes: list[int] = Field(description="One per image, in order: 0 added, else its code.")


class YoutuDelFace(YoutuData):
    deleted: int
    face_ids: list[str]


class YoutuPersonId(YoutuData):
    person_id: str


class YoutuGetInfo(YoutuData):
    person_id: str
    person_name: str
    tag: str
    face_ids: list[str]
    group_ids: list[str]


class YoutuGroupIds(YoutuData):
    group_ids: list[str]


class YoutuPersonIds(YoutuData):
    person_ids: list[str]


class YoutuFaceIds(YoutuData):
    face_ids: list[str]


class YoutuFaceBox(_Fixed):
    face_id: str
    x: int
    y: int
    width: float
    height: float


class YoutuFaceInfo(YoutuData):
    face_info: YoutuFaceBox


# --- Tencent IAI ---------------------------------------------------------------------------------


class IaiError(_Fixed):
    Code: str = Field(description="IAI's string code, e.g. InvalidParameterValue.NoFaceInPhoto")
    Message: str


class IaiResponse(BaseModel):
    """The action's own fields (see IAI's API 3.0 documentation of each action), or
    ``Error``; always ``RequestId``."""

    model_config = ConfigDict(extra="allow")

    Error: IaiError | None = None
    RequestId: str


class IaiAnswer(_Fixed):
    Response: IaiResponse


# --- Baidu Face v2 -------------------------------------------------------------------------------


class BaiduAnswer(_Fixed):
    """A Baidu answer: ``result`` and ``result_num`` for the calls that return something."""

    log_id: int
    result_num: int | None = None
    result: list[Any] | None = None


class BaiduError(_Fixed):
    error_code: int
    error_msg: str
    log_id: int


class BaiduToken(_Fixed):
    access_token: str
    expires_in: int = Field(description="Seconds")
    scope: str
    session_key: str
    session_secret: str
    refresh_token: str


class OAuthError(_Fixed):
    error: str
    error_description: str
