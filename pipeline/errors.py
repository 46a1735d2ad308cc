"""The one error catalogue of facepipe.

Every refusal or failure is a :class:`FacepipeError` carrying an :class:`ErrorCode`. Each code
maps to the numeric code of the reference cloud APIs (Tencent YouTu v2 / IAI, Baidu Face v2)
where one exists; facepipe-specific conditions use the ``-19xx`` range. Errors come in two
families, told apart by :attr:`ErrorSpec.retryable`:

* permanent (bad image, no face, illegal ID): recorded on the item, never retried;
* retryable (network, database, broker, object store): retried with capped backoff.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Symbolic names of every error facepipe reports (the ``name`` in JSON output)."""

    # image intake
    EMPTY_IMAGE = "EMPTY_IMAGE"
    DECODE_FAILED = "DECODE_FAILED"
    ILLEGAL_FORMAT = "ILLEGAL_FORMAT"
    IMAGE_TOO_SMALL = "IMAGE_TOO_SMALL"
    IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
    DOWNLOAD_FAILED = "DOWNLOAD_FAILED"
    URL_DOWNLOAD_FAILED = "URL_DOWNLOAD_FAILED"
    URL_FORBIDDEN = "URL_FORBIDDEN"
    SOURCE_NOT_FOUND = "SOURCE_NOT_FOUND"
    # faces and models
    NO_FACE = "NO_FACE"
    FEATURE_FAILED = "FEATURE_FAILED"
    QUALITY_TOO_LOW = "QUALITY_TOO_LOW"
    FACE_MATCH_BELOW_THRESHOLD = "FACE_MATCH_BELOW_THRESHOLD"
    NEAR_DUPLICATE_FACE = "NEAR_DUPLICATE_FACE"
    MODEL_INVALID = "MODEL_INVALID"
    MODEL_MISMATCH = "MODEL_MISMATCH"
    # library
    EMPTY_PARAMETER = "EMPTY_PARAMETER"
    PERSON_EXISTS = "PERSON_EXISTS"
    PERSON_NOT_FOUND = "PERSON_NOT_FOUND"
    PARAMETER_TOO_LONG = "PARAMETER_TOO_LONG"
    FACE_NOT_FOUND = "FACE_NOT_FOUND"
    GROUP_NOT_FOUND = "GROUP_NOT_FOUND"
    GROUP_LIST_NOT_FOUND = "GROUP_LIST_NOT_FOUND"
    GROUP_EXISTS = "GROUP_EXISTS"
    TOO_MANY_FACES = "TOO_MANY_FACES"
    TOO_MANY_PERSONS = "TOO_MANY_PERSONS"
    TOO_MANY_GROUPS = "TOO_MANY_GROUPS"
    ILLEGAL_PARAMETER = "ILLEGAL_PARAMETER"
    LAST_GROUP = "LAST_GROUP"
    # jobs, index, infrastructure
    JOB_NOT_FOUND = "JOB_NOT_FOUND"
    JOB_STATE = "JOB_STATE"
    INDEX_NOT_FOUND = "INDEX_NOT_FOUND"
    STORAGE_FAILED = "STORAGE_FAILED"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    BROKER_UNAVAILABLE = "BROKER_UNAVAILABLE"
    SERVICE_BUSY = "SERVICE_BUSY"
    RATE_LIMITED = "RATE_LIMITED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    OBJECT_STORE_UNAVAILABLE = "OBJECT_STORE_UNAVAILABLE"
    ITEM_LOST = "ITEM_LOST"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True)
class ErrorSpec:
    """What an :class:`ErrorCode` means: its numeric code, family and a default message."""

    code: int
    retryable: bool
    message: str


