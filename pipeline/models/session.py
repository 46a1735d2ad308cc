"""ONNX Runtime sessions, built in exactly one place.

Providers come from ``settings.providers`` in order; those this onnxruntime build cannot use
are dropped (CUDA on a CPU-only install), and CPU is always the last resort, so a CUDA
configuration falls back cleanly to CPU.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import onnxruntime as ort

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError

log = logging.getLogger(__name__)

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
            out.append({
                "trt_fp16_enable": "True",
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": str(cache),
                "trt_timing_cache_enable": "True",
                "trt_timing_cache_path": str(cache),
            })
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


def create_session(path: Path, settings: Settings) -> ort.InferenceSession:
    """An inference session for ``path`` on the first usable providers of ``settings``."""
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
