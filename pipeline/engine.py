"""The face engine: images in, faces out (box, landmarks, pose, quality, embedding).

Models load once (:meth:`FaceEngine.from_settings`); :meth:`FaceEngine.analyze` runs a batch of
decoded images through detection (batched session runs), alignment, quality and the embedder
(batched over every face of the batch); :meth:`FaceEngine.analyze_stream` adds reading and
decoding in a thread pool, so the next images decode while the current batch is on the model.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from pipeline.config import Settings, get_settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.models.age_gender_bundle import load_bundle
from pipeline.models.attributes import AttributeModel, DlibAgeGender, FaceRef, GenderAge
from pipeline.models.detector import DetectOptions, ScrfdDetector
from pipeline.models.landmarks import Landmark106
from pipeline.models.pack import ModelPack, resolve_pack
from pipeline.models.recognizer import ArcFaceRecognizer
from pipeline.models.session import intra_op_threads
from pipeline.ops.align import align_face
from pipeline.ops.pose import estimate_pose
from pipeline.ops.quality import QualityThresholds, assess_quality, thresholds_from_settings
from pipeline.ops.reduced import full_scale, needs_full_resolution, scale_detections
from pipeline.ops.scrfd import Detections
from pipeline.sources.location import Trust
from pipeline.types import Attributes, DecodedImage, DetectMode, Face, ImageAnalysis

log = logging.getLogger(__name__)

DECODE_THREADS = 4
"""Reader/decoder threads of analyze_stream (I/O-bound reads and cv2 decoding release the GIL)."""
PREFETCH_BATCHES = 2
"""How many batches analyze_stream reads ahead of those queued on the models."""
CPU_STREAM_BATCH = 4
"""Images per analyze_stream batch on a CPU-only engine (see stream_batch_size): batching buys
nothing on a CPU, and small batches shorten the tail where one batch runs alone."""
CPU_EMBED_BATCH = 8
"""Most faces per embedder run on a CPU-only engine (see embed_batch_size)."""
CPU_OVERSUBSCRIBE = 2
"""Concurrent single-session runs per group of cores on a CPU-only engine (see
stream_model_threads)."""
QUEUED_BATCHES = 2
"""Batches analyze_stream queues for its model threads beyond one each (see _stream)."""


@dataclass(frozen=True)
class AnalysisOutcome:
    """One input of :meth:`FaceEngine.analyze_stream`: its analysis, or the error it raised."""

    source: str
    analysis: ImageAnalysis | None
    error: FacepipeError | None


class FaceEngine:
    """Detector, recognizer and the optional landmark and attribute models of one pack."""

    def __init__(
        self,
        settings: Settings,
        pack: ModelPack,
        detector: ScrfdDetector,
        recognizer: ArcFaceRecognizer,
        landmark106: Landmark106 | None = None,
        attributes: AttributeModel | None = None,
    ) -> None:
        self.settings = settings
        self.pack = pack
        self.detector = detector
        self.recognizer = recognizer
        self.landmark106 = landmark106
        self.attributes = attributes
        self.model_id: str = recognizer.model_id
        self.embedding_dim: int = recognizer.embedding_dim
        self.quality_thresholds: QualityThresholds = thresholds_from_settings(settings)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> FaceEngine:
        """Resolve the model pack and load every model once."""
        settings = settings or get_settings()
        pack = resolve_pack(settings)
        detector = ScrfdDetector.load(pack.detector, settings)
        recognizer = ArcFaceRecognizer.load(pack.recognizer, settings)
        landmark = Landmark106.load(pack.landmark106, settings) if pack.landmark106 else None
        attributes: AttributeModel | None = None
        if pack.attributes is not None:
            attributes = GenderAge.load(pack.attributes, settings)
        elif pack.age_gender is not None:
            attributes = DlibAgeGender(load_bundle(pack.age_gender), settings)
        elif settings.model_dir is None:
            log.warning("no attribute models: run `facepipe models install` for age and gender")
        log.info(
            "face engine: detector %s (batched=%s), recognizer %s, landmarks %s, attributes %s",
            detector.model_id,
            detector.batched,
            recognizer.model_id,
            landmark.model_id if landmark else None,
            attributes.model_id if attributes else None,
        )
        return cls(settings, pack, detector, recognizer, landmark, attributes)

    def detect_options(
        self,
        mode: DetectMode = DetectMode.ALL,
        max_faces: int | None = None,
        rotate: bool | None = None,
    ) -> DetectOptions:
        """The detector options of a call: the settings, overridden by the call's arguments."""
        s = self.settings
        return DetectOptions(
            det_size=s.det_size,
            score_threshold=s.det_score_threshold,
            nms_threshold=s.nms_threshold,
            min_face_size=float(s.min_face_size),
            max_faces=s.max_faces if max_faces is None else max_faces,
            mode=DetectMode(mode),
            rotate=s.rotate_detection if rotate is None else rotate,
            batch_size=self.detector_batch_size,
        )

    @property
    def detector_batch_size(self) -> int:
        """Images per detector run: ``det_batch_size``, except on a CPU-only session where,
        unless the setting was given explicitly, one image per run (measured: CPU time per
        640x640 image 19.7 ms at batch 1 vs 23.0 ms at batch 8 on one thread, 24.8 vs 26.1 on
        two; batching pays on a GPU, not here)."""
        s = self.settings
        if self.detector.on_cpu and "det_batch_size" not in s.model_fields_set:
            return 1
        return max(1, s.det_batch_size)

    @property
    def embed_batch_size(self) -> int:
        """Faces per embedder run: ``embed_batch_size``, except on a CPU-only session where,
        unless the setting was given explicitly, at most :data:`CPU_EMBED_BATCH` (measured,
        1-thread CPU ms per face: 17.1 / 16.7 / 16.9 / 18.1 / 18.6 at batch 1 / 2 / 8 / 16 / 32;
        large batches fall out of cache)."""
        s = self.settings
        if self.recognizer.on_cpu and "embed_batch_size" not in s.model_fields_set:
            return max(1, min(CPU_EMBED_BATCH, s.embed_batch_size))
        return max(1, s.embed_batch_size)

    @property
    def stream_model_threads(self) -> int:
        """Batches analyze_stream runs on the models at once: ``stream_workers``, except on a
        CPU-only engine where, unless the setting was given explicitly,
        :data:`CPU_OVERSUBSCRIBE` runs per group of ``intra_op_threads`` cores (4 single-thread
        runs on 2 cores). Measured on 2 cores beside one busy-looping process: 37.2 images/s
        with 4 runs, 35.0 with 3, 29.4 with 2 (the naive loop 24.5); quiet: 45.6 / 46.0 / 46.5
        (CPU per image +3% at 4). More runnable threads keep the engine's share of a shared
        machine, and a run waiting on a descheduled decoder no longer leaves a core idle."""
        s = self.settings
        if self.detector.on_cpu and "stream_workers" not in s.model_fields_set:
            groups = max(1, (os.cpu_count() or 1) // intra_op_threads(s))
            return CPU_OVERSUBSCRIBE * groups
        return max(1, s.stream_workers)

    @property
    def stream_batch_size(self) -> int:
        """Images per analyze_stream batch: ``det_batch_size``, except on a CPU-only session
        where, unless the setting was given explicitly, :data:`CPU_STREAM_BATCH`."""
        s = self.settings
        if self.detector.on_cpu and "det_batch_size" not in s.model_fields_set:
            return CPU_STREAM_BATCH
        return max(1, s.det_batch_size)

    def analyze(
        self,
        images: Sequence[DecodedImage],
        *,
        mode: DetectMode = DetectMode.ALL,
        embed: bool = True,
        max_faces: int | None = None,
        rotate: bool | None = None,
        landmarks: bool | None = None,
        attributes: bool = True,
    ) -> list[ImageAnalysis]:
        """Faces of each image, largest first; embeddings and aligned crops when ``embed``.

        ``landmarks`` (default ``settings.landmarks_106``) runs the 106-point model when the
        pack has one; ``rotate`` (default ``settings.rotate_detection``) the rotation search;
        ``attributes`` the attribute model (gender, age) over every face of the batch, when
        the engine has one (otherwise each face's ``attributes`` stays None).

        ``timings_ms`` holds each image's share of the batch's stage times (detect, landmarks,
        align, embed, attributes), in milliseconds.
        """
        if not images:
            return []
        options = self.detect_options(mode, max_faces, rotate)
        clock = _StageClock()
        with clock("detect"):
            found = self.detector.detect([im.pixels for im in images], options)
        want_106 = self.settings.landmarks_106 if landmarks is None else landmarks
        landmark_model = self.landmark106 if want_106 else None
        attribute_model = self.attributes if attributes else None
        if landmark_model is not None or attribute_model is not None:
            with clock("align"):
                # The 106-point and attribute models read the pixels around each face: an image
                # decoded at a reduced scale goes to full resolution only when one of them would
                # upsample one of its faces there (the embedder's crops follow the same rule).
                images, found = self._full_where_needed(
                    images, found, landmark_model, attribute_model
                )
        landmarks_106: list[list[NDArray[np.float32]] | None] = [None] * len(images)
        if landmark_model is not None:
            with clock("landmarks"):
                landmarks_106 = [
                    _to_full(
                        im, landmark_model.landmarks(im.pixels, list(d.boxes), quarter_turns(d))
                    )
                    for im, d in zip(images, found, strict=True)
                ]
        attrs: list[list[Attributes] | None] = [None] * len(images)
        if attribute_model is not None:
            with clock("attributes"):
                attrs = self._attributes(attribute_model, images, found)
        with clock("align"):
            crops, found, images = _align_all(images, found)
        vectors: list[NDArray[np.float32] | None] = [None] * len(images)
        if embed:
            with clock("embed"):
                flat = [c for per_image in crops for c in per_image]
                all_vectors = self.recognizer.embed(flat, self.embed_batch_size)
                offsets = np.cumsum([0] + [len(c) for c in crops])
                vectors = [all_vectors[offsets[i] : offsets[i + 1]] for i in range(len(images))]
        with clock("align"):
            faces = [
                self._faces(im, d, crops[i], vectors[i], landmarks_106[i], attrs[i], embed)
                for i, (im, d) in enumerate(zip(images, found, strict=True))
            ]
        share = clock.per_item(len(images))
        return [
            ImageAnalysis(
                source=im.source,
                width=im.width,
                height=im.height,
                content_sha256=im.content_sha256,
                model_id=self.model_id,
                faces=tuple(f),
                timings_ms=dict(share),
            )
            for im, f in zip(images, faces, strict=True)
        ]

    def _faces(
        self,
        image: DecodedImage,
        dets: Detections,
        crops: list[NDArray[np.uint8]],
        vectors: NDArray[np.float32] | None,
        landmarks_106: list[NDArray[np.float32]] | None,
        attrs: list[Attributes] | None,
        embed: bool,
    ) -> list[Face]:
        faces = []
        for k in range(len(dets)):
            x1, y1, x2, y2 = (float(v) for v in dets.boxes[k])
            box = (x1, y1, x2, y2)
            kps = dets.keypoints[k].astype(np.float32)
            pose = estimate_pose(kps)
            quality = assess_quality(
                detector_score=float(dets.scores[k]),
                box=box,
                image_height=image.height,
                image_width=image.width,
                crop=crops[k],
                pose=pose,
                thresholds=self.quality_thresholds,
            )
            faces.append(
                Face(
                    index=k,
                    box=box,
                    score=float(dets.scores[k]),
                    landmarks=kps,
                    pose=pose,
                    quality=quality,
                    embedding=vectors[k] if (embed and vectors is not None) else None,
                    aligned_crop=crops[k] if embed else None,
                    landmarks_106=landmarks_106[k] if landmarks_106 is not None else None,
                    attributes=attrs[k] if attrs is not None else None,
                )
            )
        return faces

    def _full_where_needed(
        self,
        images: Sequence[DecodedImage],
        found: Sequence[Detections],
        landmark_model: Landmark106 | None,
        attribute_model: AttributeModel | None,
    ) -> tuple[list[DecodedImage], list[Detections]]:
        """Images decoded at a reduced scale where a face would be upsampled by the landmark or
        attribute model's crop, decoded in full (their detections scaled to match); the others
        as they are."""
        out_images, out_found = [], []
        for image, d in zip(images, found, strict=True):
            if image.reduced and any(
                (landmark_model is not None and landmark_model.upscale(d.boxes[k]) > 1.0)
                or (
                    attribute_model is not None
                    and attribute_model.upscale(FaceRef(image.pixels, d.boxes[k], d.keypoints[k]))
                    > 1.0
                )
                for k in range(len(d))
            ):
                image, d = _decode_full(image, d)
            out_images.append(image)
            out_found.append(d)
        return out_images, out_found

    def _attributes(
        self,
        model: AttributeModel,
        images: Sequence[DecodedImage],
        found: Sequence[Detections],
    ) -> list[list[Attributes] | None]:
        """Attributes of every face of the batch, batched like the embedder."""
        refs = [
            FaceRef(im.pixels, d.boxes[k], d.keypoints[k], turn)
            for im, d in zip(images, found, strict=True)
            for k, turn in enumerate(quarter_turns(d))
        ]
        flat = model.predict(refs, self.embed_batch_size)
        offsets = np.cumsum([0] + [len(d) for d in found])
        return [flat[offsets[i] : offsets[i + 1]] for i in range(len(images))]

    def embed_crops(self, crops: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
        """(n, dim) unit vectors for aligned 112x112 BGR crops (re-embedding stored crops)."""
        for crop in crops:
            if crop.shape != (112, 112, 3) or crop.dtype != np.uint8:
                raise FacepipeError(
                    ErrorCode.ILLEGAL_PARAMETER,
                    f"aligned crops must be 112x112x3 uint8 BGR, got {crop.shape} {crop.dtype}",
                )
        return self.recognizer.embed(list(crops), self.embed_batch_size)

    def analyze_stream(
        self,
        sources: Iterable[str],
        *,
        mode: DetectMode = DetectMode.ALL,
        embed: bool = True,
        batch_size: int | None = None,
        landmarks: bool = False,
        rotate: bool | None = None,
        trust: Trust = Trust.OPERATOR,
        attributes: bool = False,
    ) -> Iterator[AnalysisOutcome]:
        """Analyse many sources, in input order, reading ahead in a thread pool.

        Never raises for a bad input: its error goes on its outcome. ``timings_ms["decode"]``
        is the time that image took to read and decode (in a reader thread). The bulk path
        skips the 106-point landmarks and the attributes unless ``landmarks`` /
        ``attributes`` (nothing downstream needs them). Each source is parsed under ``trust``:
        a caller's source never names a local file.
        """
        # the sources package imports heavier deps
        from pipeline.sources import load_image, read_source_bytes, source_label
        from pipeline.sources.decode import decode_image_reduced

        def load(source: str) -> tuple[DecodedImage, float]:
            start = time.perf_counter()
            if self.settings.reduced_decode:
                # Big JPEGs decode at the smallest DCT scale that still fills the canvas.
                data = read_source_bytes(source, self.settings, trust)
                image = decode_image_reduced(
                    data, source_label(source), self.settings, self.settings.det_size
                )
            else:
                image = load_image(source, self.settings, trust)
            return image, (time.perf_counter() - start) * 1000.0

        run = functools.partial(
            self.analyze,
            mode=mode,
            embed=embed,
            landmarks=landmarks,
            rotate=rotate,
            attributes=attributes,
        )
        yield from self._stream(sources, load, run, batch_size)

    def _stream(
        self,
        sources: Iterable[str],
        load: Callable[[str], tuple[DecodedImage, float]],
        run: Callable[[Sequence[DecodedImage]], list[ImageAnalysis]],
        batch_size: int | None,
    ) -> Iterator[AnalysisOutcome]:
        batch = max(1, batch_size or self.stream_batch_size)
        workers = self.stream_model_threads
        queued = workers + QUEUED_BATCHES
        ahead = batch * (PREFETCH_BATCHES + queued)
        pending: deque[tuple[str, Future[tuple[DecodedImage, float]]]] = deque()
        in_flight: deque[Future[list[AnalysisOutcome]]] = deque()
        source_iter = iter(sources)
        readers = ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="decode")
        # ONNX Runtime sessions are thread-safe: several batches may run on them at once, which
        # keeps both cores busy through the single-threaded steps (letterbox, NMS, warps).
        models = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="infer")

        def refill() -> None:
            while len(pending) < ahead:
                source = next(source_iter, None)
                if source is None:
                    return
                pending.append((source, readers.submit(load, source)))

        def process(
            current: list[tuple[str, Future[tuple[DecodedImage, float]]]],
        ) -> list[AnalysisOutcome]:
            loaded = [_collect(source, future) for source, future in current]
            return list(_analyze_loaded(loaded, run))

        try:
            refill()
            while pending or in_flight:
                # More batches queued than model threads: a thread that finishes its batch
                # takes the next at once instead of idling until the oldest batch (the next
                # to yield, in input order) is done.
                while pending and len(in_flight) < queued:
                    current = [pending.popleft() for _ in range(min(batch, len(pending)))]
                    in_flight.append(models.submit(process, current))
                    refill()  # the next batches decode while these are on the model
                yield from in_flight.popleft().result()
        finally:
            readers.shutdown(wait=True, cancel_futures=True)
            models.shutdown(wait=True, cancel_futures=True)


