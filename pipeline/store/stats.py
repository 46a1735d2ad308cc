"""What the database says about jobs, faces and snapshots at one moment (read by the metrics
exporter, :mod:`pipeline.observability.exporter`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

JOBS_BY_STATUS_SQL = "SELECT kind, status, count(*) FROM jobs GROUP BY kind, status"
# A job's last sign of life: its creation, its start, or any item of it starting or finishing.
# greatest() ignores NULLs.
# progress_at (migration 0004) moves whenever an item is claimed or finished or the listing
# moves on, so no item is scanned; a job the watchdog flagged (jobs.stalled) counts at once.
STALLED_SQL = """
SELECT j.kind, count(*)
FROM jobs j
WHERE j.status IN ('pending', 'running')
  AND (j.stalled IS NOT NULL
       OR coalesce(j.progress_at, j.started_at, j.created_at) < now() - make_interval(secs => %s))
GROUP BY j.kind
"""
OLDEST_PENDING_SQL = """
SELECT coalesce(extract(epoch FROM now() - min(j.created_at)), 0)
FROM jobs j
WHERE j.status IN ('pending', 'running')
  AND EXISTS (SELECT 1 FROM job_items i WHERE i.job_id = j.id AND i.status = 'pending')
"""
GALLERY_SQL = "SELECT model_id, count(*) FROM faces GROUP BY model_id"
SNAPSHOT_AGE_SQL = """
SELECT model_id, max(extract(epoch FROM now() - newest))
FROM (SELECT scope, model_id, max(created_at) AS newest
      FROM index_snapshots WHERE gc_at IS NULL GROUP BY scope, model_id) s
GROUP BY model_id
"""


@dataclass
class JobStats:
    """What the database says about jobs, faces and snapshots at one moment."""

    by_status: dict[tuple[str, str], int] = field(default_factory=dict)
    stalled: dict[str, int] = field(default_factory=dict)
    oldest_pending_s: float = 0.0
    gallery: dict[str, int] = field(default_factory=dict)
    snapshot_age_s: dict[str, float] = field(default_factory=dict)


def read_job_stats(conn: psycopg.Connection, stalled_after_s: float) -> JobStats:
    """Read :class:`JobStats` on one connection."""
    stats = JobStats()
    for kind, status, n in conn.execute(JOBS_BY_STATUS_SQL).fetchall():
        stats.by_status[(str(kind), str(status))] = int(n)
    for kind, n in conn.execute(STALLED_SQL, (float(stalled_after_s),)).fetchall():
        stats.stalled[str(kind)] = int(n)
    row = conn.execute(OLDEST_PENDING_SQL).fetchone()
    stats.oldest_pending_s = float(row[0]) if row and row[0] is not None else 0.0
    for model, n in conn.execute(GALLERY_SQL).fetchall():
        stats.gallery[str(model)] = int(n)
    for model, age in conn.execute(SNAPSHOT_AGE_SQL).fetchall():
        stats.snapshot_age_s[str(model)] = float(age)
    return stats
