"""Attribute models: gender and age per face, batched over every face of a batch of images.

Two families, one interface (:meth:`predict` on a list of :class:`FaceRef`):

- :class:`DlibAgeGender`, the default: dlib-models' CC0 age predictor (81 one-year bins) and
  gender classifier as ONNX (see :mod:`pipeline.models.age_gender_bundle`), on dlib-style
  chips cut from SCRFD's keypoints (:mod:`pipeline.ops.face_chip`).
- :class:`GenderAge`: an InsightFace ``genderage.onnx`` in a ``FACEPIPE_MODEL_DIR`` pack
  (buffalo_l, antelopev2...), on a 96x96 crop around the box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.models.age_gender_bundle import AgeGenderBundle, HeadSpec
from pipeline.models.base import OnnxModel
from pipeline.models.manifest import ModelKind
from pipeline.models.pack import model_id_for
from pipeline.models.session import create_session
from pipeline.ops.align import box_crop_transform, crop_scale
from pipeline.ops.cvtypes import f32, u8
from pipeline.ops.face_chip import chip_matrix, extract_chip
from pipeline.types import AGE_WINDOW_YEARS, Attributes

ATTRIBUTE_MARGIN = 1.5


@dataclass(frozen=True)
class FaceRef:
    """One face to describe: its image, box, 5 keypoints and quarter-turn roll (degrees)."""

    pixels: NDArray[np.uint8]
    box: NDArray[np.float32]
    keypoints: NDArray[np.float32]
    turn: float = 0.0


def _chunks(n: int, size: int) -> list[slice]:
    size = max(1, size)
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


class GenderAge(OnnxModel):
    """InsightFace's genderage: (female score, male score, age / 100) per face."""

    kind = ModelKind.ATTRIBUTES

    def upscale(self, face: FaceRef) -> float:
        """How much the model's crop enlarges the image around the face (> 1: upsampling)."""
        size = self.manifest.input_size[0] if self.manifest.input_size else 96
        return crop_scale(box_crop_transform(face.box, size, ATTRIBUTE_MARGIN))

    def predict(self, faces: Sequence[FaceRef], batch_size: int = 32) -> list[Attributes]:
        """Gender and age of each face, ``batch_size`` faces per session run."""
        size = self.manifest.input_size[0] if self.manifest.input_size else 96
        crops = [
            u8(
                cv2.warpAffine(
                    f.pixels,
                    box_crop_transform(f.box, size, ATTRIBUTE_MARGIN, f.turn),
                    (size, size),
                )
            )
            for f in faces
        ]
        out: list[Attributes] = []
        for part in _chunks(len(crops), batch_size):
            raw = self.run(self.blob(crops[part]))[0]
            out.extend(
                Attributes(
                    gender="male" if int(np.argmax(p[:2])) == 1 else "female",
                    age=round(float(p[2]) * 100),
                    model=self.model_id,
                )
                for p in raw
            )
        return out


