"""Pure detection ops on synthetic arrays with known answers: letterbox, SCRFD decode, NMS,
rotation and padding maps."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.ops.geometry import map_detections, pad_image, rotate_image, unrotate_points
from pipeline.ops.letterbox import letterbox, plan_fixed_letterbox, plan_letterbox
from pipeline.ops.scrfd import Detections, anchor_centers, decode_scrfd, nms


def test_letterbox_keeps_aspect_and_rounds_canvas_to_32() -> None:
    plan = plan_letterbox(480, 1280, 640)
    assert plan.scale == pytest.approx(0.5)
    assert (plan.resized_height, plan.resized_width) == (240, 640)
    assert (plan.canvas_height, plan.canvas_width) == (256, 640)
    small = plan_letterbox(150, 150, 640)
    assert small.scale == pytest.approx(640 / 150)
    assert (small.canvas_height, small.canvas_width) == (640, 640)


def test_letterbox_places_image_top_left_and_zero_pads() -> None:
    pixels = np.full((90, 200, 3), 200, np.uint8)
    plan = plan_letterbox(90, 200, 64)
    canvas = letterbox(pixels, plan)
    assert canvas.shape == (32, 64, 3)
    assert (canvas[:29] == 200).all() and (canvas[29:] == 0).all()
    assert (pixels == 200).all()  # input untouched


def test_anchor_centers_grid_and_repeat() -> None:
    centers = anchor_centers(64, 96, 32, 2)
    assert centers.shape == (2 * 3 * 2, 2)
    assert centers[:4].tolist() == [[0, 0], [0, 0], [32, 0], [32, 0]]
    assert centers[-1].tolist() == [64, 32]
    assert not centers.flags.writeable


def _heads(h: int, w: int, hot: dict[int, tuple[int, float, list[float], list[float]]]):
    """SCRFD heads for an h x w input, zero except the anchors listed per stride."""
    scores, boxes, kps = [], [], []
    for stride in (8, 16, 32):
        n = (h // stride) * (w // stride) * 2
        s = np.zeros((n, 1), np.float32)
        b = np.zeros((n, 4), np.float32)
        k = np.zeros((n, 10), np.float32)
        if stride in hot:
            idx, score, dist, offs = hot[stride]
            s[idx], b[idx], k[idx] = score, dist, offs
        scores.append(s)
        boxes.append(b)
        kps.append(k)
    return scores, boxes, kps


def test_decode_scrfd_recovers_box_and_keypoints_in_input_pixels() -> None:
    # stride 16 on a 64x64 input: 4x4 cells, 2 anchors each; anchor 11 = cell 5 = (x 16, y 16)
    scores, boxes, kps = _heads(64, 64, {16: (11, 0.9, [1, 0.5, 2, 1.5], [0.5, 0.0] * 5)})
    dets = decode_scrfd(scores, boxes, kps, 64, 64, (8, 16, 32), 2, 0.5)
    assert len(dets) == 1
    np.testing.assert_allclose(dets.boxes[0], [0, 8, 48, 40])
    np.testing.assert_allclose(dets.keypoints[0], [[24, 16]] * 5)
    assert dets.scores[0] == pytest.approx(0.9)
    assert len(decode_scrfd(scores, boxes, kps, 64, 64, (8, 16, 32), 2, 0.95)) == 0


def test_nms_keeps_best_of_overlapping_and_sorts_by_score() -> None:
    dets = Detections(
        np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32),
        np.array([0.6, 0.9, 0.7], np.float32),
        np.zeros((3, 5, 2), np.float32),
    )
    kept = nms(dets, 0.4)
    assert kept.scores.tolist() == pytest.approx([0.9, 0.7])
    assert kept.boxes[0].tolist() == [1, 1, 11, 11]


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
def test_rotation_map_returns_points_to_the_original(degrees: int) -> None:
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[10, 50] = 255  # the pixel centre is (50.5, 10.5)
    turned = rotate_image(pixels, degrees)
    ys, xs = np.nonzero(turned[..., 0])
    found = np.array([[xs[0] + 0.5, ys[0] + 0.5]], np.float32)
    np.testing.assert_allclose(unrotate_points(found, degrees, 40, 60), [[50.5, 10.5]])


def test_map_detections_undoes_scale_padding_and_rotation() -> None:
    # original 40x60; rotated 90 -> 60x40; padded by 10 -> 80x60; letterboxed at scale 2
    orig_box = np.array([[20, 5], [30, 15]], np.float32)  # corners x,y in the original
    turned = np.array([[40 - 5, 20], [40 - 15, 30]], np.float32)  # (H - y, x)
    in_input = (turned + 10) * 2
    box = np.concatenate([in_input.min(axis=0), in_input.max(axis=0)])[None]
    dets = Detections(box, np.array([0.8], np.float32), np.repeat(in_input[:1][None], 5, 1))
    mapped = map_detections(dets, scale=2.0, offset=10, degrees=90, height=40, width=60)
    np.testing.assert_allclose(mapped.boxes[0], orig_box.reshape(-1))
    np.testing.assert_allclose(mapped.keypoints[0, 0], [20, 5])


def test_pad_image_adds_constant_border() -> None:
    padded = pad_image(np.full((4, 6, 3), 9, np.uint8), 3, 0)
    assert padded.shape == (10, 12, 3)
    assert padded[3:7, 3:9].min() == 9 and padded[:3].max() == 0


def test_fixed_letterbox_fits_a_static_input() -> None:
    plan = plan_fixed_letterbox(480, 1280, (640, 640))
    assert plan.scale == pytest.approx(0.5)
    assert (plan.resized_height, plan.resized_width) == (240, 640)
    assert (plan.canvas_height, plan.canvas_width) == (640, 640)
