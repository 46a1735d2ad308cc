"""Pure face ops with known answers: alignment, pose, quality."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.ops.align import (
    ARCFACE_TEMPLATE,
    align_face,
    apply_affine,
    box_crop_transform,
    similarity_transform,
)
from pipeline.ops.pose import estimate_pose, project_generic_face
from pipeline.ops.quality import (
    DEFAULT_THRESHOLDS,
    Grades,
    assess_quality,
    blur_measure,
    completeness_measure,
    illumination_measure,
    level_from_grades,
    thresholds_from_settings,
)
from pipeline.types import Pose


def _similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array(
        [
            [scale * math.cos(a), -scale * math.sin(a), tx],
            [scale * math.sin(a), scale * math.cos(a), ty],
        ]
    )


def test_similarity_transform_recovers_a_known_transform() -> None:
    truth = _similarity(2.5, 30.0, 40.0, -7.0)
    src = ARCFACE_TEMPLATE.astype(np.float64)
    dst = apply_affine(src, truth)
    np.testing.assert_allclose(similarity_transform(src, dst), truth, atol=1e-4)


def test_align_face_puts_keypoints_on_the_template() -> None:
    # draw five dots where a face at a known similarity sits, then align: dots on the template
    to_image = _similarity(3.0, -20.0, 150.0, 90.0)
    keypoints = apply_affine(ARCFACE_TEMPLATE, to_image)
    image = np.zeros((500, 500, 3), np.uint8)
    for x, y in keypoints:
        cv2.circle(image, (round(x), round(y)), 6, (255, 255, 255), -1)
    crop = align_face(image, keypoints)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    for x, y in ARCFACE_TEMPLATE:
        assert crop[round(y), round(x)].min() > 200
    assert image[0, 0].max() == 0  # input untouched


def test_box_crop_transform_centres_the_box() -> None:
    m = box_crop_transform((100, 50, 200, 250), 192, 1.5)
    np.testing.assert_allclose(apply_affine(np.array([[150.0, 150.0]]), m), [[96, 96]])
    # the long side (200 px) times 1.5 spans the crop
    np.testing.assert_allclose(m[0, 0], 192 / 300)


@pytest.mark.parametrize(
    ("yaw", "pitch", "roll"),
    [(0, 0, 0), (30, 0, 0), (-45, 0, 0), (0, 20, 0), (0, -25, 0), (0, 0, 40)],
)
def test_pose_recovers_single_axis_rotations(yaw: float, pitch: float, roll: float) -> None:
    eyes_nose = project_generic_face(yaw, pitch, roll, scale=1.7) + 300
    keypoints = np.vstack([eyes_nose, [[280, 380], [320, 380]]])  # mouth corners are ignored
    pose = estimate_pose(keypoints)
    assert (pose.yaw, pose.pitch, pose.roll) == pytest.approx((yaw, pitch, roll), abs=1e-6)


def test_pose_of_template_is_frontal() -> None:
    pose = estimate_pose(ARCFACE_TEMPLATE)
    assert abs(pose.yaw) < 2 and abs(pose.pitch) < 2 and abs(pose.roll) < 1


def test_grades_rising_and_falling() -> None:
    rising = Grades(80, 48, 32)
    assert [rising.grade(v) for v in (100, 60, 40, 10)] == [0, 1, 2, 3]
    assert rising.sub_score(100) == 1.0 and rising.sub_score(48) == pytest.approx(0.7)
    assert rising.sub_score(32) == pytest.approx(0.4) and rising.sub_score(16) == 0.0
    falling = Grades(0.4, 0.55, 0.7)
    assert [falling.grade(v) for v in (0.1, 0.5, 0.6, 0.9)] == [0, 1, 2, 3]
    assert falling.sub_score(0.0) == 1.0 and falling.sub_score(1.0) == 0.0


def test_levels_follow_quality_control_wording() -> None:
    assert level_from_grades([0, 0, 0, 0, 0, 1]) == 4
    assert level_from_grades([0, 0, 0, 0, 1, 1]) == 3
    assert level_from_grades([0, 2, 2, 0, 0, 0]) == 3
    assert level_from_grades([2, 2, 2, 0, 0, 0]) == 2
    assert level_from_grades([3, 0, 0, 0, 0, 0]) == 1
    assert level_from_grades([3, 3, 0, 0, 0, 0]) == 0


def test_completeness_is_share_of_box_inside() -> None:
    assert completeness_measure((10, 10, 50, 50), 100, 100) == 1.0
    assert completeness_measure((-20, 0, 20, 40), 100, 100) == pytest.approx(0.5)
    assert completeness_measure((200, 200, 220, 220), 100, 100) == 0.0


def test_blur_and_illumination_on_synthetic_crops() -> None:
    rng = np.random.default_rng(0)
    blocks = (rng.random((14, 14)) > 0.5).astype(np.uint8) * 200 + 30
    sharp = cv2.cvtColor(
        cv2.resize(blocks, (112, 112), interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR
    )
    slightly = blur_measure(cv2.GaussianBlur(sharp, (0, 0), 2))
    heavily = blur_measure(cv2.GaussianBlur(sharp, (0, 0), 6))
    assert blur_measure(sharp) < 0.1 < slightly < 0.5 < heavily
    assert blur_measure(sharp // 4) == pytest.approx(blur_measure(sharp), abs=0.1)  # contrast-free
    assert illumination_measure(np.full((112, 112, 3), 77, np.uint8)) == pytest.approx(77)


def test_assess_quality_grades_a_bad_pose_down() -> None:
    rng = np.random.default_rng(1)
    blocks = (rng.random((14, 14)) > 0.5).astype(np.uint8) * 150 + 50
    crop = cv2.cvtColor(
        cv2.resize(blocks, (112, 112), interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR
    )
    common = dict(
        detector_score=0.85, box=(10, 10, 130, 150), image_height=300, image_width=300, crop=crop
    )
    good = assess_quality(pose=Pose(0, 0, 0), **common)
    profile = assess_quality(pose=Pose(70, 0, 0), **common)
    assert good.level == 4 and good.score > 95
    assert profile.level == 1 and profile.score < 30
    assert good.completeness == 1.0 and good.face_size == 120


def test_settings_defaults_equal_the_module_defaults() -> None:
    assert thresholds_from_settings(Settings()) == DEFAULT_THRESHOLDS
