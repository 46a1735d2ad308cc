"""Request images in two steps: fetch the bytes (no model slot held), then decode in a slot.

A caller's URL may be slow to answer; downloading it inside a model slot would stall every other
call behind it. So each route first turns its images into :class:`Fetched` values in a worker
thread without the slot limiter (URLs downloaded, base64 decoded, uploads taken as they are), and
only then takes a model slot to decode and run the models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.api_io import Upload
from pipeline.config import Settings
from pipeline.errors import FacepipeError
from pipeline.sources.location import InlineLocation, Location, Trust
from pipeline.types import DecodedImage


@dataclass(frozen=True)
class Fetched:
    """One request image after the fetch step: its bytes, or the error reading it gave."""

    label: str
    data: bytes | None = None
    error: FacepipeError | None = None

    def decode(self, settings: Settings) -> DecodedImage:
        """The decoded image (call it in a model slot); raises the fetch error if there was one.

        A big JPEG is decoded at a reduced scale (``reduced_decode``), as in the bulk path: the
        engine goes to full resolution for the faces that need it."""
        from pipeline.sources import decode_image
        from pipeline.sources.decode import decode_image_reduced

        if self.error is not None:
            raise self.error
        assert self.data is not None
        if settings.reduced_decode:
            return decode_image_reduced(self.data, self.label, settings, settings.det_size)
        return decode_image(self.data, source=self.label, settings=settings)

    def decode_or_error(self, settings: Settings) -> DecodedImage | FacepipeError:
        """For multi-image calls, where one bad image is that image's result code."""
        try:
            return self.decode(settings)
        except FacepipeError as exc:
            return exc


ImageSource = str | Location | Upload
"""A request image: an upload, a caller's location parsed once, or (jobs) its canonical text."""


def is_remote(source: ImageSource) -> bool:
    """Must this image be fetched over the network (an http(s) URL, an S3 object)?"""
    if isinstance(source, Upload | InlineLocation):
        return False
    return not (isinstance(source, str) and source[:8].lower().startswith(("base64:", "data:")))


def fetch(source: ImageSource, settings: Settings) -> Fetched:
    """Read one request image's bytes (blocking: call it in a worker thread, not in a slot).

    ``source`` is an upload, or a location already parsed (or checked by
    :func:`pipeline.api_io.check_url`) for a caller: it is read as a caller's, so nothing it
    says can name a local file."""
    from pipeline.sources import read_source_bytes
    from pipeline.sources.reader import source_label

    if isinstance(source, Upload):
        return Fetched(source.filename, source.data)
    label = source_label(source)
    try:
        return Fetched(label, read_source_bytes(source, settings, Trust.CALLER))
    except FacepipeError as exc:
        return Fetched(label, error=exc)


def fetch_all(sources: Sequence[ImageSource], settings: Settings) -> list[Fetched]:
    return [fetch(s, settings) for s in sources]
