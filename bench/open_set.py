"""Open-set identification on a labelled set: DIR and FPIR per threshold and gallery size.

Used by ``bench/accuracy.py --open-set``. The identities are split once, deterministically
(seeded), into two halves:

* *enrolled*: the first ``per_person`` photos of each (at most all but one, so every enrolled
  person keeps at least one probe) form the person's gallery faces; the rest are **mated
  probes** (the right answer is in the gallery);
* *strangers*: never enrolled; all their photos are **non-mated probes**.

The gallery grows by enrolling more of the first half (nested galleries: each size contains the
smaller ones; the extra persons are also distractors for the others' probes). For each probe the
gallery's persons are scored with a person *template*:

* ``best-face``: the person's best face (what identify does when it keeps each person's best
  face among the nearest faces);
* ``mean``: one fused template per person, the normalised mean of the person's unit embeddings
  (what Tencent IAI's SearchPersons does);
* ``weighted``: the same, each face weighted by its quality (given ``quality``: the bench passes
  the detector's score, the one per-photo quality an embedding cache holds).

DIR(T) (detection and identification rate) = share of mated probes whose top-1 person is the
right one with confidence >= T; FPIR(T) (false positive identification rate) = share of
non-mated probes whose top-1 person reaches T, i.e. a stranger matched to someone. FNIR = 1 - DIR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pipeline.calibration import Calibration, expected_false_matches

TEMPLATES = ("best-face", "mean", "weighted")
THRESHOLDS = (40.0, 50.0, 60.0, 70.0, 80.0, 90.0)


@dataclass(frozen=True)
class Split:
    gallery_person: list[str]
    """Enrolled identities in enrolment order (galleries are prefixes of it)."""
    gallery_faces: dict[str, list[int]]
    mated: list[int]
    non_mated: list[int]


def split_identities(identities: list[str], per_person: int, seed: int = 12) -> Split:
    """Half the identities enrolled (``per_person`` faces each, at least one left to probe
    with), half strangers; shuffled with ``seed`` so galleries are random prefixes."""
    by_id: dict[str, list[int]] = {}
    for i, identity in enumerate(identities):
        by_id.setdefault(identity, []).append(i)
    names = sorted(by_id)
    rng = np.random.default_rng(seed)
    rng.shuffle(names)
    enrolled, strangers = names[: len(names) // 2], names[len(names) // 2 :]
    gallery_faces: dict[str, list[int]] = {}
    mated: list[int] = []
    for name in enrolled:
        photos = by_id[name]
        k = max(1, min(per_person, len(photos) - 1))
        gallery_faces[name] = photos[:k]
        mated.extend(photos[k:])
    non_mated = [i for name in strangers for i in by_id[name]]
    return Split(enrolled, gallery_faces, mated, non_mated)


def person_scores(
    probes: NDArray[np.float32],
    embeddings: NDArray[np.float32],
    persons: list[str],
    faces: dict[str, list[int]],
    template: str,
    quality: NDArray[np.float32] | None = None,
) -> NDArray[np.float32]:
    """(probes, persons) cosine of each probe with each person's template (``weighted``: the
    faces' unit embeddings weighted by ``quality``)."""
    if template == "weighted":
        if quality is None:
            raise ValueError("the weighted template needs the faces' quality")
        fused = np.stack([quality[faces[p]] @ embeddings[faces[p]] for p in persons])
        fused /= np.linalg.norm(fused, axis=1, keepdims=True)
        return probes @ fused.T
    if template == "mean":
        fused = np.stack([embeddings[faces[p]].mean(axis=0) for p in persons])
        fused /= np.linalg.norm(fused, axis=1, keepdims=True)
        return probes @ fused.T
    flat = [i for p in persons for i in faces[p]]
    owner = np.repeat(np.arange(len(persons)), [len(faces[p]) for p in persons])
    sims = probes @ embeddings[flat].T
    out = np.full((probes.shape[0], len(persons)), -np.inf, dtype=np.float32)
    np.maximum.at(out.T, owner, sims.T)
    return out


def top1(scores: NDArray[np.float32]) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
    best = np.argmax(scores, axis=1)
    return best, scores[np.arange(scores.shape[0]), best]


def fnir_at_fpir(
    mated_ok: NDArray[np.bool_],
    mated_conf: NDArray[np.float64],
    non_mated_conf: NDArray[np.float64],
    fpir: float,
) -> tuple[float, float]:
    """(DIR, threshold confidence) at the lowest threshold whose FPIR is at most ``fpir``."""
    ordered = np.sort(non_mated_conf)[::-1]
    allowed = int(np.floor(fpir * ordered.size))
    threshold = float(np.nextafter(ordered[min(allowed, ordered.size - 1)], np.inf))
    dir_ = float(np.mean(mated_ok & (mated_conf >= threshold)))
    return dir_, threshold


