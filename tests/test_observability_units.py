"""Pure parts of observability: log formats and context ids, label choice, task argument names,
the exporter's families, the metric names' conventions, the dashboard file, the multiprocess
directory's reset."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.observability import metrics
from pipeline.observability.exporter import job_families, queue_families, up_family
from pipeline.observability.http import protocol_of, request_id_of, route_of
from pipeline.observability.logging import configure_logging, dict_config, log_context
from pipeline.observability.metrics import exposed_names
from pipeline.store.stats import JobStats
from workers.errors import PermanentTaskError
from workers.observability import log_ids, named_args, task_outcome

DASHBOARD = Path(__file__).resolve().parents[1] / "docker" / "grafana" / "dashboards"
METRIC_NAME = re.compile(r"\bfacepipe_[a-z0-9_]+\b")


@pytest.fixture()
def restore_root_logging() -> Any:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_json_log_lines_carry_context_ids(restore_root_logging: Any) -> None:
    out = io.StringIO()
    configure_logging(Settings(log_format="json"), level="INFO", stream=out)
    log = logging.getLogger("facepipe.test")
    with log_context(job_id="j1", chunk="0-7"), log_context(item_id=42, request_id=None):
        log.info("item %s failed", 42, extra={"code": "ILLEGAL_FORMAT"})
    log.info("outside")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "item 42 failed"
    assert (first["level"], first["logger"]) == ("INFO", "facepipe.test")
    assert (first["job_id"], first["chunk"], first["item_id"]) == ("j1", "0-7", "42")
    assert first["code"] == "ILLEGAL_FORMAT" and "time" in first
    assert "request_id" not in first  # None values are not bound
    assert "job_id" not in second  # the context ended with its block


def test_text_log_appends_ids_and_configure_replaces_its_handler(
    restore_root_logging: Any,
) -> None:
    out = io.StringIO()
    configure_logging(Settings(log_format="json"), stream=io.StringIO())
    configure_logging(Settings(log_format="text"), level="INFO", stream=out)
    ours = [h for h in logging.getLogger().handlers if type(h).__name__ == "_FacepipeHandler"]
    assert len(ours) == 1
    with log_context(request_id="abc"):
        logging.getLogger("x").warning("hello")
    line = out.getvalue().strip()
    assert line.endswith("WARNING x hello [request_id=abc]")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_dict_config_is_a_valid_logging_config(fmt: str, restore_root_logging: Any) -> None:
    config = dict_config(Settings(log_format=fmt), level="debug")
    logging.config.dictConfig(config)
    root = logging.getLogger()
    assert root.level == logging.DEBUG
    assert logging.getLogger("uvicorn.access").propagate
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "started", None, None)
    with log_context(request_id="r-9"):
        for flt in root.handlers[0].filters:
            flt.filter(record)  # type: ignore[union-attr]
    line = root.handlers[0].format(record)
    if fmt == "json":
        assert json.loads(line)["request_id"] == "r-9"
    else:
        assert line.endswith("INFO uvicorn.error started [request_id=r-9]")


def _scope(
    path: str, headers: list[tuple[bytes, bytes]] | None = None, route: Any = None
) -> dict[str, Any]:
    scope: dict[str, Any] = {"type": "http", "path": path, "headers": headers or []}
    if route is not None:
        scope["route"] = route
    return scope


def test_http_labels_are_bounded() -> None:
    class Route:
        path = "/v1/persons/{person_id}"

    assert route_of(_scope("/v1/persons/123", route=Route())) == "/v1/persons/{person_id}"
    assert route_of(_scope("/nowhere/123")) == "unmatched"
    assert protocol_of(_scope("/v1/detect")) == "facepipe"
    assert protocol_of(_scope("/face/detect")) == "youtu"
    assert protocol_of(_scope("/", [(b"x-tc-action", b"CreateFace")])) == "iai"
    assert protocol_of(_scope("/rest/2.0/face/v2/detect")) == "baidu"


def test_request_id_is_the_callers_when_sane() -> None:
    assert request_id_of(_scope("/", [(b"x-request-id", b"req-1.2:3")])) == "req-1.2:3"
    for bad in (b"a b", b"x" * 200, b"<script>", b""):
        made = request_id_of(_scope("/", [(b"x-request-id", bad)]))
        assert re.fullmatch(r"[0-9a-f]{32}", made)


def test_task_arguments_by_name() -> None:
    from workers.tasks import list_source_task, process_chunk_task

    named = named_args(process_chunk_task, ("job-1", 0, 7), {})
    assert named == {"job_id": "job-1", "seq_lo": 0, "seq_hi": 7}
    assert log_ids("t", "id", named) == {
        "task": "t",
        "task_id": "id",
        "job_id": "job-1",
        "chunk": "0-7",
    }
    listed = named_args(list_source_task, ("job-2",), {"token": "tok", "next_seq": 32})
    assert listed == {"job_id": "job-2", "token": "tok", "next_seq": 32}


def test_task_outcome() -> None:
    assert task_outcome("SUCCESS", {"job_id": "x"}) == "done"
    no_face = PermanentTaskError.of(FacepipeError(ErrorCode.NO_FACE))
    assert task_outcome("FAILURE", no_face) == "failed"
    assert no_face.error["name"] == "NO_FACE"
    assert task_outcome("RETRY", None) == "retry"
    assert task_outcome("FAILURE", RuntimeError("boom")) == "crashed"


def _exposition(families: list[Any]) -> str:
    class Fixed:
        def collect(self) -> list[Any]:
            return families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())  # type: ignore[arg-type]
    return generate_latest(registry).decode()


def test_exporter_families_fill_every_kind_and_status() -> None:
    stats = _full_stats()
    text = _exposition(job_families(stats) + queue_families({"infer": 3, "unacked": 1}))
    assert 'facepipe_jobs{kind="enroll",status="running"} 2.0' in text
    assert 'facepipe_jobs{kind="reindex",status="cancelled"} 0.0' in text
    assert 'facepipe_jobs_stalled{kind="detect"} 1.0' in text
    assert "facepipe_oldest_pending_item_age_seconds 12.5" in text
    assert 'facepipe_queue_messages{queue="infer"} 3.0' in text
    assert 'facepipe_queue_messages{queue="search"} 0.0' in text
    assert "facepipe_queue_unacked_messages 1.0" in text
    assert 'facepipe_gallery_faces{model="buffalo_l"} 7.0' in text
    assert {"facepipe_jobs", "facepipe_index_snapshot_age_seconds"} <= exposed_names(text)


def dashboard_metric_names() -> set[str]:
    """Every facepipe_* name the dashboards' queries use."""
    names: set[str] = set()
    for path in DASHBOARD.glob("*.json"):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                names |= set(METRIC_NAME.findall(target["expr"]))
    return names


