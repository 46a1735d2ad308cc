"""Export a job's observed faces and matches as JSON Lines to the export folder or an S3 key.

One line per observed face::

    {"job_id": ..., "source": "s3://b/k.jpg", "observed_id": 17, "face_index": 0,
     "box": [x1, y1, x2, y2], "quality": 81.2,
     "matches": [{"rank": 1, "person_id": "ann", "face_id": 4, "confidence": 93.1,
                  "score": 0.71}, ...]}

Rows are streamed from a server-side cursor to :mod:`pipeline.jobs.exporter` (the one JSON Lines
exporter: a temporary file moved into place or uploaded), so a large job's export never sits in
memory and a reader never sees a half-written file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from psycopg import Connection

from pipeline.jobs.exporter import export_records
from pipeline.jobs.runtime import Runtime
from pipeline.store.jobs import get_job
from pipeline.store.observations import job_match_rows

log = logging.getLogger(__name__)


def iter_job_matches(conn: Connection, job_id: str) -> Iterator[dict[str, Any]]:
    """The export's records, streamed with a server-side cursor."""
    for observed_id, source, face_index, box, quality, matches in job_match_rows(conn, job_id):
        yield {
            "job_id": job_id,
            "source": source,
            "observed_id": observed_id,
            "face_index": face_index,
            "box": [round(float(v), 1) for v in box],
            "quality": round(float(quality), 2),
            "matches": matches,
        }


def export_matches(rt: Runtime, job_id: str, dest: str) -> int:
    """Write the job's records to ``dest`` (``s3://bucket/key`` or a name under the export
    folder, see :mod:`pipeline.jobs.exportdest`); returns the count.

    The destination is checked again here, under the trust of whoever submitted the job, and
    once more after its folder is created (a symlink placed since must not lead outside).
    """
    with rt.db.connection() as conn:
        job = get_job(conn, job_id)
    with rt.db.connection() as conn:
        count = export_records(iter_job_matches(conn, job_id), dest, rt.settings, job.origin.trust)
    log.info("job %s: exported %d observed faces to %s", job_id, count, dest)
    return count
