"""Index snapshots in the object store: an S3 prefix or a local directory.

A snapshot is three files under ``<root>/<scope key>/<model id>/<snapshot id>/``:

* ``index.faiss`` - the ``IndexIDMap2`` (``faiss.write_index`` format, CPU form);
* ``ids.npy`` - the face id of each label (int64 when face ids are integers, else strings;
  the FAISS label is then the position in this array);
* ``meta.json`` - :class:`SnapshotMeta` (scope, model id, watermark, count, index kind, ...).

``meta.json`` is written last, so a snapshot without it is incomplete and never loaded.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import faiss
import numpy as np
from numpy.typing import NDArray

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.index.spec import IndexKind

logger = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
IDS_FILE = "ids.npy"
META_FILE = "meta.json"


@dataclass(frozen=True)
class Scope:
    """What an index covers: one group's faces, or all enrolled faces, of one model."""

    model_id: str
    group: str | None = None

    @property
    def key(self) -> str:
        """A stable, path-safe name: ``group=<id>`` or ``all``."""
        return "all" if self.group is None else f"group={quote(self.group, safe='')}"

    @classmethod
    def parse(cls, key: str, model_id: str) -> Scope:
        """The scope of a :attr:`key` (``all`` or ``group=<id>``)."""
        from urllib.parse import unquote

        if key == "all":
            return cls(model_id=model_id)
        if key.startswith("group="):
            return cls(model_id=model_id, group=unquote(key[len("group=") :]))
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"not a scope: {key!r}")


@dataclass(frozen=True)
class SnapshotMeta:
    """Everything known about one snapshot (``meta.json``)."""

    snapshot_id: str
    scope: str
    model_id: str
    kind: str
    dim: int
    count: int
    watermark: str | None
    """ISO timestamp of the newest face (``created``) the snapshot contains."""
    max_face_id: int | None
    """The largest face id it contains (face ids only grow)."""
    build_seconds: float
    created_at: str
    nlist: int = 0
    nprobe: int = 0
    train_size: int = 0
    faiss_version: str = field(default_factory=lambda: faiss.__version__)
    ids_integer: bool = True

    @property
    def index_kind(self) -> IndexKind:
        return IndexKind(self.kind)

    @property
    def watermark_dt(self) -> datetime | None:
        return datetime.fromisoformat(self.watermark) if self.watermark else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SnapshotMeta:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


class SnapshotStore(Protocol):
    """Where snapshot files live."""

    uri: str

    def put_file(self, key: str, path: Path) -> None: ...
    def get_file(self, key: str, path: Path) -> None: ...
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def delete_prefix(self, prefix: str) -> None: ...
    def location(self, prefix: str) -> str: ...


