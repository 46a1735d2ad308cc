"""The pipeline's CLI commands against the real database and broker (no worker needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

import pipeline.cli.jobs_cmds  # noqa: F401  (registers the commands)
from pipeline.cli.app import app


def test_enroll_then_list_show_cancel_retry(
    pipeline_env: Any, clean_database: Any, pipeline_redis: Any, tmp_path: Path
) -> None:
    (tmp_path / "ann").mkdir()
    runner = CliRunner()
    out = runner.invoke(app, ["enroll", str(tmp_path), "--group", "g1", "--json"])
    assert out.exit_code == 0, out.output
    job = json.loads(out.output)
    assert job["kind"] == "enroll" and job["status"] == "pending"
    assert job["params"] == {"groups": ["g1"], "source": str(tmp_path)}
    assert pipeline_redis.llen("ingest") == 1  # the listing task waits for a worker

    listed = json.loads(runner.invoke(app, ["jobs", "list", "--json"]).output)
    assert [j["id"] for j in listed] == [job["id"]]
    shown = runner.invoke(app, ["jobs", "show", job["id"][:8]])
    assert shown.exit_code == 0 and job["id"] in shown.output
    cancelled = runner.invoke(app, ["jobs", "cancel", job["id"][:8]])
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output
    again = runner.invoke(app, ["jobs", "cancel", job["id"]])
    assert again.exit_code == 2 and "JOB_STATE" in again.output
    retried = runner.invoke(app, ["jobs", "retry", job["id"]])
    assert retried.exit_code == 0 and "0 failed items" in retried.output
    pipeline_redis.delete("ingest")
    resumed = runner.invoke(app, ["jobs", "resume", job["id"][:8]])
    assert resumed.exit_code == 0 and "0 chunks" in resumed.output, resumed.output
    assert pipeline_redis.llen("ingest") == 0  # a cancelled job's listing is not sent again
    missing = runner.invoke(app, ["jobs", "show", "ffffffff"])
    assert missing.exit_code == 2 and "JOB_NOT_FOUND" in missing.output
    usage = runner.invoke(app, ["reidentify", "--group", "g1"])
    assert usage.exit_code == 2
    gone = runner.invoke(app, ["enroll", str(tmp_path / "nope"), "--group", "g1"])
    assert gone.exit_code == 2 and "SOURCE_NOT_FOUND" in gone.output


def test_show_and_wait_say_when_a_job_is_stalled_and_why(
    pipeline_env: Any, clean_database: Any, pipeline_redis: Any, tmp_path: Path
) -> None:
    """`jobs show` and `--wait` print the watchdog's finding (why, what it did), and say so
    when nothing heals a job, instead of looking normal or waiting silently."""
    from io import StringIO

    from rich.console import Console

    from pipeline.jobs.progress import watch_job
    from pipeline.jobs.runtime import get_runtime
    from pipeline.jobs.watchdog import run_watchdog
    from tests.fixtures.services import apply_env, restore_env

    (tmp_path / "ann").mkdir()
    runner = CliRunner()
    saved = apply_env({"FACEPIPE_WATCHDOG_IDLE_S": "0"})  # every job is idle at once
    try:
        rt = get_runtime()
        rt.dispatcher.broker_state_handled()  # a broker the watchdog has seen before
        out = runner.invoke(app, ["enroll", str(tmp_path), "--group", "g1", "--json"])
        job_id = json.loads(out.output)["id"]
        shown = runner.invoke(app, ["jobs", "show", job_id])
        assert "no progress for" in shown.output and "is a worker running" in shown.output

        run_watchdog(rt, rt.dispatcher)  # its listing waits in the queue: noted, not re-sent
        shown = runner.invoke(app, ["jobs", "show", job_id])
        assert "stalled: no progress for" in shown.output, shown.output
        assert "messages are queued ahead" in shown.output and "watchdog waiting" in shown.output

        pipeline_redis.delete("ingest")  # the listing message is lost
        run_watchdog(rt, rt.dispatcher)
        shown = runner.invoke(app, ["jobs", "show", job_id])
        assert "nothing queued or running" in shown.output
        assert "resumed the listing" in shown.output, shown.output

        console = Console(file=StringIO(), width=300)
        watch_job(job_id, console, timeout_s=0.5)  # what `enroll --wait` shows
        printed = console.file.getvalue()  # type: ignore[attr-defined]
        assert f"{job_id[:8]} stalled:" in printed and "resumed the listing" in printed
    finally:
        restore_env(saved)