CATALOGUE: dict[ErrorCode, ErrorSpec] = {
    ErrorCode.EMPTY_IMAGE: ErrorSpec(-1300, False, "the image is empty"),
    ErrorCode.DECODE_FAILED: ErrorSpec(-1102, False, "the image could not be decoded"),
    ErrorCode.ILLEGAL_FORMAT: ErrorSpec(
        -1400, False, "unsupported image format (JPEG, PNG, BMP and WebP are accepted)"
    ),
    ErrorCode.IMAGE_TOO_SMALL: ErrorSpec(-1109, False, "the image is too small"),
    ErrorCode.IMAGE_TOO_LARGE: ErrorSpec(-1109, False, "the image is too large"),
    ErrorCode.DOWNLOAD_FAILED: ErrorSpec(-1403, True, "the image could not be downloaded"),
    ErrorCode.URL_DOWNLOAD_FAILED: ErrorSpec(
        -1308, False, "the URL answered with an error or no image"
    ),
    ErrorCode.URL_FORBIDDEN: ErrorSpec(
        -1313,
        False,
        "the location is not allowed (a loopback, private or metadata address, or a local "
        "path given by a remote caller)",
    ),
    ErrorCode.SOURCE_NOT_FOUND: ErrorSpec(-1403, False, "the image source does not exist"),
    ErrorCode.NO_FACE: ErrorSpec(-1101, False, "no face was detected in the image"),
    ErrorCode.FEATURE_FAILED: ErrorSpec(-1103, False, "face feature extraction failed"),
    ErrorCode.QUALITY_TOO_LOW: ErrorSpec(
        -1601, False, "the face does not meet the quality control level"
    ),
    ErrorCode.FACE_MATCH_BELOW_THRESHOLD: ErrorSpec(
        -1604, False, "the face does not resemble the person's existing faces"
    ),
    ErrorCode.NEAR_DUPLICATE_FACE: ErrorSpec(
        -1312, False, "a nearly identical face is already enrolled for this person"
    ),
    ErrorCode.MODEL_INVALID: ErrorSpec(-1901, False, "the model file does not fit its manifest"),
    ErrorCode.MODEL_MISMATCH: ErrorSpec(
        -1902, False, "the vectors were made by a different model than the one in use"
    ),
    ErrorCode.EMPTY_PARAMETER: ErrorSpec(-1301, False, "a required parameter is empty"),
    ErrorCode.PERSON_EXISTS: ErrorSpec(-1302, False, "the person already exists"),
    ErrorCode.PERSON_NOT_FOUND: ErrorSpec(-1303, False, "the person does not exist"),
    ErrorCode.PARAMETER_TOO_LONG: ErrorSpec(-1304, False, "a parameter is too long"),
    ErrorCode.FACE_NOT_FOUND: ErrorSpec(-1305, False, "the face does not exist"),
    ErrorCode.GROUP_NOT_FOUND: ErrorSpec(-1306, False, "the group does not exist"),
    ErrorCode.GROUP_LIST_NOT_FOUND: ErrorSpec(-1307, False, "none of the groups exist"),
    ErrorCode.GROUP_EXISTS: ErrorSpec(-1909, False, "the group already exists"),
    ErrorCode.TOO_MANY_FACES: ErrorSpec(-1309, False, "the face limit was reached"),
    ErrorCode.TOO_MANY_PERSONS: ErrorSpec(-1310, False, "the person limit was reached"),
    ErrorCode.TOO_MANY_GROUPS: ErrorSpec(-1311, False, "the group limit was reached"),
    ErrorCode.ILLEGAL_PARAMETER: ErrorSpec(-1313, False, "a parameter is not valid"),
    ErrorCode.LAST_GROUP: ErrorSpec(
        -1313, False, "cannot remove a person from its last group; delete the person instead"
    ),
    ErrorCode.JOB_NOT_FOUND: ErrorSpec(-1903, False, "the job does not exist"),
    ErrorCode.JOB_STATE: ErrorSpec(-1904, False, "the job is not in a state that allows this"),
    ErrorCode.INDEX_NOT_FOUND: ErrorSpec(-1905, False, "no index snapshot exists for this scope"),
    ErrorCode.STORAGE_FAILED: ErrorSpec(-1200, True, "storing the result failed"),
    ErrorCode.DATABASE_UNAVAILABLE: ErrorSpec(-1200, True, "the database is unavailable"),
    ErrorCode.BROKER_UNAVAILABLE: ErrorSpec(-1906, True, "the message broker is unavailable"),
    ErrorCode.SERVICE_BUSY: ErrorSpec(-1907, True, "every model slot is busy; retry later"),
    ErrorCode.RATE_LIMITED: ErrorSpec(-1908, True, "too many requests for this key; slow down"),
    ErrorCode.PERMISSION_DENIED: ErrorSpec(
        -1911, False, "the key is limited to other groups or to read-only calls"
    ),
    ErrorCode.OBJECT_STORE_UNAVAILABLE: ErrorSpec(-1403, True, "the object store is unavailable"),
    ErrorCode.ITEM_LOST: ErrorSpec(
        -1910, False, "the item's work was lost too often (workers died or the broker lost it)"
    ),
    ErrorCode.INTERNAL: ErrorSpec(-1999, False, "internal error"),
}


class FacepipeError(Exception):
    """An error with a catalogue code and a message a person can act on."""

    def __init__(self, code: ErrorCode, message: str | None = None, **context: Any) -> None:
        self.code = code
        self.spec = CATALOGUE[code]
        self.message = message or self.spec.message
        self.context = context
        super().__init__(f"{code.value} ({self.spec.code}): {self.message}")

    @property
    def numeric_code(self) -> int:
        """The reference-API numeric code (e.g. -1101)."""
        return self.spec.code

    @property
    def retryable(self) -> bool:
        """True for transient failures worth retrying (network, database, broker)."""
        return self.spec.retryable

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used in CLI output, HTTP responses and job items."""
        return {"code": self.spec.code, "name": self.code.value, "message": self.message}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FacepipeError:
        """The error :meth:`to_dict` described (an unknown name becomes INTERNAL)."""
        name = str(data.get("name", ""))
        code = ErrorCode(name) if name in ErrorCode.__members__.values() else ErrorCode.INTERNAL
        return cls(code, str(data.get("message") or "") or None)


def error_dict(exc: BaseException) -> dict[str, Any]:
    """Describe any exception in catalogue form; unknown exceptions become INTERNAL."""
    if isinstance(exc, FacepipeError):
        return exc.to_dict()
    return FacepipeError(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}").to_dict()