def test_dashboard_parses_and_uses_the_provisioned_datasource() -> None:
    files = list(DASHBOARD.glob("*.json"))
    assert files
    for path in files:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["panels"]
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids))
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] == "facepipe-prometheus"
    datasources = DASHBOARD.parent / "provisioning" / "datasources" / "prometheus.yml"
    assert "uid: facepipe-prometheus" in datasources.read_text()
    assert len(dashboard_metric_names()) >= 20


# --- names and labels the Prometheus way -----------------------------------------------------

UNIT_WORDS = re.compile(r"_(duration|latency|wait|age|time|elapsed)(_|$)")
"""Words that say a metric measures time: its name must end in the base unit, ``_seconds``."""
NOT_BASE_UNITS = re.compile(
    r"_(ms|msec|millis|milliseconds|us|microseconds|minutes|hours|days|kb|mb|gb|kilobytes|"
    r"megabytes|percent)(_|$)"
)
UNBOUNDED_LABELS = {"job_id", "item_id", "request_id", "task_id", "chunk", "uri", "path", "id"}
"""Per-call values: as labels each would grow a new series."""
STANDARD_PREFIXES = ("python_", "process_")
"""prometheus-client's own collectors in a single-process registry."""


def convention_problems(exposition_text: str) -> list[str]:
    """What a text exposition gets wrong by the Prometheus naming rules (the ones
    ``promtool check metrics`` lints, and facepipe's own: prefix, bounded labels)."""
    problems = []
    for family in text_string_to_metric_families(exposition_text):
        name, kind = family.name, family.type
        if name.startswith(STANDARD_PREFIXES) or name.endswith("_created"):
            continue  # _created: the creation times prometheus-client adds to each series
        if not name.startswith("facepipe_"):
            problems.append(f"{name}: no facepipe_ prefix")
        if not family.documentation.strip():
            problems.append(f"{name}: no help text")
        if NOT_BASE_UNITS.search(name):
            problems.append(f"{name}: not in base units (seconds, bytes)")
        if UNIT_WORDS.search(name) and not name.endswith("_seconds"):
            problems.append(f"{name}: a time not ending in _seconds")
        if kind == "counter":
            if any(not s.name.endswith(("_total", "_created")) for s in family.samples):
                problems.append(f"{name}: counter samples without _total")
        elif name.endswith("_total"):
            problems.append(f"{name}: a {kind} named _total")
        if kind == "histogram" and not name.endswith(("_seconds", "_bytes")):
            problems.append(f"{name}: a histogram not in seconds or bytes")
        for sample in family.samples:
            bad = UNBOUNDED_LABELS & set(sample.labels)
            if bad:
                problems.append(f"{name}: unbounded labels {sorted(bad)}")
    return problems


