"""Reduced-scale JPEG decoding of big photos (libjpeg DCT scaling) and the engine's use of it:
same faces, embeddings within tolerance, full-resolution crops only for faces too small at the
reduced scale. Real photos (the package's), upscaled in memory to phone-camera sizes."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline.config import Settings
from pipeline.ops.align import ARCFACE_TEMPLATE
from pipeline.ops.reduced import crop_upscale, full_scale, needs_full_resolution, scale_detections
from pipeline.ops.scrfd import Detections
from pipeline.sources.decode import (
    decode_image,
    decode_image_reduced,
    oriented_size,
    reduced_factor,
)

EMBEDDING_TOLERANCE = 0.85
"""Least cosine between a face's embedding from the reduced path and from the full decode (the
stated tolerance: the keypoints come from another canvas, which moves small faces' crops; seen
0.898 for a 63x83 px face scoring 0.59)."""
STABLE_CANVAS_SIDE = 16
"""Faces at least this big on the detector canvas are held to the embedding tolerance."""
MEAN_EMBEDDING_TOLERANCE = 0.95
"""Least mean cosine over a photo's faces."""


NEAR_THRESHOLD = 0.1
"""Detector scores this close above the threshold may flip between the two decodes (seen: a
41 px box scoring 0.56 on the 10 MP players.jpg, 7 px on the detector canvas, found only from
the full decode)."""


def _big_jpeg(path: Path, scale: float, orientation: int = 1) -> bytes:
    """The photo upscaled by ``scale`` (bicubic) and re-encoded as a quality-92 JPEG."""
    pixels = cv2.imread(str(path))
    big = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    rgb = Image.fromarray(cv2.cvtColor(big, cv2.COLOR_BGR2RGB))
    out = io.BytesIO()
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    rgb.save(out, "JPEG", quality=92, exif=exif.tobytes())
    return out.getvalue()


