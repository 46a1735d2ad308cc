"""The native ``/v1`` protocol: the online calls of the reference face APIs, and the jobs.

Images come as JSON (``image``: base64 or a ``data:image/...;base64,`` URI; or ``url``: http(s)
/ s3) or as multipart file uploads (``UploadFile`` parameters, read within the body limit after
the credentials are checked: :class:`~pipeline.api.deps.BearerFirstRoute`). Each answer has its
Pydantic model (:mod:`pipeline.api.answers`), and each route declares what a scoped key needs
for it (:mod:`pipeline.api.scope`). Every error is ``{"error": {"code": int, "name": str,
"message": str}}`` with the catalogue's code (pipeline/errors.py) and an HTTP status from
:func:`pipeline.api_io.http_status`. Each model call fetches its images first (no model slot
held), then decodes and runs the models in a slot (:meth:`ApiState.with_model`).
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile

from pipeline.api import answers as a
from pipeline.api.answers import answers
from pipeline.api.calls import create_person_with_face
from pipeline.api.deps import (
    BearerFirstRoute,
    CallerDep,
    FieldsDep,
    PayloadDep,
    StateDep,
    require_bearer,
)
from pipeline.api.scope import Needs, enforce, split_values, visible_groups
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
    Upload,
    VerifyParams,
    check_url,
    image_source,
    image_sources,
    openapi_body,
    parse,
)
from pipeline.errors import ErrorCode, FacepipeError

# --- routes ------------------------------------------------------------------------------------

_ERRORS = {
    status: {"model": a.ErrorAnswer, "description": text}
    for status, text in (
        ("4XX", "The caller's error (catalogue code and name)."),
        ("5XX", "The service's state (database, broker, busy): retry later."),
    )
}
v1 = APIRouter(
    prefix="/v1",
    tags=["v1"],
    dependencies=[Depends(require_bearer)],
    route_class=BearerFirstRoute,
    responses=_ERRORS,  # type: ignore[arg-type]
)
_FACES_BODY = openapi_body(AddFacesParams, many=True)

ImageFile = Annotated[
    UploadFile | None, File(description="The image (multipart upload), instead of image/url.")
]
ImageFiles = Annotated[
    list[UploadFile] | None, File(description="Images (multipart uploads), in order.")
]


def needs(rule: Needs) -> list[Any]:
    """A route's scope check: the path, query and body fields it names. (A rule naming no
    field leaves the body to the route: the job routes read theirs as a whole.)"""

    async def check(
        request: Request, state: StateDep, caller: CallerDep, fields: FieldsDep
    ) -> None:
        def values(name: str) -> list[str]:
            if name in request.path_params:
                return [str(request.path_params[name])]
            if name in request.query_params:
                return request.query_params.getlist(name)
            return split_values(fields.get(name))

        await enforce(state, caller.scope, rule, values)

    async def check_call(state: StateDep, caller: CallerDep) -> None:
        await enforce(state, caller.scope, rule, lambda _: [])

    names_fields = bool(rule.groups or rule.persons or rule.faces)
    return [Depends(check if names_fields else check_call)]


_GROUPS = ("group_ids", "group_id")
_PERSON = Needs(persons=("person_id",))
_CHANGE_PERSON = Needs(write=True, persons=("person_id",))
_JOBS_READ = Needs(any_group=True)
_JOBS_WRITE = Needs(write=True, any_group=True)


async def with_uploads(
    fields: dict[str, Any], cap: int, **given: UploadFile | list[UploadFile] | None
) -> Payload:
    """The body as one :class:`Payload`: its fields and the uploads of the route's file
    parameters. An upload is read up to one byte past the image cap (the decode step then
    answers IMAGE_TOO_LARGE), never more."""
    files: dict[str, list[Upload]] = {}
    for name, parts in given.items():
        listed = parts if isinstance(parts, list) else [parts] if parts is not None else []
        for part in listed:
            data = await part.read(cap + 1)
            files.setdefault(name, []).append(Upload(part.filename or name, data))
    return Payload(fields, files)


@v1.post(
    "/detect",
    **answers(a.DetectAnswer),
    dependencies=needs(Needs()),
    openapi_extra=openapi_body(DetectParams),
)
async def detect(state: StateDep, fields: FieldsDep, image: ImageFile = None) -> dict[str, Any]:
    """Faces of one image: box, score, 5 landmarks, pose, quality (embedding on request).

    Fields: ``mode`` (``all``/0 or ``largest``/1), ``max_faces``, ``rotate``, ``embed``,
    ``attributes`` (default true: gender and age per face, null without an attribute model).
    No face is NO_FACE (-1101), as in the reference detect call.
    """
    from pipeline.cli.engine_cmds import face_json

    payload = await with_uploads(fields, state.settings.max_image_bytes, image=image)
    params = parse(DetectParams, payload.fields)
    source = image_source(payload, state.settings)
    fetched = await state.fetch(source)

    def run() -> dict[str, Any]:
        analysis = state.engine.analyze(
            [fetched.decode(state.settings)],
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

    return await state.with_model(run)


@v1.post(
    "/compare",
    **answers(a.CompareAnswer),
    dependencies=needs(Needs()),
    openapi_extra=openapi_body(None, ("image_a", "image_b")),
)
async def compare(
    state: StateDep, fields: FieldsDep, image_a: ImageFile = None, image_b: ImageFile = None
) -> dict[str, Any]:
    """Similarity (0-100) of the largest faces of two images: ``image_a``/``url_a`` (or file
    ``image_a``) and ``image_b``/``url_b``."""
    cap = state.settings.max_image_bytes
    payload = await with_uploads(fields, cap, image_a=image_a, image_b=image_b)
    a = image_source(payload, state.settings, "_a")
    b = image_source(payload, state.settings, "_b")
    fa, fb = await state.fetch_all([a, b])

    def run() -> dict[str, Any]:
        image_a, image_b = fa.decode(state.settings), fb.decode(state.settings)
        return state.library.compare(image_a, image_b).to_dict()

    return await state.with_model(run)


@v1.post(
    "/verify",
    **answers(a.VerifyAnswer),
    dependencies=needs(_PERSON),
    openapi_extra=openapi_body(VerifyParams),
)
async def verify(state: StateDep, fields: FieldsDep, image: ImageFile = None) -> dict[str, Any]:
    """Is the image's largest face ``person_id``? Confidence 0-100 and ``ismatch``."""
    payload = await with_uploads(fields, state.settings.max_image_bytes, image=image)
    params = parse(VerifyParams, payload.fields)
    source = image_source(payload, state.settings)
    fetched = await state.fetch(source)

    def run() -> dict[str, Any]:
        image = fetched.decode(state.settings)
        return state.library.verify(image, params.person_id).to_dict()

    return await state.with_model(run)


