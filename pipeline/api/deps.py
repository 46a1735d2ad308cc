"""FastAPI dependencies shared by the routers: the process state, the request payload and the
native Bearer check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from pipeline.api.auth import ANONYMOUS, Caller, KeyRing
from pipeline.api.body import read_payload
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
    return state.auth  # type: ignore[no-any-return]


class BearerRefused(Exception):
    """A /v1 call without a valid Bearer secret (answered 401 in the /v1 error shape)."""


async def authorize(state: ApiState, check: object) -> Caller:
    """Run a blocking credential check (returns a Caller or None) and the rate limit."""
    ring = keyring(state)
    caller = await state.blocking(check)  # type: ignore[arg-type]
    if caller is None:
        raise BearerRefused
    if not await state.blocking(lambda: ring.allow(caller)):
        raise FacepipeError(
            ErrorCode.RATE_LIMITED,
            f"key {caller.key_id} is above {state.settings.api_rate_per_s:g} calls/s",
        )
    return caller  # type: ignore[no-any-return]


async def require_bearer(request: Request, state: StateDep) -> Caller:
    """``Authorization: Bearer <secret>`` of an active key (or FACEPIPE_API_TOKEN); nothing
    needed when FACEPIPE_API_AUTH is off (a loopback-only local trial)."""
    if not state.settings.api_auth:
        return ANONYMOUS
    given = request.headers.get("authorization", "").strip()
    secret = given[7:].strip() if given[:7].lower() == "bearer " else ""
    ring = keyring(state)
    return await authorize(state, lambda: ring.bearer(secret) if secret else None)
