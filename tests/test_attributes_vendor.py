"""facepipe's attributes and quality on the vendors' fields and scales (pure)."""

from __future__ import annotations

import pytest

from pipeline.attributes_vendor import (
    BAIDU_LEFT_OUT,
    IAI_COMPLETENESS_REGIONS,
    IAI_LEFT_OUT,
    YOUTU_LEFT_OUT,
    baidu_attributes,
    baidu_qualities,
    gender_0_100,
    iai_attributes,
    iai_quality,
    male_probability,
    youtu_attributes,
)
from pipeline.types import Attributes, Quality


def _quality(**changes: float) -> Quality:
    values = {
        "score": 83.4,
        "level": 4,
        "detector_score": 0.91,
        "face_size": 120.0,
        "blur": 0.25,
        "illumination": 127.5,
        "completeness": 0.9,
    }
    values.update(changes)
    return Quality(**values)  # type: ignore[arg-type]


def test_gender_scale_puts_the_stated_gender_on_its_side_of_50() -> None:
    assert gender_0_100(Attributes("male", 40, gender_probability=0.97)) == 97
    assert gender_0_100(Attributes("female", 40, gender_probability=0.97)) == 3
    # a coin-flip answer still lands on the stated side (IAI: 0-49 female, 50-100 male)
    assert gender_0_100(Attributes("male", 40, gender_probability=0.501)) == 50
    assert gender_0_100(Attributes("female", 40, gender_probability=0.501)) == 49
    assert gender_0_100(Attributes("female", 40, gender_probability=0.5)) == 49
    # no probability (InsightFace genderage): the ends of the scale
    assert gender_0_100(Attributes("male", 40)) == 100
    assert gender_0_100(Attributes("female", 40)) == 0
    assert male_probability(Attributes("female", 40, gender_probability=0.8)) == pytest.approx(0.2)
    assert male_probability(Attributes("female", 40)) is None


def test_baidu_fields_and_scales() -> None:
    attrs = Attributes("female", 31, gender_probability=0.9876543, age_probability=0.7)
    assert baidu_attributes(attrs) == {
        "age": 31.0,
        "gender": "female",
        "gender_probability": 0.987654,
    }
    assert baidu_attributes(Attributes("male", 50)) == {"age": 50.0, "gender": "male"}
    q = baidu_qualities(_quality())
    # blur and illumination keep facepipe's scale; completeness flips (Baidu: 0 = complete)
    assert q == {"blur": 0.25, "illumination": 127.5, "completeness": pytest.approx(0.1)}
    assert baidu_qualities(_quality(completeness=1.0))["completeness"] == 0.0
    assert not set(q) & {f.split(".")[-1] for f in BAIDU_LEFT_OUT}


def test_iai_fields_and_scales() -> None:
    assert iai_attributes(Attributes("male", 104, gender_probability=0.99)) == {
        "Gender": 99,
        "Age": 100,
    }
    q = iai_quality(_quality())
    assert q["Score"] == 83
    assert q["Sharpness"] == 75  # 100 * (1 - blur)
    assert q["Brightness"] == 50  # 127.5 of 255
    assert q["Completeness"] == dict.fromkeys(IAI_COMPLETENESS_REGIONS, 90)
    sharp_bright = iai_quality(_quality(blur=0.0, illumination=255.0, completeness=1.0))
    assert (sharp_bright["Sharpness"], sharp_bright["Brightness"]) == (100, 100)
    assert set(sharp_bright["Completeness"].values()) == {100}
    assert all(name.startswith("FaceAttributesInfo.") for name in IAI_LEFT_OUT)


def test_youtu_fields_and_no_model_means_no_fields() -> None:
    assert youtu_attributes(Attributes("female", 27, gender_probability=0.9)) == {
        "gender": 10,
        "age": 27,
    }
    for mapping in (baidu_attributes, iai_attributes, youtu_attributes):
        assert mapping(None) == {}
    assert set(YOUTU_LEFT_OUT) == {"expression", "glass", "beauty"}
