"""Versioned SQL migrations: ``migrations/NNNN_name.sql`` applied in order, each exactly once.

Every applied file is recorded in ``schema_migrations``. Each migration runs in its own
transaction that first takes a transaction-scoped advisory lock, so several processes starting
at once (API, workers, CLI) apply each file once: the others wait on the lock, then see the row
and skip it. A failing migration rolls back alone and leaves the earlier ones in place.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_FILE_RE = re.compile(r"^(\d{4})_([A-Za-z0-9_]+)\.sql$")

# Arbitrary constant identifying facepipe's migration lock (pg_advisory_xact_lock takes a bigint).
MIGRATION_LOCK_KEY = 0x46A6E71E

_BOOTSTRAP_SQL = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    path: Path

    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files of ``directory`` sorted by version; duplicate versions are an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if match is None:
            logger.warning("ignoring migration file with a malformed name: %s", path.name)
            continue
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"two migrations share version {version:04d}: {path.name}")
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


def applied_versions(conn: psycopg.Connection) -> set[int]:
    """Versions recorded in ``schema_migrations`` (empty when the table does not exist yet)."""
    exists = conn.execute("SELECT to_regclass('public.schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return set()
    return {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}


def apply_migrations(conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every pending migration of ``directory``; returns the names of those applied here.

    ``conn`` must not be inside a transaction: each migration commits on its own.
    """
    applied_here: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        conn.execute(_BOOTSTRAP_SQL)
    for migration in discover(directory):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            if migration.version in applied_versions(conn):
                continue
            logger.info("applying migration %04d_%s", migration.version, migration.name)
            conn.execute(migration.sql().encode("utf-8"))
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied_here.append(f"{migration.version:04d}_{migration.name}")
    return applied_here