def _collect(
    source: str, future: Future[tuple[DecodedImage, float]]
) -> tuple[str, DecodedImage | None, float, FacepipeError | None]:
    """The decoded image of one source, or the error reading it raised."""
    try:
        image, ms = future.result()
        return source, image, ms, None
    except FacepipeError as exc:
        return source, None, 0.0, exc
    except Exception as exc:  # a bug in a reader must not end the stream
        log.exception("reading %s failed", source)
        return source, None, 0.0, _internal(exc)


def _analyze_loaded(
    loaded: list[tuple[str, DecodedImage | None, float, FacepipeError | None]],
    run: Callable[[Sequence[DecodedImage]], list[ImageAnalysis]],
) -> Iterator[AnalysisOutcome]:
    """Outcomes, in order, of one batch of read attempts."""
    images = [image for _, image, _, _ in loaded if image is not None]
    results: list[ImageAnalysis | FacepipeError]
    try:
        results = list(run(images))
    except Exception:  # keep going image by image so one bad image cannot fail the batch
        log.exception("batch analysis failed; retrying image by image")
        results = [_analyze_alone(run, image) for image in images]
    pending = iter(results)
    for source, image, ms, error in loaded:
        if image is None:
            yield AnalysisOutcome(source, None, error)
            continue
        result = next(pending)
        if isinstance(result, FacepipeError):
            yield AnalysisOutcome(source, None, result)
        else:
            timings = {"decode": ms, **result.timings_ms}
            yield AnalysisOutcome(source, replace(result, timings_ms=timings), None)


