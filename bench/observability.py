"""What observability costs: the HTTP middleware per request, and the metric calls per chunk.

* HTTP: a small Starlette app (one JSON route) served in-process through httpx's ASGI
  transport, with and without :class:`MetricsMiddleware` (+ the access log line at WARNING so
  it is formatted but not written), the two alternating round by round;
* chunk: :func:`record_chunk` for a chunk of N done items with engine-like stage timings,
  against the same loop without the call (the baseline is the loop itself).

Prints microseconds per request and per chunk; the machine is printed with them.

    .venv/bin/python bench/observability.py --rounds 7 --requests 2000
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench._common import machine_info, machine_line
from pipeline.observability.http import MetricsMiddleware
from pipeline.observability.metrics import record_chunk


async def _hello(_: Any) -> JSONResponse:
    return JSONResponse({"ok": True})


def make_app(instrumented: bool) -> Any:
    app = Starlette(routes=[Route("/v1/things/{thing_id}", _hello)])
    return MetricsMiddleware(app) if instrumented else app


async def requests_per_s(app: Any, n: int) -> float:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        started = time.perf_counter()
        for i in range(n):
            resp = await client.get(f"/v1/things/{i % 50}")
            assert resp.status_code == 200
        return (time.perf_counter() - started) / n


@dataclass
class _Analysis:
    timings_ms: dict[str, float] = field(
        default_factory=lambda: {"decode": 8.0, "detect": 20.0, "align": 0.5, "embed": 6.0}
    )


@dataclass
class _Outcome:
    analysis: _Analysis


@dataclass
class _Item:
    item_id: int
    status: str = "done"
    error: dict[str, Any] | None = None
    n_faces: int = 2


def chunk_cost(items: int, chunks: int, instrumented: bool) -> float:
    outcomes = [_Item(i) for i in range(items)]
    analysed = [_Outcome(_Analysis()) for _ in range(items)]
    timings = {"claim": 2.0, "analyse": 900.0, "write": 40.0, "total": 950.0}
    started = time.perf_counter()
    for _ in range(chunks):
        if instrumented:
            record_chunk("detect", outcomes, analysed, timings)
        else:
            for o, a in zip(outcomes, analysed, strict=True):  # the same iteration, no metrics
                _ = (o.status, a.analysis.timings_ms)
    return (time.perf_counter() - started) / chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--chunk-items", type=int, default=32)
    parser.add_argument("--chunks", type=int, default=2000)
    args = parser.parse_args()
    logging.getLogger("facepipe.access").setLevel(logging.WARNING)
    print(machine_line(machine_info()))
    plain, instrumented = make_app(False), make_app(True)
    http: dict[bool, list[float]] = {False: [], True: []}
    chunk: dict[bool, list[float]] = {False: [], True: []}
    asyncio.run(requests_per_s(instrumented, 200))  # warm up both paths
    asyncio.run(requests_per_s(plain, 200))
    for _ in range(args.rounds):
        for flag, app in ((False, plain), (True, instrumented)):
            http[flag].append(asyncio.run(requests_per_s(app, args.requests)))
            chunk[flag].append(chunk_cost(args.chunk_items, args.chunks, flag))

    def us(values: list[float]) -> str:
        return f"{statistics.median(values) * 1e6:8.1f} us (min {min(values) * 1e6:.1f})"

    print(f"HTTP request, no middleware     {us(http[False])}")
    print(f"HTTP request, MetricsMiddleware {us(http[True])}")
    print(
        f"  middleware cost per request   "
        f"{(statistics.median(http[True]) - statistics.median(http[False])) * 1e6:8.1f} us"
    )
    print(f"chunk of {args.chunk_items} items, loop only     {us(chunk[False])}")
    print(f"chunk of {args.chunk_items} items, record_chunk  {us(chunk[True])}")


if __name__ == "__main__":
    main()