@v1.post(
    "/identify",
    **answers(a.IdentifyAnswer),
    dependencies=needs(Needs(groups=_GROUPS)),
    openapi_extra=openapi_body(IdentifyParams),
)
async def identify(state: StateDep, fields: FieldsDep, image: ImageFile = None) -> dict[str, Any]:
    """Top-N persons of ``group_ids`` for the image's largest face (every face with
    ``all_faces``), each person once with its best face and confidence."""
    payload = await with_uploads(fields, state.settings.max_image_bytes, image=image)
    params = parse(IdentifyParams, payload.fields)
    source = image_source(payload, state.settings)
    fetched = await state.fetch(source)

    def run() -> dict[str, Any]:
        result = state.library.identify(
            fetched.decode(state.settings),
            params.group_ids,
            params.top_n,
            all_faces=params.all_faces,
        )
        return result.to_dict()

    return await state.with_model(run)


# -- persons ------------------------------------------------------------------------------------


@v1.post(
    "/persons",
    status_code=201,
    **answers(a.CreatePersonAnswer),
    dependencies=needs(Needs(write=True, groups=_GROUPS)),
    openapi_extra=openapi_body(PersonCreate),
)
async def create_person(
    state: StateDep, fields: FieldsDep, image: ImageFile = None
) -> dict[str, Any]:
    """Create a person in ``group_ids`` (created implicitly), with ``name`` and ``tag``.

    With an image (``image``/``url``/file), its largest face is enrolled too, and the person is
    only created if that face is accepted (reference newperson).
    """
    payload = await with_uploads(fields, state.settings.max_image_bytes, image=image)
    params = parse(PersonCreate, payload.fields)
    with_image = bool(
        payload.files.get("image")
        or payload.fields.get("image") is not None
        or payload.fields.get("url") is not None
    )
    sources = image_sources(payload, state.settings)[:1] if with_image else []
    fetched = await state.fetch_all(sources)

    def run() -> dict[str, Any]:
        person, added = create_person_with_face(
            state.library,
            params.person_id,
            params.group_ids,
            params.name,
            params.tag,
            fetched[0].decode_or_error(state.settings) if fetched else None,
            quality_control=params.quality_control,
            face_match_threshold=params.face_match_threshold,
        )
        return {"person": person.to_dict(), **(added.to_dict() if added else {})}

    return await state.with_model(run)