def _analyze_alone(
    run: Callable[[Sequence[DecodedImage]], list[ImageAnalysis]], image: DecodedImage
) -> ImageAnalysis | FacepipeError:
    try:
        return run([image])[0]
    except FacepipeError as exc:
        return exc
    except Exception as exc:  # recorded on the outcome, never raised (analyze_stream's promise)
        log.exception("analysing %s failed", image.source)
        return _internal(exc)


def _decode_full(image: DecodedImage, dets: Detections) -> tuple[DecodedImage, Detections]:
    """A reduced-scale image decoded in full, with its detections scaled to match."""
    assert image.full_size is not None and image.full_pixels is not None
    sx, sy = full_scale(image.pixels.shape, image.full_size)
    full = replace(image, pixels=image.full_pixels(), full_size=None, full_pixels=None)
    return full, scale_detections(dets, sx, sy)


def _to_full(image: DecodedImage, points: list[NDArray[np.float32]]) -> list[NDArray[np.float32]]:
    """Points found on an image's pixels in full-image coordinates (scaled up when the pixels
    are a reduced-scale decode)."""
    if not image.reduced or image.full_size is None:
        return points
    sx, sy = full_scale(image.pixels.shape, image.full_size)
    factors = np.array([sx, sy], dtype=np.float32)
    return [(p * factors).astype(np.float32) for p in points]


