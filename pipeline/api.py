"""The HTTP API (FastAPI): the online calls of the reference face APIs, and the jobs.

``facepipe api`` serves :func:`create_app`. Images come as JSON (``image``: base64 or a
``data:image/...;base64,`` URI; or ``url``: http(s) / s3) or as multipart file uploads. Every
error is ``{"error": {"code": int, "name": str, "message": str}}`` with the catalogue's code
(pipeline/errors.py) and an HTTP status from :func:`pipeline.api_io.http_status`.

Models and the database pool load once per process, at start-up. Calls that run the models are
executed in worker threads, at most :data:`ENGINE_CONCURRENCY` at a time (ONNX Runtime already
uses every core for one call; more concurrent calls would only thrash).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.api_io import (
    AddFacesParams,
    DeleteFacesBody,
    DetectParams,
    EnrollJob,
    GroupsBody,
    IdentifyParams,
    Payload,
    PersonCreate,
    PersonUpdate,
    ReidentifyJob,
    VerifyParams,
    check_url,
    error_body,
    http_status,
    image_source,
    image_sources,
    load,
    openapi_body,
    parse,
    read_payload,
    token_ok,
)
from pipeline.config import Settings, get_settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.jobs.runtime import Runtime
from pipeline.observability.http import instrument  # issue 14
from pipeline.observability.metrics import MODEL_SLOT_WAIT  # issue 14

logger = logging.getLogger(__name__)

ENGINE_CONCURRENCY = 2
"""Model-running calls executed at once per API process."""

T = TypeVar("T")


class ApiState(Runtime):
    """The jobs' :class:`Runtime` (settings, lazily built engine, database and library) plus
    the API's limit on concurrent model calls. A database handed in stays the caller's to close.
    """

    def __init__(
        self, settings: Settings, engine: Any | None = None, database: Any | None = None
    ) -> None:
        super().__init__(settings, db=database, engine=engine)
        self._owns_db = database is None
        self.limiter = anyio.CapacityLimiter(ENGINE_CONCURRENCY)

    def close(self) -> None:
        if self._owns_db:
            super().close()


def _state(request: Request) -> ApiState:
    return request.app.state.facepipe  # type: ignore[no-any-return]


async def _models(state: ApiState, fn: Callable[[], T]) -> T:
    """Run model work (decode, detect, embed, then the database) in a worker thread, at most
    ENGINE_CONCURRENCY at once."""
    waited = time.perf_counter()  # issue 14: time to a model slot (the thread starting fn)

    def timed() -> T:
        MODEL_SLOT_WAIT.observe(time.perf_counter() - waited)
        return fn()

    return await anyio.to_thread.run_sync(timed, limiter=state.limiter)


async def _blocking(fn: Callable[[], T]) -> T:
    """Run database-only work in a worker thread (never queued behind model calls)."""
    return await anyio.to_thread.run_sync(fn)


async def _payload(request: Request) -> Payload:
    return await read_payload(request, _state(request).settings)


def _require_token(request: Request) -> None:
    if not token_ok(_state(request).settings, request.headers.get("authorization")):
        raise _Unauthorized


class _Unauthorized(Exception):
    """The call lacks the configured API token (answered 401)."""


def _error_response(exc: FacepipeError, status: int | None = None) -> JSONResponse:
    return JSONResponse(error_body(exc), status_code=status or http_status(exc.code))


def _raise_first_error(result: Any) -> None:
    """Turn an add-faces result whose one image failed into that image's error."""
    err = result.errors[0] if result.errors else None
    if err is not None:
        raise FacepipeError(ErrorCode(err["name"]), err["message"])


# --- routes ------------------------------------------------------------------------------------

v1 = APIRouter(prefix="/v1", dependencies=[Depends(_require_token)])
_FACES_BODY = openapi_body(AddFacesParams, many=True)