@v1.get("/persons/{person_id}", **answers(a.PersonAnswer), dependencies=needs(_PERSON))
async def get_person(state: StateDep, person_id: str) -> dict[str, Any]:
    """Name, tag, groups and face ids of a person."""
    return await state.blocking(lambda: state.library.get_person(person_id).to_dict())


@v1.patch(
    "/persons/{person_id}",
    **answers(a.PersonAnswer),
    dependencies=needs(_CHANGE_PERSON),
    openapi_extra=openapi_body(PersonUpdate, ()),
)
async def update_person(state: StateDep, fields: FieldsDep, person_id: str) -> dict[str, Any]:
    """Set ``name`` and/or ``tag``."""
    params = parse(PersonUpdate, fields)

    def run() -> dict[str, Any]:
        info = state.library.set_person_info(person_id, params.name, params.tag)
        return info.to_dict()

    return await state.blocking(run)


@v1.delete(
    "/persons/{person_id}",
    **answers(a.PersonDeletedAnswer),
    dependencies=needs(Needs(write=True, groups=("group_id",), persons=("person_id",))),
)
async def delete_person(
    state: StateDep, person_id: str, group_id: Annotated[str | None, Query()] = None
) -> dict[str, Any]:
    """Delete a person with its faces; with ``?group_id=`` only take it out of that group
    (deleted if it was its only group)."""

    def run() -> dict[str, Any]:
        deleted = state.library.delete_person(person_id, group_id)
        return {"person_id": person_id, "deleted": deleted}

    return await state.blocking(run)


@v1.post(
    "/persons/{person_id}/groups",
    **answers(a.PersonAnswer),
    dependencies=needs(Needs(write=True, groups=_GROUPS, persons=("person_id",))),
    openapi_extra=openapi_body(GroupsBody, ()),
)
async def add_person_groups(state: StateDep, fields: FieldsDep, person_id: str) -> dict[str, Any]:
    """Put a person in more groups."""
    params = parse(GroupsBody, fields)

    def run() -> dict[str, Any]:
        info = state.library.add_person_to_groups(person_id, params.group_ids)
        return info.to_dict()

    return await state.blocking(run)


@v1.delete(
    "/persons/{person_id}/groups/{group_id}",
    **answers(a.PersonAnswer),
    dependencies=needs(Needs(write=True, groups=("group_id",), persons=("person_id",))),
)
async def remove_person_group(state: StateDep, person_id: str, group_id: str) -> dict[str, Any]:
    """Take a person out of one group (not its last one: delete the person instead)."""

    def run() -> dict[str, Any]:
        info = state.library.remove_person_from_group(person_id, group_id)
        return info.to_dict()

    return await state.blocking(run)


# -- faces --------------------------------------------------------------------------------------


@v1.get("/persons/{person_id}/faces", **answers(a.FaceIdsAnswer), dependencies=needs(_PERSON))
async def list_faces(state: StateDep, person_id: str) -> dict[str, Any]:
    """The face ids of a person, oldest first."""

    def run() -> dict[str, Any]:
        return {"person_id": person_id, "face_ids": state.library.list_faces(person_id)}

    return await state.blocking(run)


async def _add_faces(
    state: StateDep, payload: Payload, person_id: str, *, replace: bool
) -> dict[str, Any]:
    params = parse(AddFacesParams, payload.fields)
    sources = image_sources(payload, state.settings)
    fetched = await state.fetch_all(sources)

    def run() -> dict[str, Any]:
        method = state.library.replace_faces if replace else state.library.add_faces
        result = method(
            person_id,
            [f.decode_or_error(state.settings) for f in fetched],
            quality_control=params.quality_control,
            face_match_threshold=params.face_match_threshold,
        )
        return result.to_dict()

    return await state.with_model(run)


@v1.post(
    "/persons/{person_id}/faces",
    **answers(a.AddFacesAnswer),
    dependencies=needs(_CHANGE_PERSON),
    openapi_extra=_FACES_BODY,
)
async def add_faces(
    state: StateDep,
    fields: FieldsDep,
    person_id: str,
    image: ImageFiles = None,
    images: ImageFiles = None,
) -> dict[str, Any]:
    """Add N images to a person: one result code per image (``RetCode``), with the reference
    rules (largest face, ``quality_control`` 0-4, ``face_match_threshold``, near-duplicates,
    the per-person cap)."""
    cap = state.settings.max_image_bytes
    payload = await with_uploads(fields, cap, image=image, images=images)
    return await _add_faces(state, payload, person_id, replace=False)


