"""The HTTP API (FastAPI): :func:`create_app` serves the native ``/v1`` protocol and the vendor
protocols (``pipeline.api.youtu``), each a thin router over the same library and engine.

``facepipe api`` serves ``pipeline.api:create_app``.
"""

from pipeline.api.app import create_app
from pipeline.api.state import MODEL_SLOTS, ApiState

__all__ = ["MODEL_SLOTS", "ApiState", "create_app"]
