"""Model pack resolution, manifests checked against the real ONNX graphs, sessions."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.models.attributes import GenderAge
from pipeline.models.detector import ScrfdDetector
from pipeline.models.manifest import ARCFACE, SCRFD, ModelKind, manifest_for
from pipeline.models.pack import ModelFile, resolve_pack, vectron_model_dir
from pipeline.models.recognizer import ArcFaceRecognizer
from pipeline.models.session import intra_op_threads, usable_providers


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("det_10g.onnx", ModelKind.DETECTOR),
        ("det_500m.onnx", ModelKind.DETECTOR),
        ("scrfd_10g_bnkps.onnx", ModelKind.DETECTOR),
        ("w600k_r50.onnx", ModelKind.RECOGNIZER),
        ("glintr100.onnx", ModelKind.RECOGNIZER),
        ("2d106det.onnx", ModelKind.LANDMARK106),
        ("genderage.onnx", ModelKind.ATTRIBUTES),
        ("1k3d68.onnx", None),
        ("scrfd_nms.onnx", None),
        ("box_aligner.onnx", None),
    ],
)
def test_manifest_rules_by_file_name(name: str, kind: ModelKind | None) -> None:
    manifest = manifest_for(Path(name))
    assert (manifest.kind if manifest else None) == kind


def test_default_pack_is_vectron_with_model_ids() -> None:
    pack = resolve_pack(Settings(model_dir=None))
    assert pack.folder == vectron_model_dir()
    assert pack.detector.path.name == "scrfd_500m_bnkps.onnx"
    assert pack.recognizer.path.name == "w600k_mbf.onnx"
    assert pack.landmark106 is not None and pack.attributes is None
    digest = hashlib.sha256(pack.recognizer.path.read_bytes()).hexdigest()
    assert pack.recognizer.model_id == f"w600k_mbf-{digest[:8]}"
    assert re.fullmatch(r"scrfd_500m_bnkps-[0-9a-f]{8}", pack.detector.model_id)


def test_a_graph_that_does_not_fit_the_detector_manifest_is_model_invalid() -> None:
    # vectron's scrfd_nms.onnx post-processing graph, forced onto the SCRFD manifest
    path = vectron_model_dir() / "scrfd_nms.onnx"
    with pytest.raises(FacepipeError) as err:
        ScrfdDetector.load(ModelFile(path, SCRFD, "x"), Settings())
    assert err.value.code is ErrorCode.MODEL_INVALID


def test_detector_passed_as_recognizer_is_model_invalid(tmp_path: Path) -> None:
    folder = vectron_model_dir()
    shutil.copy(folder / "scrfd_500m_bnkps.onnx", tmp_path / "det_500m.onnx")
    shutil.copy(folder / "scrfd_500m_bnkps.onnx", tmp_path / "w600k_fake.onnx")
    pack = resolve_pack(Settings(model_dir=tmp_path))
    assert pack.recognizer.manifest is ARCFACE
    with pytest.raises(FacepipeError) as err:
        ArcFaceRecognizer.load(pack.recognizer, Settings())
    assert err.value.code is ErrorCode.MODEL_INVALID
    assert "w600k_fake.onnx" in err.value.message


def test_wrong_class_for_manifest_kind_is_model_invalid() -> None:
    pack = resolve_pack(Settings())
    with pytest.raises(FacepipeError) as err:
        ScrfdDetector.load(pack.recognizer, Settings())
    assert err.value.code is ErrorCode.MODEL_INVALID


def test_pack_without_recognizer_and_garbage_files(tmp_path: Path) -> None:
    shutil.copy(vectron_model_dir() / "scrfd_500m_bnkps.onnx", tmp_path / "det_500m.onnx")
    with pytest.raises(FacepipeError) as err:
        resolve_pack(Settings(model_dir=tmp_path))
    assert err.value.code is ErrorCode.MODEL_INVALID and "recognizer" in err.value.message
    (tmp_path / "w600k_mbf.onnx").write_bytes(b"not an onnx graph")
    pack = resolve_pack(Settings(model_dir=tmp_path))
    with pytest.raises(FacepipeError) as err:
        ArcFaceRecognizer.load(pack.recognizer, Settings())
    assert err.value.code is ErrorCode.MODEL_INVALID
    with pytest.raises(FacepipeError):
        resolve_pack(Settings(model_dir=tmp_path / "missing"))


def test_providers_keep_only_available_ones_with_cpu_last() -> None:
    chosen = usable_providers(["NoSuchExecutionProvider", "CUDAExecutionProvider"])
    assert chosen[-1] == "CPUExecutionProvider"
    assert "NoSuchExecutionProvider" not in chosen


def test_vectron_detector_is_batched_and_loads_on_cpu() -> None:
    settings = Settings(providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    detector = ScrfdDetector.load(resolve_pack(settings).detector, settings)
    assert detector.batched
    assert "CPUExecutionProvider" in detector.session.get_providers()


def test_attribute_model_is_optional_and_checked(tmp_path: Path) -> None:
    folder = vectron_model_dir()
    for name in ("scrfd_500m_bnkps.onnx", "w600k_mbf.onnx"):
        (tmp_path / name).symlink_to(folder / name)
    assert resolve_pack(Settings(model_dir=tmp_path)).attributes is None
    # a landmark graph under an attribute model's name: 192x192 input, not 96x96
    shutil.copy(folder / "2d106det.onnx", tmp_path / "genderage.onnx")
    pack = resolve_pack(Settings(model_dir=tmp_path))
    assert pack.attributes is not None and pack.landmark106 is None
    with pytest.raises(FacepipeError) as err:
        GenderAge.load(pack.attributes, Settings())
    assert err.value.code is ErrorCode.MODEL_INVALID and "96x96" in err.value.message


def test_intra_op_threads_share_the_cores_among_stream_workers() -> None:
    cores = os.cpu_count() or 1
    assert intra_op_threads(Settings(intra_op_threads=3)) == 3
    assert intra_op_threads(Settings(stream_workers=2)) == max(1, cores // 2)
    assert intra_op_threads(Settings(stream_workers=1)) == cores
