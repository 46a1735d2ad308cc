"""HTTP metrics and request ids for the API: a pure ASGI middleware and the ``/metrics`` route.

The middleware (not a Starlette ``BaseHTTPMiddleware``: it neither buffers bodies nor breaks
streaming) counts each request by route template, API protocol, method and status, times it,
tracks the requests in flight, and gives it a request id: the caller's ``X-Request-ID`` when it
is a sane token, else a new one; the id is bound for the logs and echoed in the answer.

Routes are labelled by their template (``/v1/persons/{person_id}``), never the raw path, so a
caller cannot grow the number of series; a path no route matched is ``unmatched``.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pipeline.observability.logging import log_context
from pipeline.observability.metrics import (
    HTTP_DURATION,
    HTTP_IN_FLIGHT,
    HTTP_REQUESTS,
    exposition,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("facepipe.access")

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
UNMATCHED = "unmatched"
QUIET_ROUTES = frozenset({"/metrics", "/healthz"})
"""Routes polled by machines: their access lines are DEBUG, not INFO."""

PROTOCOL_PREFIXES: tuple[tuple[str, str], ...] = (
    ("/v1/", "facepipe"),
    ("/face/", "youtu"),
    ("/rest/2.0/face/", "baidu"),
    ("/oauth/2.0/", "baidu"),
)
"""Path prefix -> API protocol label; Tencent Cloud IAI is served at ``/`` (JSON with its
X-TC-Action header, or the query-string form). Everything else (``/healthz``, ``/metrics``,
unknown paths) is ``facepipe``."""


def request_id_of(scope: Scope) -> str:
    """The caller's request id when it is a sane token, else a new one."""
    for name, value in scope.get("headers") or ():
        if name == REQUEST_ID_HEADER.encode():
            text = str(value.decode("latin-1"))
            if _REQUEST_ID.match(text):
                return text
            break
    return uuid.uuid4().hex


def protocol_of(scope: Scope) -> str:
    """Which API protocol a request speaks (a bounded label)."""
    for name, _ in scope.get("headers") or ():
        if name == b"x-tc-action":
            return "iai"
    path = str(scope.get("path", ""))
    if path == "/":
        return "iai"
    for prefix, protocol in PROTOCOL_PREFIXES:
        if path.startswith(prefix):
            return protocol
    return "facepipe"


def route_of(scope: Scope) -> str:
    """The matched route's template (Starlette records the route in the scope), else
    ``unmatched``."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(template) if template else UNMATCHED


class MetricsMiddleware:
    """Pure ASGI middleware recording ``facepipe_http_*`` and binding the request id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        status = 500  # an exception that escapes every handler ends as a 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [
                    (k, v)
                    for k, v in message.get("headers", ())
                    if k.lower() != REQUEST_ID_HEADER.encode()
                ]
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message["headers"] = headers
            await send(message)

        started = time.perf_counter()
        HTTP_IN_FLIGHT.inc()
        with log_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                HTTP_IN_FLIGHT.dec()
                seconds = time.perf_counter() - started
                route, protocol, method = route_of(scope), protocol_of(scope), scope["method"]
                HTTP_REQUESTS.labels(route, protocol, method, str(status)).inc()
                HTTP_DURATION.labels(route, protocol, method).observe(seconds)
                # the access log line, inside the request's log context (uvicorn's own access
                # log is written outside it, so `facepipe api` turns that one off)
                access_log.log(
                    logging.DEBUG if route in QUIET_ROUTES else logging.INFO,
                    "%s %s %d %.1f ms",
                    method,
                    scope.get("path", ""),
                    status,
                    seconds * 1e3,
                    extra={
                        "route": route,
                        "protocol": protocol,
                        "status": status,
                        "duration_s": round(seconds, 6),
                    },
                )


def metrics_endpoint() -> Callable[[], Awaitable[Any]]:
    """A FastAPI endpoint serving the Prometheus text exposition (``GET /metrics``)."""
    from starlette.responses import Response

    async def metrics() -> Response:
        body, content_type = exposition()
        return Response(body, media_type=content_type)

    return metrics


def instrument(app: Any) -> None:
    """Add the middleware and ``GET /metrics`` to a FastAPI app."""
    app.add_middleware(MetricsMiddleware)
    # a FastAPI route, not Starlette's add_route: only FastAPI's routes record themselves in
    # the scope, so a plain route would be labelled `unmatched` (and its access line, at every
    # scrape, logged at INFO)
    app.add_api_route("/metrics", metrics_endpoint(), methods=["GET"], include_in_schema=False)
