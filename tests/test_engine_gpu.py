"""The CUDA path: same results as the CPU (skipped where onnxruntime has no CUDA provider)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from pipeline.config import Settings
from pipeline.engine import FaceEngine
from tests.fixtures.engine import load_photo

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        "CUDAExecutionProvider" not in ort.get_available_providers(),
        reason="onnxruntime has no CUDA provider here",
    ),
]


def test_cuda_engine_matches_cpu(engine: FaceEngine, players_jpg: Path) -> None:
    gpu = FaceEngine.from_settings(Settings(providers=["CUDAExecutionProvider"]))
    assert gpu.detector.session.get_providers()[0] == "CUDAExecutionProvider"
    assert not gpu.detector.on_cpu and gpu.detector_batch_size >= 1
    image = load_photo(players_jpg)
    on_gpu = gpu.analyze([image])[0].faces
    on_cpu = engine.analyze([image])[0].faces
    assert len(on_gpu) == len(on_cpu) == 22
    for a, b in zip(on_gpu, on_cpu, strict=True):
        np.testing.assert_allclose(a.box, b.box, atol=1.0)
        assert float(a.embedding @ b.embedding) > 0.99
