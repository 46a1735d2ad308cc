"""Tencent YouTu v2 (``/face/*``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from pipeline.errors import FacepipeError

router = APIRouter(tags=["youtu"])


def error_response(_: Request, exc: FacepipeError) -> Response:
    return JSONResponse({"code": exc.numeric_code, "message": exc.message, "data": {}})
