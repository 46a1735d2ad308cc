"""Which FAISS index a scope gets, by its size (pure: no FAISS, no I/O).

Thresholds (vectors in the scope, 512-d float32, inner product on L2-normalised vectors):

* ``n < FLAT_MAX`` (50,000): exact ``IndexFlatIP``. 50k x 512 x 4 B = 100 MB; a brute-force
  batch search stays cheap and the result is exact, identical to pgvector's exact scan.
* ``FLAT_MAX <= n < IVF_FLAT_MAX`` (2,000,000): ``IVF<nlist>,Flat`` (full vectors, exact
  distances for the visited lists; recall set by ``nprobe``). Up to 4 GB of vectors.
* ``n >= IVF_FLAT_MAX``: ``IVF<nlist>,PQ<m>x8`` (64 bytes per vector instead of 2048); its
  distances are approximate, so candidates are always re-ranked exactly against the stored
  vectors in Postgres.
* ``HNSW32,Flat`` on request (``FACEPIPE_INDEX_KIND=hnsw``): CPU only, no training.

``nlist = 4 * sqrt(n)`` rounded to a power of two (the usual 4-16 x sqrt(n) rule, at its low end
so that lists stay well filled). Training sample: ``min(n, max(39 * nlist, 2**16),
TRAIN_MAX)``: FAISS wants at least 39 points per centroid and PQ needs 39 x 256 per
sub-quantizer, capped at 1M because k-means gains nothing beyond and time grows linearly.
``nprobe`` defaults to ``max(16, nlist // 16)``: about 6% of the lists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

FLAT_MAX = 50_000
IVF_FLAT_MAX = 2_000_000
TRAIN_MIN = 1 << 16
TRAIN_MAX = 1_000_000
POINTS_PER_CENTROID = 39
PQ_BYTES = 64
HNSW_M = 32


class IndexKind(StrEnum):
    """The index families facepipe builds."""

    FLAT = "flat"
    IVF_FLAT = "ivf_flat"
    IVF_PQ = "ivf_pq"
    HNSW = "hnsw"

    @property
    def exact(self) -> bool:
        """True when search scores are exact and the ranking equals a brute-force scan."""
        return self is IndexKind.FLAT

    @property
    def lossy(self) -> bool:
        """True when stored vectors are compressed, so scores must be re-ranked."""
        return self is IndexKind.IVF_PQ


@dataclass(frozen=True)
class IndexSpec:
    """A chosen index: kind, its parameters and the training sample size."""

    kind: IndexKind
    dim: int
    nlist: int = 0
    nprobe: int = 0
    pq_m: int = 0
    train_size: int = 0

    @property
    def factory_string(self) -> str:
        """The ``faiss.index_factory`` description of the inner index."""
        if self.kind is IndexKind.FLAT:
            return "Flat"
        if self.kind is IndexKind.IVF_FLAT:
            return f"IVF{self.nlist},Flat"
        if self.kind is IndexKind.IVF_PQ:
            return f"IVF{self.nlist},PQ{self.pq_m}x8"
        return f"HNSW{HNSW_M},Flat"

    @property
    def needs_training(self) -> bool:
        return self.kind in (IndexKind.IVF_FLAT, IndexKind.IVF_PQ)


def nlist_for(n: int) -> int:
    """``4 * sqrt(n)`` rounded to the nearest power of two, at least 16."""
    target = 4.0 * math.sqrt(max(n, 1))
    return max(16, 1 << round(math.log2(target)))


def train_size_for(n: int, nlist: int) -> int:
    """Training sample size: ``min(n, max(39 * nlist, 65536), 1_000_000)``."""
    return min(n, max(POINTS_PER_CENTROID * nlist, TRAIN_MIN), TRAIN_MAX)


def pq_m_for(dim: int) -> int:
    """Sub-quantizers for IVF-PQ: 64 bytes per vector when ``dim`` allows, else a divisor."""
    for m in (PQ_BYTES, 32, 16, 8, 4, 2, 1):
        if dim % m == 0 and m <= dim:
            return m
    return 1


def choose_spec(n: int, dim: int, kind: IndexKind | None = None) -> IndexSpec:
    """The index for ``n`` vectors of ``dim`` (``kind`` forces a family)."""
    if kind is None:
        if n < FLAT_MAX:
            kind = IndexKind.FLAT
        elif n < IVF_FLAT_MAX:
            kind = IndexKind.IVF_FLAT
        else:
            kind = IndexKind.IVF_PQ
    if kind in (IndexKind.FLAT, IndexKind.HNSW):
        return IndexSpec(kind=kind, dim=dim)
    # An IVF needs more training points than lists: shrink nlist for small forced builds.
    nlist = min(nlist_for(n), max(1, n // POINTS_PER_CENTROID))
    nlist = max(1, nlist)
    nprobe = min(nlist, max(16, nlist // 16))
    pq_m = pq_m_for(dim) if kind is IndexKind.IVF_PQ else 0
    train = train_size_for(n, nlist)
    if kind is IndexKind.IVF_PQ:
        # PQ's 256 centroids per sub-quantizer need 39 * 256 points too.
        train = min(n, max(train, POINTS_PER_CENTROID * 256))
    return IndexSpec(kind=kind, dim=dim, nlist=nlist, nprobe=nprobe, pq_m=pq_m, train_size=train)