def det_curve(
    mated_ok: NDArray[np.bool_],
    mated_conf: NDArray[np.float64],
    non_mated_conf: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(FPIR, FNIR) at every distinct threshold a probe's top-1 confidence sets, highest
    threshold first (FPIR rising, FNIR falling): the exact step curve, no grid."""
    hits = np.sort(mated_conf[mated_ok])
    strangers = np.sort(non_mated_conf)
    thresholds = np.unique(np.concatenate([hits, strangers]))[::-1]
    fpir = (strangers.size - np.searchsorted(strangers, thresholds, side="left")) / strangers.size
    found = hits.size - np.searchsorted(hits, thresholds, side="left")
    fnir = 1.0 - found / max(mated_conf.size, 1)
    return fpir.astype(np.float64), fnir.astype(np.float64)


def evaluate_open_set(
    embeddings: NDArray[np.float32],
    identities: list[str],
    calibration: Calibration,
    *,
    per_person: int = 3,
    gallery_sizes: tuple[int, ...] = (100, 250, 500),
    seed: int = 12,
    quality: NDArray[np.float32] | None = None,
) -> dict[str, Any]:
    """All open-set figures (see the module doc), plus the curves for the DET plot; the
    ``weighted`` template only with ``quality`` (one per embedding)."""
    split = split_identities(identities, per_person, seed)
    sizes = sorted(
        {min(n, len(split.gallery_person)) for n in gallery_sizes} | {len(split.gallery_person)}
    )
    mated_all = np.asarray(split.mated)
    non_mated = embeddings[split.non_mated]
    rows: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    for size in sizes:
        persons = split.gallery_person[:size]
        index = {p: k for k, p in enumerate(persons)}
        in_gallery = np.asarray([identities[i] in index for i in mated_all])
        mated_idx = mated_all[in_gallery]
        truth = np.asarray([index[identities[i]] for i in mated_idx])
        faces_in_gallery = sum(len(split.gallery_faces[p]) for p in persons)
        for template in TEMPLATES if quality is not None else TEMPLATES[:2]:
            m_best, m_score = top1(
                person_scores(
                    embeddings[mated_idx],
                    embeddings,
                    persons,
                    split.gallery_faces,
                    template,
                    quality,
                )
            )
            _, n_score = top1(
                person_scores(
                    non_mated, embeddings, persons, split.gallery_faces, template, quality
                )
            )
            m_conf = calibration.confidence(m_score.astype(np.float64))
            n_conf = calibration.confidence(n_score.astype(np.float64))
            ok = m_best == truth
            comparisons = faces_in_gallery if template == "best-face" else size
            per_threshold = [
                {
                    "threshold": t,
                    "dir": float(np.mean(ok & (m_conf >= t))),
                    "fpir": float(np.mean(n_conf >= t)),
                    "false_matches": int(np.sum(n_conf >= t)),
                    "fpir_predicted": expected_false_matches(t, comparisons, 1),
                }
                for t in THRESHOLDS
            ]
            at_fpir = {}
            for f in (1e-1, 1e-2, 1e-3):
                dir_, thr = fnir_at_fpir(ok, m_conf, n_conf, f)
                at_fpir[f"{f:g}"] = {"dir": dir_, "threshold": round(thr, 2)}
            rows.append(
                {
                    "gallery_persons": size,
                    "gallery_faces": faces_in_gallery,
                    "template": template,
                    "mated_probes": int(mated_idx.size),
                    "non_mated_probes": int(n_conf.size),
                    "rank1": float(np.mean(ok)),
                    "dir_at_fpir": at_fpir,
                    "per_threshold": per_threshold,
                }
            )
            fpir, fnir = det_curve(ok, m_conf, n_conf)
            curves.append(
                {
                    "gallery_persons": size,
                    "template": template,
                    "fpir": fpir,
                    "fnir": fnir,
                    "marks": {
                        t: (float(np.mean(n_conf >= t)), 1.0 - float(np.mean(ok & (m_conf >= t))))
                        for t in (50.0, 60.0, 70.0)
                    },
                    "non_mated": int(n_conf.size),
                    "mated": int(m_conf.size),
                }
            )
    return {
        "per_person": per_person,
        "seed": seed,
        "enrolled_identities": len(split.gallery_person),
        "stranger_identities": len(set(identities[i] for i in split.non_mated)),
        "rows": rows,
        "_curves": curves,
    }


def plot_det(curves: list[dict[str, Any]], path: Any, title: str) -> None:
    """DET plot: FNIR against FPIR (log-log), one line per gallery size and template, the
    thresholds 50 / 60 / 70 marked on the fused-template lines. A rate of 0 has no place on a
    log axis: each line ends where it reaches 0 (the axes start at one probe in all)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    styles = {"best-face": ":", "mean": "-", "weighted": "--"}
    sizes = sorted({c["gallery_persons"] for c in curves})
    for c in curves:
        if c["template"] == "weighted":  # lies on ``mean`` (docs/calibration.md)
            continue
        color = f"C{sizes.index(c['gallery_persons'])}"
        fpir, fnir = np.asarray(c["fpir"]), np.asarray(c["fnir"])
        shown = (fpir > 0) & (fnir > 0)
        ax.step(
            fpir[shown],
            fnir[shown],
            styles[c["template"]],
            where="post",
            color=color,
            label=f"{c['gallery_persons']} persons, {c['template']}",
        )
        if c["template"] != "mean":
            continue
        for t, (x, y) in c["marks"].items():
            if x > 0 and y > 0:
                ax.plot([x], [y], "o", color=color, ms=4)
                if c["gallery_persons"] == sizes[-1]:
                    ax.annotate(f"T {t:g}", (x, y), textcoords="offset points", xytext=(4, 4))
    ax.set_xscale("log")
    ax.set_yscale("log")
    floor = 1.0 / max(c["non_mated"] for c in curves)
    ax.set_xlim(floor / 1.5, 1.0)
    ax.set_ylim(1.0 / max(c["mated"] for c in curves) / 1.5, 1.0)
    ax.set_xlabel(f"FPIR (strangers matched to someone; one stranger = {floor:.1e})")
    ax.set_ylabel("FNIR (enrolled probes missed or misidentified)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