@v1.put(
    "/persons/{person_id}/faces",
    **answers(a.AddFacesAnswer),
    dependencies=needs(_CHANGE_PERSON),
    openapi_extra=_FACES_BODY,
)
async def replace_faces(
    state: StateDep,
    fields: FieldsDep,
    person_id: str,
    image: ImageFiles = None,
    images: ImageFiles = None,
) -> dict[str, Any]:
    """Replace all of a person's faces by those of the images (kept if none is accepted)."""
    cap = state.settings.max_image_bytes
    payload = await with_uploads(fields, cap, image=image, images=images)
    return await _add_faces(state, payload, person_id, replace=True)


@v1.delete(
    "/persons/{person_id}/faces",
    **answers(a.FacesDeletedAnswer),
    dependencies=needs(_CHANGE_PERSON),
    openapi_extra=openapi_body(DeleteFacesBody, ()),
)
async def delete_faces(state: StateDep, fields: FieldsDep, person_id: str) -> dict[str, Any]:
    """Delete the faces ``face_ids`` of a person."""
    params = parse(DeleteFacesBody, fields)

    def run() -> dict[str, Any]:
        deleted = state.library.delete_faces(person_id, params.face_ids)
        return {"person_id": person_id, "deleted": deleted}

    return await state.blocking(run)


@v1.delete(
    "/persons/{person_id}/faces/{face_id}",
    **answers(a.FacesDeletedAnswer),
    dependencies=needs(_CHANGE_PERSON),
)
async def delete_face(state: StateDep, person_id: str, face_id: str) -> dict[str, Any]:
    """Delete one face of a person."""

    def run() -> dict[str, Any]:
        return {"person_id": person_id, "deleted": state.library.delete_faces(person_id, [face_id])}

    return await state.blocking(run)


@v1.get("/faces/{face_id}", **answers(a.FaceAnswer), dependencies=needs(Needs(faces=("face_id",))))
async def get_face(state: StateDep, face_id: str) -> dict[str, Any]:
    """An enrolled face's record (box, landmarks, quality, model, source)."""
    return await state.blocking(lambda: state.library.get_face(face_id).to_dict())


@v1.get(
    "/faces/{face_id}/crop",
    response_class=Response,
    dependencies=needs(Needs(faces=("face_id",))),
    responses={
        200: {
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            "description": "The crop as PNG.",
        }
    },
)
async def get_face_crop(state: StateDep, face_id: str) -> Response:
    """The stored aligned 112x112 crop of a face, as PNG."""
    from pipeline.store.crops import encode_crop

    crop = await state.blocking(lambda: state.library.get_face_crop(face_id))
    return Response(encode_crop(crop, "png"), media_type="image/png")


# -- groups -------------------------------------------------------------------------------------


@v1.get("/groups", **answers(a.GroupPage), dependencies=needs(Needs()))
async def list_groups(
    state: StateDep,
    caller: CallerDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1)] = 100,
) -> dict[str, Any]:
    """A page of groups with their person counts (a key limited to groups: those groups)."""

    def run() -> dict[str, Any]:
        return visible_groups(state.library, caller.scope, offset, limit).to_dict()

    return await state.blocking(run)


@v1.get(
    "/groups/{group_id}/persons",
    **answers(a.PersonPage),
    dependencies=needs(Needs(groups=("group_id",))),
)
async def list_group_persons(
    state: StateDep,
    group_id: str,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1)] = 100,
) -> dict[str, Any]:
    """A page of the persons of a group."""

    def run() -> dict[str, Any]:
        return state.library.list_persons(group_id, offset, limit).to_dict()

    return await state.blocking(run)


# -- jobs ---------------------------------------------------------------------------------------


@v1.get("/jobs", **answers(a.JobList), dependencies=needs(_JOBS_READ))
async def list_jobs(
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    status: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    """Newest jobs first, with counts and throughput."""
    from pipeline.jobs.model import JobStatus
    from pipeline.store import jobs as store

    try:
        wanted = JobStatus(status) if status else None
    except ValueError as exc:
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, f"unknown job status {status!r}") from exc

    def run() -> dict[str, Any]:
        with state.db.connection() as conn:
            jobs = store.list_jobs(conn, limit=limit, status=wanted)
        return {"jobs": [j.to_dict() for j in jobs]}

    return await state.blocking(run)


