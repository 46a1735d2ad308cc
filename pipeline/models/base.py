"""The model base: an ONNX session plus the manifest it was checked against."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Self

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.models.manifest import ModelKind, ModelManifest, TensorInfo, check_manifest
from pipeline.models.pack import ModelFile
from pipeline.models.session import create_session, runs_on_cpu
from pipeline.ops.cvtypes import f32

log = logging.getLogger(__name__)


def graph_tensors(session: ort.InferenceSession | Any) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """The session's declared inputs and outputs (an ORT session or an OpenVINO one)."""

    def info(args: Sequence[Any]) -> list[TensorInfo]:
        return [TensorInfo(a.name, tuple(a.shape)) for a in args]

    return info(session.get_inputs()), info(session.get_outputs())


class OnnxModel:
    """A loaded, manifest-checked model. Subclasses say which kind they are."""

    kind: ModelKind

    def __init__(
        self, model: ModelFile, session: ort.InferenceSession | Any, manifest: ModelManifest
    ) -> None:
        if manifest.kind is not self.kind:
            raise FacepipeError(
                ErrorCode.MODEL_INVALID,
                f"{model.path.name} is a {manifest.kind.value} model, not a {self.kind.value}",
                path=str(model.path),
            )
        inputs, outputs = graph_tensors(session)
        check_manifest(model.path, manifest, inputs, outputs)
        self.file = model
        self.manifest = manifest
        self.session = session
        self.model_id = model.model_id
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in outputs]
        self.inputs = inputs
        self.outputs = outputs

    @classmethod
    def load(cls, model: ModelFile, settings: Settings) -> Self:
        """Build the session for ``model`` and check it against its manifest."""
        session = create_session(model.path, settings, model.manifest.kind.value)
        return cls(model, session, model.manifest)

    def blob(self, images: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
        """NCHW float32 ``(pixel - mean) / std``, RGB when the manifest says so."""
        m = self.manifest
        height, width = images[0].shape[:2]
        return f32(
            cv2.dnn.blobFromImages(
                list(images),
                1.0 / m.std,
                (width, height),
                (m.mean, m.mean, m.mean),
                swapRB=m.swap_rb,
            )
        )

    @property
    def on_cpu(self) -> bool:
        """Whether the session runs on the CPU (ORT's CPU provider or OpenVINO's CPU plugin)."""
        return runs_on_cpu(self.session)

    def run(self, blob: NDArray[np.float32]) -> list[NDArray[np.float32]]:
        """One session run; outputs in the graph's order."""
        outputs = self.session.run(self.output_names, {self.input_name: blob})
        return [f32(output) for output in outputs]
