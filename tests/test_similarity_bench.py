"""The benchmark scripts run end to end on a few real photos (real models, real files)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from bench import accuracy
from bench import engine as engine_bench


@pytest.mark.shared_data
def test_accuracy_script_on_a_small_labelled_set(dev_labels, tmp_path: Path, capsys) -> None:
    chosen = [
        photo
        for identity in ("deepface_Angelina", "bbt_penny")
        for photo in [p for p in dev_labels if p.identity == identity][:3]
    ]
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "identity", "note"])
        writer.writerows([str(p.path), p.identity, ""] for p in chosen)
    args = ["--labels", str(labels), "--out", str(tmp_path), "--json", "--no-cache"]
    assert accuracy.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["photos_embedded"] == 6 and report["no_face"] == []
    assert report["genuine"]["n"] == 6 and report["impostor"]["n"] == 9
    assert report["rank1"]["correct"] == report["rank1"]["probes"] == 6
    assert (tmp_path / "roc.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.shared_data
def test_engine_script_quick_run(shared_faces: Path, tmp_path: Path, capsys) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for src in sorted((shared_faces / "dev" / "deepface").glob("*.jpg"))[:5]:
        (photos / src.name).symlink_to(src)
    args = ["--photos", str(photos), "--quick", "--rounds", "1", "--out", str(tmp_path), "--json"]
    assert engine_bench.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    runs = {r["name"]: r for r in report["runs"]}
    assert all(r["images"] == 5 and r["errors"] == 0 for r in runs.values())
    # Same models, same photos: the engine and the naive loop find the same faces.
    faces = {r["faces"] for name, r in runs.items() if not name.startswith("insightface")}
    assert len(faces) == 1 and faces.pop() >= 5
    assert report["ceiling"]["images_per_s_det_rec"] > 0
    assert set(report["microbench"]["embed_ms_per_face"]) == {"1", "8", "32"}
