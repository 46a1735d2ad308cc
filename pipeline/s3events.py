"""S3 event notifications: parsing (SQS bodies, SNS envelopes, Lambda events) and key rules.

Pure functions, no I/O. Key rules map an object key to an action, first match wins; the
defaults (``Settings.s3_key_rules``) are::

    enroll/<group>/<person>/...      -> enrol the file's face as <person> in <group>
    incoming/<anything>              -> re-identify the file's faces against
                                        Settings.reidentify_groups

A rule is ``{"prefix": "...", "action": "enroll" | "reidentify", "group": "..."}``; an enroll
rule that names a group reads ``<prefix><person>/...``; a reidentify rule's ``group`` may
list several groups separated by ``;`` or ``|``. Keys arrive URL-encoded in S3 events (spaces
as ``+``) and are decoded here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import unquote_plus

from pipeline.errors import ErrorCode, FacepipeError


class S3Action(StrEnum):
    ENROLL = "enroll"
    REIDENTIFY = "reidentify"


@dataclass(frozen=True)
class S3Object:
    """One object an ``ObjectCreated`` record announces."""

    bucket: str
    key: str
    event_name: str
    size: int | None = None
    etag: str | None = None
    sequencer: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def identity(self) -> str:
        """A key for this exact object version (idempotent handling of repeated events)."""
        return f"{self.uri}#{self.sequencer or self.etag or ''}"


@dataclass(frozen=True)
class KeyRule:
    prefix: str
    action: S3Action
    group: str | None = None


@dataclass(frozen=True)
class Route:
    """What to do with one object."""

    action: S3Action
    groups: tuple[str, ...]
    person_id: str | None = None


@dataclass(frozen=True)
class ParsedMessage:
    """An SQS body's objects; ``test_event`` for S3's ``s3:TestEvent`` (nothing to do)."""

    objects: tuple[S3Object, ...]
    test_event: bool = False


def parse_rules(rules: Sequence[Mapping[str, Any]]) -> list[KeyRule]:
    """Validate key rules from settings."""
    out = []
    for raw in rules:
        prefix = str(raw.get("prefix", ""))
        action = str(raw.get("action", ""))
        if action not in (a.value for a in S3Action):
            raise FacepipeError(
                ErrorCode.ILLEGAL_PARAMETER,
                f"S3 key rule {dict(raw)}: action must be 'enroll' or 'reidentify'",
            )
        group = raw.get("group")
        out.append(KeyRule(prefix, S3Action(action), str(group) if group else None))
    return out


def route_key(key: str, rules: Sequence[KeyRule], default_groups: Sequence[str]) -> Route | None:
    """The route of a decoded key under ``rules``; None when no rule applies."""
    for rule in rules:
        if not key.startswith(rule.prefix):
            continue
        rest = [p for p in key[len(rule.prefix) :].split("/") if p]
        if rule.action == S3Action.ENROLL:
            if rule.group:
                if len(rest) < 2:
                    return None
                return Route(S3Action.ENROLL, (rule.group,), rest[0])
            if len(rest) < 3:
                return None
            return Route(S3Action.ENROLL, (rest[0],), rest[1])
        groups = (
            tuple(g for g in re.split(r"[;|]", rule.group) if g)
            if rule.group
            else tuple(default_groups)
        )
        return Route(S3Action.REIDENTIFY, groups)
    return None


def parse_event(event: Mapping[str, Any]) -> ParsedMessage:
    """Objects created according to an S3 event document (``{"Records": [...]}``).

    Raises ILLEGAL_PARAMETER for a document that is not an S3 event.
    """
    if event.get("Event") == "s3:TestEvent":
        return ParsedMessage((), test_event=True)
    if "Type" in event and "Message" in event:  # an SNS envelope around the S3 event
        return parse_body(str(event["Message"]))
    records = event.get("Records")
    if not isinstance(records, list):
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, "not an S3 event: no Records list")
    objects = []
    for rec in records:
        if not isinstance(rec, Mapping):
            raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, "an S3 event record is not an object")
        name = str(rec.get("eventName", ""))
        if not name.startswith("ObjectCreated:"):
            continue
        try:
            s3 = rec["s3"]
            bucket = str(s3["bucket"]["name"])
            obj = s3["object"]
            key = unquote_plus(str(obj["key"]))
        except (KeyError, TypeError) as exc:
            raise FacepipeError(
                ErrorCode.ILLEGAL_PARAMETER, f"S3 event record without bucket/key: {exc}"
            ) from exc
        size = obj.get("size")
        objects.append(
            S3Object(
                bucket=bucket,
                key=key,
                event_name=name,
                size=int(size) if isinstance(size, int | float) else None,
                etag=obj.get("eTag"),
                sequencer=obj.get("sequencer"),
            )
        )
    return ParsedMessage(tuple(objects))


def parse_body(body: str) -> ParsedMessage:
    """Parse an SQS message body (JSON S3 event, possibly inside an SNS envelope)."""
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, TypeError) as exc:
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"message is not JSON: {exc}") from exc
    if not isinstance(doc, Mapping):
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, "message is not a JSON object")
    return parse_event(doc)
