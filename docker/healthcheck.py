#!/opt/venv/bin/python
"""Health check of the facepipe images: Docker HEALTHCHECK, ECS healthCheck, compose.

Installed as /usr/local/bin/facepipe-healthcheck. It reads the command line of PID 1 (the
images run ``tini -- facepipe <sub-command> ...``) and checks what that sub-command serves:

- ``api``: ``GET http://127.0.0.1:<port>/healthz`` answers 200 (the API's own health endpoint;
  ``--port`` is read from the command line, default 8000);
- ``metrics`` (``metrics serve``, the Prometheus exporter): ``GET http://127.0.0.1:<port>/metrics``
  answers 200 (default port 9108), i.e. the exporter serves what Prometheus scrapes;
- ``worker``: the Celery worker of this container answers a broadcast ping over the broker
  (what ``celery inspect ping -d celery@<hostname>`` does), so the broker is reachable and the
  worker's main loop responds;
- anything else (``beat``, ``s3-listen``, ``queue-metrics``, ``db upgrade``): the facepipe process
  is alive and not a zombie. That is a liveness check only: a hung process passes it.

Exit status 0 is healthy, 1 unhealthy (Docker's convention); one line on stdout says why.
An optional argument names another PID to look at (the tests use it; containers never do).
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

TIMEOUT_S = 5.0
# The sub-commands that serve HTTP: the path checked and the port when --port is not given
# (the CLI's own defaults: pipeline/cli/).
HTTP_CHECKS = {"api": ("/healthz", 8000), "metrics": ("/metrics", 9108)}


@dataclass(frozen=True)
class Target:
    """What the container runs: the facepipe sub-command and the ``--port`` it was given."""

    command: str
    port: int | None = None

    def http_url(self) -> str | None:
        """The URL to check for a sub-command that serves HTTP, else None."""
        if self.command not in HTTP_CHECKS:
            return None
        path, default_port = HTTP_CHECKS[self.command]
        return f"http://127.0.0.1:{self.port or default_port}{path}"


def parse_target(argv: list[str]) -> Target | None:
    """The facepipe sub-command in a command line (``tini -- facepipe api --port 8000``)."""
    for i, arg in enumerate(argv):
        if os.path.basename(arg) == "facepipe" and i + 1 < len(argv):
            command, rest = argv[i + 1], argv[i + 2 :]
            port = None
            for j, opt in enumerate(rest):
                value = None
                if opt == "--port" and j + 1 < len(rest):
                    value = rest[j + 1]
                elif opt.startswith("--port="):
                    value = opt.split("=", 1)[1]
                if value is not None:
                    if not value.isdigit() or not 0 < int(value) < 65536:
                        return None
                    port = int(value)
            return Target(command=command, port=port)
    return None


def _cmdline(pid: str) -> list[str]:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _state(pid: str) -> str:
    # /proc/<pid>/stat: "pid (comm) state ..."; comm may contain spaces, so split after ')'.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def check_http(url: str) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            return resp.status == 200, f"{url}: {resp.status}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url}: {exc}"


def check_worker() -> tuple[bool, str]:
    from workers.app import app

    node = f"celery@{socket.gethostname()}"
    try:
        with app.connection_for_write() as conn:
            # one connection attempt, not Celery's retry loop: a health check must answer in time
            conn.ensure_connection(max_retries=1, timeout=TIMEOUT_S)
            replies = app.control.ping(destination=[node], timeout=TIMEOUT_S, connection=conn)
    except Exception as exc:  # broker down, bad URL: unhealthy, with the reason
        return False, f"ping {node}: {type(exc).__name__}: {exc}"
    ok = any(node in reply for reply in replies)
    return ok, f"ping {node}: {'pong' if ok else 'no reply'}"


def check_process(command: str) -> tuple[bool, str]:
    """A live (not zombie) process running ``facepipe <command>``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or entry.name == str(os.getpid()):
            continue
        try:
            target = parse_target(_cmdline(entry.name))
            if target is None or target.command != command:
                continue
            if os.path.basename(_cmdline(entry.name)[0]) == "tini":
                continue
            state = _state(entry.name)
        except OSError:  # the process ended while we looked
            continue
        if state != "Z":
            return True, f"facepipe {command}: pid {entry.name} state {state}"
    return False, f"facepipe {command}: no live process"


def main(argv: list[str]) -> int:
    """``facepipe-healthcheck [PID]``: check what process PID (default 1, the container's) runs."""
    pid = argv[0] if argv else "1"
    if not pid.isdigit():
        print(f"usage: facepipe-healthcheck [PID], not {pid!r}")
        return 1
    try:
        target = parse_target(_cmdline(pid))
    except OSError as exc:
        print(f"pid {pid}: {exc}")
        return 1
    if target is None:
        print(f"pid {pid} does not run `facepipe <command>`")
        return 1
    url = target.http_url()
    if url is not None:
        ok, why = check_http(url)
    elif target.command == "worker":
        ok, why = check_worker()
    else:
        ok, why = check_process(target.command)
    print(why)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
