"""Library commands: ``facepipe person|group|face|db ...``, ``facepipe verify`` and ``identify``.

Every command prints a short human-readable answer, or JSON with ``--json``. A refusal prints its
catalogue code and message (on stderr, or as ``{"error": {...}}`` with ``--json``) and exits 1.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer

from pipeline.cli.app import app
from pipeline.config import get_settings
from pipeline.errors import FacepipeError, error_dict

logger = logging.getLogger(__name__)

person_app = typer.Typer(help="Create, inspect, change and delete persons.", no_args_is_help=True)
group_app = typer.Typer(help="List groups (created implicitly with persons).", no_args_is_help=True)
face_app = typer.Typer(help="Add, list, inspect and delete a person's faces.", no_args_is_help=True)
db_app = typer.Typer(help="The library database (Postgres + pgvector).", no_args_is_help=True)
app.add_typer(person_app, name="person")
app.add_typer(group_app, name="group")
app.add_typer(face_app, name="face")
app.add_typer(db_app, name="db")

JSON_OPT = typer.Option(False, "--json", help="Print JSON.")
PERSON_ARG = typer.Argument(..., help="Person id.", show_default=False)
OFFSET_OPT = typer.Option(0, "--offset", help="Skip this many (paging; >= 0).")
LIMIT_OPT = typer.Option(100, "--limit", help="Page size (1-1000).")


@contextmanager
def _errors(as_json: bool) -> Iterator[None]:
    """Print a FacepipeError as code + message (or JSON) and exit 1."""
    try:
        yield
    except FacepipeError as exc:
        if as_json:
            typer.echo(json.dumps({"error": error_dict(exc)}, ensure_ascii=False))
        else:
            typer.echo(f"error {exc.numeric_code} {exc.code.value}: {exc.message}", err=True)
        raise typer.Exit(1) from exc


@contextmanager
def _library(as_json: bool, with_engine: bool = False) -> Iterator[Any]:
    """A FaceLibrary on the configured database (and engine), closed at the end; errors are
    printed as by :func:`_errors`."""
    from pipeline.library import FaceLibrary
    from pipeline.store.db import Database

    with _errors(as_json):
        settings = get_settings()
        engine = None
        if with_engine:
            from pipeline.engine import FaceEngine

            engine = FaceEngine.from_settings(settings)
        db = Database.from_settings(settings)
        try:
            yield FaceLibrary(db, engine, settings)
        finally:
            db.close()


def _emit(as_json: bool, payload: Any, human: Callable[[], None]) -> None:
    if as_json:
        data = payload.to_dict() if hasattr(payload, "to_dict") else payload
        typer.echo(json.dumps(data, ensure_ascii=False, default=str))
    else:
        human()


def _show_person(info: Any) -> None:
    typer.echo(f"person   {info.person_id}")
    typer.echo(f"name     {info.name}")
    typer.echo(f"tag      {info.tag}")
    typer.echo(f"groups   {', '.join(info.group_ids)}")
    typer.echo(f"faces    {len(info.face_ids)}: {' '.join(info.face_ids)}")


# --- person ----------------------------------------------------------------------------------


@person_app.command("create")
def person_create(
    person_id: str = typer.Argument(..., help="Person id (letters, digits, -%@#&_.)."),
    group: list[str] = typer.Option(..., "--group", "-g", help="Group (repeat for several)."),
    name: str = typer.Option("", "--name", help="Display name (<= 60 characters)."),
    tag: str = typer.Option("", "--tag", help="Free-text tag (<= 256 bytes)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Create a person in one or more groups (groups are created implicitly)."""
    with _library(as_json) as lib:
        info = lib.create_person(person_id, group, name=name, tag=tag)
    _emit(as_json, info, lambda: _show_person(info))


