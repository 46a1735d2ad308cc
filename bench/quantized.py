"""Accuracy and speed of an INT8 pack against its fp32 pack (and of the OpenVINO runtime).

Make the INT8 pack first, then run from the repository root::

    .venv/bin/facepipe models quantize ../shared/data/faces/lfw-dev --images 300
    .venv/bin/python -m bench.quantized --int8 "$FACEPIPE_HOME/models/<id>-int8" [--json]

Reports, for the fp32 pack and the INT8 pack (each end to end: its own detector and
recognizer), TAR at FAR 1e-3 and 1e-4 and leave-one-out rank-1 on lfw-dev (largest face of each
photo, all pairs), and for the INT8 recognizer alone on the fp32 pack's crops; detection counts
on the dev and hard sets (all faces); and single-thread CPU milliseconds per session run of
each model, the runtimes taking turns (ONNX Runtime fp32 / INT8, and OpenVINO fp32 / INT8 when
the ``openvino`` package is installed). Embeddings are computed once per model id and cached
in ``--cache`` (default ``~/.cache/facepipe-bench``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench._common import DEFAULT_OUT, SHARED_FACES, dumps, machine_info, machine_line, progress
from bench.accuracy import operating_point, pair_scores, rank1_identification, read_labels
from pipeline.config import Settings, get_settings
from pipeline.types import DetectMode

FARS = (1e-3, 1e-4)
DEFAULT_CACHE = Path.home() / ".cache" / "facepipe-bench"


def lfw_faces(
    settings: Settings, samples: list[Any], cache: Path
) -> tuple[list[int], NDArray[np.float32], NDArray[np.uint8], str]:
    """(indices embedded, their embeddings, their aligned crops, recognizer id) for the pack
    of ``settings``, from the cache when this pack's ids were seen before."""
    from pipeline.engine import FaceEngine

    engine = FaceEngine.from_settings(settings)
    key = f"lfw-{engine.detector.model_id}-{engine.model_id}.npz"
    path = cache / key
    if path.is_file():
        data = np.load(path)
        return list(data["kept"]), data["vectors"], data["crops"], engine.model_id
    kept, vectors, crops = [], [], []
    outcomes = engine.analyze_stream([str(s.path) for s in samples], mode=DetectMode.LARGEST)
    for index, outcome in enumerate(progress(outcomes, len(samples), key)):
        if outcome.analysis is not None and outcome.analysis.faces:
            face = outcome.analysis.faces[0]
            kept.append(index)
            vectors.append(face.embedding)
            crops.append(face.aligned_crop)
    cache.mkdir(parents=True, exist_ok=True)
    out = (np.asarray(kept), np.stack(vectors).astype(np.float32), np.stack(crops))
    np.savez(path, kept=out[0], vectors=out[1], crops=out[2])
    return kept, out[1], out[2], engine.model_id


def verification(vectors: NDArray[np.float32], identities: list[str]) -> dict[str, Any]:
    genuine, impostor, _, _ = pair_scores(vectors, identities)
    points = {f"{far:g}": operating_point(genuine, impostor, far) for far in FARS}
    correct, probes, _ = rank1_identification(vectors, identities)
    return {
        "photos": len(identities),
        "genuine_pairs": int(genuine.size),
        "impostor_pairs": int(impostor.size),
        "tar": {k: round(p.tar, 4) for k, p in points.items()},
        "threshold": {k: round(p.threshold, 4) for k, p in points.items()},
        "rank1": round(correct / probes, 4) if probes else float("nan"),
    }


def detection_counts(settings: Settings, folders: list[Path]) -> dict[str, Any]:
    """Faces found (all faces) per set, and the photos whose count differs is the caller's."""
    from pipeline.engine import FaceEngine

    engine = FaceEngine.from_settings(settings)
    out: dict[str, Any] = {}
    for folder in folders:
        photos = sorted(
            p
            for p in folder.rglob("*")
            if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
        )
        counts = {}
        for outcome in engine.analyze_stream([str(p) for p in photos], embed=False):
            counts[outcome.source] = -1 if outcome.analysis is None else len(outcome.analysis.faces)
        out[folder.name] = counts
    return out


