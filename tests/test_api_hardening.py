"""The API under hostile or heavy use: deep JSON, oversized bodies streamed without a length,
slow caller URLs (downloaded outside the model slots), a saturated server (SERVICE_BUSY after the
bounded wait, /healthz saying so), and no unauthenticated server beyond loopback."""

from __future__ import annotations

import base64
import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from pipeline.api import create_app
from pipeline.api.auth import check_exposure, is_loopback
from pipeline.api.body import MAX_JSON_DEPTH, MAX_JSON_STRUCTURE, json_depth, json_structure
from pipeline.config import Settings
from pipeline.engine import FaceEngine
from pipeline.errors import FacepipeError
from pipeline.store.db import Database


def settings_with(engine: FaceEngine, **changes: Any) -> Settings:
    return Settings(**{**engine.settings.model_dump(), "api_auth": False, **changes})


@pytest.fixture(scope="module")
def small(engine: FaceEngine, database: Database) -> Iterator[TestClient]:
    """A trial app whose body limit is small (max_image_bytes 64 KiB -> 1.5 MiB bodies) and whose
    slot wait is short; loopback URLs allowed (the slow server below)."""
    settings = settings_with(
        engine, max_image_bytes=64 * 1024, api_slot_wait_s=0.5, url_allow_private=True
    )
    app = create_app(settings, engine=engine, database=database, preload=False)
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="module")
def patient(engine: FaceEngine, database: Database) -> Iterator[TestClient]:
    """A trial app with the default slot wait; loopback URLs allowed."""
    settings = settings_with(engine, url_allow_private=True)
    app = create_app(settings, engine=engine, database=database, preload=False)
    with TestClient(app) as client:
        yield client


def _error(resp: Any) -> dict[str, Any]:
    return resp.json()["error"]  # type: ignore[no-any-return]


# --- bodies ------------------------------------------------------------------------------------


def test_json_depth_is_counted_without_recursion() -> None:
    assert json_depth(b'{"a": [1, {"b": "[[[[{{{{"}]}', 10) == 3
    assert json_depth(b'"\\"[[["', 10) == 0
    assert json_depth(b"[" * 1_000_000, 40) == 41  # stops counting early


def test_deeply_nested_json_is_400(small: TestClient) -> None:
    for depth in (MAX_JSON_DEPTH + 1, 100_000):
        body = '{"image": ' + "[" * depth + "]" * depth + "}"
        resp = small.post("/v1/detect", content=body, headers={"content-type": "application/json"})
        assert resp.status_code == 400, resp.text
        assert _error(resp)["name"] == "ILLEGAL_PARAMETER" and "nested" in _error(resp)["message"]


def test_json_scan_is_linear_on_unterminated_strings() -> None:
    """An unterminated string of escaped quotes made the old scan restart at every quote:
    quadratic, 3.7 s for 40 kB (and it runs on the event loop). Now one pass."""
    hostile = b'{"a": "' + b'\\"' * 500_000  # 1 MB, never closed
    start = time.monotonic()
    assert json_structure(hostile) == b"{:"
    assert json_depth(hostile, MAX_JSON_DEPTH) == 1
    assert time.monotonic() - start < 2.0
    assert json_structure(b'{"k": ["a\\"b", "c\\\\"], "t": "\\') == b"{:[,],:"


