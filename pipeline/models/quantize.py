"""INT8 model packs: ONNX Runtime static quantization (QDQ) of a pack's detector and recognizer.

A quantized pack is a model pack like any other: a folder of ONNX files named so that the
manifest rules pick them up (``scrfd_500m_bnkps_int8.onnx``, ``w600k_mbf_int8.onnx``), so its
model ids (file stem + sha256) differ from the fp32 ones and its vectors never mix with fp32
vectors in one gallery (``facepipe reembed`` moves a scope over). Landmark and attribute models
are linked unchanged.

QDQ graphs run on the default CPU execution provider of plain ``onnxruntime`` (no extra
package), and on TensorRT as INT8 where one is used. Calibration feeds real inputs through the
fp32 models: letterboxed detector canvases of the calibration photos, and the aligned crops of
the faces the fp32 pack finds in them. Needs the ``onnx`` package (``pip install
'facepipe[quantize]'``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.models.pack import ModelFile, ModelPack, model_id_for, resolve_pack

log = logging.getLogger(__name__)

INT8_SUFFIX = "_int8"
DEFAULT_CALIBRATION_IMAGES = 300
"""Photos fed to the calibrator (a few hundred is enough for MinMax ranges; more only costs)."""
MIN_QDQ_OPSET = 13
"""Opset the graphs are converted to before quantizing (per-channel DequantizeLinear)."""
CALIBRATION_FACES = 600
"""Most aligned crops fed to the recognizer's calibrator."""


@dataclass(frozen=True)
class QuantizedModel:
    """One model of the quantized pack: where it came from and its new id."""

    role: str
    source_id: str
    model_id: str
    path: Path
    quantized: bool


@dataclass(frozen=True)
class QuantizeReport:
    """What ``facepipe models quantize`` made."""

    folder: Path
    calibration_images: int
    calibration_faces: int
    models: tuple[QuantizedModel, ...]


def default_int8_folder(settings: Settings, pack: ModelPack) -> Path:
    """``$FACEPIPE_HOME/models/<fp32 recognizer id>-int8``: one folder per source pack."""
    return settings.home / "models" / f"{pack.recognizer.model_id}-int8"


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime.quantization  # noqa: F401
    except ImportError as exc:
        raise FacepipeError(
            ErrorCode.MODEL_INVALID,
            f"quantization needs the onnx package ({exc}): pip install 'facepipe[quantize]'",
        ) from exc


def int8_name(path: Path) -> str:
    """``scrfd_500m_bnkps.onnx`` -> ``scrfd_500m_bnkps_int8.onnx`` (still matches its rule)."""
    return f"{path.stem}{INT8_SUFFIX}{path.suffix}"


def calibration_tensors(
    pack: ModelPack, settings: Settings, photos: Sequence[Path]
) -> tuple[list[NDArray[np.float32]], list[NDArray[np.float32]]]:
    """(detector blobs, recognizer blobs) for ``photos``, prepared exactly as the engine does:
    each photo letterboxed to its ``det_size`` canvas; each face the fp32 pack finds aligned
    to 112x112 (at most :data:`CALIBRATION_FACES`, one blob per face)."""
    from pipeline.models.detector import DetectOptions, ScrfdDetector
    from pipeline.models.recognizer import ArcFaceRecognizer
    from pipeline.ops.align import align_face
    from pipeline.ops.letterbox import letterbox, plan_fixed_letterbox, plan_letterbox
    from pipeline.sources.decode import decode_image
    from pipeline.types import DetectMode

    detector = ScrfdDetector.load(pack.detector, settings)
    recognizer = ArcFaceRecognizer.load(pack.recognizer, settings)
    options = DetectOptions(
        det_size=settings.det_size,
        score_threshold=settings.det_score_threshold,
        nms_threshold=settings.nms_threshold,
        min_face_size=float(settings.min_face_size),
        max_faces=settings.max_faces,
        mode=DetectMode.ALL,
        batch_size=1,
    )
    det_blobs: list[NDArray[np.float32]] = []
    rec_blobs: list[NDArray[np.float32]] = []
    for path in photos:
        try:
            image = decode_image(path.read_bytes(), str(path), settings)
        except (OSError, FacepipeError) as exc:
            log.warning("calibration: skipping %s (%s)", path, exc)
            continue
        fixed = detector.fixed_input
        plan = (
            plan_fixed_letterbox(image.height, image.width, fixed)
            if fixed is not None
            else plan_letterbox(image.height, image.width, settings.det_size)
        )
        det_blobs.append(detector.blob([letterbox(image.pixels, plan)]))
        found = detector.detect([image.pixels], options)[0]
        for keypoints in found.keypoints:
            if len(rec_blobs) < CALIBRATION_FACES:
                rec_blobs.append(recognizer.blob([align_face(image.pixels, keypoints)]))
    return det_blobs, rec_blobs


