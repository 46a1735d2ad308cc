"""How a task that failed for good reads in Celery's result backend."""

from __future__ import annotations

import json
from typing import Any

from pipeline.errors import error_dict


class PermanentTaskError(Exception):
    """A task failed for good; its one argument is the catalogue error as JSON.

    One JSON string argument, because Celery's result backend stores an exception as its type
    and arguments and rebuilds it from them.
    """

    def __init__(self, error_json: str) -> None:
        super().__init__(error_json)
        self.error_json = error_json

    @classmethod
    def of(cls, exc: BaseException) -> PermanentTaskError:
        return cls(json.dumps(error_dict(exc)))

    @property
    def error(self) -> dict[str, Any]:
        """The catalogue error (code, name, message)."""
        return dict(json.loads(self.error_json))
