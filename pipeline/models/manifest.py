"""Explicit model manifests: what each ONNX file is, chosen by file-name rules, checked at load.

A model's kind is never guessed from its graph. The file name picks a manifest (the rules are
the table :data:`MANIFEST_RULES`, first match wins); the manifest says the kind, the input size,
the normalisation and the output layout; :func:`check_manifest` then verifies that the ONNX
graph's declared inputs and outputs fit it and raises ``MODEL_INVALID`` when they do not.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pipeline.errors import ErrorCode, FacepipeError


class ModelKind(StrEnum):
    """What a model does in the engine."""

    DETECTOR = "detector"
    RECOGNIZER = "recognizer"
    LANDMARK106 = "landmark106"
    ATTRIBUTES = "attributes"


@dataclass(frozen=True)
class ModelManifest:
    """Everything the engine needs to know about a model, stated rather than inferred.

    ``input_size`` is (width, height), or None when the graph accepts any size (the detector,
    run at ``settings.det_size``). Pixels go in as ``(rgb - mean) / std`` in NCHW order.
    Output layout: the detector has 3 x len(strides) heads in the order scores (k=1), boxes
    (k=4), keypoints (k=10), one per stride, each (batch, anchors, k) or (anchors, k) with
    ``anchors_per_cell`` anchors per grid cell; the other models have one output of width
    ``output_width``.
    """

    kind: ModelKind
    family: str
    input_size: tuple[int, int] | None
    mean: float
    std: float
    swap_rb: bool = True
    output_width: int | None = None
    strides: tuple[int, ...] = ()
    anchors_per_cell: int = 0


SCRFD = ModelManifest(
    kind=ModelKind.DETECTOR,
    family="scrfd",
    input_size=None,
    mean=127.5,
    std=128.0,
    strides=(8, 16, 32),
    anchors_per_cell=2,
)
ARCFACE = ModelManifest(
    kind=ModelKind.RECOGNIZER,
    family="arcface",
    input_size=(112, 112),
    mean=127.5,
    std=127.5,
    output_width=512,
)
# 2d106det and genderage normalise inside the graph (their first nodes are Sub/Mul), so the
# engine feeds raw 0-255 values (InsightFace's own convention for these two files).
LANDMARK_2D106 = ModelManifest(
    kind=ModelKind.LANDMARK106,
    family="2d106det",
    input_size=(192, 192),
    mean=0.0,
    std=1.0,
    output_width=212,
)
GENDERAGE = ModelManifest(
    kind=ModelKind.ATTRIBUTES,
    family="genderage",
    input_size=(96, 96),
    mean=0.0,
    std=1.0,
    output_width=3,
)

MANIFEST_RULES: tuple[tuple[str, ModelManifest], ...] = (
    ("det_*.onnx", SCRFD),
    ("scrfd_*kps*.onnx", SCRFD),
    ("w600k_*.onnx", ARCFACE),
    ("glintr100*.onnx", ARCFACE),
    ("arcface*.onnx", ARCFACE),
    ("2d106det*.onnx", LANDMARK_2D106),
    ("genderage*.onnx", GENDERAGE),
)
"""File-name glob -> manifest; first match wins. SCRFD needs the keypoint variant (``*kps``).
Other files (1k3d68.onnx; vectron's scrfd_nms/scrfd_concat/scrfd_resize/box_aligner/... helper
graphs) are not used by the engine."""


def manifest_for(path: Path) -> ModelManifest | None:
    """The manifest the file name selects, or None for files the engine does not use."""
    name = path.name.lower()
    for pattern, manifest in MANIFEST_RULES:
        if fnmatch.fnmatch(name, pattern):
            return manifest
    return None


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output as declared: name and shape (str or None for dynamic dims)."""

    name: str
    shape: tuple[int | str | None, ...]


def _invalid(path: Path, manifest: ModelManifest, why: str) -> FacepipeError:
    return FacepipeError(
        ErrorCode.MODEL_INVALID,
        f"{path.name} does not fit the {manifest.family} {manifest.kind.value} manifest: {why}",
        path=str(path),
    )


def _fixed(dim: int | str | None) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def check_manifest(
    path: Path,
    manifest: ModelManifest,
    inputs: Sequence[TensorInfo],
    outputs: Sequence[TensorInfo],
) -> None:
    """Raise MODEL_INVALID unless the graph's declared tensors fit ``manifest``."""
    if len(inputs) != 1:
        raise _invalid(path, manifest, f"expected 1 input, the graph has {len(inputs)}")
    shape = inputs[0].shape
    if len(shape) != 4 or _fixed(shape[1]) not in (3, None):
        raise _invalid(path, manifest, f"expected an NCHW 3-channel input, got {shape}")
    if manifest.input_size is not None:
        width, height = manifest.input_size
        if (_fixed(shape[2]), _fixed(shape[3])) not in ((height, width), (None, None)):
            raise _invalid(path, manifest, f"expected input {height}x{width}, got {shape}")
    if manifest.kind is ModelKind.DETECTOR:
        _check_detector_outputs(path, manifest, outputs)
        return
    if len(outputs) != 1:
        raise _invalid(path, manifest, f"expected 1 output, the graph has {len(outputs)}")
    out_width = _fixed(outputs[0].shape[-1]) if outputs[0].shape else None
    if out_width != manifest.output_width:
        raise _invalid(
            path,
            manifest,
            f"expected an output of width {manifest.output_width}, got {outputs[0].shape}",
        )


def _check_detector_outputs(
    path: Path, manifest: ModelManifest, outputs: Sequence[TensorInfo]
) -> None:
    heads = len(manifest.strides)
    if len(outputs) != 3 * heads:
        raise _invalid(
            path,
            manifest,
            f"expected {3 * heads} outputs (scores, boxes, keypoints per "
            f"stride), the graph has {len(outputs)}",
        )
    for group, width in enumerate((1, 4, 10)):
        for out in outputs[group * heads : (group + 1) * heads]:
            if len(out.shape) not in (2, 3) or _fixed(out.shape[-1]) not in (width, None):
                raise _invalid(
                    path, manifest, f"output {out.name} should be (..., {width}), got {out.shape}"
                )


def detector_is_batched(outputs: Sequence[TensorInfo]) -> bool:
    """True when the detector's outputs carry a batch axis (rank 3), so N images fit one run.

    SCRFD exports come in two layouts: (batch, anchors, k) and a flattened (anchors, k) that
    only takes one image per run (InsightFace's ``det_10g.onnx``).
    """
    return all(len(out.shape) == 3 for out in outputs)
