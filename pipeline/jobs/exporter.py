"""The one JSON Lines exporter: records to ``s3://bucket/key`` or a file under the export folder.

Job exports (:mod:`pipeline.jobs.export`) and identify-batch runs
(:mod:`pipeline.index.identify_batch`) both write through here. The destination is parsed and
checked by :mod:`pipeline.jobs.exportdest` under the trust of whoever asked for it, and checked
again once its folder is created (a symlink placed since must not lead outside). Records are
written one line each to a temporary file beside the destination (or in the temporary folder
for S3), then moved into place or uploaded: a large export never sits in memory and a reader
never sees a half-written file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.aws import s3_client
from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.exportdest import export_root, parse_export_destination, resolve_inside
from pipeline.sources.location import Trust

CONTENT_TYPE = "application/x-ndjson"


class JsonLinesExport:
    """An export being written: :meth:`write` records, then :meth:`finish` (or :meth:`abort`:
    nothing is written at the destination)."""

    def __init__(self, dest: str, settings: Settings, trust: Trust) -> None:
        self.target = parse_export_destination(dest, settings, trust)
        self.settings = settings
        self._dir: Path | None = None
        if self.target.path is not None:
            root = export_root(settings)
            root.mkdir(parents=True, exist_ok=True)
            self.target.path.parent.mkdir(parents=True, exist_ok=True)
            self._dir = resolve_inside(root, str(self.target.path)).parent
        fd, self._tmp = tempfile.mkstemp(suffix=".jsonl.part", dir=self._dir)
        self._fh = os.fdopen(fd, "w", encoding="utf-8")
        self.count = 0

    @property
    def dest(self) -> str:
        """The destination as checked (``s3://bucket/key`` or the name given)."""
        return self.target.text

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.count += 1

    def finish(self) -> int:
        """Put the file at its destination; returns the number of records."""
        self._fh.close()
        try:
            if self.target.s3 is not None:
                try:
                    s3_client(self.settings).upload_file(
                        self._tmp,
                        self.target.s3.bucket,
                        self.target.s3.key,
                        ExtraArgs={"ContentType": CONTENT_TYPE},
                    )
                except Exception as exc:  # boto3 raises several unrelated types for one failure
                    raise FacepipeError(
                        ErrorCode.OBJECT_STORE_UNAVAILABLE, f"upload to {self.dest} failed: {exc}"
                    ) from exc
            else:
                assert self.target.path is not None and self._dir is not None
                # rename() replaces a symlink at the destination itself, never its target
                os.replace(self._tmp, self._dir / self.target.path.name)
        finally:
            self._discard()
        return self.count

    def abort(self) -> None:
        """Drop what was written; the destination is left as it was."""
        self._fh.close()
        self._discard()

    def _discard(self) -> None:
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)


def export_records(
    records: Iterable[dict[str, Any]], dest: str, settings: Settings, trust: Trust
) -> int:
    """Write ``records`` to ``dest`` (see the module docstring); returns their count."""
    out = JsonLinesExport(dest, settings, trust)
    try:
        for record in records:
            out.write(record)
    except BaseException:
        out.abort()
        raise
    return out.finish()
