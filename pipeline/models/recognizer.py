"""ArcFace embedder: aligned 112x112 crops in, L2-normalised float32 vectors out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from pipeline.models.base import OnnxModel
from pipeline.models.manifest import ModelKind


class ArcFaceRecognizer(OnnxModel):
    """Any ArcFace-style recognizer (w600k_mbf, w600k_r50, glintr100)."""

    kind = ModelKind.RECOGNIZER

    @property
    def embedding_dim(self) -> int:
        return int(self.manifest.output_width or 0)

    def embed(
        self, crops: Sequence[NDArray[np.uint8]], batch_size: int = 32
    ) -> NDArray[np.float32]:
        """(n, dim) unit vectors for ``crops``, in session runs of up to ``batch_size`` faces."""
        if not crops:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        parts = []
        step = max(1, batch_size)
        for start in range(0, len(crops), step):
            parts.append(self.run(self.blob(crops[start : start + step]))[0])
        vectors = np.concatenate(parts).astype(np.float32, copy=False)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit: NDArray[np.float32] = vectors / np.maximum(norms, 1e-12)
        return unit
