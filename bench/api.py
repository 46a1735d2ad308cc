"""Benchmark of the HTTP API: detect, verify and identify through each protocol (native /v1,
Tencent YouTu v2, Tencent IAI, Baidu Face v2) against a real ``facepipe api`` (uvicorn
subprocess, real models, embedded Postgres), with one and with two server processes.

Each protocol's requests are built and signed as its SDK does (YouTu HMAC-SHA1, IAI TC3, Baidu
access token, /v1 Bearer), on the same photo, against the same enrolled person. The protocols
are measured alternately, round after round, so that a noisy machine falls on all of them
alike; the translation overhead is each protocol's p50 minus /v1's p50 for the same call.

Usage::

    python bench/api.py --requests 20 --rounds 3 --redis-url redis://127.0.0.1:6390/11

Writes ``bench/out/api.json``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import DEFAULT_OUT, dumps, machine_info, machine_line

SERVER_KEY = "bench-api-server-key-0123456789abcdef"
PROTOCOLS = ("v1", "youtu", "iai", "baidu")
CALLS = ("detect", "verify", "identify")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(db_url: str, redis_url: str, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "FACEPIPE_DATABASE_URL": db_url,
        "FACEPIPE_SECRET_KEY": SERVER_KEY,
        "FACEPIPE_BROKER_URL": redis_url,
        "FACEPIPE_API_RATE_PER_S": "100000",
        "FACEPIPE_API_RATE_BURST": "100000",
    }
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("facepipe")),
            "api",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    healthy = 0
    try:
        while healthy < workers * 3:  # a few answers, so that every process is likely up
            with contextlib.suppress(httpx.TransportError):
                healthy += httpx.get(f"{url}/healthz", timeout=5).status_code == 200
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("facepipe api did not come up")
            time.sleep(0.2)
    except BaseException:
        proc.terminate()
        proc.wait(timeout=60)
        raise
    return proc, url


class Protocols:
    """Builds each protocol's request for a call, signed the way its SDK signs it."""

    def __init__(self, url: str, key: Any, image: bytes, person: str, group: str) -> None:
        self.url, self.key, self.person, self.group = url, key, person, group
        self.b64 = base64.b64encode(image).decode()
        self.host = url.removeprefix("http://")
        token = httpx.get(
            f"{url}/oauth/2.0/token",
            params={
                "grant_type": "client_credentials",
                "client_id": key.key_id,
                "client_secret": key.secret,
            },
        ).json()
        self.baidu_token = token["access_token"]

    def request(self, protocol: str, call: str) -> tuple[str, dict[str, Any]]:
        """(url, httpx.post keyword arguments)."""
        return getattr(self, protocol)(call)  # type: ignore[no-any-return]

    def v1(self, call: str) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"image": self.b64}
        if call == "verify":
            body["person_id"] = self.person
        if call == "identify":
            body["group_ids"] = [self.group]
        headers = {"Authorization": f"Bearer {self.key.secret}"}
        return f"{self.url}/v1/{call}", {"json": body, "headers": headers}

    def youtu(self, call: str) -> tuple[str, dict[str, Any]]:
        from pipeline.api.youtu import sign

        now = int(time.time())
        auth = sign(self.key.appid, "b", self.key.key_id, self.key.secret, now + 60, now, now)
        body: dict[str, Any] = {"appid": self.key.appid, "image": self.b64}
        if call == "verify":
            body["person_id"] = self.person
        if call == "identify":
            body["group_id"] = self.group
        return f"{self.url}/face/{call}", {"json": body, "headers": {"Authorization": auth}}

    def iai(self, call: str) -> tuple[str, dict[str, Any]]:
        from pipeline.api import tc3

        action, body = {
            "detect": ("DetectFace", {"Image": self.b64}),
            "verify": ("VerifyPerson", {"PersonId": self.person, "Image": self.b64}),
            "identify": ("SearchPersons", {"GroupIds": [self.group], "Image": self.b64}),
        }[call]
        payload = json.dumps(body).encode()
        now = int(time.time())
        headers = {"content-type": "application/json", "host": self.host}
        signature = tc3.signature(
            self.key.secret,
            method="POST",
            uri="/",
            query="",
            headers=headers,
            signed_headers=("content-type", "host"),
            payload=payload,
            timestamp=now,
            service="iai",
        )
        auth = (
            f"TC3-HMAC-SHA256 Credential={self.key.key_id}/{tc3.date_of(now)}/iai/"
            f"tc3_request, SignedHeaders=content-type;host, Signature={signature}"
        )
        headers |= {
            "Authorization": auth,
            "X-TC-Action": action,
            "X-TC-Version": "2020-03-03",
            "X-TC-Timestamp": str(now),
        }
        return f"{self.url}/", {"content": payload, "headers": headers}

    def baidu(self, call: str) -> tuple[str, dict[str, Any]]:
        form = {"image": self.b64}
        if call == "verify":
            form |= {"uid": self.person, "group_id": self.group}
        if call == "identify":
            form["group_id"] = self.group
        return (
            f"{self.url}/rest/2.0/face/v2/{call}",
            {"data": form, "params": {"access_token": self.baidu_token}},
        )


