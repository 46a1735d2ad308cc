"""INT8 packs: `facepipe models quantize` on the real default pack, calibrated on real photos.

The recognizer alone is quantized here (calibrating it on the package photos' faces takes
seconds; the detector's calibration over hundreds of canvases is the benchmark's job, see
bench/quantized.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.models.manifest import ModelKind, manifest_for
from pipeline.models.pack import resolve_pack
from pipeline.models.quantize import QuantizeReport, int8_name, quantize_pack
from pipeline.models.recognizer import ArcFaceRecognizer


@pytest.fixture(scope="module")
def int8_pack(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> QuantizeReport:
    photos = sorted(sample_dir.glob("*.jpg"))
    folder = tmp_path_factory.mktemp("int8-pack")
    return quantize_pack(Settings(), photos, folder, detector=False)


def test_int8_name_still_matches_its_manifest_rule() -> None:
    for name in ("scrfd_500m_bnkps.onnx", "w600k_mbf.onnx", "det_10g.onnx", "glintr100.onnx"):
        quantized = Path(int8_name(Path(name)))
        assert quantized.name != name
        assert manifest_for(quantized) == manifest_for(Path(name))


def test_quantized_pack_is_a_pack_with_its_own_recognizer_id(int8_pack: QuantizeReport) -> None:
    fp32 = resolve_pack(Settings())
    pack = resolve_pack(Settings(model_dir=int8_pack.folder))
    assert int8_pack.calibration_faces >= 20  # players.jpg alone holds 22 faces
    assert pack.recognizer.model_id != fp32.recognizer.model_id
    assert pack.recognizer.model_id.startswith(fp32.recognizer.path.stem + "_int8-")
    # the detector was kept in fp32 (linked): same file, same id
    assert pack.detector.model_id == fp32.detector.model_id
    roles = {m.role: m for m in int8_pack.models}
    assert roles["recognizer"].quantized and not roles["detector"].quantized
    assert roles["recognizer"].model_id == pack.recognizer.model_id
    assert pack.recognizer.path.stat().st_size < fp32.recognizer.path.stat().st_size / 2


def test_int8_vectors_stay_close_to_fp32(int8_pack: QuantizeReport, engine, players_jpg) -> None:  # type: ignore[no-untyped-def]
    from pipeline.sources import load_image

    analysis = engine.analyze([load_image(str(players_jpg))])[0]
    crops = [f.aligned_crop for f in analysis.faces]
    fp32 = np.stack([f.embedding for f in analysis.faces])
    pack = resolve_pack(Settings(model_dir=int8_pack.folder))
    int8 = ArcFaceRecognizer.load(pack.recognizer, Settings()).embed(crops)
    assert int8.shape == fp32.shape
    same = np.sum(int8 * fp32, axis=1)
    # the same face through both models: close, though not equal
    assert float(np.min(same)) > 0.85, same
    assert float(np.max(same)) < 1.0 - 1e-6
    # and still far from the other people's faces
    others = (int8 @ fp32.T)[~np.eye(len(crops), dtype=bool)]
    assert float(np.max(others)) < float(np.min(same))


def test_quantizing_a_quantized_pack_is_refused(
    int8_pack: QuantizeReport, sample_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(FacepipeError) as info:
        quantize_pack(Settings(model_dir=int8_pack.folder), [], tmp_path / "again")
    assert info.value.code is ErrorCode.ILLEGAL_PARAMETER


def test_no_calibration_input_is_an_error(tmp_path: Path) -> None:
    not_photo = tmp_path / "x.jpg"
    not_photo.write_bytes(b"not a jpeg")
    with pytest.raises(FacepipeError) as info:
        quantize_pack(Settings(), [not_photo], tmp_path / "out", detector=False)
    assert info.value.code is ErrorCode.ILLEGAL_PARAMETER


def test_cli_quantize_and_show(
    tmp_path: Path, int8_pack: QuantizeReport, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.cli import load_commands
    from pipeline.config import get_settings

    app = load_commands()
    runner = CliRunner()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["models", "quantize", str(empty)])
    assert result.exit_code == 2
    assert "no photos" in result.output
    monkeypatch.setenv("FACEPIPE_MODEL_DIR", str(int8_pack.folder))
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["models", "show", "--json"])
    finally:
        monkeypatch.delenv("FACEPIPE_MODEL_DIR")
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "_int8-" in result.output
    assert ModelKind.RECOGNIZER.value in result.output