@v1.post("/detect", openapi_extra=openapi_body(DetectParams))
async def detect(request: Request) -> dict[str, Any]:
    """Faces of one image: box, score, 5 landmarks, pose, quality (embedding on request).

    Fields: ``mode`` (``all``/0 or ``largest``/1), ``max_faces``, ``rotate``, ``embed``,
    ``attributes`` (default true: gender and age per face, null without an attribute model).
    No face is NO_FACE (-1101), as in the reference detect call.
    """
    from pipeline.cli.engine_cmds import face_json

    state = _state(request)
    payload = await _payload(request)
    params = parse(DetectParams, payload.fields)
    source = image_source(payload, state.settings)

    def run() -> dict[str, Any]:
        image = load(source, state.settings)
        analysis = state.engine.analyze(
            [image],
            mode=params.mode,
            embed=params.embed,
            max_faces=params.max_faces,
            rotate=params.rotate,
            attributes=params.attributes,
        )[0]
        if not analysis.faces:
            raise FacepipeError(ErrorCode.NO_FACE, source=analysis.source)
        return {
            "source": analysis.source,
            "width": analysis.width,
            "height": analysis.height,
            "model": analysis.model_id,
            "faces": [
                face_json(f, with_embedding=params.embed, with_attributes=params.attributes)
                for f in analysis.faces
            ],
            "timings_ms": {k: round(v, 2) for k, v in analysis.timings_ms.items()},
        }

    return await _models(state, run)


@v1.post("/compare", openapi_extra=openapi_body(None, ("image_a", "image_b")))
async def compare(request: Request) -> dict[str, Any]:
    """Similarity (0-100) of the largest faces of two images: ``image_a``/``url_a`` (or file
    ``image_a``) and ``image_b``/``url_b``."""
    state = _state(request)
    payload = await _payload(request)
    a = image_source(payload, state.settings, "_a")
    b = image_source(payload, state.settings, "_b")

    def run() -> dict[str, Any]:
        image_a, image_b = load(a, state.settings), load(b, state.settings)
        return state.library.compare(image_a, image_b).to_dict()

    return await _models(state, run)


@v1.post("/verify", openapi_extra=openapi_body(VerifyParams))
async def verify(request: Request) -> dict[str, Any]:
    """Is the image's largest face ``person_id``? Confidence 0-100 and ``ismatch``."""
    state = _state(request)
    payload = await _payload(request)
    params = parse(VerifyParams, payload.fields)
    source = image_source(payload, state.settings)

    def run() -> dict[str, Any]:
        return state.library.verify(load(source, state.settings), params.person_id).to_dict()

    return await _models(state, run)


@v1.post("/identify", openapi_extra=openapi_body(IdentifyParams))
async def identify(request: Request) -> dict[str, Any]:
    """Top-N persons of ``group_ids`` for the image's largest face (every face with
    ``all_faces``), each person once with its best face and confidence."""
    state = _state(request)
    payload = await _payload(request)
    params = parse(IdentifyParams, payload.fields)
    source = image_source(payload, state.settings)

    def run() -> dict[str, Any]:
        result = state.library.identify(
            load(source, state.settings),
            params.group_ids,
            params.top_n,
            all_faces=params.all_faces,
        )
        return result.to_dict()  # type: ignore[no-any-return]

    return await _models(state, run)


# -- persons ------------------------------------------------------------------------------------


