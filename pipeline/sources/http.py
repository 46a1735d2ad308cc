"""http(s) downloads: SSRF-checked on every hop, redirects followed by hand, byte cap enforced
while streaming, one overall deadline per download.

The deadline covers everything from the first name lookup to the last byte of the last hop.
httpx's timeouts are per socket operation, so a server that drips its headers (or body) one
byte at a time would never trip them; instead every socket a download opens is registered
through httpcore's ``trace`` extension, and a timer shuts them down when the deadline passes,
which ends whatever read is blocked on them at once.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import lru_cache
from typing import Any

import httpx

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.sources.location import HttpLocation
from pipeline.sources.netguard import resolve_host

logger = logging.getLogger(__name__)

USER_AGENT = "facepipe/0.1 (+image intake)"
HTTP_SCHEMES = ("http", "https")
# Answers worth trying again later: the URL may well work then (retryable DOWNLOAD_FAILED).
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})


_client_lock = threading.Lock()


def _client(timeout_s: float) -> httpx.Client:
    """The process-wide client for this timeout."""
    with _client_lock:
        return _cached_client(timeout_s)


@lru_cache(maxsize=8)
def _cached_client(timeout_s: float) -> httpx.Client:
    """One shared client per timeout (httpx clients are thread-safe).

    trust_env=False: a proxy from the environment would defeat the address pinning below.
    No keep-alive: connections are keyed by the pinned address, and a TLS connection opened
    for one host name must not be reused for another name on the same address.
    """
    return httpx.Client(
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=0),
        headers={"User-Agent": USER_AGENT, "Accept": "image/*"},
    )


class _Deadline:
    """Shuts down every socket of one download when its deadline passes."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, seconds), self._cut)
        self._timer.daemon = True

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: remember each connection's socket as it opens."""
        if event != "connection.connect_tcp.complete":
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            late = self.expired
        if late:
            self._shutdown(sock)

    def _cut(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        with suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)

    @contextmanager
    def running(self) -> Iterator[_Deadline]:
        self._timer.start()
        try:
            yield self
        finally:
            self._timer.cancel()


def _pinned_request(
    url: httpx.URL, address: str
) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """The request to send: to the checked address, with the original Host and TLS name."""
    host_header = url.raw_host.decode("ascii")
    if ":" in host_header:
        host_header = f"[{host_header}]"
    if url.port is not None:
        host_header = f"{host_header}:{url.port}"
    extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
    return url.copy_with(host=address), {"Host": host_header}, extensions


def _parse(url_text: str, original: str, *, redirect: bool) -> httpx.URL:
    try:
        url = httpx.URL(url_text)
    except httpx.InvalidURL as exc:
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER, f"{url_text}: invalid URL ({exc})"
        ) from exc
    if url.scheme not in HTTP_SCHEMES:
        code = ErrorCode.URL_FORBIDDEN if redirect else ErrorCode.ILLEGAL_PARAMETER
        raise FacepipeError(code, f"{original}: scheme {url.scheme!r} is not http(s) ({url_text})")
    if not url.host:
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"{url_text}: the URL has no host")
    return url


