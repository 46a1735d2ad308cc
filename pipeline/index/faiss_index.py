"""Building and searching FAISS indexes, on the GPU when FAISS has one (no database here).

An index is built in batches (train on a sample, then add batch after batch with implicit
sequential ids), and finally wrapped in an ``IndexIDMap2`` whose int64 labels are the caller's
ids, so a saved index is self-contained. Search runs on a GPU copy of the inner index when
``faiss.get_num_gpus() > 0`` and maps positions to labels with the id map array; exact (flat)
indexes give the same results on either device.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

import faiss
import numpy as np
from numpy.typing import NDArray

from pipeline.errors import ErrorCode, FacepipeError
from pipeline.index.spec import IndexKind, IndexSpec

logger = logging.getLogger(__name__)

_GPU_RESOURCES: faiss.StandardGpuResources | None = None


def gpu_count() -> int:
    """Number of GPUs FAISS can use (0 for the faiss-cpu build)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def _gpu_resources() -> faiss.StandardGpuResources:
    # One StandardGpuResources per process: it owns scratch memory and CUDA streams.
    global _GPU_RESOURCES
    if _GPU_RESOURCES is None:
        _GPU_RESOURCES = faiss.StandardGpuResources()
    return _GPU_RESOURCES


def _gpu_supported(kind: IndexKind) -> bool:
    return kind is not IndexKind.HNSW


def to_device(index: faiss.Index, kind: IndexKind, use_gpu: bool | None = None) -> faiss.Index:
    """``index`` copied to GPU 0 when one is available (and the kind runs there), else itself."""
    if use_gpu is None:
        use_gpu = gpu_count() > 0
    if not use_gpu or not _gpu_supported(kind):
        return index
    options = faiss.GpuClonerOptions()
    # 64 sub-quantizers x 256 float32 lookup tables exceed a GPU block's shared memory; IVF-PQ
    # is approximate and re-ranked anyway, so its tables go to float16. Exact kinds stay float32.
    options.useFloat16 = kind is IndexKind.IVF_PQ
    return faiss.index_cpu_to_gpu(_gpu_resources(), 0, index, options)


def to_cpu(index: faiss.Index) -> faiss.Index:
    """A CPU copy of a GPU index (CPU indexes are returned as they are)."""
    if gpu_count() > 0 and hasattr(faiss, "index_gpu_to_cpu"):
        try:
            return faiss.index_gpu_to_cpu(index)
        except RuntimeError:
            # index_gpu_to_cpu refuses CPU indexes: nothing to copy.
            return index
    return index


def as_matrix(vectors: NDArray[np.floating]) -> NDArray[np.float32]:
    """A C-contiguous float32 (n, d) copy-if-needed of ``vectors`` (FAISS's input format)."""
    return np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)


