"""Log set-up for every facepipe process, and the ids each log line carries.

``FACEPIPE_LOG_FORMAT=json`` writes one JSON object per line (``time``, ``level``, ``logger``,
``message``, plus the context ids below and any ``extra=`` fields); ``text`` (the default) stays
readable on a terminal and appends the ids in brackets.

Context ids are bound with :func:`log_context` (a context variable, so they follow a request into
the threads anyio runs it on, and never leak from one Celery task run to the next):
``request_id`` (the API, from ``X-Request-ID`` or made up), ``task``/``task_id`` (Celery),
``job_id``, ``chunk`` (``<seq_lo>-<seq_hi>``) and ``item_id``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter

from pipeline.config import Settings, get_settings

CONTEXT_FIELDS = ("request_id", "task", "task_id", "job_id", "chunk", "item_id")
"""The ids a log line may carry, in the order the text format shows them."""

_context: ContextVar[dict[str, str]] = ContextVar("facepipe_log_context", default={})  # noqa: B039

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
JSON_FIELDS = "{asctime}{levelname}{name}{message}"
JSON_RENAMES = {"asctime": "time", "levelname": "level", "name": "logger"}


@contextmanager
def log_context(**ids: object) -> Iterator[None]:
    """Add ids (``None`` values are skipped) to every log line written inside the block."""
    merged = {**_context.get(), **{k: str(v) for k, v in ids.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def bind(**ids: object) -> Any:
    """Bind ids until :func:`unbind` with the returned token (for signal-style hooks that
    cannot wrap the work in a ``with`` block, e.g. Celery's task_prerun / task_postrun)."""
    return _context.set({**_context.get(), **{k: str(v) for k, v in ids.items() if v is not None}})


def unbind(token: Any) -> None:
    _context.reset(token)


def current_ids() -> dict[str, str]:
    """The ids bound now."""
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Copies the bound ids onto each record (as attributes, which the formatters print)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class TextFormatter(logging.Formatter):
    """The human format, with the bound ids appended: ``... message [job_id=.. chunk=0-31]``."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = [f"{k}={getattr(record, k)}" for k in CONTEXT_FIELDS if hasattr(record, k)]
        return f"{line} [{' '.join(ids)}]" if ids else line


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        JSON_FIELDS, style="{", rename_fields=JSON_RENAMES, datefmt="%Y-%m-%dT%H:%M:%S%z"
    )


class _FacepipeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so a second call replaces it."""


def configure_logging(
    settings: Settings | None = None,
    *,
    level: str | int | None = None,
    fmt: str | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Install the root handler: ``fmt`` (default ``settings.log_format``) at ``level``
    (default ``settings.log_level``) on ``stream`` (default stderr). Idempotent."""
    settings = settings or get_settings()
    chosen = (fmt or settings.log_format).lower()
    handler = _FacepipeHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter() if chosen == "json" else TextFormatter(TEXT_FORMAT))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _FacepipeHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    lvl = level if level is not None else settings.log_level
    root.setLevel(lvl.upper() if isinstance(lvl, str) else lvl)
    return handler


def dict_config(settings: Settings | None = None, *, level: str | None = None) -> dict[str, Any]:
    """The same set-up as a ``logging.config.dictConfig`` dict, for servers that configure
    logging in each of their processes (uvicorn's ``log_config``, used by ``facepipe api``):
    the root handler only, with uvicorn's loggers propagating to it."""
    settings = settings or get_settings()
    chosen = settings.log_format.lower()
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.json_formatter"}
        if chosen == "json"
        else {"()": f"{__name__}.TextFormatter", "fmt": TEXT_FORMAT}
    )
    lvl = (level or settings.log_level).upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": f"{__name__}.ContextFilter"}},
        "formatters": {"facepipe": formatter},
        "handlers": {
            "facepipe": {
                "class": "logging.StreamHandler",
                "formatter": "facepipe",
                "filters": ["context"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": lvl, "handlers": ["facepipe"]},
        "loggers": {
            name: {"level": lvl, "handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
