"""ONNX Runtime sessions, built in exactly one place.

Providers come from ``settings.providers`` in order; those this onnxruntime build cannot use
are dropped (CUDA on a CPU-only install), and CPU is always the last resort, so a CUDA
configuration falls back cleanly to CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError

log = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"


def usable_providers(wanted: list[str]) -> list[str]:
    """``wanted`` in order, keeping only providers this onnxruntime really offers; CPU last."""
    available = set(ort.get_available_providers())
    chosen = [p for p in wanted if p in available]
    if CPU_PROVIDER not in chosen:
        chosen.append(CPU_PROVIDER)
    return chosen


def create_session(path: Path, settings: Settings) -> ort.InferenceSession:
    """An inference session for ``path`` on the first usable providers of ``settings``."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if settings.intra_op_threads > 0:
        options.intra_op_num_threads = settings.intra_op_threads
    # One request at a time per session: inter-op parallelism only adds thread churn.
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # No busy-waiting between ops: the engine decodes images in other threads meanwhile, and
    # spinning ORT workers would steal their cores (measured: see the README's engine section).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = usable_providers(list(settings.providers))
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
        raise FacepipeError(
            ErrorCode.MODEL_INVALID, f"{path.name} could not be loaded: {exc}", path=str(path)
        ) from exc
    log.info("loaded %s on %s", path.name, ", ".join(session.get_providers()))
    return session