def _read_body(
    response: httpx.Response, original: str, settings: Settings, deadline: _Deadline
) -> bytes:
    cap = settings.max_image_bytes
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise FacepipeError(
            ErrorCode.IMAGE_TOO_LARGE,
            f"{original}: Content-Length {declared} is above the cap of {cap} bytes "
            "(FACEPIPE_MAX_IMAGE_BYTES)",
            url=original,
        )
    chunks: list[bytes] = []
    received = 0
    for chunk in response.iter_bytes():  # as it arrives, so the deadline is checked often
        received += len(chunk)
        if received > cap:
            raise FacepipeError(
                ErrorCode.IMAGE_TOO_LARGE,
                f"{original}: the body exceeds the cap of {cap} bytes (FACEPIPE_MAX_IMAGE_BYTES)",
                url=original,
            )
        if deadline.expired:
            raise FacepipeError(
                ErrorCode.DOWNLOAD_FAILED,
                f"{original}: download took longer than {settings.download_timeout_s} s",
                url=original,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def read_http(location: HttpLocation, settings: Settings) -> bytes:
    """Download an image, following at most ``download_max_redirects`` redirects.

    Each hop is resolved and checked by the SSRF guard before any connection. Errors:
    URL_FORBIDDEN, ILLEGAL_PARAMETER (bad URL), URL_DOWNLOAD_FAILED (4xx, unknown host, too
    many redirects), DOWNLOAD_FAILED (retryable: timeouts, connection errors, 408/429/5xx),
    IMAGE_TOO_LARGE (Content-Length or streamed body above the byte cap).
    """
    source = location.url
    client = _client(float(settings.download_timeout_s))
    url = _parse(source, source, redirect=False)
    # The deadline covers every hop, headers and body: a server dripping bytes cannot hold a
    # worker (see the module docstring).
    with _Deadline(float(settings.download_timeout_s)).running() as deadline:
        try:
            return _download(client, url, source, settings, deadline)
        except FacepipeError:
            if deadline.expired:
                raise _too_slow(source, settings) from None
            raise


def _too_slow(source: str, settings: Settings) -> FacepipeError:
    return FacepipeError(
        ErrorCode.DOWNLOAD_FAILED,
        f"{source}: the download took longer than {settings.download_timeout_s} s "
        "(FACEPIPE_DOWNLOAD_TIMEOUT_S covers connect to last byte)",
        url=source,
    )


def _download(
    client: httpx.Client, url: httpx.URL, source: str, settings: Settings, deadline: _Deadline
) -> bytes:
    for hop in range(settings.download_max_redirects + 1):
        resolved = resolve_host(
            url.host,
            url.port or (443 if url.scheme == "https" else 80),
            settings,
            source,
            timeout_s=deadline.remaining(),
        )
        target, headers, extensions = _pinned_request(url, resolved.address)
        extensions["trace"] = deadline.trace
        if deadline.expired:
            raise _too_slow(source, settings)
        timeout = httpx.Timeout(min(float(settings.download_timeout_s), deadline.remaining()))
        try:
            with client.stream(
                "GET", target, headers=headers, extensions=extensions, timeout=timeout
            ) as response:
                status = response.status_code
                if status in _REDIRECT_STATUS and "Location" in response.headers:
                    location = response.headers["Location"]
                    logger.debug("%s: hop %d redirected to %s", source, hop + 1, location)
                    url = _parse(str(url.join(location)), source, redirect=True)
                    continue
                if status in TRANSIENT_STATUS:
                    raise FacepipeError(
                        ErrorCode.DOWNLOAD_FAILED,
                        f"{source}: HTTP {status} {response.reason_phrase} (retryable)",
                        url=source,
                        status=status,
                    )
                if not 200 <= status < 300:
                    raise FacepipeError(
                        ErrorCode.URL_DOWNLOAD_FAILED,
                        f"{source}: HTTP {status} {response.reason_phrase}",
                        url=source,
                        status=status,
                    )
                return _read_body(response, source, settings, deadline)
        except httpx.TimeoutException as exc:
            raise FacepipeError(
                ErrorCode.DOWNLOAD_FAILED,
                f"{source}: timed out after {settings.download_timeout_s} s ({type(exc).__name__})",
                url=source,
            ) from exc
        except httpx.TransportError as exc:
            raise FacepipeError(
                ErrorCode.DOWNLOAD_FAILED,
                f"{source}: connection failed ({type(exc).__name__}: {exc})",
                url=source,
            ) from exc
    raise FacepipeError(
        ErrorCode.URL_DOWNLOAD_FAILED,
        f"{source}: more than {settings.download_max_redirects} redirects "
        "(FACEPIPE_DOWNLOAD_MAX_REDIRECTS)",
        url=source,
    )
