"""OpenVINO's runtime behind the slice of ONNX Runtime's session interface the models use.

Measured on the 2-core AVX2 development machine (``bench/quantized.py``, ``bench/engine.py``):
OpenVINO's CPU plugin runs the w600k_mbf recognizer 1.2-1.25x faster than ONNX Runtime's CPU
provider in fp32, the SCRFD detector 0.85x as fast. So the runtime is a per-model choice
(``settings.openvino_models``), taken only where the ONNX Runtime providers would run on the CPU
anyway, and only when the optional ``openvino`` package is installed (``pip install
'facepipe[openvino]'``); otherwise the model stays on ONNX Runtime.

Precision is pinned to f32 (the plugin would pick bf16 on CPUs that have it, which moves the
embeddings): the vectors stay those of the ONNX Runtime path (cosine >= 0.999, see
``bench/engine.py --check``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

OPENVINO_CPU = "OpenVINO:CPU"
"""What :meth:`OpenVinoSession.get_providers` reports (a CPU runtime, like ORT's CPU provider)."""


def openvino_available() -> bool:
    """Whether the optional ``openvino`` package can be imported."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class GraphArg:
    """An input or output as ONNX Runtime's ``NodeArg`` shows it: name and shape (None or a
    name for a dynamic axis)."""

    name: str
    shape: tuple[int | str | None, ...]


class OpenVinoSession:
    """A model compiled for OpenVINO's CPU plugin, run like an ``ort.InferenceSession``.

    Thread-safe like an ONNX Runtime session: each calling thread gets its own infer request,
    and the plugin runs up to ``streams`` of them at once on ``streams x threads_per_stream``
    threads (the engine's model threads call it concurrently, as they do ORT sessions).
    """

    def __init__(self, path: Path, threads_per_stream: int, streams: int) -> None:
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(path))
        self._inputs = [_arg(p) for p in model.inputs]
        self._outputs = [_arg(p) for p in model.outputs]
        self.config: dict[str, Any] = {
            "INFERENCE_NUM_THREADS": max(1, threads_per_stream) * max(1, streams),
            "NUM_STREAMS": max(1, streams),
            "INFERENCE_PRECISION_HINT": "f32",
            # other processes share the cores: pinning threads to cores would fight them
            "ENABLE_CPU_PINNING": False,
        }
        self._compiled = core.compile_model(model, "CPU", self.config)
        self._output_index = {a.name: i for i, a in enumerate(self._outputs)}
        self._local = threading.local()

    def get_inputs(self) -> list[GraphArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[GraphArg]:
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        return [OPENVINO_CPU]

    def run(
        self, output_names: Sequence[str] | None, feed: Mapping[str, NDArray[Any]]
    ) -> list[NDArray[Any]]:
        """Outputs ``output_names`` (all when None) for ``feed``, as ONNX Runtime returns them."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._compiled.create_infer_request()
            self._local.request = request
        request.infer({name: np.ascontiguousarray(v) for name, v in feed.items()})
        names = output_names or [a.name for a in self._outputs]
        # copies: the request's output buffers are reused by its next run
        return [
            np.array(request.get_output_tensor(self._output_index[name]).data) for name in names
        ]


def default_streams(threads_per_stream: int) -> int:
    """One stream per group of ``threads_per_stream`` cores (2 on this 2-core machine at one
    thread each): as many runs at once as ONNX Runtime sessions get from the engine."""
    return max(1, (os.cpu_count() or 1) // max(1, threads_per_stream))


def _arg(port: Any) -> GraphArg:
    shape = tuple((int(d.get_length()) if d.is_static else None) for d in port.get_partial_shape())
    return GraphArg(port.get_any_name(), shape)
