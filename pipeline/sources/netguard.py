"""SSRF guard: which addresses a download may connect to.

Workers fetch URLs supplied by users; without this guard they would be a proxy into the
private network and the cloud metadata service. A URL is refused when ANY address its host
resolves to is loopback, private, link-local, multicast, reserved, unspecified, otherwise not
globally routable, or a cloud metadata address - unless ``settings.url_allow_private`` is set or
the host (or the address) is listed in ``settings.url_allow_hosts``. The caller then connects to
the address checked here (not a second lookup), so DNS rebinding cannot swap it afterwards.

The lookup itself runs under the download's deadline: ``getaddrinfo`` cannot be interrupted and
a name whose name servers never answer holds it for the resolver's own timeouts (tens of
seconds), so it runs in a pool of lookup threads and the download waits for it no longer than
its deadline allows (a lookup given up on finishes in the background, holding its thread).
"""

from __future__ import annotations

import ipaddress
import socket
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.threadpool import ProcessThreadPool

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack...
        ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
        ipaddress.ip_address("fd00:ec2::254"),  # AWS IMDS over IPv6
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    }
)


_LOOKUPS = ProcessThreadPool(16, "facepipe-dns")
"""Name lookups in flight at once per process; more wait their turn (within their deadline)."""


@dataclass(frozen=True)
class ResolvedHost:
    """A host name and the address a download will connect to."""

    host: str
    address: str


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be fetched from, or None when it is a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    checks = (
        (ip in METADATA_ADDRESSES, "a cloud metadata address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_unspecified, "the unspecified address"),
        (ip.is_reserved, "a reserved address"),
        (ip.is_private, "a private address"),
        (not ip.is_global, "not a globally routable address"),
    )
    return next((why for hit, why in checks if hit), None)


def _allow_listed(host: str, settings: Settings) -> bool:
    allowed = {h.strip().strip("[]").lower() for h in settings.url_allow_hosts}
    return host.lower() in allowed


def resolve_host(
    host: str, port: int, settings: Settings, url: str, timeout_s: float | None = None
) -> ResolvedHost:
    """Resolve ``host`` and check every address; URL_FORBIDDEN when one is not allowed.

    Resolution failures: an unknown name is permanent (URL_DOWNLOAD_FAILED), a temporary
    resolver failure or a lookup slower than ``timeout_s`` is retryable (DOWNLOAD_FAILED).
    """
    bare = host.strip("[]")
    lookup = _LOOKUPS.submit(socket.getaddrinfo, bare, port, type=socket.SOCK_STREAM)
    try:
        infos = lookup.result(timeout=timeout_s)
    except FutureTimeout as exc:
        lookup.cancel()
        raise FacepipeError(
            ErrorCode.DOWNLOAD_FAILED,
            f"{url}: looking up {bare!r} took longer than {timeout_s:.1f} s",
            url=url,
        ) from exc
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", None)):
            raise FacepipeError(
                ErrorCode.DOWNLOAD_FAILED, f"{url}: name resolution failed ({exc})", url=url
            ) from exc
        raise FacepipeError(
            ErrorCode.URL_DOWNLOAD_FAILED, f"{url}: unknown host {bare!r} ({exc})", url=url
        ) from exc
    addresses = list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
    if not addresses:
        raise FacepipeError(ErrorCode.URL_DOWNLOAD_FAILED, f"{url}: {bare!r} has no address")
    exempt = settings.url_allow_private or _allow_listed(bare, settings)
    for address in addresses:
        if exempt or _allow_listed(address, settings):
            continue
        reason = forbidden_reason(ipaddress.ip_address(address))
        if reason is not None:
            raise FacepipeError(
                ErrorCode.URL_FORBIDDEN,
                f"{url}: {bare} resolves to {address}, {reason}; refused (set "
                "FACEPIPE_URL_ALLOW_HOSTS or FACEPIPE_URL_ALLOW_PRIVATE to permit it)",
                url=url,
                address=address,
            )
    return ResolvedHost(host=bare, address=addresses[0])
