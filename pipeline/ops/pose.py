"""Head pose (yaw, pitch, roll in degrees) from the five keypoints (pure).

Method (weak perspective on a generic face): the eyes and the nose tip of an average adult face
are :data:`EYE_DISTANCE_MM` apart and :data:`NOSE_DROP_MM` below / :data:`NOSE_DEPTH_MM` in
front of the eye midpoint (the drop is the ArcFace template's, which is a frontal average).

* roll: the angle of the eye line; the keypoints are then turned back by it;
* yaw: the nose's sideways offset from the eye midpoint, ``tan(yaw) = dx * E / (D * e)`` with
  ``e`` the observed eye distance (``e = E cos(yaw)`` cancels the unknown scale);
* pitch: the nose's drop below the eye line in millimetres, ``drop = N cos(p) + D sin(p)``.

Mouth corners are left out on purpose: smiling moves them by as much as a 30-degree nod, and a
PnP fit that uses them (cv2.solvePnP on all five points, tried first) reported 35-45 degrees of
pitch on smiling frontal faces. Pitch saturates at ``atan(D / N)`` (about 40 degrees) where the
drop is largest. Signs: yaw positive when the nose moves towards the image's left (the person
turning to their own right), pitch positive chin down, roll positive clockwise in the image.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from pipeline.types import Pose

EYE_DISTANCE_MM = 63.0
NOSE_DROP_MM = 35.8
NOSE_DEPTH_MM = 30.0
_NOSE_RADIUS = math.hypot(NOSE_DROP_MM, NOSE_DEPTH_MM)
_NOSE_ANGLE = math.atan2(NOSE_DEPTH_MM, NOSE_DROP_MM)


def estimate_pose(keypoints: NDArray[np.floating]) -> Pose:
    """Yaw, pitch, roll in degrees of one face's (5, 2) keypoints (eyes, nose, mouth corners)."""
    pts = np.asarray(keypoints, dtype=np.float64).reshape(5, 2)
    left, right, nose = pts[0], pts[1], pts[2]
    eye_vec = right - left
    eye_dist = float(np.hypot(*eye_vec))
    roll = math.atan2(eye_vec[1], eye_vec[0])
    if eye_dist < 1e-6:
        return Pose(yaw=0.0, pitch=0.0, roll=math.degrees(roll))
    cos_r, sin_r = math.cos(-roll), math.sin(-roll)
    rel = nose - (left + right) / 2.0
    dx = cos_r * rel[0] - sin_r * rel[1]
    dy = sin_r * rel[0] + cos_r * rel[1]
    yaw = math.atan2(-dx * EYE_DISTANCE_MM, NOSE_DEPTH_MM * eye_dist)
    drop_mm = dy * EYE_DISTANCE_MM * math.cos(yaw) / eye_dist
    pitch = _NOSE_ANGLE - math.acos(max(-1.0, min(1.0, drop_mm / _NOSE_RADIUS)))
    return Pose(yaw=math.degrees(yaw), pitch=math.degrees(pitch), roll=math.degrees(roll))


def project_generic_face(
    yaw: float, pitch: float, roll: float, scale: float = 2.0
) -> NDArray[np.float64]:
    """Orthographic image of the generic eyes+nose model at a known pose (for tests and docs).

    Returns (3, 2): left eye, right eye, nose tip; the eye midpoint at the origin.
    """
    half = EYE_DISTANCE_MM / 2.0
    model = np.array([[-half, 0.0, 0.0], [half, 0.0, 0.0], [0.0, NOSE_DROP_MM, -NOSE_DEPTH_MM]])
    y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
    # yaw about the vertical axis (nose to the image's left for positive yaw), pitch about the
    # horizontal axis (nose down for positive pitch), then roll in the image plane.
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    rotated: NDArray[np.float64] = model @ (rz @ ry @ rx).T
    return rotated[:, :2] * scale