def _reader(input_name: str, blobs: list[NDArray[np.float32]]) -> Any:
    """An ONNX Runtime ``CalibrationDataReader`` over ``blobs`` (its type is onnxruntime's,
    which ships no type information)."""
    from onnxruntime.quantization import CalibrationDataReader

    # (an untyped base class: onnxruntime ships no type information)
    class BlobReader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._blobs: Iterator[NDArray[np.float32]] = iter(blobs)

        def get_next(self) -> dict[str, NDArray[np.float32]] | None:
            blob = next(self._blobs, None)
            return None if blob is None else {input_name: blob}

    return BlobReader()


def quantize_model(
    model: ModelFile, blobs: list[NDArray[np.float32]], out_path: Path, *, per_channel: bool
) -> None:
    """Static QDQ quantization of ``model`` (INT8 weights, UINT8 activations, MinMax ranges
    over ``blobs``), after ONNX Runtime's pre-processing (shape inference, fusions)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not blobs:
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER,
            f"no calibration inputs for {model.path.name}: the calibration photos hold no "
            "decodable image / no face",
        )
    graph = onnx.load(str(model.path))
    input_name = graph.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="facepipe-quant-") as tmp:
        source = model.path
        if _opset(graph) < MIN_QDQ_OPSET:
            # Per-channel QDQ needs DequantizeLinear's axis attribute (opset 13); InsightFace's
            # exports are opset 11.
            from onnx import version_converter

            source = Path(tmp) / "opset.onnx"
            onnx.save(version_converter.convert_version(graph, MIN_QDQ_OPSET), str(source))
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        partial = Path(tmp) / out_path.name
        quantize_static(
            str(prepared),
            str(partial),
            _reader(input_name, blobs),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            # 7-bit weights: without VNNI, x86 runs U8S8 products through VPMADDUBSW, whose
            # 16-bit sums saturate with full-range weights (measured on w600k_mbf, lfw-dev
            # crops: fp32/int8 cosine min 0.31, mean 0.890 with 8 bits; 0.911 / 0.969 with 7).
            reduce_range=True,
            extra_options={"CalibTensorRangeSymmetric": False},
        )
        out_path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole or not at all: a half-written file would load as a broken model.
        staged = out_path.with_suffix(".onnx.part")
        shutil.copyfile(partial, staged)
        os.replace(staged, out_path)


def _opset(graph: object) -> int:
    """The default-domain opset a model imports."""
    for entry in graph.opset_import:  # type: ignore[attr-defined]
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def _link(source: Path, folder: Path) -> Path:
    target = folder / source.name
    if target.is_symlink() or target.exists():
        target.unlink()
    target.symlink_to(source.resolve())
    return target


def quantize_pack(
    settings: Settings,
    photos: Sequence[Path],
    folder: Path | None = None,
    *,
    detector: bool = True,
    recognizer: bool = True,
) -> QuantizeReport:
    """Write the INT8 pack of the configured (fp32) pack into ``folder`` (default
    :func:`default_int8_folder`). ``detector`` / ``recognizer`` False links that model
    unchanged instead of quantizing it."""
    _require_onnx()
    pack = resolve_pack(settings)
    for model in (pack.detector, pack.recognizer):
        if INT8_SUFFIX in model.path.stem:
            raise FacepipeError(
                ErrorCode.ILLEGAL_PARAMETER,
                f"{model.path.name} is already quantized; point FACEPIPE_MODEL_DIR at the fp32 "
                "pack",
            )
    target = folder or default_int8_folder(settings, pack)
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("*.onnx"):
        stale.unlink()
    det_blobs, rec_blobs = calibration_tensors(pack, settings, photos)
    made: list[QuantizedModel] = []
    for role, model, blobs, wanted in (
        ("detector", pack.detector, det_blobs, detector),
        ("recognizer", pack.recognizer, rec_blobs, recognizer),
    ):
        if wanted:
            out = target / int8_name(model.path)
            log.info("quantizing %s on %d calibration inputs", model.path.name, len(blobs))
            quantize_model(model, blobs, out, per_channel=True)
        else:
            out = _link(model.path, target)
        made.append(QuantizedModel(role, model.model_id, model_id_for(out), out, wanted))
    for role, extra in (("landmark106", pack.landmark106), ("attributes", pack.attributes)):
        if extra is not None:
            out = _link(extra.path, target)
            made.append(QuantizedModel(role, extra.model_id, extra.model_id, out, False))
    return QuantizeReport(target, len(det_blobs), len(rec_blobs), tuple(made))