@v1.get("/jobs/{job_id}", **answers(a.JobDetail), dependencies=needs(_JOBS_READ))
async def show_job(
    state: StateDep,
    job_id: str,
    items: Annotated[int, Query(ge=0, le=1000)] = 20,
    failed: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    """A job with its error counts by code and up to ``items`` of its items; a
    re-identification (reidentify or identify-batch) also with its ``summary``: faces matched at
    its threshold and how many of them to expect to be false given the gallery's size."""
    from pipeline.jobs.model import ItemStatus, JobKind
    from pipeline.jobs.reid_threshold import reidentify_summary
    from pipeline.store import jobs as store

    def run() -> dict[str, Any]:
        with state.db.connection() as conn:
            job = store.get_job(conn, job_id)
            errors = store.error_counts(conn, job.id)
            rows = (
                store.list_items(
                    conn, job.id, status=ItemStatus.FAILED if failed else None, limit=items
                )
                if items
                else []
            )
            extra: dict[str, Any] = {}
            if job.kind in (JobKind.REIDENTIFY, JobKind.IDENTIFY_BATCH):
                extra["summary"] = reidentify_summary(
                    conn, job.id, job.params, state.engine.model_id, state.settings
                )
        return (
            job.to_dict() | extra | {"errors": errors, "items_shown": [r.to_dict() for r in rows]}
        )

    return await state.blocking(run)


@v1.post("/jobs/{job_id}/cancel", **answers(a.JobAnswer), dependencies=needs(_JOBS_WRITE))
async def cancel_job(state: StateDep, job_id: str) -> dict[str, Any]:
    """Cancel a pending or running job."""
    from pipeline.store import jobs as store

    def run() -> dict[str, Any]:
        with state.db.transaction() as conn:
            return store.cancel_job(conn, job_id).to_dict()

    return await state.blocking(run)


@v1.post(
    "/jobs/enroll",
    status_code=202,
    **answers(a.JobAnswer),
    dependencies=needs(_JOBS_WRITE),
    openapi_extra=openapi_body(EnrollJob, ()),
)
async def submit_enroll(state: StateDep, payload: PayloadDep) -> dict[str, Any]:
    """Enrol every face of ``source`` (an s3:// prefix or an http(s) URL list) into
    ``group_ids``; the job runs on the workers. ``idempotency_key`` makes retries safe."""
    from pipeline.jobs.model import JobKind, Origin
    from pipeline.jobs.submit import submit_job

    params = parse(EnrollJob, payload.fields)
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
        return job.to_dict()

    return await state.blocking(run)


@v1.post(
    "/jobs/reidentify",
    status_code=202,
    **answers(a.JobAnswer),
    dependencies=needs(_JOBS_WRITE),
    openapi_extra=openapi_body(ReidentifyJob, ()),
)
async def submit_reidentify(state: StateDep, payload: PayloadDep) -> dict[str, Any]:
    """Identify every face of ``source`` (or of observations stored ``since``) against
    ``group_ids``; matches go to Postgres and, with ``export``, to JSON Lines."""
    from pipeline.jobs.exportdest import parse_export_destination
    from pipeline.jobs.model import JobKind, Origin
    from pipeline.jobs.submit import submit_job
    from pipeline.sources.location import Trust

    params = parse(ReidentifyJob, payload.fields)
    if (params.source is None) == (params.since is None):
        raise FacepipeError(ErrorCode.ILLEGAL_PARAMETER, "give either source or since")
    source = check_url(params.source, state.settings) if params.source else None
    # s3://bucket/key or a name under the export folder, never a path of the caller's choosing
    export = (
        parse_export_destination(params.export, state.settings, Trust.CALLER).text
        if params.export
        else None
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
            match_threshold=params.match_threshold,
            false_match_rate=params.false_match_rate,
        )
        return job.to_dict()

    return await state.blocking(run)


@v1.post("/events/s3", **answers(a.S3EventAnswer), dependencies=needs(_JOBS_WRITE))
async def s3_event(state: StateDep, payload: PayloadDep) -> dict[str, Any]:
    """S3 event notifications (``{"Records": [...]}``, e.g. a MinIO webhook) -> jobs, by the
    key rules (FACEPIPE_S3_KEY_RULES). The same event delivered twice yields the same jobs."""
    from pipeline.jobs.s3_listener import submit_objects
    from pipeline.s3events import parse_event

    event = payload.fields

    def run() -> dict[str, Any]:
        parsed = parse_event(_aws_event_names(event))
        if parsed.test_event:
            return {"jobs": [], "dropped": "s3:TestEvent"}
        # The same objects give the same idempotency key, hence the same jobs on redelivery.
        identities = "\n".join(sorted(o.identity for o in parsed.objects))
        origin = hashlib.sha256(identities.encode()).hexdigest()[:32]
        handled = submit_objects(parsed.objects, f"http-{origin}", rt=state)
        return {"jobs": list(handled.jobs), "ignored": handled.ignored}

    return await state.blocking(run)


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
