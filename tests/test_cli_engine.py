"""The engine commands (detect, embed, compare) through Typer's runner, on the real engine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import pipeline.cli.engine_cmds  # noqa: F401  (registers the commands on the app)
from pipeline.cli.app import app
from tests.fixtures.photos import LabelledPhoto

LINE_KEYS = {"source", "width", "height", "model", "faces", "error"}
FACE_KEYS = {"box", "score", "landmarks", "pose", "quality", "embedding"}


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, *args: str) -> Any:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result


def lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_embed_jsonl_on_a_mixed_directory(
    runner: CliRunner, tmp_path: Path, gdp_jpg: Path, yaoming_jpg: Path
) -> None:
    shutil.copy(gdp_jpg, tmp_path / "a_gdp.jpg")
    (tmp_path / "nested").mkdir()
    shutil.copy(yaoming_jpg, tmp_path / "nested" / "yaoming.jpg")
    (tmp_path / "b_corrupt.jpg").write_bytes(gdp_jpg.read_bytes()[:20_000])
    Image.new("RGB", (120, 120), "red").save(tmp_path / "c_anim.gif")
    Image.new("RGB", (200, 200), "white").save(tmp_path / "d_blank.png")
    (tmp_path / "e_tiny.png").write_bytes(b"")

    result = run(runner, "embed", str(tmp_path), "--jsonl")
    assert result.exit_code == 0, result.output
    out = lines(result.stdout)
    assert [Path(o["source"]).name for o in out] == [
        "a_gdp.jpg",
        "b_corrupt.jpg",
        "c_anim.gif",
        "d_blank.png",
        "e_tiny.png",
        "yaoming.jpg",
    ]
    by_name = {Path(o["source"]).name: o for o in out}
    for o in out:
        assert set(o) == LINE_KEYS

    gdp = by_name["a_gdp.jpg"]
    assert gdp["error"] is None and (gdp["width"], gdp["height"]) == (500, 665)
    assert len(gdp["faces"]) == 5 and gdp["model"].startswith("w600k_mbf-")
    areas = [(f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]) for f in gdp["faces"]]
    assert areas == sorted(areas, reverse=True)
    for face in gdp["faces"]:
        assert set(face) == FACE_KEYS
        assert len(face["embedding"]) == 512
        assert abs(np.linalg.norm(face["embedding"]) - 1.0) < 1e-3
        assert np.asarray(face["landmarks"]).shape == (5, 2)
        assert set(face["pose"]) == {"yaw", "pitch", "roll"}
        assert 0 <= face["quality"]["score"] <= 100 and face["quality"]["level"] in range(5)
    assert len(by_name["yaoming.jpg"]["faces"]) == 1

    expected_errors = {
        "b_corrupt.jpg": ("DECODE_FAILED", -1102),
        "c_anim.gif": ("ILLEGAL_FORMAT", -1400),
        "d_blank.png": ("NO_FACE", -1101),
        "e_tiny.png": ("EMPTY_IMAGE", -1300),
    }
    for name, (code_name, code) in expected_errors.items():
        error = by_name[name]["error"]
        assert (error["name"], error["code"]) == (code_name, code), name
        assert error["message"]
        assert by_name[name]["faces"] == []
    assert "GIF is not supported" in by_name["c_anim.gif"]["error"]["message"]
    assert by_name["b_corrupt.jpg"]["width"] is None
    assert (by_name["d_blank.png"]["width"], by_name["d_blank.png"]["height"]) == (200, 200)


def test_detect_json_players(runner: CliRunner, players_jpg: Path) -> None:
    result = run(runner, "detect", str(players_jpg), "--json")
    assert result.exit_code == 0, result.output
    (line,) = lines(result.stdout)
    assert line["error"] is None
    assert len(line["faces"]) == 22
    assert "embedding" not in line["faces"][0]
    largest = lines(run(runner, "detect", str(players_jpg), "--json", "--largest").stdout)
    assert len(largest[0]["faces"]) == 1
    assert largest[0]["faces"][0]["box"] == line["faces"][0]["box"]
    capped = lines(run(runner, "detect", str(players_jpg), "--json", "--max-faces", "3").stdout)
    assert len(capped[0]["faces"]) == 3


def test_detect_table(runner: CliRunner, gdp_jpg: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.jpg"
    result = run(runner, "detect", str(gdp_jpg), str(missing))
    assert result.exit_code == 0
    assert "5 face(s)" in result.stdout
    assert "SOURCE_NOT_FOUND" in result.stdout


def test_usage_errors_exit_non_zero(runner: CliRunner) -> None:
    assert runner.invoke(app, ["embed"]).exit_code == 2
    assert runner.invoke(app, ["detect", "x.jpg", "--max-faces", "0"]).exit_code == 2


def _pairs(dev_labels: list[LabelledPhoto]) -> tuple[Path, Path, Path]:
    by_id: dict[str, list[Path]] = {}
    for photo in dev_labels:
        if photo.identity.startswith("deepface_"):
            by_id.setdefault(photo.identity, []).append(photo.path)
    first, second = sorted(i for i, p in by_id.items() if len(p) >= 2)[:2]
    return by_id[first][0], by_id[first][1], by_id[second][0]


def test_compare_same_and_different_identity(
    runner: CliRunner, dev_labels: list[LabelledPhoto]
) -> None:
    a1, a2, b1 = _pairs(dev_labels)
    same = lines(run(runner, "compare", str(a1), str(a2), "--json").stdout)[0]
    different = lines(run(runner, "compare", str(a1), str(b1), "--json").stdout)[0]
    assert same["error"] is None and different["error"] is None
    assert same["is_match"] is True and different["is_match"] is False
    assert same["similarity"] > different["similarity"]
    assert 0 <= different["similarity"] <= 100 and -1 <= different["cosine"] <= 1
    human = run(runner, "compare", str(a1), str(a2))
    assert human.exit_code == 0 and "similarity" in human.stdout and "match" in human.stdout


def test_compare_without_a_face_fails(runner: CliRunner, gdp_jpg: Path, tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), "white").save(blank)
    result = run(runner, "compare", str(blank), str(gdp_jpg), "--json")
    assert result.exit_code == 1
    error = lines(result.stdout)[0]["error"]
    assert (error["name"], error["image"]) == ("NO_FACE", "a")


def test_embed_jsonl_on_the_hard_formats(runner: CliRunner, shared_faces: Path) -> None:
    """The awkward inputs of the shared "hard" set: each gets a sensible line, none a crash."""
    hard = shared_faces / "hard"
    names = {
        "derived__bald_guys_x4_large.jpg": (7944, 6180),  # ~49 MP, under the pixel cap
        "insightface__face_sample.png": (870, 1018),  # RGBA PNG
        "derived__obama3_gray.jpg": (1434, 2333),  # single-channel JPEG
        "derived__r90_exif_orient8.jpg": (330, 409),  # stored 409x330 + EXIF orientation 8
    }
    sources = [str(hard / n) for n in names] + [str(hard / "derived__obama3_tiny64.jpg")]
    result = run(runner, "embed", *sources, "--jsonl")
    assert result.exit_code == 0 and "Traceback" not in result.output
    out = lines(result.stdout)
    assert [o["source"] for o in out] == sources
    for line, (name, size) in zip(out, names.items(), strict=False):
        assert line["error"] is None and (line["width"], line["height"]) == size, name
        assert line["faces"] and len(line["faces"][0]["embedding"]) == 512
    assert len(out[0]["faces"]) >= 20  # the collage's faces survive the downscale to 640
    upright = out[3]["faces"][0]["landmarks"]
    assert upright[0][1] < upright[3][1] and upright[1][1] < upright[4][1]  # eyes above mouth
    assert out[4]["error"]["name"] == "IMAGE_TOO_SMALL" and out[4]["faces"] == []


def test_a_failing_listing_or_model_pack_is_an_error_not_a_traceback(
    runner: CliRunner, gdp_jpg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.config import get_settings

    # an S3 prefix whose listing fails (nothing listens there) gets its line; the rest go on
    monkeypatch.setenv("FACEPIPE_S3_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    get_settings.cache_clear()
    try:
        result = run(runner, "detect", "s3://bucket/prefix/", str(gdp_jpg), "--json")
        assert result.exit_code == 0
        out = lines(result.stdout)
        assert [o["source"] for o in out] == ["s3://bucket/prefix/", str(gdp_jpg)]
        assert out[0]["error"]["name"] == "OBJECT_STORE_UNAVAILABLE"
        assert len(out[1]["faces"]) == 5
        monkeypatch.setenv("FACEPIPE_MODEL_DIR", str(tmp_path / "missing"))
        get_settings.cache_clear()
        failed = runner.invoke(app, ["embed", str(gdp_jpg), "--jsonl"])
        assert failed.exit_code == 1 and "MODEL_INVALID" in failed.output
        assert failed.exception is None or isinstance(failed.exception, SystemExit)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
