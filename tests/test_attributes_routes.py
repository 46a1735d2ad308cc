"""Attributes through the HTTP routes and other attribute packs, on real models: the three
vendor detect calls answer age, gender and quality on their own scales from the same numbers as
analyze(), leave the attribute fields out with a pack that has no attribute model, and an
InsightFace-layout ``genderage.onnx`` pack still gives attributes."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper

from pipeline.api import create_app
from pipeline.attributes_vendor import (
    BAIDU_LEFT_OUT,
    IAI_LEFT_OUT,
    YOUTU_LEFT_OUT,
    baidu_attributes,
    baidu_qualities,
    iai_attributes,
    iai_quality,
    youtu_attributes,
)
from pipeline.config import Settings
from pipeline.engine import FaceEngine
from pipeline.models.attributes import ATTRIBUTE_MARGIN, GenderAge
from pipeline.models.pack import vectron_model_dir
from pipeline.ops.align import box_crop_transform
from pipeline.types import DetectMode, Face
from tests.fixtures.engine import load_photo

ATTRIBUTE_FIELDS = {"age", "gender", "gender_probability"}


def _bare_pack(folder: Path) -> Settings:
    """The default detector and recognizer in a folder of their own: no attribute model."""
    vectron = vectron_model_dir()
    for name in ("scrfd_500m_bnkps.onnx", "w600k_mbf.onnx"):
        (folder / name).symlink_to(vectron / name)
    return Settings(model_dir=folder, api_auth=False)


def _client(engine: FaceEngine) -> Iterator[TestClient]:
    # authentication off: the app is only reached in-process (as tests/test_api.py does)
    settings = engine.settings.model_copy(update={"api_auth": False})
    with TestClient(create_app(settings, engine=engine, database=None, preload=False)) as client:
        yield client


@pytest.fixture(scope="module")
def default_client(engine: FaceEngine) -> Iterator[TestClient]:
    yield from _client(engine)


@pytest.fixture(scope="module")
def bare_engine(tmp_path_factory: pytest.TempPathFactory) -> FaceEngine:
    bare = FaceEngine.from_settings(_bare_pack(tmp_path_factory.mktemp("bare-pack")))
    assert bare.attributes is None
    return bare


@pytest.fixture(scope="module")
def bare_client(bare_engine: FaceEngine) -> Iterator[TestClient]:
    yield from _client(bare_engine)


def _detect_all(client: TestClient, photo: Path) -> tuple[dict[str, Any], ...]:
    """The largest face's answer from Baidu v2, IAI DetectFace and YouTu v2 detect."""
    b64 = base64.b64encode(photo.read_bytes()).decode()
    baidu = client.post(
        "/rest/2.0/face/v2/detect",
        data={"image": b64, "max_face_num": "1", "face_fields": "age,gender,qualities"},
    ).json()
    assert baidu.get("result_num") == 1, baidu
    iai = client.post(
        "/",
        headers={"X-TC-Action": "DetectFace", "X-TC-Version": "2020-03-03"},
        json={"Image": b64, "NeedFaceAttributes": 1, "NeedQualityDetection": 1},
    ).json()["Response"]
    assert "Error" not in iai, iai
    youtu = client.post("/face/detect", json={"image": b64, "mode": 1}).json()
    assert youtu.get("code") == 0, youtu
    return baidu["result"][0], iai["FaceInfos"][0], youtu["data"]["face"][0]


def _largest(engine: FaceEngine, photo: Path) -> Face:
    (face,) = engine.analyze([load_photo(photo)], mode=DetectMode.LARGEST, embed=False)[0].faces
    return face


def test_vendor_detect_calls_answer_attributes_and_quality(
    engine: FaceEngine, default_client: TestClient, yaoming_jpg: Path
) -> None:
    face = _largest(engine, yaoming_jpg)
    assert face.attributes is not None and face.attributes.gender == "male"
    baidu, iai, youtu = _detect_all(default_client, yaoming_jpg)

    assert {k: baidu[k] for k in ATTRIBUTE_FIELDS} == baidu_attributes(face.attributes)
    assert baidu["qualities"] == baidu_qualities(face.quality)
    assert not {name for name in BAIDU_LEFT_OUT if "." not in name} & set(baidu)
    assert set(baidu["qualities"]) == {"blur", "illumination", "completeness"}  # no occlusion

    info = iai["FaceAttributesInfo"]
    assert {k: info[k] for k in ("Gender", "Age")} == iai_attributes(face.attributes)
    assert info["Gender"] >= 50  # male: IAI's 50-100 side
    assert not {name.split(".")[1] for name in IAI_LEFT_OUT} & set(info)
    assert iai["FaceQualityInfo"] == iai_quality(face.quality)

    assert {k: youtu[k] for k in ("gender", "age")} == youtu_attributes(face.attributes)
    assert not set(YOUTU_LEFT_OUT) & set(youtu)


