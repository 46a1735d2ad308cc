"""Input rules for library identifiers and texts, after the reference APIs.

Sources of each rule (files in ``../shared/reference/``):

* Character set of ids: Tencent IAI (``tencent-iai-createface.md``, PersonIdIllegal /
  GroupIdIllegal) allows "English letters, digits and -%@#&_"; YouTu v2 (``-1313`` in
  ``tencent-youtu-v2-identify.md``) refuses "special characters such as spaces, slashes, tabs and
  newlines". facepipe takes the IAI set and adds ``.`` (e-mail-like ids), so an id never holds
  a space, a slash, a control character or anything a shell or URL path would need quoting for.
* Lengths: Baidu v2 (``baidu-face-v2.md``, faceset user/add) limits ``uid`` and ``group_id`` to
  128 bytes and ``user_info`` (facepipe's tag) to 256 bytes. Person names have no length in the
  reference copies; facepipe uses 60 characters, the limit of Tencent IAI's public CreatePerson
  PersonName. Names and tags may hold any printable text (CJK included) but no control characters.
* A person is in at most 100 groups: IAI GroupNumPerPersonExceed ("a person can be added to at
  most 100 groups"), same file.

Empty values are ``EMPTY_PARAMETER`` (-1301), too long ones ``PARAMETER_TOO_LONG`` (-1304),
illegal characters ``ILLEGAL_PARAMETER`` (-1313).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pipeline.errors import ErrorCode, FacepipeError

MAX_ID_BYTES = 128
MAX_NAME_CHARS = 60
MAX_TAG_BYTES = 256
MAX_GROUPS_PER_PERSON = 100
MAX_PAGE_SIZE = 1000

_ID_RE = re.compile(r"^[A-Za-z0-9\-%@#&_.]+$")
_FACE_ID_RE = re.compile(r"^[0-9]{1,19}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def validate_id(value: str | None, what: str = "id") -> str:
    """A person or group id: non-empty, at most 128 bytes, letters, digits and ``-%@#&_.``."""
    if value is None or value == "":
        raise FacepipeError(ErrorCode.EMPTY_PARAMETER, f"{what} is empty")
    if not isinstance(value, str):
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"{what} must be a string")
    if len(value.encode("utf-8")) > MAX_ID_BYTES:
        raise FacepipeError(
            ErrorCode.PARAMETER_TOO_LONG, f"{what} is longer than {MAX_ID_BYTES} bytes"
        )
    if not _ID_RE.match(value):
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER,
            f"{what} {value!r} may only hold letters, digits and -%@#&_. "
            "(no spaces, slashes, tabs or newlines)",
        )
    return value


def validate_person_id(value: str | None) -> str:
    """A person id (see :func:`validate_id`)."""
    return validate_id(value, "person_id")


def validate_group_id(value: str | None) -> str:
    """A group id (see :func:`validate_id`)."""
    return validate_id(value, "group_id")


def validate_group_ids(values: Iterable[str] | None) -> list[str]:
    """A non-empty list of group ids, duplicates dropped, order kept, at most 100."""
    groups: list[str] = []
    for value in values or ():
        group = validate_group_id(value)
        if group not in groups:
            groups.append(group)
    if not groups:
        raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "group_ids is empty")
    if len(groups) > MAX_GROUPS_PER_PERSON:
        raise FacepipeError(
            ErrorCode.TOO_MANY_GROUPS, f"more than {MAX_GROUPS_PER_PERSON} groups given"
        )
    return groups


def validate_face_id(value: str | int | None) -> int:
    """A face id as returned by the library (a decimal number); the integer key."""
    if value is None or value == "":
        raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "face_id is empty")
    text = str(value)
    if not _FACE_ID_RE.match(text) or int(text) > 2**63 - 1:
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"face_id {text!r} is not a face id")
    return int(text)


def validate_name(value: str | None) -> str:
    """A person name: optional (``""``), at most 60 characters, no control characters."""
    if value is None:
        return ""
    if len(value) > MAX_NAME_CHARS:
        raise FacepipeError(
            ErrorCode.PARAMETER_TOO_LONG, f"name is longer than {MAX_NAME_CHARS} characters"
        )
    if _CONTROL_RE.search(value):
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER, "name may not hold tabs, newlines or control characters"
        )
    return value


def validate_tag(value: str | None) -> str:
    """A person tag (free text): optional, at most 256 bytes, no control characters but tab."""
    if value is None:
        return ""
    if len(value.encode("utf-8")) > MAX_TAG_BYTES:
        raise FacepipeError(
            ErrorCode.PARAMETER_TOO_LONG, f"tag is longer than {MAX_TAG_BYTES} bytes"
        )
    if _CONTROL_RE.search(value.replace("\t", "")):
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, "tag may not hold control characters")
    return value


def validate_page(offset: int, limit: int) -> tuple[int, int]:
    """Paging arguments: ``offset >= 0`` and ``1 <= limit <= 1000``."""
    if offset < 0:
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, "offset must be >= 0")
    if limit < 1 or limit > MAX_PAGE_SIZE:
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER, f"limit must be between 1 and {MAX_PAGE_SIZE}"
        )
    return offset, limit


def validate_quality_control(value: int) -> int:
    """QualityControl level 0-4 (reference IAI CreateFace)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 4:
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, "quality_control must be 0, 1, 2, 3 or 4")
    return value


def validate_threshold(value: float, what: str = "face_match_threshold") -> float:
    """A 0-100 confidence threshold (reference FaceMatchThreshold range [0, 100])."""
    if not 0.0 <= float(value) <= 100.0:
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"{what} must be within [0, 100]")
    return float(value)


def validate_top_n(value: int) -> int:
    """Number of identify candidates: 1-100."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 100:
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, "top_n must be between 1 and 100")
    return value


MAX_GROUP_EX_FIELDS = 5
MAX_EX_FIELD_CHARS = 30


def validate_ex_fields(values: Iterable[str] | None) -> list[str]:
    """The custom field names of an explicit group: at most 5, distinct, 1-30 characters."""
    fields = [str(v) for v in values or ()]
    if len(fields) > MAX_GROUP_EX_FIELDS:
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER, f"a group has at most {MAX_GROUP_EX_FIELDS} custom fields"
        )
    if len(set(fields)) != len(fields):
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, "custom field names must be distinct")
    for field in fields:
        if not field or len(field) > MAX_EX_FIELD_CHARS or _CONTROL_RE.search(field):
            raise FacepipeError(
                ErrorCode.ILLEGAL_PARAMETER,
                f"custom field {field[:40]!r}: 1-{MAX_EX_FIELD_CHARS} characters, no control ones",
            )
    return fields
