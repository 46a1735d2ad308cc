"""Key scopes, enforced the same way by every protocol: a key limited to some groups, and/or to
read-only calls (``facepipe keys create --groups g1,g2 --read-only``).

Each call declares what it :class:`Needs` (does it change the library; which of its fields name
groups, persons or faces; does it reach beyond groups, as jobs do), and :func:`enforce` refuses
it with PERMISSION_DENIED before it runs; each protocol answers that in its own shape (/v1 403,
YouTu, IAI ``AuthFailure.UnauthorizedOperation``, Baidu 6).

A person is within a group-limited key's reach only when *every* group it belongs to is one of
the key's: deleting it, changing its faces or reading its groups would otherwise touch, or show,
a group the key may not use. A face is within reach when its person is. A person or face that
does not exist is left to the call itself (PERSON_NOT_FOUND, FACE_NOT_FOUND).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.apikeys import KeyScope
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.store.records import Page

FieldValues = Callable[[str], Sequence[str]]
"""A protocol's reader of a request field by name: its values (none when absent)."""


@dataclass(frozen=True)
class Needs:
    """What one call touches: ``write`` (changes the library or submits work), the names of its
    fields holding group ids, person ids and face ids, and ``any_group`` when it reaches data of
    any group (jobs, S3 events): never allowed to a group-limited key."""

    write: bool = False
    groups: tuple[str, ...] = ()
    persons: tuple[str, ...] = ()
    faces: tuple[str, ...] = ()
    any_group: bool = False


READ = Needs()
WRITE = Needs(write=True)


def denied(message: str) -> FacepipeError:
    return FacepipeError(ErrorCode.PERMISSION_DENIED, message)


def check_call(scope: KeyScope, needs: Needs, groups: Iterable[str]) -> None:
    """The checks needing no database: read-only, reach beyond groups, named groups."""
    if needs.write and scope.read_only:
        raise denied("this key is read-only: it may not change the library or submit jobs")
    allowed = scope.group_ids
    if allowed is None:
        return
    if needs.any_group:
        raise denied("this key is limited to some groups; this call reaches every group")
    outside = sorted(set(groups) - allowed)
    if outside:
        raise denied(f"this key may not use group(s) {', '.join(outside[:5])}")


def _person_groups(library: Any, person_id: str) -> tuple[str, ...] | None:
    try:
        return tuple(library.get_person(person_id).group_ids)
    except FacepipeError as exc:
        if exc.code is ErrorCode.PERSON_NOT_FOUND:
            return None
        raise


def _face_person(library: Any, face_id: str) -> str | None:
    try:
        return str(library.get_face(face_id).person_id)
    except FacepipeError as exc:
        if exc.code in (ErrorCode.FACE_NOT_FOUND, ErrorCode.ILLEGAL_PARAMETER):
            return None
        raise


def check_reach(
    scope: KeyScope, library: Any, persons: Iterable[str], faces: Iterable[str]
) -> None:
    """Every named person (and the person of every named face) lies wholly within the key's
    groups. Blocking (database): call in a worker thread."""
    allowed = scope.group_ids
    if allowed is None:
        return
    owners = [(p, f"person {p}") for p in persons]
    for face_id in faces:
        person = _face_person(library, face_id)
        if person is not None:
            owners.append((person, f"face {face_id}"))
    for person_id, what in owners:
        groups = _person_groups(library, person_id)
        if groups is not None and not set(groups) <= allowed:
            raise denied(f"{what} is in a group this key may not use")


async def enforce(state: Any, scope: KeyScope, needs: Needs, values: FieldValues) -> None:
    """Refuse the call (PERMISSION_DENIED) unless ``scope`` allows what ``needs`` declares,
    reading the named fields with ``values``. Nothing to do (no database) for an unlimited key."""
    if scope.unlimited:
        return
    groups = [g for name in needs.groups for g in values(name)]
    check_call(scope, needs, groups)
    persons = [p for name in needs.persons for p in values(name)]
    faces = [f for name in needs.faces for f in values(name)]
    if scope.group_ids is not None and (persons or faces):
        await state.blocking(lambda: check_reach(scope, state.library, persons, faces))


def visible_groups(library: Any, scope: KeyScope, offset: int, limit: int) -> Page[Any]:
    """A page of the groups a key may see (all of them for a key not limited to groups), with
    the total counted among those. Blocking."""
    if scope.group_ids is None:
        return library.list_groups(offset, limit)  # type: ignore[no-any-return]
    mine: list[Any] = []
    seen = 0
    while True:
        page = library.list_groups(seen, 1000)
        mine.extend(g for g in page.items if g.group_id in scope.group_ids)
        seen += len(page.items)
        if not page.items or seen >= page.total:
            break
    return Page(tuple(mine[offset : offset + limit]), len(mine), offset, limit)


def split_values(value: Any) -> list[str]:
    """A field's ids: a list, or one comma-separated string; nothing when absent."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value if isinstance(v, str | int)]
    if isinstance(value, str | int):
        return [v.strip() for v in str(value).split(",") if v.strip()]
    return []
