"""Provider options of the ONNX Runtime sessions (pure), and the fallback to CPU."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Settings
from pipeline.models.session import (
    CPU_PROVIDER,
    TENSORRT_CACHE,
    TENSORRT_PROVIDER,
    provider_options,
    usable_providers,
)


def test_tensorrt_gets_fp16_and_an_engine_cache_in_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    options = provider_options([TENSORRT_PROVIDER, "CUDAExecutionProvider", CPU_PROVIDER], settings)
    assert options[1:] == [{}, {}]
    trt = options[0]
    assert trt["trt_fp16_enable"] == "True"
    assert trt["trt_engine_cache_enable"] == "True"
    assert Path(trt["trt_engine_cache_path"]) == tmp_path / TENSORRT_CACHE
    assert (tmp_path / TENSORRT_CACHE).is_dir()


def test_gpu_providers_fall_back_to_cpu_here() -> None:
    import onnxruntime as ort

    wanted = [TENSORRT_PROVIDER, "CUDAExecutionProvider"]
    chosen = usable_providers(wanted)
    assert chosen[-1] == CPU_PROVIDER
    assert all(p in ort.get_available_providers() for p in chosen)