def test_vendor_detect_calls_leave_attributes_out_without_a_model(
    bare_engine: FaceEngine, bare_client: TestClient, yaoming_jpg: Path
) -> None:
    assert _largest(bare_engine, yaoming_jpg).attributes is None
    baidu, iai, youtu = _detect_all(bare_client, yaoming_jpg)
    assert not ATTRIBUTE_FIELDS & set(baidu)
    assert "qualities" in baidu and baidu["location"]["width"] > 0  # the rest still answered
    assert set(iai["FaceAttributesInfo"]) == {"Yaw", "Pitch", "Roll"}
    assert "Score" in iai["FaceQualityInfo"]
    assert not {"age", "gender"} & set(youtu)
    native = bare_client.post(
        "/v1/detect", json={"image": base64.b64encode(yaoming_jpg.read_bytes()).decode()}
    ).json()
    assert native["faces"][0]["attributes"] is None


def _channel_mean_genderage(path: Path) -> None:
    """An InsightFace-layout genderage graph (1x3x96x96 in, 3 wide out) whose outputs are the
    blob's channel means / 255: (R, G, B). Read as genderage: male when G > R, age
    100 * mean(B) / 255. Not a face model (InsightFace's own genderage weights are not
    redistributable and ship in no package here): it checks that such a pack is found, run
    in batches on the right crop and its outputs read in InsightFace's layout."""
    data = helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 96, 96])
    out = helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["N", 3])
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [], [1.0 / 255.0])
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["data"], ["mean"], axes=[2, 3], keepdims=0),
            helper.make_node("Mul", ["mean", "scale"], ["fc1"]),
        ],
        "genderage_channel_means",
        [data],
        [out],
        [scale],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def test_an_insightface_genderage_pack_keeps_working(
    tmp_path: Path, players_jpg: Path, gdp_jpg: Path
) -> None:
    settings = _bare_pack(tmp_path)
    _channel_mean_genderage(tmp_path / "genderage.onnx")
    engine = FaceEngine.from_settings(settings)
    assert isinstance(engine.attributes, GenderAge)
    assert engine.pack.age_gender is None  # genderage wins over an installed bundle
    gdp = load_photo(gdp_jpg)
    # red and green swapped: skin turns green, so the graph's "male" slot wins there
    swapped = replace(gdp, pixels=np.ascontiguousarray(gdp.pixels[..., [0, 2, 1]]))
    images = [load_photo(players_jpg), swapped]
    assert not any(image.reduced for image in images)
    together = engine.analyze(images, embed=False, landmarks=False)
    assert sum(len(r.faces) for r in together) > engine.embed_batch_size  # several runs
    genders = set()
    for image, result in zip(images, together, strict=True):
        alone = engine.analyze([image], embed=False, landmarks=False)[0]
        for face, single in zip(result.faces, alone.faces, strict=True):
            a = face.attributes
            assert a is not None and a == single.attributes
            assert a.gender_probability is None and a.age_probability is None
            assert a.model == engine.attributes.model_id
            # the 96x96 crop of 1.5x the box, BGR photo read as RGB by the blob
            crop = cv2.warpAffine(
                image.pixels,
                box_crop_transform(np.asarray(face.box), 96, ATTRIBUTE_MARGIN),
                (96, 96),
            ).astype(np.float64)
            blue, green, red = (crop[..., c].mean() for c in range(3))
            if abs(green - red) > 0.5:
                assert a.gender == ("male" if green > red else "female")
            assert abs(a.age - 100 * blue / 255) <= 1
            genders.add(a.gender)
            assert "gender_probability" not in a.to_dict()
    assert genders == {"female", "male"}  # both output slots are read
