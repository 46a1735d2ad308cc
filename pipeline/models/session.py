"""ONNX Runtime sessions, built in exactly one place.

Providers come from ``settings.providers`` in order; those this onnxruntime build cannot use
are dropped (CUDA on a CPU-only install), and CPU is always the last resort, so a CUDA
configuration falls back cleanly to CPU.

A model kind named in ``settings.openvino_models`` runs on OpenVINO's runtime instead
(:mod:`pipeline.models.openvino_session`) when ONNX Runtime would put it on the CPU and the
``openvino`` package is installed; otherwise it stays here, with a warning.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import onnxruntime as ort

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError

log = logging.getLogger(__name__)

_warned_no_openvino = False

CPU_PROVIDER = "CPUExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
TENSORRT_CACHE = "tensorrt-cache"
"""Folder under ``settings.home`` for TensorRT engines and timing caches: building an engine
takes minutes, loading a cached one seconds."""


def usable_providers(wanted: list[str]) -> list[str]:
    """``wanted`` in order, keeping only providers this onnxruntime really offers; CPU last."""
    available = set(ort.get_available_providers())
    chosen = [p for p in wanted if p in available]
    if CPU_PROVIDER not in chosen:
        chosen.append(CPU_PROVIDER)
    return chosen


def provider_options(providers: list[str], settings: Settings) -> list[dict[str, str]]:
    """Options per provider, in ``providers`` order: TensorRT in fp16 with its engine and
    timing caches in ``$FACEPIPE_HOME/tensorrt-cache``; the others their defaults."""
    out: list[dict[str, str]] = []
    for provider in providers:
        if provider == TENSORRT_PROVIDER:
            cache = settings.home / TENSORRT_CACHE
            cache.mkdir(parents=True, exist_ok=True)
            out.append(
                {
                    "trt_fp16_enable": "True",
                    "trt_engine_cache_enable": "True",
                    "trt_engine_cache_path": str(cache),
                    "trt_timing_cache_enable": "True",
                    "trt_timing_cache_path": str(cache),
                }
            )
        else:
            out.append({})
    return out


def intra_op_threads(settings: Settings) -> int:
    """``settings.intra_op_threads``, or when 0 (auto) the cores shared out among the
    ``stream_workers`` batches analyze_stream runs at once (1 per batch on a 2-core machine).

    Several single-threaded runs side by side beat one run split over both cores while decode
    threads compete for them: a split op waits for its slowest thread, and a thread descheduled
    for a decoder stalls the whole run.
    """
    if settings.intra_op_threads > 0:
        return settings.intra_op_threads
    return max(1, (os.cpu_count() or 1) // max(1, settings.stream_workers))


def runs_on_cpu(session: Any) -> bool:
    """Whether ``session`` (ONNX Runtime's or an OpenVINO one) runs on the CPU."""
    from pipeline.models.openvino_session import OPENVINO_CPU

    return session.get_providers()[0] in (CPU_PROVIDER, OPENVINO_CPU)


def wants_openvino(kind: str | None, settings: Settings) -> bool:
    """Whether a model of ``kind`` should run on OpenVINO: named in ``openvino_models``, and
    ONNX Runtime would run it on the CPU (an accelerator, when there is one, stays in charge)."""
    if kind is None or kind not in settings.openvino_models:
        return False
    return usable_providers(list(settings.providers))[0] == CPU_PROVIDER


def create_session(path: Path, settings: Settings, kind: str | None = None) -> Any:
    """An inference session for ``path``: OpenVINO's for a ``kind`` in ``openvino_models``
    (see :func:`wants_openvino`) when the package is installed, else ONNX Runtime's on the
    first usable providers of ``settings``."""
    if wants_openvino(kind, settings):
        from pipeline.models.openvino_session import openvino_available

        if openvino_available():
            return _openvino_session(path, settings)
        global _warned_no_openvino
        if not _warned_no_openvino:
            _warned_no_openvino = True
            log.warning(
                "FACEPIPE_OPENVINO_MODELS names %s, but the openvino package is not installed "
                "(pip install 'facepipe[openvino]'): ONNX Runtime runs every model",
                ", ".join(settings.openvino_models),
            )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads(settings)
    # One request at a time per session: inter-op parallelism only adds thread churn.
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # No busy-waiting between ops: the engine decodes images in other threads meanwhile, and
    # spinning ORT workers would steal their cores (measured: see the README's engine section).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = usable_providers(list(settings.providers))
    try:
        session = ort.InferenceSession(
            str(path),
            sess_options=options,
            providers=providers,
            provider_options=provider_options(providers, settings),
        )
    except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
        raise FacepipeError(
            ErrorCode.MODEL_INVALID, f"{path.name} could not be loaded: {exc}", path=str(path)
        ) from exc
    log.info(
        "loaded %s on %s (%d intra-op threads)",
        path.name,
        ", ".join(session.get_providers()),
        options.intra_op_num_threads,
    )
    return session


def _openvino_session(path: Path, settings: Settings) -> Any:
    from pipeline.models.openvino_session import OpenVinoSession, default_streams

    threads = intra_op_threads(settings)
    try:
        session = OpenVinoSession(path, threads, default_streams(threads))
    except Exception as exc:  # openvino raises its own RuntimeError subclasses for a bad file
        raise FacepipeError(
            ErrorCode.MODEL_INVALID, f"{path.name} could not be loaded: {exc}", path=str(path)
        ) from exc
    log.info("loaded %s on OpenVINO CPU (%s)", path.name, session.config)
    return session