class LocalSnapshotStore:
    """Snapshots in a local directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = str(root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def put_file(self, key: str, path: Path) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        shutil.copyfile(path, tmp)
        tmp.replace(dest)

    def get_file(self, key: str, path: Path) -> None:
        src = self._path(key)
        if not src.is_file():
            raise FacepipeError(ErrorCode.INDEX_NOT_FOUND, f"snapshot file missing: {src}")
        shutil.copyfile(src, path)

    def put_bytes(self, key: str, data: bytes) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(dest)

    def get_bytes(self, key: str) -> bytes:
        src = self._path(key)
        if not src.is_file():
            raise FacepipeError(ErrorCode.INDEX_NOT_FOUND, f"snapshot file missing: {src}")
        return src.read_bytes()

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self._path(prefix), ignore_errors=True)

    def location(self, prefix: str) -> str:
        return str(self._path(prefix))


class S3SnapshotStore:
    """Snapshots under ``s3://bucket/prefix`` (boto3; endpoint from settings)."""

    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, exc: Exception, key: str) -> FacepipeError:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in (
            "404",
            "NoSuchKey",
            "NoSuchBucket",
        ):
            return FacepipeError(ErrorCode.INDEX_NOT_FOUND, f"snapshot file missing: {key}")
        return FacepipeError(ErrorCode.OBJECT_STORE_UNAVAILABLE, f"{key}: {exc}")

    def put_file(self, key: str, path: Path) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            # upload_file switches to multipart for large indexes.
            self.client.upload_file(str(path), self.bucket, self._key(key))
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, key) from exc

    def get_file(self, key: str, path: Path) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.download_file(self.bucket, self._key(key), str(path))
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, key) from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, key) from exc

    def get_bytes(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return bytes(
                self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, key) from exc

    def delete_prefix(self, prefix: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        full = self._key(prefix).rstrip("/") + "/"
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
                if keys:
                    self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, prefix) from exc

    def location(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{self._key(prefix)}"


def store_for(settings: Settings, uri: str | None = None) -> SnapshotStore:
    """The snapshot store for ``uri`` (default ``settings.snapshot_uri``, else HOME/snapshots).

    The location is an operator's (configuration or a stored snapshot record), parsed once by
    :mod:`pipeline.sources.location`: ``s3://bucket/prefix``, a path or ``file://``.
    """
    from pipeline.aws import s3_client
    from pipeline.sources.location import LocalLocation, S3Location, Trust, parse_location

    uri = uri or settings.snapshot_uri
    if not uri:
        return LocalSnapshotStore(Path(settings.home) / "snapshots")
    location = parse_location(uri, Trust.OPERATOR, inline=False)
    if isinstance(location, S3Location):
        return S3SnapshotStore(location.bucket, location.key, s3_client(settings))
    if isinstance(location, LocalLocation):
        return LocalSnapshotStore(location.path)
    raise FacepipeError(
        ErrorCode.ILLEGAL_PARAMETER,
        f"{uri}: snapshots go to s3://bucket/prefix or a local folder (FACEPIPE_SNAPSHOT_URI)",
    )


def snapshot_prefix(meta: SnapshotMeta) -> str:
    """``<scope key>/<model id>/<snapshot id>``: where a snapshot's files go."""
    return f"{meta.scope}/{quote(meta.model_id, safe='')}/{meta.snapshot_id}"


def save_snapshot(
    store: SnapshotStore, meta: SnapshotMeta, index: faiss.Index, face_ids: NDArray[Any]
) -> str:
    """Write a snapshot's three files (meta last); returns its location (URI or path)."""
    prefix = snapshot_prefix(meta)
    with tempfile.TemporaryDirectory(prefix="facepipe-snap-") as tmp:
        index_path = Path(tmp) / INDEX_FILE
        faiss.write_index(index, str(index_path))
        store.put_file(f"{prefix}/{INDEX_FILE}", index_path)
    buf = io.BytesIO()
    # Strings are saved as fixed-width unicode, never as pickled objects.
    np.save(buf, np.asarray(face_ids) if meta.ids_integer else np.asarray(face_ids, dtype=str))
    store.put_bytes(f"{prefix}/{IDS_FILE}", buf.getvalue())
    store.put_bytes(f"{prefix}/{META_FILE}", json.dumps(meta.to_dict(), indent=1).encode())
    return store.location(prefix)


@dataclass(frozen=True)
class LoadedSnapshot:
    """A snapshot read back: its metadata, the index (CPU) and the face id of each label."""

    meta: SnapshotMeta
    index: faiss.Index
    face_ids: NDArray[Any]


def load_snapshot(store: SnapshotStore, prefix: str) -> LoadedSnapshot:
    """Read the snapshot under ``prefix`` (``<scope>/<model>/<id>``)."""
    meta = SnapshotMeta.from_dict(json.loads(store.get_bytes(f"{prefix}/{META_FILE}")))
    face_ids = np.load(io.BytesIO(store.get_bytes(f"{prefix}/{IDS_FILE}")), allow_pickle=False)
    with tempfile.TemporaryDirectory(prefix="facepipe-snap-") as tmp:
        index_path = Path(tmp) / INDEX_FILE
        store.get_file(f"{prefix}/{INDEX_FILE}", index_path)
        index = faiss.read_index(str(index_path))
    if int(index.ntotal) != meta.count or face_ids.shape[0] != meta.count:
        raise FacepipeError(
            ErrorCode.INDEX_NOT_FOUND,
            f"snapshot {prefix} is inconsistent: {index.ntotal} vectors, "
            f"{face_ids.shape[0]} ids, meta says {meta.count}",
        )
    return LoadedSnapshot(meta=meta, index=index, face_ids=face_ids)
