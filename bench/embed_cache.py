"""Embeddings of a labelled photo set, computed once and cached outside the repository.

Embedding the 4,854 lfw-dev photos takes minutes on a CPU; calibration, open-set and template
experiments all start from the same vectors, so they are cached as one ``.npz`` under
``$FACEPIPE_BENCH_CACHE`` (default ``~/.cache/facepipe-bench``), keyed by the labels file's
content, the recognizer's model id and the face-choice rule. Never in git.

Which face is the labelled person: LFW's subject is the face at the centre of the (deep-funneled,
250x250) photo, and other, sometimes larger, faces may appear. So the rule is the detected face
whose box centre is nearest the image centre (``centre``); ``largest`` is the engine's own
largest-face mode, kept for other sets.

Run ``python -m bench.embed_cache --labels ../shared/data/faces/lfw-dev/labels.csv`` to fill the
cache ahead of time.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from bench._common import SHARED_FACES, progress
from pipeline.types import DetectMode, ImageAnalysis

FACE_RULES = ("centre", "largest")


@dataclass(frozen=True)
class EmbeddedSet:
    """One embedding per photo that gave a face, in labels order."""

    paths: list[str]
    """Paths relative to the labels file's folder."""
    identities: list[str]
    embeddings: NDArray[np.float32]
    det_scores: NDArray[np.float32]
    missing: list[dict[str, str]]
    """Photos without a usable face: ``{"path", "why"}``."""
    model_id: str


def cache_dir() -> Path:
    return Path(os.environ.get("FACEPIPE_BENCH_CACHE", Path.home() / ".cache" / "facepipe-bench"))


def read_label_rows(labels: Path) -> list[tuple[str, str]]:
    """``(path, identity)`` of every row of ``labels.csv`` with a non-empty identity."""
    with labels.open(newline="") as fh:
        return [
            (row["path"], row["identity"].strip())
            for row in csv.DictReader(fh)
            if (row.get("identity") or "").strip()
        ]


def choose_face(analysis: ImageAnalysis, rule: str) -> int | None:
    """Index (into ``analysis.faces``) of the labelled person's face under ``rule``."""
    faces = [f for f in analysis.faces if f.embedding is not None]
    if not faces:
        return None
    if rule == "largest":
        best = max(faces, key=lambda f: f.area)
    else:
        cx, cy = analysis.width / 2.0, analysis.height / 2.0

        def off_centre(face: object) -> float:
            x1, y1, x2, y2 = face.box  # type: ignore[attr-defined]
            return float(np.hypot((x1 + x2) / 2.0 - cx, (y1 + y2) / 2.0 - cy))

        best = min(faces, key=off_centre)
    return analysis.faces.index(best)


def _cache_key(labels: Path, model_id: str, rule: str) -> str:
    digest = hashlib.sha256(labels.read_bytes())
    digest.update(f"\0{model_id}\0{rule}".encode())
    return digest.hexdigest()[:16]


def embed_labelled(labels: Path, rule: str = "centre", use_cache: bool = True) -> EmbeddedSet:
    """The embedded set for ``labels``, from the cache when present, else computed and cached."""
    from pipeline.engine import FaceEngine

    engine = FaceEngine.from_settings()
    key = _cache_key(labels, engine.model_id, rule)
    path = cache_dir() / f"{labels.parent.name}-{key}.npz"
    if use_cache and path.is_file():
        return load_cached(path)
    rows = read_label_rows(labels)
    root = labels.parent
    mode = DetectMode.LARGEST if rule == "largest" else DetectMode.ALL
    kept: list[int] = []
    vectors: list[NDArray[np.float32]] = []
    scores: list[float] = []
    missing: list[dict[str, str]] = []
    outcomes = engine.analyze_stream([str(root / p) for p, _ in rows], mode=mode)
    for index, outcome in enumerate(progress(outcomes, len(rows), f"embedding {root.name}")):
        if outcome.error is not None:
            missing.append({"path": rows[index][0], "why": outcome.error.code.value})
            continue
        assert outcome.analysis is not None
        chosen = choose_face(outcome.analysis, rule)
        if chosen is None:
            missing.append({"path": rows[index][0], "why": "NO_FACE"})
            continue
        face = outcome.analysis.faces[chosen]
        kept.append(index)
        vectors.append(face.embedding)  # type: ignore[arg-type]
        scores.append(face.score)
    dim = engine.embedding_dim
    result = EmbeddedSet(
        paths=[rows[i][0] for i in kept],
        identities=[rows[i][1] for i in kept],
        embeddings=np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dim)),
        det_scores=np.asarray(scores, dtype=np.float32),
        missing=missing,
        model_id=engine.model_id,
    )
    if use_cache:
        save_cached(path, result)
    return result


def save_cached(path: Path, data: EmbeddedSet) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "paths": data.paths,
        "identities": data.identities,
        "missing": data.missing,
        "model_id": data.model_id,
    }
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        embeddings=data.embeddings,
        det_scores=data.det_scores,
        meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
    )
    tmp.replace(path)


def load_cached(path: Path) -> EmbeddedSet:
    with np.load(path) as npz:
        meta = json.loads(npz["meta"].tobytes().decode())
        return EmbeddedSet(
            paths=meta["paths"],
            identities=meta["identities"],
            embeddings=npz["embeddings"].astype(np.float32),
            det_scores=npz["det_scores"].astype(np.float32),
            missing=meta["missing"],
            model_id=meta["model_id"],
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=Path, default=SHARED_FACES / "lfw-dev" / "labels.csv")
    parser.add_argument("--face", choices=FACE_RULES, default="centre")
    args = parser.parse_args(argv)
    data = embed_labelled(args.labels, args.face)
    sys.stdout.write(
        f"{len(data.paths)} embedded, {len(data.missing)} missing, "
        f"model {data.model_id}, cache {cache_dir()}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