@v1.post("/persons", status_code=201, openapi_extra=openapi_body(PersonCreate))
async def create_person(request: Request) -> dict[str, Any]:
    """Create a person in ``group_ids`` (created implicitly), with ``name`` and ``tag``.

    With an image (``image``/``url``/file), its largest face is enrolled too, and the person is
    only created if that face is accepted (reference newperson).
    """
    state = _state(request)
    payload = await _payload(request)
    params = parse(PersonCreate, payload.fields)
    with_image = bool(
        payload.files.get("image") or payload.fields.get("image") is not None
        or payload.fields.get("url") is not None
    )
    sources = image_sources(payload, state.settings)[:1] if with_image else []

    def run() -> dict[str, Any]:
        library = state.library
        person = library.create_person(params.person_id, params.group_ids, params.name, params.tag)
        out: dict[str, Any] = {"person": person.to_dict()}
        if sources:
            try:
                added = library.add_faces(
                    params.person_id,
                    sources,
                    quality_control=params.quality_control,
                    face_match_threshold=params.face_match_threshold,
                )
                _raise_first_error(added)
            except FacepipeError:
                library.delete_person(params.person_id)
                raise
            out = {"person": library.get_person(params.person_id).to_dict(), **added.to_dict()}
        return out

    return await _models(state, run)


@v1.get("/persons/{person_id}")
async def get_person(request: Request, person_id: str) -> dict[str, Any]:
    """Name, tag, groups and face ids of a person."""
    state = _state(request)
    return await _blocking(lambda: state.library.get_person(person_id).to_dict())


@v1.patch("/persons/{person_id}", openapi_extra=openapi_body(PersonUpdate, ()))
async def update_person(request: Request, person_id: str) -> dict[str, Any]:
    """Set ``name`` and/or ``tag``."""
    state = _state(request)
    params = parse(PersonUpdate, (await _payload(request)).fields)

    def run() -> dict[str, Any]:
        info = state.library.set_person_info(person_id, params.name, params.tag)
        return info.to_dict()  # type: ignore[no-any-return]

    return await _blocking(run)


@v1.delete("/persons/{person_id}")
async def delete_person(
    request: Request, person_id: str, group_id: str | None = Query(default=None)
) -> dict[str, Any]:
    """Delete a person with its faces; with ``?group_id=`` only take it out of that group
    (deleted if it was its only group)."""
    state = _state(request)

    def run() -> dict[str, Any]:
        deleted = state.library.delete_person(person_id, group_id)
        return {"person_id": person_id, "deleted": deleted}

    return await _blocking(run)


@v1.post("/persons/{person_id}/groups", openapi_extra=openapi_body(GroupsBody, ()))
async def add_person_groups(request: Request, person_id: str) -> dict[str, Any]:
    """Put a person in more groups."""
    state = _state(request)
    params = parse(GroupsBody, (await _payload(request)).fields)

    def run() -> dict[str, Any]:
        info = state.library.add_person_to_groups(person_id, params.group_ids)
        return info.to_dict()  # type: ignore[no-any-return]

    return await _blocking(run)


@v1.delete("/persons/{person_id}/groups/{group_id}")
async def remove_person_group(request: Request, person_id: str, group_id: str) -> dict[str, Any]:
    """Take a person out of one group (not its last one: delete the person instead)."""
    state = _state(request)

    def run() -> dict[str, Any]:
        info = state.library.remove_person_from_group(person_id, group_id)
        return info.to_dict()  # type: ignore[no-any-return]

    return await _blocking(run)


# -- faces --------------------------------------------------------------------------------------


@v1.get("/persons/{person_id}/faces")
async def list_faces(request: Request, person_id: str) -> dict[str, Any]:
    """The face ids of a person, oldest first."""
    state = _state(request)

    def run() -> dict[str, Any]:
        return {"person_id": person_id, "face_ids": state.library.list_faces(person_id)}

    return await _blocking(run)


async def _add_faces(request: Request, person_id: str, *, replace: bool) -> dict[str, Any]:
    state = _state(request)
    payload = await _payload(request)
    params = parse(AddFacesParams, payload.fields)
    sources = image_sources(payload, state.settings)

    def run() -> dict[str, Any]:
        method = state.library.replace_faces if replace else state.library.add_faces
        result = method(
            person_id,
            sources,
            quality_control=params.quality_control,
            face_match_threshold=params.face_match_threshold,
        )
        return result.to_dict()  # type: ignore[no-any-return]

    return await _models(state, run)