def _align_all(
    images: Sequence[DecodedImage], found: Sequence[Detections]
) -> tuple[list[list[NDArray[np.uint8]]], list[Detections], list[DecodedImage]]:
    """Each face's aligned crop, with detections and images at full scale.

    An image decoded at a reduced scale (see ``decode_image_reduced``) gets its detections
    multiplied out to full-image coordinates; a face's crop comes from the reduced pixels
    when they hold enough of it, else from the full image (decoded once, on first need).
    Other images pass through.
    """
    crops: list[list[NDArray[np.uint8]]] = []
    dets: list[Detections] = []
    out: list[DecodedImage] = []
    for image, d in zip(images, found, strict=True):
        if not image.reduced or image.full_size is None or image.full_pixels is None:
            crops.append([align_face(image.pixels, kps) for kps in d.keypoints])
            dets.append(d)
            out.append(image)
            continue
        sx, sy = full_scale(image.pixels.shape, image.full_size)
        full_dets = scale_detections(d, sx, sy)
        full: NDArray[np.uint8] | None = None
        per_face = []
        for reduced_kps, full_kps in zip(d.keypoints, full_dets.keypoints, strict=True):
            if full is None and needs_full_resolution(reduced_kps):
                full = image.full_pixels()
            if full is not None:
                per_face.append(align_face(full, full_kps))
            else:
                per_face.append(align_face(image.pixels, reduced_kps))
        crops.append(per_face)
        dets.append(full_dets)
        out.append(
            replace(image, pixels=full, full_size=None, full_pixels=None)
            if full is not None
            else image
        )
    return crops, dets, out


def quarter_turns(dets: Detections) -> list[float]:
    """Each face's roll rounded to a multiple of 90 degrees (0 for any upright-ish face)."""
    return [90.0 * round(estimate_pose(kps).roll / 90.0) for kps in dets.keypoints]


def _internal(exc: BaseException) -> FacepipeError:
    return FacepipeError(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")


class _StageClock:
    """Accumulates wall time per named stage."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    def __call__(self, stage: str) -> _Stage:
        return _Stage(self, stage)

    def per_item(self, n: int) -> dict[str, float]:
        return {k: v / max(1, n) for k, v in self.totals.items()}


class _Stage:
    def __init__(self, clock: _StageClock, stage: str) -> None:
        self.clock = clock
        self.stage = stage
        self.start = 0.0

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        elapsed = (time.perf_counter() - self.start) * 1000.0
        self.clock.totals[self.stage] = self.clock.totals.get(self.stage, 0.0) + elapsed
