"""http(s) intake against a real local HTTP server, and the SSRF guard."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.sources import load_image, read_source_bytes
from pipeline.sources.netguard import forbidden_reason

BIG_BODY = 50_000


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    photo: bytes = b""
    requests: list[str]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        # the client gives up first in the timeout and byte-cap tests: expected
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._route()

    def _route(self) -> None:
        path = self.path
        if path == "/photo.jpg":
            self._send(200, self.server.photo, {"Content-Type": "image/jpeg"})
        elif path == "/missing":
            self._send(404, b"not here")
        elif path == "/busy":
            self._send(503, b"try later")
        elif path.startswith("/hop/"):
            left = int(path.rsplit("/", 1)[1])
            target = "/photo.jpg" if left == 0 else f"/hop/{left - 1}"
            self._send(302, headers={"Location": target})
        elif path == "/big-declared":
            self._send(200, b"\xff" * BIG_BODY)
        elif path == "/big-undeclared":
            # HTTP/1.0 style: no Content-Length, the body ends when the connection closes
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(BIG_BODY // 1000):
                self.wfile.write(b"\xff" * 1000)
            self.close_connection = True
        elif path == "/slow":
            time.sleep(1.5)
            self._send(200, self.server.photo)
        elif path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.server.photo)))
            self.end_headers()
            for i in range(0, len(self.server.photo), 2000):
                self.wfile.write(self.server.photo[i : i + 2000])
                self.wfile.flush()
                time.sleep(0.15)
        elif path == "/drip-headers":
            # a status line, then one header byte every 0.2 s for 20 s: every single read
            # succeeds well inside any per-read timeout
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            for _ in range(100):
                self.wfile.write(b"a")
                self.wfile.flush()
                time.sleep(0.2)
        elif path == "/to-private":
            self._send(302, headers={"Location": "http://10.0.0.1/photo.jpg"})
        elif path == "/to-metadata":
            self._send(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
        elif path == "/to-file":
            self._send(302, headers={"Location": "file:///etc/passwd"})
        else:
            self._send(500, b"unknown test path")


@pytest.fixture(scope="module")
def server(gdp_jpg: Path) -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.photo = gdp_jpg.read_bytes()
    srv.requests = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


@pytest.fixture()
def base(server: _Server) -> str:
    server.requests.clear()
    return f"http://127.0.0.1:{server.server_address[1]}"


ALLOWED = Settings(url_allow_hosts=["127.0.0.1"], download_timeout_s=1.0)


def error_of(url: str, settings: Settings = ALLOWED) -> FacepipeError:
    with pytest.raises(FacepipeError) as info:
        load_image(url, settings)
    return info.value


def test_download_ok(base: str, server: _Server) -> None:
    image = load_image(f"{base}/photo.jpg", ALLOWED)
    assert (image.width, image.height) == (500, 665)
    assert image.source == f"{base}/photo.jpg"
    assert read_source_bytes(f"{base}/photo.jpg", ALLOWED) == server.photo
    allow_all = Settings(url_allow_private=True)
    assert load_image(f"{base}/photo.jpg", allow_all).width == 500


def test_http_errors(base: str) -> None:
    err = error_of(f"{base}/missing")
    assert err.code is ErrorCode.URL_DOWNLOAD_FAILED and "404" in err.message
    assert not err.retryable
    busy = error_of(f"{base}/busy")
    assert busy.code is ErrorCode.DOWNLOAD_FAILED and "503" in busy.message and busy.retryable


def test_redirects_are_bounded(base: str, server: _Server) -> None:
    # 3 redirects (the default limit) are followed
    assert load_image(f"{base}/hop/2", ALLOWED).width == 500
    server.requests.clear()
    err = error_of(f"{base}/hop/3")
    assert err.code is ErrorCode.URL_DOWNLOAD_FAILED and "redirects" in err.message
    assert server.requests == ["/hop/3", "/hop/2", "/hop/1", "/hop/0"]
    one = Settings(url_allow_hosts=["127.0.0.1"], download_max_redirects=0)
    assert error_of(f"{base}/hop/0", one).code is ErrorCode.URL_DOWNLOAD_FAILED


def test_body_above_byte_cap(base: str) -> None:
    capped = Settings(url_allow_hosts=["127.0.0.1"], max_image_bytes=10_000)
    declared = error_of(f"{base}/big-declared", capped)
    assert declared.code is ErrorCode.IMAGE_TOO_LARGE and "Content-Length" in declared.message
    streamed = error_of(f"{base}/big-undeclared", capped)
    assert streamed.code is ErrorCode.IMAGE_TOO_LARGE


def test_timeouts_are_retryable(base: str) -> None:
    quick = Settings(url_allow_hosts=["127.0.0.1"], download_timeout_s=0.5)
    start = time.monotonic()
    err = error_of(f"{base}/slow", quick)
    assert err.code is ErrorCode.DOWNLOAD_FAILED and err.retryable
    assert time.monotonic() - start < 1.4
    # every chunk arrives within the timeout, but the whole body does not: the deadline stops it
    drip = error_of(f"{base}/drip", quick)
    assert drip.code is ErrorCode.DOWNLOAD_FAILED


def test_one_deadline_covers_dripped_headers(base: str) -> None:
    """A server dripping its headers byte by byte cannot hold a reader past the deadline."""
    start = time.monotonic()
    err = error_of(f"{base}/drip-headers")
    elapsed = time.monotonic() - start
    assert err.code is ErrorCode.DOWNLOAD_FAILED and err.retryable
    assert "longer than 1.0 s" in err.message
    assert elapsed < 3.0, elapsed  # the deadline is 1 s; the server would drip for 20 s


def test_one_deadline_covers_a_slow_name_lookup(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name whose servers never answer holds getaddrinfo for the resolver's own timeouts
    (tens of seconds); the download gives up at its deadline all the same. (The resolver is
    the one thing slowed down here: no DNS server can be made slow in a test sandbox.)"""
    real = socket.getaddrinfo

    def unanswered(*args: object, **kwargs: object) -> object:
        time.sleep(3)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", unanswered)
    quick = Settings(url_allow_hosts=["localhost"], download_timeout_s=0.5)
    start = time.monotonic()
    err = error_of(base.replace("127.0.0.1", "localhost") + "/photo.jpg", quick)
    elapsed = time.monotonic() - start
    assert err.code is ErrorCode.DOWNLOAD_FAILED and err.retryable, err
    assert "longer than 0.5 s" in err.message
    assert elapsed < 1.5, elapsed


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    err = error_of(f"http://127.0.0.1:{port}/photo.jpg")
    assert err.code is ErrorCode.DOWNLOAD_FAILED and err.retryable


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://192.168.1.10/a.jpg",
        "http://172.16.0.1/a.jpg",
        "http://100.100.100.200/",
        "http://[::1]/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://localhost/",
    ],
)
def test_ssrf_targets_refused_without_connecting(url: str) -> None:
    start = time.monotonic()
    err = error_of(url, Settings(download_timeout_s=5.0))
    assert err.code is ErrorCode.URL_FORBIDDEN and err.numeric_code == -1313
    # refused before any connection attempt: no timeout was waited for
    assert time.monotonic() - start < 1.0