@person_app.command("delete")
def person_delete(
    person_id: str = PERSON_ARG,
    group: str | None = typer.Option(
        None, "--group", "-g", help="Only take the person out of this group."
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """Delete a person with its faces, or take it out of one group (--group)."""
    with _library(as_json) as lib:
        deleted = lib.delete_person(person_id, group)
    payload = {"person_id": person_id, "deleted": deleted, "group_id": group}
    _emit(
        as_json,
        payload,
        lambda: typer.echo(
            f"deleted person {person_id}" if deleted else f"removed {person_id} from {group}"
        ),
    )


@person_app.command("info")
def person_info(person_id: str = PERSON_ARG, as_json: bool = JSON_OPT) -> None:
    """Show a person's name, tag, groups and face ids."""
    with _library(as_json) as lib:
        info = lib.get_person(person_id)
    _emit(as_json, info, lambda: _show_person(info))


@person_app.command("set")
def person_set(
    person_id: str = PERSON_ARG,
    name: str | None = typer.Option(None, "--name", help="New display name (<= 60 characters)."),
    tag: str | None = typer.Option(None, "--tag", help="New tag (<= 256 bytes)."),
    add_group: list[str] = typer.Option([], "--add-group", help="Also put it in this group."),
    remove_group: list[str] = typer.Option(
        [], "--remove-group", help="Take it out of this group (not its last one)."
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """Set a person's name / tag, and add or remove groups."""
    with _library(as_json) as lib:
        info = None
        if name is not None or tag is not None:
            info = lib.set_person_info(person_id, name=name, tag=tag)
        if add_group:
            info = lib.add_person_to_groups(person_id, add_group)
        for group in remove_group:
            info = lib.remove_person_from_group(person_id, group)
        if info is None:
            info = lib.set_person_info(person_id)  # raises EMPTY_PARAMETER
    _emit(as_json, info, lambda: _show_person(info))


@person_app.command("list")
def person_list(
    group: str = typer.Option(..., "--group", "-g", help="The group to list."),
    offset: int = OFFSET_OPT,
    limit: int = LIMIT_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """List the persons of a group (paged)."""
    with _library(as_json) as lib:
        page = lib.list_persons(group, offset=offset, limit=limit)

    def human() -> None:
        for p in page.items:
            typer.echo(f"{p.person_id}\t{p.name}\t{p.tag}")
        typer.echo(f"({len(page.items)} of {page.total}, offset {page.offset})", err=True)

    _emit(as_json, page, human)


# --- group -----------------------------------------------------------------------------------


@group_app.command("list")
def group_list(
    offset: int = OFFSET_OPT,
    limit: int = LIMIT_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """List groups with their person counts (paged)."""
    with _library(as_json) as lib:
        page = lib.list_groups(offset=offset, limit=limit)

    def human() -> None:
        for g in page.items:
            typer.echo(f"{g.group_id}\t{g.person_count} persons")
        typer.echo(f"({len(page.items)} of {page.total}, offset {page.offset})", err=True)

    _emit(as_json, page, human)


# --- face ------------------------------------------------------------------------------------


@face_app.command("add")
def face_add(
    person_id: str = PERSON_ARG,
    sources: list[str] = typer.Argument(..., help="Image paths, URLs, s3:// keys or base64."),
    quality_control: int = typer.Option(
        0,
        "--quality-control",
        "-q",
        min=0,
        max=4,
        help="Refuse faces below this quality level (-1601): 0 off, 1 low ... 4 very high.",
    ),
    match_threshold: float | None = typer.Option(
        None,
        "--match-threshold",
        help="FaceMatchThreshold 0-100: a new face must reach this confidence to the "
        "person's faces (-1604; 0 off; default FACEPIPE_FACE_MATCH_THRESHOLD, 60).",
    ),
    replace: bool = typer.Option(False, "--replace", help="Replace all the person's faces."),
    as_json: bool = JSON_OPT,
) -> None:
    """Add the largest face of each image to a person; one result code per image."""
    with _library(as_json, with_engine=True) as lib:
        add = lib.replace_faces if replace else lib.add_faces
        result = add(
            person_id,
            sources,
            quality_control=quality_control,
            face_match_threshold=match_threshold,
        )

    def human() -> None:
        for src, code, err in zip(sources, result.ret_codes, result.errors, strict=True):
            typer.echo(f"{code}\t{src}" + (f"\t{err['name']}: {err['message']}" if err else ""))
        ids = " ".join(result.suc_face_ids)
        typer.echo(f"added {result.suc_face_num} of {len(sources)}: {ids}")

    _emit(as_json, result, human)
    if result.suc_face_num == 0:
        raise typer.Exit(1)


@face_app.command("delete")
def face_delete(
    person_id: str = PERSON_ARG,
    face_ids: list[str] = typer.Argument(..., help="Face ids (see `face list`)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Delete faces of a person."""
    with _library(as_json) as lib:
        deleted = lib.delete_faces(person_id, face_ids)
    _emit(
        as_json,
        {"person_id": person_id, "deleted": deleted},
        lambda: typer.echo(f"deleted {len(deleted)} faces: {' '.join(deleted)}"),
    )


@face_app.command("list")
def face_list(person_id: str = PERSON_ARG, as_json: bool = JSON_OPT) -> None:
    """List a person's face ids."""
    with _library(as_json) as lib:
        ids = lib.list_faces(person_id)
    _emit(as_json, {"person_id": person_id, "face_ids": ids}, lambda: typer.echo("\n".join(ids)))


@face_app.command("info")
def face_info(
    face_id: str = typer.Argument(..., help="Face id."), as_json: bool = JSON_OPT
) -> None:
    """Show an enrolled face's record."""
    with _library(as_json) as lib:
        info = lib.get_face(face_id)

    def human() -> None:
        for key, value in info.to_dict().items():
            typer.echo(f"{key:15s}{value}")

    _emit(as_json, info, human)


# --- verify / identify -----------------------------------------------------------------------


@app.command("verify")
def verify(
    source: str = typer.Argument(..., help="Image path, URL, s3:// key or base64."),
    person: str = typer.Option(..., "--person", "-p", help="The enrolled person to check."),
    as_json: bool = JSON_OPT,
) -> None:
    """Is the image's largest face this person? Confidence 0-100 and match yes/no."""
    with _library(as_json, with_engine=True) as lib:
        result = lib.verify(source, person)
    _emit(
        as_json,
        result,
        lambda: typer.echo(
            f"{'MATCH' if result.is_match else 'no match'}  confidence {result.confidence:.1f}"
            f"  (cosine {result.score:.4f}, face {result.face_id})"
        ),
    )


@app.command("identify")
def identify(
    source: str = typer.Argument(..., help="Image path, URL, s3:// key or base64."),
    group: list[str] = typer.Option(..., "--group", "-g", help="Group (repeat for several)."),
    top: int | None = typer.Option(
        None, "--top", "-n", help="Persons per face, 1-100 (default 5)."
    ),
    all_faces: bool = typer.Option(False, "--all-faces", help="Every face, not the largest."),
    as_json: bool = JSON_OPT,
) -> None:
    """Who is in the image? Top-N persons across the groups, best first."""
    with _library(as_json, with_engine=True) as lib:
        result = lib.identify(source, group, top, all_faces=all_faces)
        threshold = lib.settings.identify_match_threshold

    def human() -> None:
        for face in result.faces:
            box = ",".join(str(round(v)) for v in face.box)
            typer.echo(f"face {face.face_index} [{box}]")
            for rank, c in enumerate(face.candidates, start=1):
                verdict = "MATCH" if c.confidence >= threshold else "below threshold"
                typer.echo(
                    f"  {rank}. {c.person_id}  confidence {c.confidence:.1f} {verdict}  "
                    f"(face {c.face_id}{', ' + c.name if c.name else ''}"
                    f"{', tag ' + c.tag if c.tag else ''})"
                )
            if not face.candidates:
                typer.echo("  no candidate")

    _emit(as_json, result, human)


# --- db --------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(as_json: bool = JSON_OPT) -> None:
    """Apply pending migrations (idempotent; safe while other processes run)."""
    from pipeline.store.db import Database, redact

    with _errors(as_json):
        db = Database.from_settings(get_settings(), migrate=False)
        applied = db.migrate()
        db.close()
    _emit(
        as_json,
        {"url": redact(db.url), "applied": applied},
        lambda: typer.echo(
            f"applied {', '.join(applied)}" if applied else "the schema is up to date"
        ),
    )
