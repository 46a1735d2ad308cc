"""Pure parts of observability: log formats and context ids, label choice, task argument names,
the exporter's families, the dashboard file."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.observability.exporter import job_families, queue_families
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
    stats = JobStats(
        by_status={("enroll", "running"): 2},
        stalled={"detect": 1},
        oldest_pending_s=12.5,
        gallery={"buffalo_l": 7},
        snapshot_age_s={"buffalo_l": 60.0},
    )
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