@v1.post("/persons/{person_id}/faces", openapi_extra=_FACES_BODY)
async def add_faces(request: Request, person_id: str) -> dict[str, Any]:
    """Add N images to a person: one result code per image (``RetCode``), with the reference
    rules (largest face, ``quality_control`` 0-4, ``face_match_threshold``, near-duplicates,
    the per-person cap)."""
    return await _add_faces(request, person_id, replace=False)


@v1.put("/persons/{person_id}/faces", openapi_extra=_FACES_BODY)
async def replace_faces(request: Request, person_id: str) -> dict[str, Any]:
    """Replace all of a person's faces by those of the images (kept if none is accepted)."""
    return await _add_faces(request, person_id, replace=True)


@v1.delete("/persons/{person_id}/faces", openapi_extra=openapi_body(DeleteFacesBody, ()))
async def delete_faces(request: Request, person_id: str) -> dict[str, Any]:
    """Delete the faces ``face_ids`` of a person."""
    state = _state(request)
    params = parse(DeleteFacesBody, (await _payload(request)).fields)

    def run() -> dict[str, Any]:
        deleted = state.library.delete_faces(person_id, params.face_ids)
        return {"person_id": person_id, "deleted": deleted}

    return await _blocking(run)


@v1.delete("/persons/{person_id}/faces/{face_id}")
async def delete_face(request: Request, person_id: str, face_id: str) -> dict[str, Any]:
    """Delete one face of a person."""
    state = _state(request)

    def run() -> dict[str, Any]:
        return {"person_id": person_id, "deleted": state.library.delete_faces(person_id, [face_id])}

    return await _blocking(run)


@v1.get("/faces/{face_id}")
async def get_face(request: Request, face_id: str) -> dict[str, Any]:
    """An enrolled face's record (box, landmarks, quality, model, source)."""
    state = _state(request)
    return await _blocking(lambda: state.library.get_face(face_id).to_dict())


@v1.get("/faces/{face_id}/crop", response_class=Response)
async def get_face_crop(request: Request, face_id: str) -> Response:
    """The stored aligned 112x112 crop of a face, as PNG."""
    from pipeline.store.crops import encode_crop

    state = _state(request)
    crop = await _blocking(lambda: state.library.get_face_crop(face_id))
    return Response(encode_crop(crop, "png"), media_type="image/png")


# -- groups -------------------------------------------------------------------------------------


@v1.get("/groups")
async def list_groups(
    request: Request, offset: int = Query(default=0, ge=0), limit: int = Query(default=100, ge=1)
) -> dict[str, Any]:
    """A page of groups with their person counts."""
    state = _state(request)
    return await _blocking(lambda: state.library.list_groups(offset, limit).to_dict())


@v1.get("/groups/{group_id}/persons")
async def list_group_persons(
    request: Request,
    group_id: str,
    offset: int = Query(default=0, ge=0),
    limit: int = Query(default=100, ge=1),
) -> dict[str, Any]:
    """A page of the persons of a group."""
    state = _state(request)

    def run() -> dict[str, Any]:
        return state.library.list_persons(group_id, offset, limit).to_dict()  # type: ignore[no-any-return]

    return await _blocking(run)


# -- jobs ---------------------------------------------------------------------------------------


@v1.get("/jobs")
async def list_jobs(
    request: Request,
    limit: int = Query(default=20, ge=1, le=1000),
    status: str | None = Query(default=None),
) -> dict[str, Any]:
    """Newest jobs first, with counts and throughput."""
    from pipeline.jobs import store
    from pipeline.jobs.model import JobStatus

    state = _state(request)
    try:
        wanted = JobStatus(status) if status else None
    except ValueError as exc:
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"unknown job status {status!r}") from exc

    def run() -> dict[str, Any]:
        with state.db.connection() as conn:
            jobs = store.list_jobs(conn, limit=limit, status=wanted)
        return {"jobs": [j.to_dict() for j in jobs]}

    return await _blocking(run)