def _cpu_ms(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append((time.process_time() - start) * 1000.0)
    return times


def runtime_speed(
    fp32: Settings, int8: Settings, crops: NDArray[np.uint8], repeats: int
) -> dict[str, Any]:
    """Least single-thread CPU ms per run: detector on a 640x480 canvas, recognizer on 1 and 8
    faces; every runtime and model takes its turn in each round."""
    from pipeline.models.base import OnnxModel
    from pipeline.models.detector import ScrfdDetector
    from pipeline.models.pack import resolve_pack
    from pipeline.models.recognizer import ArcFaceRecognizer

    one = {"intra_op_threads": 1}
    runners: dict[str, dict[str, Callable[[], object]]] = {
        "detector": {},
        "recognizer b1": {},
        "recognizer b8": {},
    }
    canvas = np.zeros((480, 640, 3), np.uint8)
    canvas[:, :] = crops[0].mean()
    for label, settings in (("onnxruntime fp32", fp32), ("onnxruntime int8", int8)):
        s = settings.model_copy(update=one)
        pack = resolve_pack(s)
        det: OnnxModel = ScrfdDetector.load(pack.detector, s)
        rec: OnnxModel = ArcFaceRecognizer.load(pack.recognizer, s)
        det_blob, b1, b8 = det.blob([canvas]), rec.blob(list(crops[:1])), rec.blob(list(crops[:8]))
        runners["detector"][label] = lambda m=det, b=det_blob: m.run(b)
        runners["recognizer b1"][label] = lambda m=rec, b=b1: m.run(b)
        runners["recognizer b8"][label] = lambda m=rec, b=b8: m.run(b)
        try:
            import openvino as ov
        except ImportError:
            continue
        core = ov.Core()
        ov_label = label.replace("onnxruntime", "openvino")
        for stage, model, blob in (
            ("detector", pack.detector, det_blob),
            ("recognizer b1", pack.recognizer, b1),
            ("recognizer b8", pack.recognizer, b8),
        ):
            compiled = core.compile_model(
                core.read_model(str(model.path)),
                "CPU",
                {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"},
            )
            request = compiled.create_infer_request()
            runners[stage][ov_label] = lambda r=request, b=blob: r.infer({0: b})
    out: dict[str, Any] = {}
    for stage, by_label in runners.items():
        times: dict[str, list[float]] = {k: [] for k in by_label}
        for _ in range(repeats):
            for label, fn in by_label.items():
                times[label].append(min(_cpu_ms(fn, 1)))
        out[stage] = {k: round(min(v), 2) for k, v in times.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--int8", type=Path, required=True, help="the INT8 pack's folder")
    parser.add_argument(
        "--faces",
        type=Path,
        default=SHARED_FACES,
        help=f"the shared photo sets (default {SHARED_FACES})",
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--skip-lfw", action="store_true", help="detection counts and speed only")
    parser.add_argument(
        "--identities",
        type=int,
        default=None,
        help="only every k-th lfw-dev identity, k chosen to keep about this many "
        "(all of its photos; default: all)",
    )
    parser.add_argument(
        "--recognizer-only",
        action="store_true",
        help="on lfw-dev, only the INT8 recognizer on the fp32 pack's crops (no "
        "INT8 end-to-end pass)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    fp32 = get_settings()
    int8 = fp32.model_copy(update={"model_dir": args.int8})
    report: dict[str, Any] = {"machine": machine_info(), "int8_pack": str(args.int8)}
    lfw = args.faces / "lfw-dev" / "labels.csv"
    crops: NDArray[np.uint8] | None = None
    if not args.skip_lfw and lfw.is_file():
        from pipeline.engine import FaceEngine

        samples = read_labels(lfw)
        names = sorted({s.identity for s in samples})
        if args.identities and args.identities < len(names):
            step = len(names) / args.identities
            chosen = {names[int(k * step)] for k in range(args.identities)}
            samples = [s for s in samples if s.identity in chosen]
        cache = args.cache / f"{len(samples)}-photos"
        kept32, vec32, crops, id32 = lfw_faces(fp32, samples, cache)
        ids32 = [samples[i].identity for i in kept32]
        rec8 = FaceEngine.from_settings(int8).embed_crops(list(crops))
        report["lfw_dev"] = {f"fp32 pack ({id32})": verification(vec32, ids32)}
        if not args.recognizer_only:
            kept8, vec8, _, id8 = lfw_faces(int8, samples, cache)
            ids8 = [samples[i].identity for i in kept8]
            report["lfw_dev"][f"int8 pack ({id8})"] = verification(vec8, ids8)
        report["lfw_dev"].update(
            {
                "int8 recognizer on the fp32 pack's crops": verification(rec8, ids32),
                "fp32/int8 cosine of the same crop": {
                    "min": round(float(np.min(np.sum(rec8 * vec32, axis=1))), 4),
                    "mean": round(float(np.mean(np.sum(rec8 * vec32, axis=1))), 4),
                },
            }
        )
    sets = [args.faces / "dev", args.faces / "hard"]
    if all(s.is_dir() for s in sets):
        c32, c8 = detection_counts(fp32, sets), detection_counts(int8, sets)
        report["detections"] = {
            name: {
                "photos": len(c32[name]),
                "faces_fp32": sum(v for v in c32[name].values() if v > 0),
                "faces_int8": sum(v for v in c8[name].values() if v > 0),
                "photos_differing": sorted(
                    Path(k).name for k in c32[name] if c32[name][k] != c8[name].get(k)
                ),
            }
            for name in c32
        }
    if crops is None:
        from pipeline.engine import FaceEngine
        from pipeline.sources import load_image

        engine = FaceEngine.from_settings(fp32)
        photo = next(iter(sorted((args.faces / "dev").rglob("*.jpg"))))
        crops = np.stack(
            [f.aligned_crop for f in engine.analyze([load_image(str(photo))])[0].faces] * 8
        )
    report["cpu_ms_1thread"] = runtime_speed(fp32, int8, crops, args.repeats)
    report["machine_after"] = machine_info()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quantized.json").write_text(dumps(report) + "\n")
    if args.json:
        sys.stdout.write(dumps(report) + "\n")
        return 0
    sys.stdout.write(machine_line(report["machine"]) + "\n")
    for name, result in report.get("lfw_dev", {}).items():
        sys.stdout.write(f"lfw-dev {name}: {result}\n")
    for name, result in report.get("detections", {}).items():
        sys.stdout.write(f"detections {name}: {result}\n")
    for stage, by_label in report["cpu_ms_1thread"].items():
        sys.stdout.write(f"CPU ms (1 thread) {stage}: {by_label}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
