"""Person templates for identify: a person's faces fused into one vector.

Identify finds the nearest *faces* (pgvector or FAISS) and so the candidate persons; the
persons are then ranked by their fused template, the normalised mean of their unit face
embeddings (Tencent IAI's SearchPersons also fuses a person's faces). Measured on lfw-dev
(``bench/accuracy.py --open-set``, README "Accuracy"), the fused template beats the best single
face on DIR at a fixed FPIR: a stranger meets one template per person instead of one chance per
enrolled face, and averaging several photos cancels part of each photo's nuisance (pose,
lighting). ``Settings.identify_person_template`` = ``best-face`` restores the old ranking.

Persons are found through their faces, so a person whose template would rank in the top N but
none of whose faces is among the faces fetched is missed: the fetch is therefore widened to
``CANDIDATE_FACTOR`` x N persons before the templates re-rank them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

BEST_FACE = "best-face"
MEAN = "mean"
TEMPLATES = (BEST_FACE, MEAN)

CANDIDATE_FACTOR = 4
"""Persons fetched by their best face for every person returned by the template ranking."""


def fused_templates(
    vectors_by_person: dict[str, NDArray[np.float32]],
) -> dict[str, NDArray[np.float32]]:
    """person -> the unit-length mean of the person's unit face vectors."""
    out: dict[str, NDArray[np.float32]] = {}
    for person, vectors in vectors_by_person.items():
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        mean = unit.mean(axis=0)
        out[person] = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
    return out


def rank_by_template(
    probe: NDArray[np.float32],
    candidates: Sequence[tuple[str, int, float]],
    vectors_by_person: dict[str, NDArray[np.float32]],
    top_n: int,
) -> list[tuple[str, int, float]]:
    """Re-rank ``(person, best face id, best face cosine)`` by the persons' fused templates:
    ``(person, best face id, template cosine)``, best first, at most ``top_n``. A person
    without vectors keeps its best face's cosine."""
    templates = fused_templates({p: v for p, v in vectors_by_person.items() if len(v)})
    unit = probe / max(float(np.linalg.norm(probe)), 1e-12)
    scored = [
        (
            person,
            face_id,
            float(np.clip(templates[person] @ unit, -1.0, 1.0)) if person in templates else score,
        )
        for person, face_id, score in candidates
    ]
    scored.sort(key=lambda t: (-t[2], t[0]))
    return scored[:top_n]