@v1.get("/jobs/{job_id}")
async def show_job(
    request: Request,
    job_id: str,
    items: int = Query(default=20, ge=0, le=1000),
    failed: bool = Query(default=False),
) -> dict[str, Any]:
    """A job with its error counts by code and up to ``items`` of its items."""
    from pipeline.jobs import store
    from pipeline.jobs.model import ItemStatus

    state = _state(request)

    def run() -> dict[str, Any]:
        with state.db.connection() as conn:
            job = store.get_job(conn, job_id)
            errors = store.error_counts(conn, job.id)
            rows = store.list_items(
                conn, job.id, status=ItemStatus.FAILED if failed else None, limit=items
            ) if items else []
        return job.to_dict() | {"errors": errors, "items_shown": [r.to_dict() for r in rows]}

    return await _blocking(run)


@v1.post("/jobs/{job_id}/cancel")
async def cancel_job(request: Request, job_id: str) -> dict[str, Any]:
    """Cancel a pending or running job."""
    from pipeline.jobs import store

    state = _state(request)

    def run() -> dict[str, Any]:
        with state.db.transaction() as conn:
            return store.cancel_job(conn, job_id).to_dict()  # type: ignore[no-any-return]

    return await _blocking(run)


@v1.post("/jobs/enroll", status_code=202, openapi_extra=openapi_body(EnrollJob, ()))
async def submit_enroll(request: Request) -> dict[str, Any]:
    """Enrol every face of ``source`` (an s3:// prefix or an http(s) URL list) into
    ``group_ids``; the job runs on the workers. ``idempotency_key`` makes retries safe."""
    from pipeline.jobs.model import JobKind, Origin
    from workers.submit import submit_job

    state = _state(request)
    params = parse(EnrollJob, (await _payload(request)).fields)
    source = check_url(params.source, state.settings)
    manifest = check_url(params.manifest, state.settings) if params.manifest else None

    def run() -> dict[str, Any]:
        job = submit_job(
            JobKind.ENROLL,
            source,
            origin=Origin.HTTP,
            groups=params.group_ids,
            manifest=manifest,
            person_id=params.person_id,
            idempotency_key=params.idempotency_key,
            rt=state,
        )
        return job.to_dict()  # type: ignore[no-any-return]

    return await _blocking(run)


@v1.post("/jobs/reidentify", status_code=202, openapi_extra=openapi_body(ReidentifyJob, ()))
async def submit_reidentify(request: Request) -> dict[str, Any]:
    """Identify every face of ``source`` (or of observations stored ``since``) against
    ``group_ids``; matches go to Postgres and, with ``export``, to JSON Lines."""
    from pipeline.jobs.exportdest import parse_export_destination
    from pipeline.jobs.model import JobKind, Origin
    from pipeline.sources.location import Trust
    from workers.submit import submit_job

    state = _state(request)
    params = parse(ReidentifyJob, (await _payload(request)).fields)
    if (params.source is None) == (params.since is None):
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, "give either source or since")
    source = check_url(params.source, state.settings) if params.source else None
    # s3://bucket/key or a name under the export folder, never a path of the caller's choosing
    export = (
        parse_export_destination(params.export, state.settings, Trust.CALLER).text
        if params.export else None
    )
    groups = params.group_ids or state.settings.reidentify_groups

    def run() -> dict[str, Any]:
        job = submit_job(
            JobKind.REIDENTIFY,
            source,
            origin=Origin.HTTP,
            groups=groups,
            export=export,
            since=params.since,
            top_n=params.top_n,
            idempotency_key=params.idempotency_key,
            rt=state,
        )
        return job.to_dict()  # type: ignore[no-any-return]

    return await _blocking(run)


