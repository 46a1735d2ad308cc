"""Image decoding and every intake refusal, on real encoded files made with Pillow."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.sources import decode_image, load_image, sniff_format
from pipeline.sources.orientation import apply_orientation

SETTINGS = Settings()


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def gradient(width: int = 160, height: int = 120) -> Image.Image:
    """An RGB test card whose every quadrant differs (orientation mistakes show)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.dstack([x * 255 // width, y * 255 // height, (x + y) % 256]).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def refusal(data: bytes, settings: Settings = SETTINGS) -> FacepipeError:
    with pytest.raises(FacepipeError) as info:
        decode_image(data, "test-image", settings)
    return info.value


def png_bomb(side: int) -> bytes:
    """A valid 1-bit PNG of side x side white pixels, compressed to a few tens of KB."""
    row = b"\x00" + b"\xff" * ((side + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("fmt", "name"), [("JPEG", "jpeg"), ("PNG", "png"), ("BMP", "bmp"), ("WEBP", "webp")]
)
def test_accepted_formats_decode_to_bgr(fmt: str, name: str) -> None:
    card = gradient()
    data = encode(card, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    image = decode_image(data, "card", SETTINGS)
    assert image.format == name
    assert image.pixels.dtype == np.uint8 and image.pixels.shape == (120, 160, 3)
    expected_bgr = np.asarray(card)[:, :, ::-1].astype(int)
    tolerance = 12 if fmt == "JPEG" else 0
    assert np.abs(image.pixels.astype(int) - expected_bgr).mean() <= tolerance
    assert len(image.content_sha256) == 64


def test_gif_is_refused_by_name() -> None:
    err = refusal(encode(gradient(), "GIF"))
    assert err.code is ErrorCode.ILLEGAL_FORMAT and err.numeric_code == -1400
    assert "GIF is not supported" in err.message


def test_tiff_and_random_bytes_are_illegal_format() -> None:
    assert refusal(encode(gradient(), "TIFF")).code is ErrorCode.ILLEGAL_FORMAT
    rng = np.random.default_rng(7)
    assert refusal(rng.bytes(5000)).code is ErrorCode.ILLEGAL_FORMAT
    assert refusal(b"BMtext that starts like a bitmap").code is ErrorCode.ILLEGAL_FORMAT


def test_empty_bytes() -> None:
    err = refusal(b"")
    assert err.code is ErrorCode.EMPTY_IMAGE and err.numeric_code == -1300


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_files_fail_to_decode(fmt: str) -> None:
    data = encode(gradient(400, 300), fmt)
    for cut in (len(data) // 2, len(data) - 16):
        err = refusal(data[:cut])
        assert err.code is ErrorCode.DECODE_FAILED and err.numeric_code == -1102


def test_damaged_header_fails_to_decode() -> None:
    data = bytearray(encode(gradient(), "PNG"))
    data[12:29] = b"\x00" * 17  # IHDR body and CRC zeroed
    assert refusal(bytes(data)).code is ErrorCode.DECODE_FAILED
    err = refusal(b"\xff\xd8\xff" + b"garbage" * 20)  # JPEG magic, no JPEG behind it
    assert err.code is ErrorCode.DECODE_FAILED and "BytesIO" not in err.message


def test_jpeg_with_trailing_bytes_still_decodes() -> None:
    data = encode(gradient(), "JPEG") + b"appended by some camera" * 50
    assert decode_image(data, "trailing", SETTINGS).pixels.shape == (120, 160, 3)


def test_too_small_side() -> None:
    err = refusal(encode(gradient(10, 10), "PNG"))
    assert err.code is ErrorCode.IMAGE_TOO_SMALL
    assert "10x10" in err.message
    # 64 px is the reference minimum and is accepted
    assert decode_image(encode(gradient(64, 200), "PNG"), "edge", SETTINGS).width == 64


def test_byte_cap() -> None:
    data = encode(gradient(400, 300), "PNG")
    err = refusal(data, Settings(max_image_bytes=len(data) - 1))
    assert err.code is ErrorCode.IMAGE_TOO_LARGE and "bytes" in err.message
    assert decode_image(data, "ok", Settings(max_image_bytes=len(data))).width == 400


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    ("side", "settings"),
    [
        (20_000, SETTINGS),  # 400 MP: beyond Pillow's own bomb limit too
        (12_000, Settings(max_image_pixels=100_000_000)),  # 144 MP: our cap decides
        (2_000, Settings(max_image_pixels=1_000_000)),  # a tight configured cap
    ],
)
def test_decompression_bomb_refused_from_header(side: int, settings: Settings) -> None:
    data = png_bomb(side)
    assert len(data) < 200_000  # tiny file, huge image
    tracemalloc.start()
    start = time.perf_counter()
    try:
        err = refusal(data, settings)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.code is ErrorCode.IMAGE_TOO_LARGE
    # Decoding even the 2000x2000 one would allocate 12 MB of BGR pixels.
    assert peak < 4_000_000
    assert time.perf_counter() - start < 2.0


def test_modes_are_converted_to_bgr() -> None:
    card = gradient()
    gray = decode_image(encode(card.convert("L"), "PNG"), "gray", SETTINGS).pixels
    assert gray.shape == (120, 160, 3)
    assert np.array_equal(gray[:, :, 0], gray[:, :, 2])
    assert np.array_equal(gray[:, :, 0], np.asarray(card.convert("L")))

    palette = decode_image(encode(card.convert("P"), "PNG"), "palette", SETTINGS).pixels
    assert palette.shape == (120, 160, 3)

    sixteen = np.asarray(card.convert("L"), dtype=np.uint16) * 257
    data16 = encode(Image.fromarray(sixteen), "PNG")
    assert Image.open(io.BytesIO(data16)).mode.startswith("I")
    pixels16 = decode_image(data16, "16bit", SETTINGS).pixels
    assert pixels16.dtype == np.uint8
    assert np.abs(pixels16[:, :, 1].astype(int) - np.asarray(card.convert("L"))).max() <= 1

    cmyk = decode_image(encode(card.convert("CMYK"), "JPEG"), "cmyk", SETTINGS).pixels
    assert cmyk.shape == (120, 160, 3)


def test_alpha_is_composited_on_white() -> None:
    rgba = np.zeros((100, 100, 4), dtype=np.uint8)
    rgba[:, :, 0] = 200  # red where opaque
    rgba[:, 50:, 3] = 255  # right half opaque, left half fully transparent
    rgba[:10, :, 3] = 128  # a half-transparent band on top
    for fmt in ("PNG", "WEBP"):
        params = {"lossless": True} if fmt == "WEBP" else {}
        pixels = decode_image(encode(Image.fromarray(rgba, "RGBA"), fmt, **params), fmt, SETTINGS)
        bgr = pixels.pixels
        assert bgr[50, 10].tolist() == [255, 255, 255]  # transparent -> white
        assert bgr[50, 80].tolist() == [0, 0, 200]  # opaque red (BGR order)
        assert abs(int(bgr[5, 80, 0]) - 127) <= 2  # half alpha: halfway to white
    gray = Image.new("L", (100, 100), 0)
    gray.paste(200, (50, 0, 100, 100))
    keyed = decode_image(encode(gray, "PNG", transparency=0), "trns", SETTINGS).pixels
    assert keyed[50, 10].tolist() == [255] * 3 and keyed[50, 80].tolist() == [200] * 3
    palette = Image.new("P", (100, 100), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.paste(1, (50, 0, 100, 100))
    keyed = decode_image(encode(palette, "PNG", transparency=0), "p-trns", SETTINGS).pixels
    assert keyed[50, 10].tolist() == [255] * 3 and keyed[50, 80].tolist() == [0, 0, 255]
    la = Image.fromarray(rgba[:, :, [0, 3]], "LA")
    assert decode_image(encode(la, "PNG"), "la", SETTINGS).pixels[50, 10].tolist() == [255] * 3


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_exif_transpose(orientation: int) -> None:
    card = gradient()
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(card, "PNG", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert np.array_equal(decode_image(data, "o", SETTINGS).pixels, expected[:, :, ::-1])


@pytest.mark.parametrize("value", [0, 9, 255])
def test_invalid_orientation_is_ignored(value: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = value
    data = encode(gradient(), "JPEG", exif=exif.tobytes())
    assert decode_image(data, "bad-exif", SETTINGS).pixels.shape == (120, 160, 3)


def test_apply_orientation_does_not_modify_input() -> None:
    pixels = np.asarray(gradient())[:, :, ::-1].copy()
    before = pixels.copy()
    for orientation in range(1, 9):
        apply_orientation(pixels, orientation)
    assert np.array_equal(pixels, before)


def test_exif_rotated_sample_photo_comes_out_upright(gdp_jpg: Path) -> None:
    upright = Image.open(gdp_jpg).convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_270)  # pixels turned 90 deg clockwise
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90 deg counter-clockwise to display"
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    image = decode_image(data, "rotated-gdp", SETTINGS)
    assert (image.width, image.height) == upright.size
    expected = np.asarray(upright)[:, :, ::-1].astype(int)
    assert np.abs(image.pixels.astype(int) - expected).mean() < 4


def test_shared_exif_orient8_photo(shared_faces: Path) -> None:
    path = shared_faces / "hard" / "derived__r90_exif_orient8.jpg"
    if not path.is_file():
        pytest.skip("derived__r90_exif_orient8.jpg is not present")
    raw = Image.open(path)
    assert raw.getexif().get(0x0112) == 8
    image = load_image(str(path), SETTINGS)
    # stored 409 wide x 330 high; upright it is 330 wide x 409 high
    assert (image.width, image.height) == (raw.height, raw.width)
    expected = np.asarray(ImageOps.exif_transpose(raw).convert("RGB"))[:, :, ::-1]
    assert np.abs(image.pixels.astype(int) - expected.astype(int)).mean() < 1


def test_content_hash_is_of_original_bytes(players_jpg: Path) -> None:
    import hashlib

    data = players_jpg.read_bytes()
    image = load_image(str(players_jpg), SETTINGS)
    assert image.content_sha256 == hashlib.sha256(data).hexdigest()
    assert image.source == str(players_jpg)
    assert sniff_format(data) is not None
