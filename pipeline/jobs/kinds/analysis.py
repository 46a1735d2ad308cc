"""The analysis step every job kind shares: the engine over a chunk's images (reading
overlapped with inference), and the stored vectors of its ``observed:<id>`` items."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from pipeline.jobs.model import Item, Job
from pipeline.jobs.runtime import Runtime
from pipeline.store import repo
from pipeline.types import DetectMode

if TYPE_CHECKING:
    from pipeline.engine import AnalysisOutcome


@dataclass(frozen=True)
class Prepared:
    """The analysis step's output for a chunk: engine outcomes and stored probe vectors."""

    outcomes: dict[int, AnalysisOutcome]
    """item id -> the engine's outcome for its image"""
    observed: dict[int, NDArray[np.float32]]
    """observed face id -> stored embedding (items ``observed:<id>``)"""


def analyse_items(rt: Runtime, job: Job, items: Sequence[Item], mode: DetectMode) -> Prepared:
    """Run the engine over the chunk's images and read the vectors its observed items name."""
    image_items = [it for it in items if it.observed_id is None]
    outcomes: dict[int, AnalysisOutcome] = {}
    if image_items:
        stream = rt.engine.analyze_stream(
            [it.uri for it in image_items],
            mode=mode,
            embed=True,
            trust=job.origin.trust,  # a caller's job never reads a local file
        )
        for item, outcome in zip(image_items, stream, strict=True):
            outcomes[item.id] = outcome
    observed_ids = [i for it in items if (i := it.observed_id) is not None]
    observed: dict[int, NDArray[np.float32]] = {}
    if observed_ids:
        with rt.db.connection() as conn:
            observed = repo.observed_embeddings(conn, observed_ids)
    return Prepared(outcomes, observed)