def test_a_json_body_of_too_many_values_is_400(small: TestClient) -> None:
    """160 MB of ``{},`` would parse into about 4 GB of Python objects: the body's structure is
    counted before it is parsed."""
    wide = '{"image": [' + "{}," * (MAX_JSON_STRUCTURE // 3 + 1) + "{}]}"
    resp = small.post("/v1/detect", content=wide, headers={"content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert (
        _error(resp)["name"] == "ILLEGAL_PARAMETER" and "too many values" in _error(resp)["message"]
    )
    fits = '{"image": [' + "1," * 1000 + "1]}"  # parsed, then refused for what it is
    resp = small.post("/v1/detect", content=fits, headers={"content-type": "application/json"})
    assert resp.status_code == 400 and "too many values" not in _error(resp)["message"]


def _stream(total: int, chunk: bytes = b"A" * 65536) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield chunk
        sent += len(chunk)


@pytest.mark.parametrize(
    ("ctype", "prefix"),
    [
        ("application/json", b'{"image": "'),
        ("application/x-www-form-urlencoded", b"image="),
        (
            "multipart/form-data; boundary=xyz",
            b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n',
        ),
    ],
)
def test_oversized_streamed_body_is_413(small: TestClient, ctype: str, prefix: bytes) -> None:
    """Sent chunked (no Content-Length): reading stops at the limit, whatever the body type."""

    def body() -> Iterator[bytes]:
        yield prefix
        yield from _stream(4 * 1024 * 1024)

    resp = small.post("/v1/detect", content=body(), headers={"content-type": ctype})
    assert resp.status_code == 413, resp.text
    assert _error(resp)["name"] == "IMAGE_TOO_LARGE"
    declared = small.post(
        "/v1/detect", content=b"{}", headers={"content-type": ctype, "content-length": "99999999"}
    )
    assert declared.status_code == 413


def test_an_upload_above_the_image_cap_is_413(small: TestClient) -> None:
    """A multipart upload within the body limit but above the image cap: IMAGE_TOO_LARGE, read
    no further than one byte past the cap."""
    big = b"\xff\xd8" + b"\0" * (96 * 1024)
    resp = small.post("/v1/detect", files={"image": ("big.jpg", big, "image/jpeg")})
    assert resp.status_code == 413, resp.text
    assert _error(resp)["name"] == "IMAGE_TOO_LARGE"
    added = small.post("/v1/persons/nobody/faces", files=[("images", ("a.jpg", big, "image/jpeg"))])
    assert added.status_code == 404  # the person is looked up after the images are read


# --- model slots ---------------------------------------------------------------------------------


class _SlowImage(http.server.BaseHTTPRequestHandler):
    """Answers a JPEG after a delay (a slow caller URL)."""

    payload = b""
    delay_s = 3.0

    def do_GET(self) -> None:
        time.sleep(self.delay_s)
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def slow_url(yaoming_jpg: Path) -> Iterator[str]:
    _SlowImage.payload = yaoming_jpg.read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowImage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/slow.jpg"
    finally:
        server.shutdown()
        server.server_close()


def test_slow_downloads_do_not_hold_model_slots(
    patient: TestClient, slow_url: str, yaoming_jpg: Path
) -> None:
    """Three slow URLs (more than the 2 slots) are downloading; a base64 detect still runs at
    once and /healthz shows no slot in use."""
    inline = {"image": base64.b64encode(yaoming_jpg.read_bytes()).decode()}
    patient.post("/v1/detect", json=inline)  # warm-up: first call compiles nothing later
    with ThreadPoolExecutor(4) as pool:
        slow = [pool.submit(patient.post, "/v1/detect", json={"url": slow_url}) for _ in range(3)]
        time.sleep(0.8)
        load = patient.get("/healthz").json()["load"]
        started = time.monotonic()
        quick = patient.post("/v1/detect", json=inline)
        quick_s = time.monotonic() - started
        assert not any(f.done() for f in slow)
        results = [f.result() for f in slow]
    assert load == {"slots": 2, "in_use": 0, "waiting": 0}
    assert quick.status_code == 200 and quick_s < _SlowImage.delay_s - 1.0
    assert [(r.status_code, len(r.json().get("faces", []))) for r in results] == [(200, 1)] * 3


def _slot_waits() -> tuple[float, float]:
    """(count, sum) of this process's facepipe_api_model_slot_wait_seconds."""
    name = "facepipe_api_model_slot_wait_seconds"
    return (
        REGISTRY.get_sample_value(f"{name}_count") or 0.0,
        REGISTRY.get_sample_value(f"{name}_sum") or 0.0,
    )


def test_many_slow_downloads_do_not_starve_the_other_calls(
    patient: TestClient, slow_url: str, yaoming_jpg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More slow caller URLs than the server's worker threads (anyio's 40): downloads run on
    threads of their own (DOWNLOAD_THREADS), so a model call and /healthz still find a thread
    instead of waiting for the downloads to end."""
    from pipeline.api.state import DOWNLOAD_THREADS

    monkeypatch.setattr(_SlowImage, "delay_s", 6.0)
    inline = {"image": base64.b64encode(yaoming_jpg.read_bytes()).decode()}
    patient.post("/v1/detect", json=inline)  # warm-up
    n_slow = 45
    assert n_slow > DOWNLOAD_THREADS
    with ThreadPoolExecutor(n_slow + 2) as pool:
        slow = [
            pool.submit(patient.post, "/v1/detect", json={"url": slow_url}) for _ in range(n_slow)
        ]
        time.sleep(1.5)
        started = time.monotonic()
        health = patient.get("/healthz")
        quick = patient.post("/v1/detect", json=inline)
        quick_s = time.monotonic() - started
        assert not any(f.done() for f in slow)
        codes = [f.result().status_code for f in slow]
    assert health.status_code == 200 and quick.status_code == 200
    assert quick_s < 4.0, quick_s  # the downloads hold their threads for 6 s
    assert codes == [200] * n_slow


def test_saturated_slots_answer_service_busy(small: TestClient, yaoming_jpg: Path) -> None:
    """Both slots held: a model call waits api_slot_wait_s (0.5 s), then 503 SERVICE_BUSY;
    /healthz reports the slots in use and the waiting callers meanwhile; the wait that ran out
    is in facepipe_api_model_slot_wait_seconds (saturation shows on the dashboard)."""
    state = small.app.state.facepipe  # type: ignore[attr-defined]
    waits_before = _slot_waits()
    holders = [object(), object()]
    for holder in holders:
        small.portal.call(state.slots.acquire_on_behalf_of_nowait, holder)  # type: ignore[union-attr]
    try:
        inline = {"image": base64.b64encode(yaoming_jpg.read_bytes()).decode()}
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(small.post, "/v1/detect", json=inline)
            time.sleep(0.2)
            load = small.get("/healthz").json()["load"]
            resp = waiting.result()
        assert load == {"slots": 2, "in_use": 2, "waiting": 1}
        assert resp.status_code == 503, resp.text
        assert (_error(resp)["name"], _error(resp)["code"]) == ("SERVICE_BUSY", -1907)
        count, seconds = (a - b for a, b in zip(_slot_waits(), waits_before, strict=True))
        assert count == 1 and 0.5 <= seconds < 5.0
        # I/O-only calls never wait for a slot.
        assert small.get("/v1/groups").status_code == 200
    finally:
        for holder in holders:
            small.portal.call(state.slots.release_on_behalf_of, holder)  # type: ignore[union-attr]
    assert small.post("/v1/detect", json=inline).status_code == 200


# --- exposure ----------------------------------------------------------------------------------


def test_loopback_rule() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "example.com"))
    trial = Settings(api_auth=False)
    check_exposure("127.0.0.1", trial)
    check_exposure("0.0.0.0", Settings())  # auth on: any interface
    with pytest.raises(FacepipeError) as refused:
        check_exposure("0.0.0.0", trial)
    assert "loopback" in refused.value.message


def test_facepipe_api_refuses_open_trial_beyond_loopback(database: Database) -> None:
    env = {**os.environ, "FACEPIPE_DATABASE_URL": database.url, "FACEPIPE_API_AUTH": "false"}
    code = (
        "import sys; import pipeline.cli.api_cmds; from pipeline.cli.app import app; "
        "sys.argv = ['facepipe'] + sys.argv[1:]; app()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "api", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "FACEPIPE_API_AUTH=false" in proc.stderr


def test_docs_and_openapi_need_credentials(engine: FaceEngine, database: Database) -> None:
    settings = Settings(**{**engine.settings.model_dump(), "api_token": "tok"})
    app = create_app(settings, engine=engine, database=database, preload=False)
    with TestClient(app) as client:
        for path in ("/openapi.json", "/docs"):
            assert client.get(path).status_code == 401
            assert client.get(path, headers={"Authorization": "Bearer tok"}).status_code == 200
        assert client.get("/healthz").status_code == 200