class _Head:
    """One ONNX network of the age/gender bundle, checked against the manifest at load."""

    def __init__(self, spec: HeadSpec, settings: Settings) -> None:
        if not spec.path.is_file():
            raise FacepipeError(
                ErrorCode.MODEL_INVALID, f"{spec.path} is missing", path=str(spec.path)
            )
        self.spec = spec
        self.session: ort.InferenceSession = create_session(spec.path, settings)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape, out = tuple(inputs[0].shape), tuple(outputs[0].shape)
        if (
            len(inputs) != 1
            or inputs[0].name != spec.input_name
            or shape[1:] != (3, spec.size, spec.size)
            or outputs[0].name != spec.output_name
            or out[-1] != spec.classes
        ):
            raise FacepipeError(
                ErrorCode.MODEL_INVALID,
                f"{spec.path.name} does not fit its manifest: input {inputs[0].name} {shape}, "
                f"output {outputs[0].name} {out}",
                path=str(spec.path),
            )
        self.model_id = model_id_for(spec.path)
        # BGR chips in, so the means go in BGR order too
        self._means_bgr = np.array(spec.means_rgb[::-1], dtype=np.float32)

    def blob(self, chips: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
        """NCHW RGB float32 ``(byte - channel mean) * scale`` of BGR chips."""
        stacked = np.stack(chips).astype(np.float32)
        stacked -= self._means_bgr
        stacked *= np.float32(self.spec.scale)
        return np.ascontiguousarray(stacked[..., ::-1].transpose(0, 3, 1, 2))

    def probabilities(self, chips: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
        outputs = self.session.run(
            [self.spec.output_name], {self.spec.input_name: self.blob(chips)}
        )
        return f32(outputs[0])


class DlibAgeGender:
    """dlib-models' age predictor and gender classifier (CC0), as ONNX, on dlib chips."""

    kind = ModelKind.ATTRIBUTES

    def __init__(self, bundle: AgeGenderBundle, settings: Settings) -> None:
        self.bundle = bundle
        self.age = _Head(bundle.age, settings)
        self.gender = _Head(bundle.gender, settings)
        self.model_id = f"{self.gender.model_id}+{self.age.model_id}"
        self._weights = np.asarray(bundle.age_weights, dtype=np.float64)

    def upscale(self, face: FaceRef) -> float:
        """How much the larger of the two chips enlarges the image around the face (> 1:
        upsampling)."""
        pad = self.bundle.padding
        size = max(self.bundle.gender.size, self.bundle.age.size)
        return crop_scale(chip_matrix(face.keypoints, size, pad))

    def chips(self, face: FaceRef) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
        """The (gender, age) chips of one face, BGR, at the two networks' sizes."""
        pad = self.bundle.padding
        return (
            extract_chip(face.pixels, face.keypoints, self.bundle.gender.size, pad),
            extract_chip(face.pixels, face.keypoints, self.bundle.age.size, pad),
        )

    def predict(self, faces: Sequence[FaceRef], batch_size: int = 32) -> list[Attributes]:
        """Gender and age of each face, ``batch_size`` faces per session run of each network.

        The keypoints fix the chip's rotation, so a face the rotation search found turned
        gets the same chip as upright; ``turn`` is not needed.
        """
        pairs = [self.chips(f) for f in faces]
        return self.predict_chips([g for g, _ in pairs], [a for _, a in pairs], batch_size)

    def predict_chips(
        self,
        gender_chips: Sequence[NDArray[np.uint8]],
        age_chips: Sequence[NDArray[np.uint8]],
        batch_size: int = 32,
    ) -> list[Attributes]:
        """Attributes from ready chips (the bench feeds dlib's own chips through here)."""
        out: list[Attributes] = []
        for part in _chunks(len(gender_chips), batch_size):
            genders = self.gender.probabilities(gender_chips[part])
            ages = self.age.probabilities(age_chips[part])
            out.extend(self.attributes(g, a) for g, a in zip(genders, ages, strict=True))
        return out

    def attributes(
        self, gender_probs: NDArray[np.floating], age_probs: NDArray[np.floating]
    ) -> Attributes:
        """One face's attributes from the two networks' probabilities.

        Age is the expectation over the bins (the way dlib's example reads the predictor),
        rounded; its probability is the mass of the bins within ``AGE_WINDOW_YEARS`` of it.
        """
        male = float(gender_probs[1]) > float(gender_probs[0])
        probs = np.asarray(age_probs, dtype=np.float64)
        expected = float(probs @ self._weights)
        age = int(np.floor(expected + 0.5))
        window = np.abs(self._weights - age) <= AGE_WINDOW_YEARS
        return Attributes(
            gender=self.bundle.gender_labels[1] if male else self.bundle.gender_labels[0],
            age=age,
            gender_probability=float(gender_probs[1] if male else gender_probs[0]),
            age_probability=float(probs[window].sum()),
            model=self.model_id,
        )


AttributeModel = GenderAge | DlibAgeGender