@pytest.mark.parametrize(
    ("width", "height", "factor"),
    [
        (4000, 3000, 4),
        (8000, 6000, 8),
        (5120, 3840, 8),
        (5119, 100, 8),
        (5111, 100, 4),
        (1280, 960, 2),
        (1279, 960, 2),
        (1277, 960, 1),
        (640, 480, 1),
        (300, 5000, 4),
    ],
)
def test_reduced_factor_keeps_the_canvas_filled(width: int, height: int, factor: int) -> None:
    assert reduced_factor(width, height, 640) == factor
    if factor > 1:
        assert -(-max(width, height) // factor) >= 640


def test_oriented_size_turns_for_tags_5_to_8() -> None:
    assert oriented_size(400, 300, 1) == (300, 400)
    assert oriented_size(400, 300, 3) == (300, 400)
    for tag in (5, 6, 7, 8):
        assert oriented_size(400, 300, tag) == (400, 300)


def test_scale_detections_and_crop_upscale() -> None:
    kps = (ARCFACE_TEMPLATE * 0.5)[None]  # a face half the crop's size: upsampled 2x
    dets = Detections(
        np.array([[10, 20, 60, 70]], np.float32),
        np.array([0.9], np.float32),
        kps.astype(np.float32),
    )
    full = scale_detections(dets, 4.0, 2.0)
    np.testing.assert_allclose(full.boxes, [[40, 40, 240, 140]])
    np.testing.assert_allclose(full.keypoints[0], kps[0] * np.array([4.0, 2.0]), rtol=1e-6)
    assert crop_upscale(kps[0]) == pytest.approx(2.0, rel=1e-4)
    assert needs_full_resolution(kps[0])
    assert not needs_full_resolution(ARCFACE_TEMPLATE * 1.5)
    assert full_scale((750, 1000, 3), (3000, 4000)) == (4.0, 4.0)


def test_big_jpeg_decodes_reduced_with_full_size_known(gdp_jpg: Path) -> None:
    data = _big_jpeg(gdp_jpg, 6.0)  # 3000 x 3990: 12 MP
    settings = Settings()
    full = decode_image(data, "gdp-12mp.jpg", settings)
    reduced = decode_image_reduced(data, "gdp-12mp.jpg", settings, 640)
    assert full.pixels.shape[:2] == (3990, 3000)
    assert reduced.reduced
    assert reduced.pixels.shape[:2] == (998, 750)  # 1/4, rounded up
    assert (reduced.height, reduced.width) == (3990, 3000)
    assert reduced.content_sha256 == full.content_sha256
    assert reduced.full_pixels is not None
    again = reduced.full_pixels()
    assert np.array_equal(again, full.pixels)
    # the reduced image is the full one, smaller: close to a resize of it
    shrunk = cv2.resize(full.pixels, (750, 998), interpolation=cv2.INTER_AREA)
    assert float(np.mean(np.abs(shrunk.astype(int) - reduced.pixels.astype(int)))) < 3.0


def test_orientation_applies_to_the_reduced_decode(gdp_jpg: Path) -> None:
    data = _big_jpeg(gdp_jpg, 6.0, orientation=6)  # stored 3000 x 3990, shown turned
    full = decode_image(data, "o6.jpg", Settings())
    reduced = decode_image_reduced(data, "o6.jpg", Settings(), 640)
    assert full.pixels.shape[:2] == (3000, 3990)
    assert reduced.pixels.shape[:2] == (750, 998)
    assert (reduced.height, reduced.width) == (3000, 3990)


def test_small_and_non_jpeg_images_decode_as_before(gdp_jpg: Path) -> None:
    small = gdp_jpg.read_bytes()
    a = decode_image_reduced(small, "gdp.jpg", Settings(), 640)
    assert not a.reduced and a.full_size is None
    assert np.array_equal(a.pixels, decode_image(small, "gdp.jpg", Settings()).pixels)
    ok, png = cv2.imencode(".png", cv2.resize(cv2.imread(str(gdp_jpg)), None, fx=4, fy=4))
    assert ok
    b = decode_image_reduced(bytes(png), "big.png", Settings(), 640)
    assert not b.reduced and b.pixels.shape[:2] == (2660, 2000)


def test_refusals_still_apply(gdp_jpg: Path) -> None:
    from pipeline.errors import ErrorCode, FacepipeError

    data = _big_jpeg(gdp_jpg, 6.0)
    with pytest.raises(FacepipeError) as info:
        decode_image_reduced(data, "x.jpg", Settings(max_image_pixels=10_000_000), 640)
    assert info.value.code is ErrorCode.IMAGE_TOO_LARGE
    with pytest.raises(FacepipeError) as info:
        decode_image_reduced(data[: len(data) // 2], "cut.jpg", Settings(), 640)
    assert info.value.code is ErrorCode.DECODE_FAILED


def _faces(engine, data: bytes, name: str, reduced: bool):  # type: ignore[no-untyped-def]
    settings = engine.settings
    image = (
        decode_image_reduced(data, name, settings, settings.det_size)
        if reduced
        else decode_image(data, name, settings)
    )
    return engine.analyze([image], landmarks=False)[0]


def _centre(face) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.array([(face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2])


def _match(a, b):  # type: ignore[no-untyped-def]
    """(pairs (face of a, face of b) matched by box centre within half a face, faces of a
    without a match)."""
    pairs, alone = [], []
    for fa in a.faces:
        side = min(fa.box[2] - fa.box[0], fa.box[3] - fa.box[1])
        fb = min(b.faces, key=lambda f: float(np.linalg.norm(_centre(fa) - _centre(f))))
        if float(np.linalg.norm(_centre(fa) - _centre(fb))) < side / 2:
            pairs.append((fa, fb))
        else:
            alone.append(fa)
    return pairs, alone


@pytest.mark.parametrize(("photo", "scale"), [("gdp.jpg", 6.0), ("players.jpg", 3.2)])
def test_engine_finds_the_same_faces_on_the_reduced_decode(
    engine,
    sample_dir: Path,
    photo: str,
    scale: float,  # type: ignore[no-untyped-def]
) -> None:
    data = _big_jpeg(sample_dir / photo, scale)
    full = _faces(engine, data, photo, reduced=False)
    small = _faces(engine, data, photo, reduced=True)
    assert (small.width, small.height) == (full.width, full.height)
    assert len(full.faces) > 0
    # Same faces, except that one scoring within NEAR_THRESHOLD of the detector's threshold
    # may fall on either side of it (the canvas is resampled from other pixels).
    threshold = engine.settings.det_score_threshold
    pairs, only_small = _match(small, full)
    _, only_full = _match(full, small)
    for face in only_small + only_full:
        assert face.score < threshold + NEAR_THRESHOLD, face.score
    assert len(pairs) >= len(full.faces) - 1
    cosines = []
    for fs, ff in pairs:
        side = min(ff.box[2] - ff.box[0], ff.box[3] - ff.box[1])
        # same face, same place (full-image coordinates), within 15% of its size (a 60 px face
        # is 10 px on the detector canvas)
        assert np.max(np.abs(np.array(fs.box) - np.array(ff.box))) < 0.15 * side
        # On faces under STABLE_CANVAS_SIDE px on the detector canvas the keypoints wander
        # between any two canvases (seen: cosine 0.59 for a 60x77 px face, 10 px on the canvas)
        if side * engine.settings.det_size / max(full.width, full.height) >= STABLE_CANVAS_SIDE:
            cosines.append(float(np.dot(fs.embedding, ff.embedding)))
    assert min(cosines) > EMBEDDING_TOLERANCE, cosines
    assert float(np.mean(cosines)) > MEAN_EMBEDDING_TOLERANCE, cosines


def test_crops_come_from_full_resolution_only_when_needed(engine, sample_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from pipeline.engine import _align_all

    calls: list[str] = []
    for photo, scale in (("yaoming.jpg", 14.0), ("players.jpg", 3.2)):
        image = decode_image_reduced(_big_jpeg(sample_dir / photo, scale), photo, Settings(), 640)
        decode_full = image.full_pixels
        assert decode_full is not None

        def counted(name: str = photo, fn=decode_full):  # type: ignore[no-untyped-def]
            calls.append(name)
            return fn()

        image = replace(image, full_pixels=counted)
        found = engine.detector.detect([image.pixels], engine.detect_options())
        crops, dets, images = _align_all([image], found)
        assert all(c.shape == (112, 112, 3) for c in crops[0])
        assert images[0].height == image.height
        # detections are in full-image coordinates
        assert float(dets[0].boxes[:, 2].max()) > image.pixels.shape[1]
        assert float(dets[0].boxes[:, 2].max()) <= image.width + 1
    # yaoming's one face is big: its crop comes from the reduced pixels; players' small faces
    # are cropped from one full decode
    assert calls == ["players.jpg"]


def test_landmark_and_attribute_models_read_the_reduced_pixels_of_big_faces(
    engine,
    sample_dir: Path,  # type: ignore[no-untyped-def]
) -> None:
    """The online path's case (landmarks and attributes on): a face big at the reduced scale
    needs no full decode at all, and its 106 landmarks (in full-image coordinates), attributes
    and embedding match the full decode's; an image with faces the models would upsample at the
    reduced scale is decoded in full once."""
    from dataclasses import replace

    for photo, scale, full_decodes in (("yaoming.jpg", 14.0, 0), ("gdp.jpg", 6.0, 1)):
        data = _big_jpeg(sample_dir / photo, scale)
        full = engine.analyze([decode_image(data, photo, Settings())], landmarks=True)[0]
        image = decode_image_reduced(data, photo, Settings(), 640)
        assert image.reduced
        calls: list[int] = []
        decode_full = image.full_pixels
        assert decode_full is not None
        image = replace(
            image, full_pixels=lambda fn=decode_full, seen=calls: seen.append(1) or fn()
        )
        small = engine.analyze([image], landmarks=True)[0]
        assert len(calls) == full_decodes, photo
        assert len(small.faces) == len(full.faces) > 0
        for fs, ff in zip(small.faces, full.faces, strict=True):
            side = min(ff.box[2] - ff.box[0], ff.box[3] - ff.box[1])
            assert fs.landmarks_106 is not None and ff.landmarks_106 is not None
            # seen: at most 0.94% of the face's side (gdp's 142 px face)
            assert float(np.abs(fs.landmarks_106 - ff.landmarks_106).max()) < 0.02 * side
            assert float(np.dot(fs.embedding, ff.embedding)) > 0.97  # seen >= 0.973
            if ff.attributes is not None:
                assert fs.attributes is not None
                assert fs.attributes.gender == ff.attributes.gender
                assert abs(fs.attributes.age - ff.attributes.age) <= 2  # seen: 1 year apart
