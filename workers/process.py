"""Start and stop Celery worker subprocesses (used by ``facepipe demo``, tests and benchmarks)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pipeline.jobs.dispatch import QUEUES

log = logging.getLogger(__name__)


@dataclass
class WorkerProcess:
    """A running ``celery worker`` in its own process group."""

    proc: subprocess.Popen[bytes]
    hostname: str
    logfile: Path
    _log_fh: IO[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (the worker and its pool children)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            self.kill(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.proc.wait(5)
        # pool children may outlive a killed parent: make sure the group is gone
        self.kill(signal.SIGKILL)
        self._log_fh.close()


def start_worker(
    *,
    queues: Sequence[str] = QUEUES,
    concurrency: int = 1,
    pool: str = "prefork",
    env: Mapping[str, str] | None = None,
    logfile: Path,
    loglevel: str = "INFO",
) -> WorkerProcess:
    """Start ``celery -A workers.app worker`` with its own process group; returns at once."""
    hostname = f"facepipe-{uuid.uuid4().hex[:8]}@%h"
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.app",
        "worker",
        "-Q",
        ",".join(queues),
        "-c",
        str(concurrency),
        "-P",
        pool,
        "-n",
        hostname,
        "-l",
        loglevel,
        "--without-gossip",
        "--without-mingle",
    ]
    logfile.parent.mkdir(parents=True, exist_ok=True)
    fh = logfile.open("ab")
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **(env or {})},
        stdout=fh,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    return WorkerProcess(proc, hostname, logfile, fh)


def wait_ready(worker: WorkerProcess, timeout_s: float = 60.0) -> None:
    """Block until the worker logs that it is ready (or raise with its log)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {worker.proc.returncode}:\n{worker.log_text()}")
        if " ready." in worker.log_text():
            return
        time.sleep(0.2)
    raise TimeoutError(f"worker not ready after {timeout_s} s:\n{worker.log_text()[-3000:]}")