@v1.post("/events/s3")
async def s3_event(request: Request) -> dict[str, Any]:
    """S3 event notifications (``{"Records": [...]}``, e.g. a MinIO webhook) -> jobs, by the
    key rules (FACEPIPE_S3_KEY_RULES). The same event delivered twice yields the same jobs."""
    from pipeline.s3events import parse_event
    from workers.s3_listener import submit_objects

    state = _state(request)
    event = (await _payload(request)).fields

    def run() -> dict[str, Any]:
        parsed = parse_event(_aws_event_names(event))
        if parsed.test_event:
            return {"jobs": [], "dropped": "s3:TestEvent"}
        # The same objects give the same idempotency key, hence the same jobs on redelivery.
        identities = "\n".join(sorted(o.identity for o in parsed.objects))
        origin = hashlib.sha256(identities.encode()).hexdigest()[:32]
        handled = submit_objects(parsed.objects, f"http-{origin}", rt=state)
        return {"jobs": list(handled.jobs), "ignored": handled.ignored}

    return await _blocking(run)


def _aws_event_names(event: dict[str, Any]) -> dict[str, Any]:
    """MinIO names records ``s3:ObjectCreated:Put``, AWS (and the parser) ``ObjectCreated:Put``."""
    records = event.get("Records")
    if not isinstance(records, list):
        return event
    fixed = [
        {**r, "eventName": r["eventName"].removeprefix("s3:")}
        if isinstance(r, dict) and isinstance(r.get("eventName"), str)
        else r
        for r in records
    ]
    return {**event, "Records": fixed}


# --- the application -------------------------------------------------------------------------


def create_app(
    settings: Settings | None = None,
    *,
    engine: Any | None = None,
    database: Any | None = None,
    preload: bool = True,
) -> FastAPI:
    """The FastAPI application. ``engine`` and ``database`` default to ones built from
    ``settings`` (a database given here is not closed by the app). With ``preload`` the models
    and the pool are created at start-up, so the first call is not slow and /healthz is true."""
    state = ApiState(settings or get_settings(), engine, database)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if preload:
            await anyio.to_thread.run_sync(lambda: (state.engine, state.db))
        try:
            yield
        finally:
            state.close()

    app = FastAPI(
        title="facepipe",
        version="0.1.0",
        summary="Face detection, comparison, verification, identification and the face library.",
        lifespan=lifespan,
    )
    app.state.facepipe = state

    @app.exception_handler(FacepipeError)
    async def _facepipe_error(_: Request, exc: FacepipeError) -> JSONResponse:
        if exc.code is ErrorCode.INTERNAL or exc.retryable:
            logger.warning("request failed: %s", exc)
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        return _error_response(
            FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"{where}: {first.get('msg', 'invalid')}")
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return _error_response(FacepipeError(ErrorCode.ILLEGAL_PARAMETER, message), exc.status_code)

    @app.exception_handler(_Unauthorized)
    async def _unauthorized(_: Request, __: _Unauthorized) -> JSONResponse:
        exc = FacepipeError(
            ErrorCode.ILLEGAL_PARAMETER, "missing or wrong API token (Authorization: Bearer ...)"
        )
        return JSONResponse(
            error_body(exc), status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Deliberately broad: whatever escapes a route still answers in the catalogue's shape.
        logger.exception("unhandled error in a request")
        return _error_response(FacepipeError(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"))

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """Liveness and readiness: the models are loaded and the database answers."""

        def check() -> dict[str, Any]:
            with state.db.connection() as conn:
                conn.execute("SELECT 1")
            return {"status": "ok", "model": state.engine.model_id, "database": "ok"}

        try:
            return JSONResponse(await anyio.to_thread.run_sync(check))
        except FacepipeError as exc:
            return _error_response(exc, 503)

    app.include_router(v1)
    instrument(app)  # issue 14: HTTP metrics + request ids middleware, GET /metrics
    return app
