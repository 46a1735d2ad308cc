"""Pipeline benchmark: images/s through Celery (1 and 2 worker processes) versus the engine
in-process on the same photos, and queue-to-result latency of one S3 event.

    .venv/bin/python bench/pipeline.py [--photos DIR] [--limit N] [--chunk-size N]

Every run is a ``detect`` job (decode, detect, align, embed, write observed faces to Postgres),
the in-process baseline is ``FaceEngine.analyze_stream`` over the same files. Workers are warmed
(models loaded) before timing. The S3 latency is measured from ``upload_file`` returning to the
job being done (key ``enroll/bench/person<i>/photo.jpg``: one face enrolled), through a moto
server (S3 + SQS over HTTP), the real S3 -> SQS notification, the SQS listener and a warm
worker. Uses Redis DB 9/10 (flushed) of the Redis on ``FACEPIPE_REDIS_PORT`` (default 6379;
give your own Redis's port on a shared machine) and a private embedded Postgres under a
temporary FACEPIPE_HOME.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    DEFAULT_OUT,
    SHARED_FACES,
    list_photos,
    machine_info,
    machine_line,
    write_json,
)

REDIS_PORT = int(os.environ.get("FACEPIPE_REDIS_PORT", "6379"))
"""The Redis this benchmark flushes DB 9 and 10 of (``FACEPIPE_REDIS_PORT``)."""
BROKER = f"redis://127.0.0.1:{REDIS_PORT}/9"
RESULTS = f"redis://127.0.0.1:{REDIS_PORT}/10"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("moto server did not start")


def _wait(job_id: str, timeout_s: float = 900.0) -> Any:
    from pipeline.jobs.runtime import get_runtime
    from pipeline.store import jobs as store

    return store.wait_for_job(get_runtime().db, job_id, timeout_s=timeout_s, poll_s=0.05)


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["images_per_s"] for r in runs]
    cpu_key = (
        "worker_cpu_ms_per_image" if "worker_cpu_ms_per_image" in runs[0] else ("cpu_ms_per_image")
    )
    return {
        **runs[0],
        "seconds": [r["seconds"] for r in runs],
        cpu_key: round(statistics.median(r[cpu_key] for r in runs), 1),
        "images_per_s_runs": rates,
        "images_per_s": round(statistics.median(rates), 2),
        "images_per_s_best": max(rates),
        "load_avg_1min": [round(r["load_1min"], 2) for r in runs],
    }


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live children (a worker and its pool)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def _pipeline_run(
    folder: Path, warm: Path, processes: int, chunk: int, home: Path
) -> dict[str, Any]:
    """Start a worker with ``processes`` pool processes, warm it, time one job, stop it."""
    from pipeline.jobs.model import JobKind
    from pipeline.jobs.submit import submit_job
    from workers.process import start_worker, wait_ready

    worker = start_worker(
        queues=("ingest", "infer"), concurrency=processes, logfile=home / f"worker-{processes}.log"
    )
    try:
        wait_ready(worker, 120)
        # one image per chunk: every pool process loads its models before the timed job
        _wait(submit_job(JobKind.DETECT, str(warm), groups=[], chunk_size=1).id)
        cpu_start = _tree_cpu_s(worker.pid)
        start = time.perf_counter()
        job = _wait(submit_job(JobKind.DETECT, str(folder), groups=[], chunk_size=chunk).id)
        wall = time.perf_counter() - start
        cpu = _tree_cpu_s(worker.pid) - cpu_start
    finally:
        worker.stop()
    stages = _chunk_stages(worker.log_text(), job.id)
    n = job.n_done + job.n_failed
    return {
        "processes": processes,
        "images": n,
        "faces": job.n_faces,
        "failed": job.n_failed,
        "seconds": round(wall, 2),
        "images_per_s": round(n / wall, 2),
        "worker_cpu_ms_per_image": round(1000.0 * cpu / max(1, n), 1),
        "chunk_stages_ms": stages,
        "load_1min": os.getloadavg()[0],
    }


def _chunk_stages(log_text: str, job_id: str) -> dict[str, float]:
    """The job's chunk timings summed from the worker's log lines (``job <id> chunk a-b: ...
    (claim x ms, analyse y ms, write z ms, total t ms)``): where a chunk's time goes."""
    import re

    totals: dict[str, float] = {}
    for line in log_text.splitlines():
        if f"job {job_id} chunk" not in line:
            continue
        for stage, ms in re.findall(r"(\w+) (\d+(?:\.\d+)?) ms", line.rpartition("(")[2]):
            totals[stage] = totals.get(stage, 0.0) + float(ms)
    return {k: round(v, 1) for k, v in totals.items()}


