"""Chaos: the worker running a reembed job killed with SIGKILL mid-run; the job resumes and ends
on its own (the watchdog re-sends its task once the dead run's lease has run out), every face
moved exactly once, the scope switched. Production healing defaults (tests/chaos/conftest.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Settings
from pipeline.jobs.model import JobStatus
from pipeline.jobs.reembed import (
    ReembedParams,
    create_reembed_job,
    recognizer_model_id,
    source_model_of,
)
from pipeline.jobs.runtime import get_runtime
from pipeline.library import FaceLibrary
from pipeline.models.quantize import QuantizeReport, quantize_pack
from pipeline.sources import load_image
from pipeline.store import jobs as store
from pipeline.store.reembed import active_model
from tests.chaos.conftest import ChaosRedis
from tests.chaos.test_chaos import (
    FINISH_BOUND_S,
    RECOVERY_GOAL_S,
    _wait_for,
    _wait_for_first_watchdog_pass,
    _worker_env,
)
from tests.fixtures.db import truncate_all
from tests.fixtures.services import wait_job

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

COPIES = 16
"""players.jpg's faces are enrolled under this many sets of people: enough faces (about 200)
that the run is still busy when the test kills it after its first batches."""
BATCH = 8


@pytest.fixture(scope="module")
def int8_pack(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> QuantizeReport:
    """A real other pack: the default pack with its recognizer quantized to INT8."""
    photos = sorted(sample_dir.glob("*.jpg"))
    return quantize_pack(Settings(), photos, tmp_path_factory.mktemp("int8"), detector=False)


def _job_row(job_id: str) -> tuple[int, str | None, int]:
    """(n_done, lease_owner, lease_resends) of the job."""
    with get_runtime().db.connection() as conn:
        row = conn.execute(
            "SELECT n_done, lease_owner, lease_resends FROM jobs WHERE id = %s", (job_id,)
        ).fetchone()
    assert row is not None
    return int(row[0]), row[1], int(row[2])


def test_worker_killed_mid_reembed_resumes_without_anyone(
    chaos_env: dict[str, str],
    chaos_redis: ChaosRedis,
    start_worker: Callable[..., Any],
    engine: Any,
    players_jpg: Path,
    int8_pack: QuantizeReport,
    record_property: Callable[[str, object], None],
) -> None:
    from workers.reembed_tasks import reembed_task

    db = get_runtime().db
    truncate_all(db)
    players = engine.analyze([load_image(str(players_jpg))])[0]
    library = FaceLibrary(db, engine, Settings())
    for copy in range(COPIES):
        for k, face in enumerate(players.faces):
            person = f"c{copy:02d}p{k:02d}"
            library.ensure_person(person, ["chaos"])
            library.add_analyzed_face(person, players, face)
    total = COPIES * len(players.faces)
    with db.connection() as conn:
        source = source_model_of(conn, "chaos")
    params = ReembedParams(
        "chaos",
        source,
        recognizer_model_id(int8_pack.folder, Settings()),
        str(int8_pack.folder),
        BATCH,
    )
    first = start_worker(**_worker_env(chaos_env))
    _wait_for_first_watchdog_pass(chaos_redis)
    job = create_reembed_job(db, params)  # created and sent at once, as the CLI does
    assert job.n_items == total
    reembed_task.apply_async(kwargs={"job_id": job.id})
    _wait_for(lambda: _job_row(job.id)[0] >= BATCH, 180, "the run's first batch")
    first.kill()  # SIGKILL to the whole process group: the worker and its pool child
    first.proc.wait(10)
    killed_at = time.monotonic()
    n_done, owner, resends = _job_row(job.id)
    assert 0 < n_done < total, "killed too late: the run had already finished"
    assert owner is not None  # the dead run's lease, left to run out

    start_worker(**_worker_env(chaos_env))  # a fresh worker; nobody re-submits anything
    _wait_for(lambda: _job_row(job.id)[2] > resends, RECOVERY_GOAL_S, "the watchdog's re-send")
    resent_s = time.monotonic() - killed_at
    done = wait_job(job.id, timeout_s=FINISH_BOUND_S)
    done_s = time.monotonic() - killed_at
    record_property("reembed_kill_resent_s", round(resent_s, 1))
    record_property("reembed_kill_done_s", round(done_s, 1))
    print(
        f"\nreembed worker kill: task re-sent after {resent_s:.1f} s, job done after {done_s:.1f} s"
    )

    assert done.status is JobStatus.DONE, done.to_dict()
    assert (done.n_done, done.n_items, done.n_failed) == (total, total, 0)
    with db.connection() as conn:
        assert active_model(conn, "chaos") == params.target_model
        twins = conn.execute(
            "SELECT count(*), count(DISTINCT (person_id, content_sha256, face_index)) "
            "FROM faces WHERE model_id = %s",
            (params.target_model,),
        ).fetchone()
        final = store.get_job(conn, done.id)
    assert twins is not None and twins[0] == twins[1] == total  # every face moved exactly once
    assert final.n_faces == total  # counted once each, across the killed and the resumed run
    assert _job_row(job.id)[1] is None  # the finished run gave its lease back