def promtool_problems(exposition_text: str) -> str | None:
    """``promtool check metrics`` on the exposition: its complaints, "" when clean, None when
    promtool is not installed (Debian's package `prometheus` has it)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return None
    run = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition_text.encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    return (run.stdout + run.stderr).decode().strip() if run.returncode else ""


def _full_stats() -> JobStats:
    return JobStats(
        by_status={("enroll", "running"): 2},
        stalled={"detect": 1},
        oldest_pending_s=12.5,
        gallery={"buffalo_l": 7},
        snapshot_age_s={"buffalo_l": 60.0},
    )


def _every_process_metric() -> str:
    """This process's registry with one sample on every labelled facepipe metric (as after
    real work), and the exporter's families."""
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase) and metric._labelnames:
            metric.labels(*["x"] * len(metric._labelnames))
    return generate_latest(REGISTRY).decode() + _exposition(
        job_families(_full_stats())
        + queue_families({"infer": 1, "unacked": 0})
        + [up_family({"broker": True, "database": False})]
    )


def test_every_metric_is_named_the_prometheus_way() -> None:
    text = _every_process_metric()
    assert len([n for n in exposed_names(text) if n.startswith("facepipe_")]) >= 30
    assert convention_problems(text) == []
    # the checker does catch what it looks for
    wrong = (
        "# HELP facepipe_wait_ms x\n# TYPE facepipe_wait_ms gauge\nfacepipe_wait_ms 1\n"
        "# HELP jobs_total y\n# TYPE jobs_total gauge\n"
        'jobs_total{job_id="1"} 1\n'
    )
    assert len(convention_problems(wrong)) == 5
    assert promtool_problems(text) in (None, "")
    assert promtool_problems(wrong) in (None,) or "_total" in str(promtool_problems(wrong))


PROMQL_BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
PROMQL_SELECTOR = re.compile(r"\b(facepipe_[a-z0-9_]+)\s*\{([^}]*)\}")
PROMQL_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
SCRAPE_LABELS = {"le", "instance", "job"}
"""Labels Prometheus (or a histogram's buckets) add to every series."""


def metric_labels() -> dict[str, set[str]]:
    """Sample name -> label names, for every facepipe metric any process exposes."""
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(_every_process_metric()):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def test_dashboard_groups_and_filters_only_by_labels_its_metrics_have() -> None:
    labels = metric_labels()
    for path in DASHBOARD.glob("*.json"):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                names = set(METRIC_NAME.findall(expr))
                assert names <= set(labels), f"{panel['title']}: {names - set(labels)}"
                have = set().union(*(labels[n] for n in names)) | SCRAPE_LABELS
                for group in PROMQL_BY.findall(expr):
                    used = {g.strip() for g in group.split(",") if g.strip()}
                    assert used <= have, f"{panel['title']}: by {used - have}"
                for name, matchers in PROMQL_SELECTOR.findall(expr):
                    used = set(PROMQL_MATCHER.findall(matchers))
                    assert used <= labels[name] | SCRAPE_LABELS, f"{panel['title']}: {used}"


# --- the multiprocess directory ----------------------------------------------------------------

_RECORD_AFTER_CLEAR = """
from pipeline.observability import metrics as m
m.LEASES_EXPIRED.inc(5)  # recorded before the reset: a previous run's, gone with it
print(m.clear_multiprocess_dir())
m.LEASES_EXPIRED.inc(3)
m.count_processed("detect", faces=4, images=2)
print(m.exposition()[0].decode())
"""


def test_a_process_that_empties_the_multiprocess_dir_goes_on_reaching_the_scrape(
    tmp_path: Path,
) -> None:
    """The worker's main process (its watchdog) and ``facepipe api`` empty the directory after
    their metrics opened their files: what they record next must still be scraped."""
    (tmp_path / "counter_1.db").write_bytes(b"a previous run's file")
    run = subprocess.run(
        [sys.executable, "-c", _RECORD_AFTER_CLEAR],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    removed, text = run.stdout.split("\n", 1)
    assert int(removed) >= 2  # the stale file and this process's own first files
    assert "facepipe_leases_expired_total 3.0" in text
    assert 'facepipe_images_processed_total{kind="detect"} 2.0' in text
    assert 'facepipe_faces_processed_total{kind="detect"} 4.0' in text
    assert not (tmp_path / "counter_1.db").exists()