class _InProcess:
    """The engine in this process (models loaded once), timed over the same files."""

    def __init__(self) -> None:
        from pipeline.engine import FaceEngine

        self.engine = FaceEngine.from_settings()

    def run(self, paths: list[Path]) -> dict[str, Any]:
        list(self.engine.analyze_stream([str(p) for p in paths[:4]]))  # warm caches
        start, cpu_start = time.perf_counter(), time.process_time()
        faces = failed = 0
        for outcome in self.engine.analyze_stream([str(p) for p in paths]):
            if outcome.error is not None:
                failed += 1
            else:
                faces += len(outcome.analysis.faces)
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        return {
            "images": len(paths),
            "faces": faces,
            "failed": failed,
            "seconds": round(wall, 2),
            "images_per_s": round(len(paths) / wall, 2),
            "cpu_ms_per_image": round(1000.0 * cpu / max(1, len(paths)), 1),
            "load_1min": os.getloadavg()[0],
        }


def _s3_latency(home: Path, photo: Path, repeats: int) -> dict[str, Any]:
    import boto3

    from pipeline.jobs.runtime import get_runtime
    from pipeline.jobs.s3_listener import SqsListener
    from workers.process import start_worker, wait_ready

    proc, endpoint = _start_moto(home / "moto.log")
    os.environ["FACEPIPE_S3_ENDPOINT_URL"] = endpoint
    from pipeline.config import get_settings

    get_settings.cache_clear()
    get_runtime().settings = get_settings()
    worker = start_worker(queues=("ingest", "infer"), concurrency=1, logfile=home / "worker-s3.log")
    stop = threading.Event()
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        queue = sqs.create_queue(QueueName="bench-events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        s3.put_bucket_notification_configuration(
            Bucket="bench",
            NotificationConfiguration={
                "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
            },
        )
        wait_ready(worker, 120)
        listener = SqsListener(queue, settings=get_settings())
        jobs: list[tuple[float, str]] = []

        def listen() -> None:
            while not stop.is_set():
                for handled in listener.poll_once(wait_s=1):
                    for job_id in handled.jobs:
                        jobs.append((time.perf_counter(), job_id))

        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        latencies, enqueue = [], []
        for i in range(repeats + 1):  # the first one warms the worker's models
            before = len(jobs)
            start = time.perf_counter()
            s3.upload_file(str(photo), "bench", f"enroll/bench/person{i}/photo.jpg")
            while len(jobs) == before:
                time.sleep(0.01)
            seen_at, job_id = jobs[-1]
            job = _wait(job_id, 120)
            done = time.perf_counter()
            if job.n_done != 1:
                raise RuntimeError(f"the event's job did not enrol its photo: {job}")
            if i:
                latencies.append(done - start)
                enqueue.append(seen_at - start)
        latencies.sort()
        return {
            "events": len(latencies),
            "median_s": round(statistics.median(latencies), 3),
            "max_s": round(latencies[-1], 3),
            "median_upload_to_enqueued_s": round(statistics.median(enqueue), 3),
        }
    finally:
        stop.set()
        worker.stop()
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=SHARED_FACES / "dev")
    parser.add_argument("--limit", type=int, default=96)
    parser.add_argument("--chunk-size", type=int, default=16)
    parser.add_argument("--s3-events", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--processes",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[1, 2],
        help="worker pool sizes to time, e.g. 1 or 1,2",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT / "pipeline.json")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="facepipe-bench-"))
    os.environ.update(
        {
            "FACEPIPE_HOME": str(home),
            "FACEPIPE_BROKER_URL": BROKER,
            "FACEPIPE_RESULT_BACKEND": RESULTS,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "FACEPIPE_SQS_WAIT_TIME_S": "1",
            "FACEPIPE_REIDENTIFY_GROUPS": '["bench"]',
        }
    )
    import redis

    for url in (BROKER, RESULTS):
        redis.Redis.from_url(url).flushdb()
    from pipeline.jobs.runtime import get_runtime

    db = None
    try:
        db = get_runtime().db  # starts the embedded Postgres once; workers reuse it
        os.environ["FACEPIPE_DATABASE_URL"] = db.url
        paths = list_photos(args.photos, args.limit)
        folder = home / "photos"
        for i, p in enumerate(paths):  # flat copy: the job lists exactly these files
            dest = folder / f"{i:04d}{p.suffix.lower()}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, dest)
        info = machine_info()
        print(machine_line(info), flush=True)
        warm = home / "warm"
        warm.mkdir()
        for p in sorted(folder.iterdir())[:4]:
            shutil.copy(p, warm / p.name)
        # the configurations take turns, repeat after repeat, so the machine's load (shared
        # with other work) weighs on all of them alike
        engine = _InProcess()
        raw: dict[str, list[dict[str, Any]]] = {"in_process": []}
        raw.update({f"celery_{n}": [] for n in args.processes})
        for rep in range(args.repeats):
            raw["in_process"].append(engine.run(sorted(folder.iterdir())))
            for n in args.processes:
                raw[f"celery_{n}"].append(_pipeline_run(folder, warm, n, args.chunk_size, home))
            print(
                f"repeat {rep + 1}: "
                + ", ".join(
                    f"{k} {v[-1]['images_per_s']} img/s "
                    f"({v[-1].get('cpu_ms_per_image', v[-1].get('worker_cpu_ms_per_image'))} CPU "
                    f"ms/img, load {v[-1]['load_1min']:.1f})"
                    for k, v in raw.items()
                ),
                flush=True,
            )
        baseline = _summary(raw["in_process"])
        print(f"in-process engine: {baseline}", flush=True)
        runs = []
        for n in args.processes:
            run = _summary(raw[f"celery_{n}"])
            # in-process / pipeline within each repeat (same load), then the median
            paired = [
                a["images_per_s"] / b["images_per_s"]
                for a, b in zip(raw["in_process"], raw[f"celery_{n}"], strict=True)
            ]
            run["overhead_ratio_per_repeat"] = [round(x, 2) for x in paired]
            run["overhead_ratio"] = round(statistics.median(paired), 2)
            # load-independent: the worker's CPU per image over the engine's (the rest of the
            # pipeline's work: Postgres writes, the chunk bookkeeping, Celery)
            run["cpu_ratio"] = round(
                run["worker_cpu_ms_per_image"] / max(1e-9, baseline["cpu_ms_per_image"]), 3
            )
            print(f"celery, {n} worker process(es): {run}", flush=True)
            runs.append(run)
        s3 = _s3_latency(home, paths[0], args.s3_events) if args.s3_events > 0 else None
        print(f"S3 event -> job done: {s3}", flush=True)
        write_json(
            args.out,
            {
                "machine": info,
                "photos": str(args.photos),
                "in_process": baseline,
                "celery": runs,
                "s3_event_latency": s3,
                "chunk_size": args.chunk_size,
            },
        )
        print(json.dumps({"written": str(args.out)}))
    finally:
        get_runtime().close()
        if db is not None and db.server is not None:
            db.server.stop()  # the private embedded Postgres of this run
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
