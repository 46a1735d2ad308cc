"""Big photos: the engine's bulk path with and without reduced-scale JPEG decoding.

Run from the repository root::

    .venv/bin/python -m bench.bigphotos [--limit 40] [--megapixels 12] [--json]

The corpus is built at bench time, never committed: every JPEG of
``../shared/data/faces/dev/deepface`` (press photos) and ``hard/`` (group photos, tiny faces,
rotations, no-face scenes) is upscaled
(bicubic) to about ``--megapixels`` MP keeping its aspect ratio and re-encoded as a quality-90
JPEG into ``--cache`` (default ``~/.cache/facepipe-bench/bigphotos-<MP>mp``; reused when
there). Then ``analyze_stream`` runs over it with ``reduced_decode`` off and on, the two taking
turns chunk by chunk (``--rounds``), and reports images/s and CPU ms per image for each, the
faces each found, and for every face found by both (matched by box centre) the box deviation
and the cosine between the two embeddings; plus the decode alone (full vs reduced) per image.

``--online`` times the API's path instead: each image's bytes decoded as an API call decodes them
(:meth:`pipeline.api.images.Fetched.decode`), then one ``analyze`` call per image with the call
defaults (106-point landmarks and attributes on, when the pack has them).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench._common import DEFAULT_OUT, SHARED_FACES, dumps, machine_info, machine_line, progress
from pipeline.config import get_settings
from pipeline.types import ImageAnalysis

DEFAULT_CACHE = Path.home() / ".cache" / "facepipe-bench"


def build_corpus(faces: Path, folder: Path, megapixels: float, limit: int | None) -> list[Path]:
    """The upscaled corpus (made once per size, then reused)."""
    # Press and group photos; the 150x150 face chips of dev/ are no camera photos.
    sources = sorted((faces / "dev" / "deepface").glob("*.jpg"))
    sources += sorted((faces / "hard").glob("*.jpg"))
    sources = sources[:limit] if limit else sources
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src in progress(sources, len(sources), "building the corpus"):
        target = folder / f"{src.parent.name}__{src.stem}.jpg"
        if not target.is_file():
            pixels = cv2.imread(str(src), cv2.IMREAD_COLOR)
            if pixels is None:
                continue
            scale = float(np.sqrt(megapixels * 1e6 / (pixels.shape[0] * pixels.shape[1])))
            big = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(str(target), big, [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append(target)
    return out


def _centre(box: tuple[float, ...]) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def compare(full: dict[str, ImageAnalysis], reduced: dict[str, ImageAnalysis]) -> dict[str, Any]:
    """Faces of each image found by both runs, matched by box centre (within half a box)."""
    cosines, deviations, only_full, only_reduced = [], [], 0, 0
    for source, a in full.items():
        b = reduced.get(source)
        if b is None:
            continue
        unmatched = list(b.faces)
        for fa in a.faces:
            side = max(1.0, min(fa.box[2] - fa.box[0], fa.box[3] - fa.box[1]))
            best = min(
                unmatched,
                default=None,
                key=lambda f: float(np.linalg.norm(_centre(f.box) - _centre(fa.box))),
            )
            if best is None or np.linalg.norm(_centre(best.box) - _centre(fa.box)) > side / 2:
                only_full += 1
                continue
            unmatched.remove(best)
            deviations.append(float(np.max(np.abs(np.subtract(best.box, fa.box)))) / side)
            if fa.embedding is not None and best.embedding is not None:
                cosines.append(float(np.dot(fa.embedding, best.embedding)))
        only_reduced += len(unmatched)
    cos = np.asarray(cosines) if cosines else np.asarray([np.nan])
    dev = np.asarray(deviations) if deviations else np.asarray([np.nan])
    return {
        "faces_matched": len(cosines),
        "faces_only_full_decode": only_full,
        "faces_only_reduced_decode": only_reduced,
        "embedding_cosine": {
            "min": round(float(np.min(cos)), 4),
            "p01": round(float(np.percentile(cos, 1)), 4),
            "mean": round(float(np.mean(cos)), 4),
        },
        "box_deviation_share_of_face": {
            "max": round(float(np.max(dev)), 4),
            "mean": round(float(np.mean(dev)), 4),
        },
    }


def main(argv: list[str] | None = None) -> int:
    from pipeline.engine import FaceEngine
    from pipeline.sources.decode import decode_image, decode_image_reduced

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=Path, default=SHARED_FACES)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--limit", type=int, default=None, help="first N source photos")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--online",
        action="store_true",
        help="the API's path: decode as an API call does, analyze one image "
        "per call with landmarks and attributes",
    )
    args = parser.parse_args(argv)
    if not (args.faces / "dev").is_dir():
        parser.error(f"{args.faces}/dev is missing (the shared photos)")
    corpus = build_corpus(
        args.faces, args.cache / f"bigphotos-{args.megapixels:g}mp", args.megapixels, args.limit
    )
    base = get_settings()
    before = machine_info()
    engines = {
        name: FaceEngine.from_settings(base.model_copy(update={"reduced_decode": on}))
        for name, on in (("full decode", False), ("reduced decode", True))
    }

    def run(engine: FaceEngine, paths: list[str]) -> list[tuple[str, ImageAnalysis | None]]:
        if not args.online:
            return [(o.source, o.analysis) for o in engine.analyze_stream(paths)]
        from pipeline.api.images import Fetched

        out: list[tuple[str, ImageAnalysis | None]] = []
        for path in paths:
            image = Fetched(path, Path(path).read_bytes()).decode(engine.settings)
            out.append((path, engine.analyze([image])[0]))
        return out

    for engine in engines.values():
        run(engine, [str(p) for p in corpus[:2]])  # warm-up
    results: dict[str, dict[str, ImageAnalysis]] = {k: {} for k in engines}
    wall = dict.fromkeys(engines, 0.0)
    cpu = dict.fromkeys(engines, 0.0)
    chunks = [c.tolist() for c in np.array_split(np.arange(len(corpus)), args.rounds) if c.size]
    for r, chunk in enumerate(progress(chunks, len(chunks), "rounds")):
        order = list(engines) if r % 2 == 0 else list(engines)[::-1]
        for name in order:
            start, cpu_start = time.perf_counter(), time.process_time()
            for source, analysis in run(engines[name], [str(corpus[i]) for i in chunk]):
                if analysis is not None:
                    results[name][source] = analysis
            wall[name] += time.perf_counter() - start
            cpu[name] += time.process_time() - cpu_start
    # The decode alone, alternating per image.
    decode_ms = {"full": 0.0, "reduced": 0.0}
    for path in corpus:
        data = path.read_bytes()
        for key, fn in (
            ("full", lambda d=data: decode_image(d, "x", base)),
            ("reduced", lambda d=data: decode_image_reduced(d, "x", base, base.det_size)),
        ):
            start = time.process_time()
            fn()
            decode_ms[key] += (time.process_time() - start) * 1000.0
    n = len(corpus)
    report = {
        "path": "online (API decode, analyze per image, landmarks + attributes)"
        if args.online
        else "bulk (analyze_stream)",
        "corpus": {
            "images": n,
            "megapixels": args.megapixels,
            "built_from": "dev/deepface/*.jpg + hard/*.jpg, bicubic upscale, JPEG q90",
        },
        "runs": {
            name: {
                "images_per_s": round(n / wall[name], 3),
                "cpu_ms_per_image": round(1000.0 * cpu[name] / n, 1),
                "faces": sum(len(a.faces) for a in results[name].values()),
                "images_ok": len(results[name]),
            }
            for name in engines
        },
        "decode_cpu_ms_per_image": {k: round(v / n, 1) for k, v in decode_ms.items()},
        "agreement": compare(results["full decode"], results["reduced decode"]),
        "machine_before": before,
        "machine_after": machine_info(),
    }
    report["speedup"] = round(
        report["runs"]["reduced decode"]["images_per_s"]
        / report["runs"]["full decode"]["images_per_s"],
        3,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    name = "bigphotos-online.json" if args.online else "bigphotos.json"
    (args.out / name).write_text(dumps(report) + "\n")
    if args.json:
        sys.stdout.write(dumps(report) + "\n")
        return 0
    sys.stdout.write(machine_line(before) + "\n")
    sys.stdout.write(f"corpus: {n} images of ~{args.megapixels:g} MP; path: {report['path']}\n")
    for name, run in report["runs"].items():
        sys.stdout.write(
            f"{name:16s} {run['images_per_s']:7.3f} img/s  "
            f"{run['cpu_ms_per_image']:8.1f} CPU ms/img  {run['faces']} faces\n"
        )
    sys.stdout.write(
        f"speed-up: {report['speedup']:.2f}x; decode CPU ms/img: "
        f"{report['decode_cpu_ms_per_image']}\n"
    )
    sys.stdout.write(f"agreement: {report['agreement']}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