def check(protocol: str, resp: httpx.Response) -> None:
    body = resp.json()
    failed = (
        resp.status_code != 200
        or (protocol == "youtu" and body.get("code") != 0)
        or (protocol == "iai" and "Error" in body.get("Response", {}))
        or (protocol == "baidu" and "error_code" in body)
    )
    if failed:
        raise SystemExit(f"{protocol}: {resp.status_code} {resp.text[:300]}")


def run_batch(
    client: httpx.Client, protocols: Protocols, protocol: str, call: str, n: int, concurrency: int
) -> tuple[float, list[float]]:
    """(wall seconds, per-request latencies in ms) of n requests, ``concurrency`` at a time."""

    def one(_: int) -> float:
        url, kwargs = protocols.request(protocol, call)
        start = time.perf_counter()
        resp = client.post(url, **kwargs)
        elapsed = (time.perf_counter() - start) * 1000
        check(protocol, resp)
        return elapsed

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, range(n)))
    return time.perf_counter() - start, latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(
    url: str, key: Any, image: bytes, args: argparse.Namespace, workers: int
) -> dict[str, Any]:
    protocols = Protocols(url, key, image, "bench-person", "bench-group")
    concurrency = 2 * workers
    stats: dict[tuple[str, str], dict[str, list[float]]] = {}
    with httpx.Client(timeout=120) as client:
        for protocol in PROTOCOLS:  # warm-up: every route once
            for call in CALLS:
                run_batch(client, protocols, protocol, call, 2, 1)
        for r in range(args.rounds):
            order = PROTOCOLS[r % 4 :] + PROTOCOLS[: r % 4]  # rotate who goes first
            for call in CALLS:
                for protocol in order:
                    wall, lat = run_batch(
                        client, protocols, protocol, call, args.requests, concurrency
                    )
                    entry = stats.setdefault((protocol, call), {"wall": [], "lat": []})
                    entry["wall"].append(wall)
                    entry["lat"].extend(lat)
    out: dict[str, Any] = {}
    for (protocol, call), entry in stats.items():
        total = args.requests * args.rounds
        out.setdefault(call, {})[protocol] = {
            "requests_per_s": round(total / sum(entry["wall"]), 2),
            "p50_ms": round(statistics.median(entry["lat"]), 1),
            "p95_ms": round(percentile(entry["lat"], 0.95), 1),
        }
    for per_protocol in out.values():
        base = per_protocol["v1"]["p50_ms"]
        for figures in per_protocol.values():
            figures["overhead_vs_v1_p50_ms"] = round(figures["p50_ms"] - base, 1)
    return {"workers": workers, "concurrency": concurrency, "calls": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20, help="requests per batch")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--workers", default="1,2", help="server process counts to measure")
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/15",
        help="Redis for the per-key rate limits (its keys only)",
    )
    parser.add_argument("--image", type=Path, default=None, help="default: yaoming.jpg")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT / "api.json")
    args = parser.parse_args()

    from pipeline.apikeys import SecretCipher
    from pipeline.config import Settings
    from pipeline.models.pack import vectron_model_dir
    from pipeline.store import apikeys as key_store
    from pipeline.store.db import Database

    image_path = args.image or vectron_model_dir() / "yaoming.jpg"
    image = image_path.read_bytes()
    info = machine_info()
    print(machine_line(info))
    home = Path(tempfile.mkdtemp(prefix="facepipe-bench-api-"))
    db = Database.from_settings(Settings(home=home))
    results = []
    try:
        with db.transaction() as conn:
            key = key_store.create_key(conn, "bench", SecretCipher(SERVER_KEY))
        for workers in (int(w) for w in args.workers.split(",")):
            proc, url = start_server(db.url, args.redis_url, workers)
            try:
                enrolled = httpx.post(
                    f"{url}/v1/persons",
                    timeout=120,
                    headers={"Authorization": f"Bearer {key.secret}"},
                    json={
                        "person_id": "bench-person",
                        "group_ids": ["bench-group"],
                        "image": base64.b64encode(image).decode(),
                    },
                )
                if enrolled.status_code not in (201, 409):
                    raise SystemExit(f"enrolment failed: {enrolled.text[:300]}")
                result = measure(url, key, image, args, workers)
            finally:
                proc.terminate()
                proc.wait(timeout=60)
            results.append(result)
            print(
                f"\n{workers} server process(es), {result['concurrency']} concurrent callers, "
                f"{args.requests} x {args.rounds} requests per cell ({image_path.name}):"
            )
            print(
                f"{'call':<9}{'protocol':<8}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}"
                f"{'vs /v1 p50':>12}"
            )
            for call, per_protocol in result["calls"].items():
                for protocol in PROTOCOLS:
                    f = per_protocol[protocol]
                    print(
                        f"{call:<9}{protocol:<8}{f['requests_per_s']:>8}{f['p50_ms']:>9}"
                        f"{f['p95_ms']:>9}{f['overhead_vs_v1_p50_ms']:>+12}"
                    )
    finally:
        db.close()
        shutil.rmtree(home, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps({"machine": info, "image": image_path.name, "results": results}))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
