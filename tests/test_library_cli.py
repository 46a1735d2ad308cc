"""The library commands (person, group, face, verify, identify, db) on the real database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import library_cmds  # noqa: F401  (registers the commands)
from pipeline.cli.app import app
from pipeline.config import get_settings
from pipeline.store.db import Database


@pytest.fixture
def run(clean_database: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator:  # type: ignore[type-arg]
    """Invoke ``facepipe ...`` in-process against the test database; (exit code, output)."""
    monkeypatch.setenv("FACEPIPE_DATABASE_URL", clean_database.url)
    get_settings.cache_clear()
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args))
        return result.exit_code, result.stdout

    yield invoke
    get_settings.cache_clear()


def test_person_group_commands(run) -> None:  # type: ignore[no-untyped-def]
    code, out = run(
        "person", "create", "alice", "-g", "team", "-g", "club", "--name", "Alice", "--json"
    )
    assert code == 0 and json.loads(out)["group_ids"] == ["club", "team"]
    code, out = run("person", "create", "alice", "-g", "team", "--json")
    assert code == 1 and json.loads(out)["error"]["code"] == -1302
    code, out = run("person", "create", "bad/id", "-g", "team")
    assert code == 1
    code, out = run("person", "set", "alice", "--tag", "vip", "--remove-group", "club", "--json")
    assert (
        code == 0 and json.loads(out)["tag"] == "vip" and json.loads(out)["group_ids"] == ["team"]
    )
    code, out = run("person", "set", "alice", "--remove-group", "team", "--json")
    assert code == 1 and json.loads(out)["error"]["name"] == "LAST_GROUP"
    code, out = run("person", "list", "-g", "team", "--json")
    assert [p["person_id"] for p in json.loads(out)["items"]] == ["alice"]
    code, out = run("group", "list", "--json")
    assert json.loads(out)["items"] == [{"group_id": "team", "person_count": 1}]
    code, out = run("person", "info", "alice")
    assert code == 0 and "vip" in out
    code, out = run("person", "delete", "alice", "--json")
    assert code == 0 and json.loads(out)["deleted"] is True
    code, out = run("person", "info", "alice", "--json")
    assert code == 1 and json.loads(out)["error"]["code"] == -1303
    code, out = run("db", "upgrade", "--json")
    assert code == 0 and json.loads(out)["applied"] == []


def test_face_verify_identify_commands(run, yaoming_jpg: Path, gdp_jpg: Path) -> None:  # type: ignore[no-untyped-def]
    run("person", "create", "yao", "-g", "g1", "--tag", "center")
    code, out = run("face", "add", "yao", str(yaoming_jpg), str(gdp_jpg), "--json")
    added = json.loads(out)
    assert code == 0 and added["RetCode"] == [0, -1604] and added["SucFaceNum"] == 1
    face_id = added["SucFaceIds"][0]
    code, out = run("face", "list", "yao", "--json")
    assert json.loads(out)["face_ids"] == [face_id]
    code, out = run("face", "info", face_id, "--json")
    assert json.loads(out)["person_id"] == "yao"
    code, out = run("identify", str(yaoming_jpg), "-g", "g1", "-g", "other", "--top", "3", "--json")
    found = json.loads(out)
    assert code == 0 and found["candidates"][0]["person_id"] == "yao"
    assert found["candidates"][0]["tag"] == "center"
    code, out = run("identify", str(gdp_jpg), "-g", "g1", "--all-faces", "--json")
    assert code == 0 and len(json.loads(out)["faces"]) >= 5
    code, out = run("identify", str(yaoming_jpg), "-g", "g1")
    assert code == 0 and "1. yao  confidence" in out and "MATCH" in out
    code, out = run("identify", str(gdp_jpg), "-g", "g1")  # yao is no one in gdp.jpg
    assert code == 0 and "below threshold" in out and "MATCH" not in out
    code, out = run("identify", str(yaoming_jpg), "-g", "nosuch", "--json")
    assert code == 1 and json.loads(out)["error"]["name"] == "GROUP_NOT_FOUND"
    code, out = run("identify", str(yaoming_jpg), "-g", "g1", "--top", "0", "--json")
    assert code == 1 and json.loads(out)["error"]["code"] == -1313
    code, out = run("verify", str(yaoming_jpg), "--person", "yao", "--json")
    assert json.loads(out)["ismatch"] is True
    code, out = run("verify", str(gdp_jpg), "--person", "yao")
    assert code == 0 and "no match" in out
    code, out = run("face", "delete", "yao", face_id, "--json")
    assert json.loads(out)["deleted"] == [face_id]
    code, out = run("face", "delete", "yao", face_id, "--json")
    assert code == 1 and json.loads(out)["error"]["code"] == -1305
