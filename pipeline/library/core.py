"""What every part of the face library shares: its database, engine and settings, the
transaction it works in, image loading, and the "no such person / group" errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import psycopg

from pipeline.calibration import Calibration, calibration_for
from pipeline.config import Settings, get_settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.store import repo
from pipeline.store.db import Database
from pipeline.store.records import GroupDetails
from pipeline.types import DecodedImage, DetectMode, ImageAnalysis

if TYPE_CHECKING:
    from pipeline.engine import FaceEngine
    from pipeline.sources.location import Location


def person_not_found(person_id: str) -> FacepipeError:
    return FacepipeError(
        ErrorCode.PERSON_NOT_FOUND, f"person {person_id!r} does not exist", person_id=person_id
    )


def lock_person(conn: psycopg.Connection, person_id: str) -> None:
    """Lock the person's row for this transaction (``PERSON_NOT_FOUND`` when there is none)."""
    if not repo.lock_person(conn, person_id):
        raise person_not_found(person_id)


def require_person(conn: psycopg.Connection, person_id: str) -> None:
    """``PERSON_NOT_FOUND`` unless the person exists (no lock)."""
    if not repo.person_exists(conn, person_id):
        raise person_not_found(person_id)


def require_group(conn: psycopg.Connection, group_id: str) -> GroupDetails:
    """The group's details (``GROUP_NOT_FOUND`` when there is none)."""
    details = repo.get_group(conn, group_id)
    if details is None:
        raise FacepipeError(ErrorCode.GROUP_NOT_FOUND, f"group {group_id!r} does not exist")
    return details


class LibraryCore:
    """The database, engine and settings of a :class:`~pipeline.library.FaceLibrary`."""

    def __init__(
        self, db: Database, engine: FaceEngine | None = None, settings: Settings | None = None
    ) -> None:
        self.db = db
        self.engine = engine
        self.settings = settings or (engine.settings if engine is not None else get_settings())

    @contextmanager
    def _tx(self, conn: psycopg.Connection | None) -> Iterator[psycopg.Connection]:
        """The caller's connection (its transaction), or a new transaction of our own."""
        if conn is not None:
            yield conn
            return
        with self.db.transaction() as own:
            yield own

    def _engine(self) -> FaceEngine:
        if self.engine is None:
            raise FacepipeError(
                ErrorCode.INTERNAL, "this operation needs a face engine (FaceLibrary(db, engine))"
            )
        return self.engine

    def _model_id(self, model_id: str | None) -> str:
        if model_id:
            return model_id
        if self.engine is not None:
            return self.engine.model_id
        raise FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER, "model_id is required when the library has no engine"
        )

    def calibration(self, model_id: str | None = None) -> Calibration:
        """The confidence calibration of ``model_id`` (default: the engine's recognizer)."""
        model = model_id or (self.engine.model_id if self.engine is not None else None)
        return calibration_for(model, self.settings.calibration_dir)

    def _load(self, image: str | Location | DecodedImage | FacepipeError) -> DecodedImage:
        """Decode an image given as pixels, a parsed location (a caller's, already checked), an
        operator's source string, or the error its reading already gave."""
        if isinstance(image, DecodedImage):
            return image
        if isinstance(image, FacepipeError):
            # An image whose reading already failed (the API fetches before taking a model
            # slot): it stays that image's result code, like any other unreadable image.
            raise image
        from pipeline.sources import load_image

        return load_image(image, self.settings)

    def _analyze_one(self, image: str | DecodedImage, *, all_faces: bool = False) -> ImageAnalysis:
        decoded = self._load(image)
        mode = DetectMode.ALL if all_faces else DetectMode.LARGEST
        analysis = self._engine().analyze([decoded], mode=mode, embed=True)[0]
        if not analysis.faces:
            raise FacepipeError(
                ErrorCode.NO_FACE, f"{decoded.source}: no face was detected", source=decoded.source
            )
        return analysis