class IndexBuilder:
    """Builds one index: ``train(sample)`` when needed, ``add(batch)`` repeatedly, ``finish``."""

    def __init__(self, spec: IndexSpec, use_gpu: bool | None = None) -> None:
        self.spec = spec
        cpu = faiss.index_factory(spec.dim, spec.factory_string, faiss.METRIC_INNER_PRODUCT)
        self.on_gpu = (gpu_count() > 0 if use_gpu is None else use_gpu) and _gpu_supported(
            spec.kind
        )
        self._index = to_device(cpu, spec.kind, self.on_gpu)
        self.count = 0

    def train(self, sample: NDArray[np.float32]) -> None:
        """Train the coarse quantizer (and PQ) on ``sample``; a no-op for flat and HNSW."""
        if not self.spec.needs_training:
            return
        sample = as_matrix(sample)
        if sample.shape[0] < self.spec.nlist:
            raise FacepipeError(
                ErrorCode.ILLEGAL_PARAMETER,
                f"{sample.shape[0]} training vectors for {self.spec.nlist} lists",
            )
        self._index.train(sample)

    def add(self, vectors: NDArray[np.float32]) -> None:
        """Add a batch; vectors get the next sequential positions."""
        batch = as_matrix(vectors)
        if batch.shape[0]:
            self._index.add(batch)
            self.count += batch.shape[0]

    def finish(self, labels: NDArray[np.int64]) -> faiss.IndexIDMap2:
        """The CPU ``IndexIDMap2`` mapping position i to ``labels[i]``."""
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        if labels.shape[0] != self.count:
            raise FacepipeError(
                ErrorCode.INTERNAL, f"{labels.shape[0]} labels for {self.count} vectors"
            )
        inner = to_cpu(self._index) if self.on_gpu else self._index
        if self.spec.nprobe:
            faiss.extract_index_ivf(inner).nprobe = self.spec.nprobe
        # IndexIDMap2 only wraps an empty index; the vectors were added (possibly on the GPU)
        # with implicit positions, so the filled inner index is swapped in afterwards.
        wrapped = faiss.IndexIDMap2(faiss.IndexFlatIP(self.spec.dim))
        wrapped.index = inner
        wrapped.ntotal = inner.ntotal
        wrapped.is_trained = True
        faiss.copy_array_to_vector(labels, wrapped.id_map)
        wrapped.construct_rev_map()
        # Keep the inner index alive as long as the wrapper (the wrapper does not own it).
        # (a Python attribute SWIG adds to every wrapper: unknown to faiss's type information)
        wrapped.referenced_objects.append(inner)  # type: ignore[attr-defined]
        return wrapped


@dataclass
class SearchableIndex:
    """A loaded ``IndexIDMap2``, with its inner index on the GPU when one is available."""

    kind: IndexKind
    wrapped: faiss.IndexIDMap2
    labels: NDArray[np.int64]
    device_index: faiss.Index
    on_gpu: bool
    owner: faiss.Index
    """The Python object owning the C++ index (a downcast proxy does not own it)."""

    @classmethod
    def from_wrapped(
        cls,
        wrapped: faiss.Index,
        kind: IndexKind,
        nprobe: int | None = None,
        use_gpu: bool | None = None,
    ) -> SearchableIndex:
        """Prepare a (CPU) ``IndexIDMap2`` for searching."""
        owner = wrapped
        # SWIG's downcast gives the concrete class; faiss's type information says only Index
        id_map = cast(faiss.IndexIDMap2, faiss.downcast_index(wrapped))
        inner = faiss.downcast_index(id_map.index)
        if nprobe and kind in (IndexKind.IVF_FLAT, IndexKind.IVF_PQ):
            faiss.extract_index_ivf(inner).nprobe = nprobe
        labels = faiss.vector_to_array(id_map.id_map).astype(np.int64, copy=False)
        on_gpu = (gpu_count() > 0 if use_gpu is None else use_gpu) and _gpu_supported(kind)
        device_index = to_device(inner, kind, on_gpu) if on_gpu else inner
        if on_gpu and nprobe and kind in (IndexKind.IVF_FLAT, IndexKind.IVF_PQ):
            faiss.GpuParameterSpace().set_index_parameter(device_index, "nprobe", nprobe)
        return cls(kind, id_map, labels, device_index, on_gpu, owner)

    @property
    def ntotal(self) -> int:
        return int(self.wrapped.ntotal)

    def search(
        self, queries: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Top-``k`` inner products and labels per query (label -1 where fewer than k exist)."""
        q = as_matrix(queries)
        k = max(1, min(k, max(self.ntotal, 1)))
        if self.ntotal == 0:
            return (
                np.full((q.shape[0], k), -np.inf, dtype=np.float32),
                np.full((q.shape[0], k), -1, dtype=np.int64),
            )
        scores, positions = self.device_index.search(q, k)
        labels = np.where(positions >= 0, self.labels[np.maximum(positions, 0)], -1)
        scores = np.where(positions >= 0, scores, -np.inf).astype(np.float32)
        return scores, labels.astype(np.int64)


def serialize(wrapped: faiss.Index) -> bytes:
    """The index as bytes (``faiss.serialize_index``)."""
    return faiss.serialize_index(wrapped).tobytes()


def deserialize(data: bytes) -> faiss.Index:
    """An index from :func:`serialize`'s bytes."""
    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