def test_loopback_server_never_sees_a_refused_request(base: str, server: _Server) -> None:
    assert error_of(f"{base}/photo.jpg", Settings()).code is ErrorCode.URL_FORBIDDEN
    assert server.requests == []


@pytest.mark.parametrize("path", ["/to-private", "/to-metadata", "/to-file"])
def test_redirect_to_forbidden_target_is_refused(base: str, server: _Server, path: str) -> None:
    start = time.monotonic()
    err = error_of(f"{base}{path}")
    assert err.code is ErrorCode.URL_FORBIDDEN
    assert time.monotonic() - start < 1.0
    assert server.requests == [path]


def test_bad_urls() -> None:
    assert error_of("http://").code is ErrorCode.ILLEGAL_PARAMETER


def test_forbidden_reason_public_addresses() -> None:
    import ipaddress

    assert forbidden_reason(ipaddress.ip_address("8.8.8.8")) is None
    assert forbidden_reason(ipaddress.ip_address("2606:4700:4700::1111")) is None
    assert forbidden_reason(ipaddress.ip_address("169.254.169.254")) == "a cloud metadata address"


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 'localhost' (not trusted by the client: that is fine)."""
    import datetime

    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_connects_to_checked_address_with_original_tls_name(tmp_path: Path) -> None:
    import ssl

    cert_path, key_path = _self_signed(tmp_path)
    seen: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    context.sni_callback = lambda sock, name, ctx: seen.append(name)
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.requests = []
    srv.socket = context.wrap_socket(srv.socket, server_side=True)
    srv.handle_error = lambda request, address: None  # type: ignore[method-assign]
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"https://localhost:{srv.server_address[1]}/photo.jpg"
        # loopback is refused by default: the allow-list lets this one host name through
        settings = Settings(url_allow_hosts=["localhost"], download_timeout_s=2.0)
        err = error_of(url, settings)
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)
    if not seen:
        pytest.skip("localhost resolved to an address this server does not listen on")
    # the connection went to the pinned IP, yet TLS carried the URL's host name ...
    assert seen[0] == "localhost"
    # ... and certificate verification stayed on: the self-signed certificate is refused
    assert err.code is ErrorCode.DOWNLOAD_FAILED and "CERTIFICATE_VERIFY_FAILED" in err.message
