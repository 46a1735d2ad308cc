"""FastAPI dependencies shared by the routers: the process state, the request payload and the
native Bearer check (with :class:`BearerFirstRoute`, the /v1 routes' class)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from pipeline.api.auth import ANONYMOUS, Caller, KeyRing
from pipeline.api.body import (
    FORM_TYPES,
    MAX_FORM_PARTS,
    body_limit,
    bounded_receive,
    content_type,
    form_fields,
    parse_json_object,
    read_body,
    read_payload,
)
from pipeline.api.state import ApiState
from pipeline.api_io import Payload
from pipeline.errors import ErrorCode, FacepipeError


def get_state(request: Request) -> ApiState:
    return request.app.state.facepipe  # type: ignore[no-any-return]


StateDep = Annotated[ApiState, Depends(get_state)]


async def get_payload(request: Request, state: StateDep) -> Payload:
    return await read_payload(request, state.settings)


PayloadDep = Annotated[Payload, Depends(get_payload)]


def keyring(state: ApiState) -> KeyRing:
    if state.auth is None:
        state.auth = KeyRing(state.settings, state.db)
    return state.auth


class BearerRefused(Exception):
    """A /v1 call without a valid Bearer secret (answered 401 in the /v1 error shape)."""


async def authorize(state: ApiState, check: Callable[[], Caller | None]) -> Caller:
    """Run a blocking credential check (returns a Caller or None) and the rate limit."""
    ring = keyring(state)
    caller = await state.blocking(check)
    if caller is None:
        raise BearerRefused
    if not await state.blocking(lambda: ring.allow(caller)):
        raise FacepipeError(
            ErrorCode.RATE_LIMITED,
            f"key {caller.key_id} is above {state.settings.api_rate_per_s:g} calls/s",
        )
    return caller


async def require_bearer(request: Request, state: StateDep) -> Caller:
    """``Authorization: Bearer <secret>`` of an active key (or FACEPIPE_API_TOKEN); nothing
    needed when FACEPIPE_API_AUTH is off (a loopback-only local trial). Checked once per
    request (the caller is kept on ``request.state``)."""
    known = getattr(request.state, "caller", None)
    if isinstance(known, Caller):
        return known
    if not state.settings.api_auth:
        caller = ANONYMOUS
    else:
        given = request.headers.get("authorization", "").strip()
        secret = given[7:].strip() if given[:7].lower() == "bearer " else ""
        ring = keyring(state)
        caller = await authorize(state, lambda: ring.bearer(secret) if secret else None)
    request.state.caller = caller
    return caller


CallerDep = Annotated[Caller, Depends(require_bearer)]


class BearerFirstRoute(APIRoute):
    """A /v1 route: the Bearer credentials are checked before the body is read (FastAPI reads
    a form with uploads before any dependency runs), and the body is read through a count that
    stops it at :func:`body_limit` with IMAGE_TOO_LARGE (413), whoever reads it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            state = get_state(request)
            await require_bearer(request, state)
            receive = bounded_receive(request.receive, request.headers, body_limit(state.settings))
            bounded = Request(request.scope, receive)
            try:
                return await handler(bounded)
            except StarletteHTTPException as exc:
                # FastAPI reports any failure reading a form as "error parsing the body" (400);
                # the body limit's own error is the answer.
                if isinstance(exc.__cause__, FacepipeError):
                    raise exc.__cause__ from None
                raise

        return checked


async def get_fields(request: Request, state: StateDep) -> AsyncIterator[dict[str, Any]]:
    """A /v1 body's fields: a JSON object, or a form's text fields (its files are the routes'
    ``UploadFile`` parameters); ``{}`` for an empty body. Read within the route's body limit."""
    if content_type(request) not in FORM_TYPES:
        raw = await read_body(request, body_limit(state.settings))
        yield parse_json_object(raw) if raw.strip() else {}
        return
    try:
        form = await request.form(max_files=MAX_FORM_PARTS, max_fields=MAX_FORM_PARTS)
    except StarletteHTTPException as exc:
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER, f"the form body could not be parsed ({exc.detail})"
        ) from exc
    try:
        yield form_fields(form)
    finally:
        await form.close()


FieldsDep = Annotated[dict[str, Any], Depends(get_fields)]
