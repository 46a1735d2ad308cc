"""Pure parts of the pipeline: producers, S3 event parsing and key rules, chunk ranges, beat."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.producers import (
    SourceType,
    iter_local_source,
    read_manifest,
    source_type,
    split_groups,
    walk_directory,
)
from pipeline.s3events import (
    KeyRule,
    S3Action,
    parse_body,
    parse_event,
    parse_rules,
    route_key,
)
from pipeline.store.jobs import seq_ranges
from schedules.beat import build_schedule, parse_cron


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_directory_walk_sorted_with_parent_folder_as_person(tmp_path: Path) -> None:
    _touch(tmp_path / "bob" / "2.png")
    _touch(tmp_path / "ann" / "1.jpg")
    _touch(tmp_path / "ann" / "notes.txt")
    _touch(tmp_path / "bob" / "sub" / "3.JPEG")
    specs = list(walk_directory(tmp_path))
    assert [(Path(s.uri).name, s.person_id) for s in specs] == [
        ("1.jpg", "ann"),
        ("2.png", "bob"),
        ("3.JPEG", "sub"),
    ]


def test_directory_walk_resumes_after_any_listed_file(tmp_path: Path) -> None:
    for rel in (
        "z.jpg",
        "a/1.jpg",
        "a/b/2.jpg",
        "a/b/c/3.png",
        "a/d/4.jpg",
        "a/e.txt",
        "b/5.jpg",
        "b0/6.jpg",
        "b/c/7.jpg",
        "c/.hidden.jpg",
        "c/8.JPG",
    ):
        _touch(tmp_path / rel)
    from pipeline.sources.listing import walk_folder

    rels = list(walk_folder(tmp_path))
    # in each folder its files first, then its subfolders, all sorted
    assert rels == [
        "z.jpg",
        "a/1.jpg",
        "a/b/2.jpg",
        "a/b/c/3.png",
        "a/d/4.jpg",
        "b/5.jpg",
        "b/c/7.jpg",
        "b0/6.jpg",
        "c/8.JPG",
    ]
    assert [s.uri for s in walk_directory(tmp_path)] == [str(tmp_path / r) for r in rels]
    for i, rel in enumerate(rels):
        assert list(walk_folder(tmp_path, rel)) == rels[i + 1 :]


def test_manifest_overrides_folder_names_and_splits_groups(tmp_path: Path) -> None:
    _touch(tmp_path / "photos" / "x" / "a.jpg")
    _touch(tmp_path / "photos" / "x" / "b.jpg")
    manifest = tmp_path / "m.csv"
    manifest.write_text("uri,person_id,name,groups\nx/a.jpg,p1,Ann Lee,g1;g2|g3\n")
    specs = list(iter_local_source(str(tmp_path / "photos"), str(manifest)))
    by_name = {Path(s.uri).name: s for s in specs}
    assert by_name["a.jpg"].person_id == "p1"
    assert by_name["a.jpg"].person_name == "Ann Lee"
    assert by_name["a.jpg"].groups == ("g1", "g2", "g3")
    assert by_name["b.jpg"].person_id == "x" and by_name["b.jpg"].groups is None


def test_manifest_as_source_and_url_list(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("uri,person_id,name,groups\nhttp://h/a.jpg,p1,,\ns3://b/k.jpg,p2,,g\n")
    rows = list(read_manifest(manifest))
    assert [(r.uri, r.person_id, r.groups) for r in rows] == [
        ("http://h/a.jpg", "p1", None),
        ("s3://b/k.jpg", "p2", ("g",)),
    ]
    urls = tmp_path / "urls.txt"
    urls.write_text("# comment\nhttp://h/1.jpg\n\nrel.jpg\n")
    specs = list(iter_local_source(str(urls)))
    assert [s.uri for s in specs] == ["http://h/1.jpg", str(tmp_path / "rel.jpg")]
    bad = tmp_path / "bad.csv"
    bad.write_text("path,who\n")
    with pytest.raises(FacepipeError) as err:
        list(read_manifest(bad))
    assert err.value.code == ErrorCode.ILLEGAL_PARAMETER


def test_source_types(tmp_path: Path) -> None:
    assert source_type("s3://bucket/prefix/") == SourceType.S3_PREFIX
    assert source_type("s3://bucket") == SourceType.S3_PREFIX
    assert source_type("s3://bucket/a/b.jpg") == SourceType.SINGLE
    assert source_type("https://example.com/a.jpg") == SourceType.SINGLE
    assert source_type(str(tmp_path)) == SourceType.DIRECTORY
    with pytest.raises(FacepipeError) as err:
        source_type(str(tmp_path / "missing.jpg"))
    assert err.value.code == ErrorCode.SOURCE_NOT_FOUND
    assert split_groups(" a | b;;c ") == ("a", "b", "c") and split_groups("") is None


def test_seq_ranges() -> None:
    assert seq_ranges([0, 1, 2, 3, 4], 2) == [(0, 1), (2, 3), (4, 4)]
    assert seq_ranges([3, 9, 10], 8) == [(3, 10)]
    assert seq_ranges([], 8) == []


def _event(key: str, name: str = "ObjectCreated:Put") -> dict:
    return {
        "Records": [
            {
                "eventName": name,
                "s3": {
                    "bucket": {"name": "bkt"},
                    "object": {"key": key, "size": 10, "eTag": "e", "sequencer": "01"},
                },
            }
        ]
    }


def test_parse_event_decodes_keys_and_skips_other_events() -> None:
    parsed = parse_body(json.dumps(_event("enroll/g1/ann+lee/photo%281%29.jpg")))
    assert [o.uri for o in parsed.objects] == ["s3://bkt/enroll/g1/ann lee/photo(1).jpg"]
    assert parse_event(_event("x.jpg", "ObjectRemoved:Delete")).objects == ()
    assert parse_body(json.dumps({"Event": "s3:TestEvent", "Bucket": "bkt"})).test_event
    sns = {"Type": "Notification", "Message": json.dumps(_event("incoming/a.jpg"))}
    assert parse_body(json.dumps(sns)).objects[0].key == "incoming/a.jpg"


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1, 2]",
        json.dumps({"Records": "x"}),
        json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]}),
    ],
)
def test_malformed_messages_are_refused_with_a_code(body: str) -> None:
    with pytest.raises(FacepipeError) as err:
        parse_body(body)
    assert err.value.code == ErrorCode.ILLEGAL_PARAMETER


def test_key_rules_defaults_and_custom() -> None:
    rules = parse_rules(Settings().s3_key_rules)
    enroll = route_key("enroll/staff/ann/2024/a.jpg", rules, ["watch"])
    assert enroll is not None
    assert (enroll.action, enroll.groups, enroll.person_id) == (S3Action.ENROLL, ("staff",), "ann")
    direct = route_key("enroll/staff/ann/a.jpg", rules, ["watch"])
    assert direct is not None and direct.person_id == "ann"
    reid = route_key("incoming/cam1/a.jpg", rules, ["watch", "vip"])
    assert reid is not None
    assert (reid.action, reid.groups) == (S3Action.REIDENTIFY, ("watch", "vip"))
    assert route_key("other/a.jpg", rules, ["watch"]) is None
    assert route_key("enroll/only-group.jpg", rules, ["watch"]) is None
    custom = [
        KeyRule("people/", S3Action.ENROLL, "team"),
        KeyRule("cams/", S3Action.REIDENTIFY, "a;b"),
    ]
    r1 = route_key("people/bob/x.jpg", custom, [])
    assert r1 is not None and (r1.groups, r1.person_id) == (("team",), "bob")
    r2 = route_key("cams/x.jpg", custom, [])
    assert r2 is not None and r2.groups == ("a", "b")
    with pytest.raises(FacepipeError):
        parse_rules([{"prefix": "x/", "action": "delete"}])


def test_beat_schedule_from_settings() -> None:
    settings = Settings(
        nightly_reidentify_cron="15 1 * * 1-5", reindex_interval_s=600, watchdog_interval_s=45
    )
    schedule = build_schedule(settings)
    assert set(schedule) == {
        "nightly-reidentify",
        "periodic-reindex",
        "cleanup-job-items",
        "watchdog",
    }
    assert schedule["watchdog"]["schedule"].total_seconds() == 45
    assert schedule["watchdog"]["task"] == "facepipe.schedule.watchdog"
    nightly = schedule["nightly-reidentify"]["schedule"]
    assert nightly.minute == {15} and nightly.hour == {1}
    assert nightly.day_of_week == set(range(1, 6))
    assert schedule["periodic-reindex"]["schedule"].total_seconds() == 600
    with pytest.raises(FacepipeError):
        parse_cron("0 2 * *")


def test_schedule_lock_runs_a_slot_once(pipeline_redis: object) -> None:
    from tests.fixtures.services import REDIS_BROKER
    from workers.locks import acquire_slot

    settings = Settings(broker_url=REDIS_BROKER)
    assert acquire_slot(settings, "facepipe.schedule.test", "2026-01-01", 60)
    assert not acquire_slot(settings, "facepipe.schedule.test", "2026-01-01", 60)
    assert acquire_slot(settings, "facepipe.schedule.test", "2026-01-02", 60)


def test_retry_policy_backs_off_capped_and_only_for_transient_errors() -> None:
    from pipeline.config import get_settings
    from workers.base import backoff_s, is_transient

    settings = get_settings()
    delays = [backoff_s(n) for n in range(12)]
    assert delays[1] > delays[0]
    assert max(delays) <= settings.retry_backoff_max_s * 1.1
    assert is_transient(FacepipeError(ErrorCode.DATABASE_UNAVAILABLE))
    assert is_transient(ConnectionRefusedError())
    assert not is_transient(FacepipeError(ErrorCode.NO_FACE))
    assert not is_transient(ValueError("bad"))


def test_reconfiguring_the_app_sends_tasks_to_the_new_broker(pipeline_redis: object) -> None:
    """Pools and result backends built with old settings are dropped by ``configure``."""
    from concurrent.futures import ThreadPoolExecutor

    import redis

    from pipeline.config import get_settings
    from tests.fixtures.services import REDIS_BROKER, REDIS_RESULTS
    from workers.app import app, configure

    def backend_db() -> int:
        return int(app.backend.client.connection_pool.connection_kwargs["db"])

    def queued(url: str) -> int:
        client = redis.Redis.from_url(url)
        try:
            return int(client.llen("ingest"))
        finally:
            client.close()

    pool = ThreadPoolExecutor(1)  # a long-lived thread, like the HTTP API's
    try:
        # DB 10 as the broker first: a connection pool and backends get built and cached
        configure(app, Settings(broker_url=REDIS_RESULTS, result_backend=REDIS_BROKER))
        app.send_task("facepipe.ingest.qa-probe", queue="ingest")
        assert pool.submit(backend_db).result() == 9 and backend_db() == 9
        assert (queued(REDIS_RESULTS), queued(REDIS_BROKER)) == (1, 0)

        configure(app, Settings(broker_url=REDIS_BROKER, result_backend=REDIS_RESULTS))
        app.send_task("facepipe.ingest.qa-probe", queue="ingest")
        assert (queued(REDIS_RESULTS), queued(REDIS_BROKER)) == (1, 1)
        assert pool.submit(backend_db).result() == 10 and backend_db() == 10
    finally:
        pool.shutdown()
        configure(app, get_settings())
