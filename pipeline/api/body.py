"""Request bodies read with bounded memory: JSON objects, urlencoded and multipart forms.

The body is streamed with a running byte count and reading stops at the limit (413
IMAGE_TOO_LARGE), whatever Content-Length claims, so a chunked upload cannot grow without end.
Before a JSON body is parsed, one linear pass over it (strings skipped) counts its structure: a
body nested deeper than :data:`MAX_JSON_DEPTH` (a deep enough nesting would otherwise exhaust
the parser's recursion: a 500) or holding more than :data:`MAX_JSON_STRUCTURE` brackets,
commas and colons is ILLEGAL_PARAMETER (400). The second bound is what keeps parsing within
bounded memory: every parsed value is a Python object of 30-100 bytes, so a body of 160 MB of
``{},`` would parse into about 4 GB; strings cost about their size in the body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import FormData, Headers, UploadFile
from starlette.requests import Request
from starlette.types import Message, Receive

from pipeline.api_io import Payload, Upload
from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError

MAX_JSON_DEPTH = 32
"""Deepest accepted nesting of a JSON body (facepipe's own bodies are 2 levels deep)."""

MAX_JSON_STRUCTURE = 200_000
"""Most brackets, commas and colons (outside strings) of one JSON body, i.e. about 100 000
values: a few MB once parsed. facepipe's own bodies hold a few dozen."""

MAX_FORM_PARTS = 1000
"""Most fields and files of one form (each image is one part)."""

# A JSON string, or an unterminated one up to the end of the text: the pattern always matches
# where it starts, so a scan never restarts inside a long unterminated string (quadratic time,
# seconds for 40 kB of ``\\"``) and never backtracks (the unrolled loop has one way to match).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b"[]{},:")


def body_limit(settings: Settings) -> int:
    """Largest accepted request body: room for a few images at the byte cap, base64-encoded."""
    return settings.max_image_bytes * 8 + (1 << 20)


def _too_large(limit: int, size: str) -> FacepipeError:
    return FacepipeError(
        ErrorCode.IMAGE_TOO_LARGE, f"the request body ({size}) is above {limit} bytes"
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, read chunk by chunk; IMAGE_TOO_LARGE as soon as it passes ``limit``.

    Kept on ``request.state`` so that a signature check and the route read the same bytes."""
    cached = getattr(request.state, "raw_body", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, f"{declared} bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _too_large(limit, f"more than {limit} bytes")
        chunks.append(chunk)
    request.state.raw_body = b"".join(chunks)
    return request.state.raw_body  # type: ignore[no-any-return]


def bounded_receive(receive: Receive, headers: Headers, limit: int) -> Receive:
    """``receive`` that raises IMAGE_TOO_LARGE once the body passes ``limit`` bytes (or says it
    will in Content-Length), for a body FastAPI itself reads (the /v1 forms with uploads)."""
    declared = headers.get("content-length")
    total = 0

    async def bounded() -> Message:
        nonlocal total
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit, f"{declared} bytes")
        message = await receive()
        if message["type"] == "http.request":
            total += len(message.get("body", b""))
            if total > limit:
                raise _too_large(limit, f"more than {limit} bytes")
        return message

    return bounded


def json_structure(raw: bytes) -> bytes:
    """The brackets, commas and colons of a JSON text, strings skipped. Linear in the text."""
    return _JSON_STRING.sub(b"", raw).translate(None, _NOT_STRUCTURE)


def json_depth(raw: bytes, stop_above: int, structure: bytes | None = None) -> int:
    """The nesting depth of a JSON text (strings skipped), counting no further than
    ``stop_above + 1``. Linear, iterative: safe on hostile input."""
    structure = json_structure(raw) if structure is None else structure
    depth = deepest = 0
    for byte in structure:
        if byte in b",:":
            continue
        depth += 1 if byte in b"[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > stop_above:
                break
    return deepest


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object body; ILLEGAL_PARAMETER for anything else (bad JSON, too deep, too many
    values, a list)."""
    structure = json_structure(raw)
    # the depth loop runs in Python: never over more than the structure allowed
    if json_depth(raw, MAX_JSON_DEPTH, structure[: MAX_JSON_STRUCTURE + 1]) > MAX_JSON_DEPTH:
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER,
            f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels",
        )
    if len(structure) > MAX_JSON_STRUCTURE:
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER,
            f"the JSON body holds more than {MAX_JSON_STRUCTURE} brackets, commas and colons "
            "(too many values)",
        )
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER, f"the body is not valid JSON ({str(exc)[:200]})"
        ) from exc
    if not isinstance(body, dict):
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, "the JSON body must be an object")
    return body


def _replay(raw: bytes) -> Callable[[], Awaitable[dict[str, Any]]]:
    """An ASGI ``receive`` handing out the already-read body once (the form parser reads it)."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return receive


async def parse_form(request: Request, raw: bytes) -> Payload:
    """A multipart or urlencoded form: repeated fields become lists, files keep their order."""
    files: dict[str, list[Upload]] = {}
    replay = Request(request.scope, receive=_replay(raw))
    try:
        form_cm = replay.form(max_files=MAX_FORM_PARTS, max_fields=MAX_FORM_PARTS)
        async with form_cm as form:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    data = await value.read()
                    files.setdefault(key, []).append(Upload(value.filename or key, data))
            fields = form_fields(form)
    except FacepipeError:
        raise
    except Exception as exc:  # starlette raises its own HTTPException / MultiPartException
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER, f"the form body could not be parsed ({exc})"
        ) from exc
    return Payload(fields, files)


def form_fields(form: FormData) -> dict[str, Any]:
    """A form's text fields (its files left out); a repeated field becomes a list."""
    fields: dict[str, Any] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            continue
        if key in fields:
            prev = fields[key]
            fields[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            fields[key] = value
    return fields


FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_payload(request: Request, settings: Settings) -> Payload:
    """Parse a JSON object body, or a multipart / urlencoded form; an empty body is ``{}``."""
    raw = await read_body(request, body_limit(settings))
    if content_type(request) in FORM_TYPES:
        return await parse_form(request, raw)
    if not raw.strip():
        return Payload()
    return Payload(parse_json_object(raw))
