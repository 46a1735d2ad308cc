"""Persons and groups of the face library: create, change, list and delete them, and the
persons' memberships and custom field values (YouTu v2 person/group management, IAI
CreateGroup / PersonExDescriptionInfos, Baidu faceset user/group)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import psycopg

from pipeline.errors import ErrorCode, FacepipeError
from pipeline.library.core import (
    LibraryCore,
    lock_person,
    person_not_found,
    require_group,
    require_person,
)
from pipeline.store import repo
from pipeline.store.records import GroupDetails, GroupInfo, Page, PersonInfo, PersonSummary
from pipeline.validation import (
    MAX_GROUPS_PER_PERSON,
    validate_ex_fields,
    validate_group_id,
    validate_group_ids,
    validate_name,
    validate_page,
    validate_person_id,
    validate_tag,
)

logger = logging.getLogger(__name__)


class PersonsAndGroups(LibraryCore):
    """The persons and groups part of :class:`~pipeline.library.FaceLibrary`."""

    def create_person(
        self,
        person_id: str,
        group_ids: Sequence[str],
        name: str | None = None,
        tag: str | None = None,
    ) -> PersonInfo:
        """Create a person in one or more groups (groups are created implicitly).

        ``PERSON_EXISTS`` (-1302) when the id is taken.
        """
        person_id = validate_person_id(person_id)
        groups = validate_group_ids(group_ids)
        name, tag = validate_name(name), validate_tag(tag)
        with self.db.transaction() as conn:
            if not repo.insert_person(conn, person_id, name, tag):
                raise FacepipeError(
                    ErrorCode.PERSON_EXISTS,
                    f"person {person_id!r} already exists",
                    person_id=person_id,
                )
            repo.add_memberships(conn, person_id, groups)
            return self._person_info(conn, person_id)

    def ensure_person(
        self,
        person_id: str,
        group_ids: Sequence[str],
        name: str | None = None,
        tag: str | None = None,
        *,
        conn: psycopg.Connection | None = None,
    ) -> bool:
        """Create the person if missing and make sure it is in ``group_ids`` (bulk enrolment).

        An existing person keeps its name and tag. True when the person was created here.
        """
        person_id = validate_person_id(person_id)
        groups = validate_group_ids(group_ids)
        name, tag = validate_name(name), validate_tag(tag)
        with self._tx(conn) as c:
            created = repo.insert_person(c, person_id, name, tag)
            repo.add_memberships(c, person_id, groups)
            return created

    def delete_person(self, person_id: str, group_id: str | None = None) -> bool:
        """Delete a person everywhere: faces (vectors and crops), memberships and matches, in
        one transaction. With ``group_id``, take it out of that group only (Baidu
        ``faceset/user/delete`` with group_id); if that was its only group, the person is deleted.

        Returns True when the person itself was deleted.
        """
        person_id = validate_person_id(person_id)
        group = validate_group_id(group_id) if group_id is not None else None
        with self.db.transaction() as conn:
            lock_person(conn, person_id)
            if group is not None:
                groups = repo.person_groups(conn, person_id)
                if group not in groups:
                    raise FacepipeError(
                        ErrorCode.GROUP_NOT_FOUND,
                        f"person {person_id!r} is not in group {group!r}",
                    )
                if len(groups) > 1:
                    repo.remove_membership(conn, person_id, group)
                    repo.delete_empty_groups(conn, [group])
                    return False
            groups = repo.delete_person(conn, person_id)
            repo.delete_empty_groups(conn, groups)
            logger.info("deleted person %s (groups %s)", person_id, groups)
            return True

    def set_person_info(
        self, person_id: str, name: str | None = None, tag: str | None = None
    ) -> PersonInfo:
        """Set a person's name and/or tag (None leaves a field unchanged)."""
        person_id = validate_person_id(person_id)
        new_name = validate_name(name) if name is not None else None
        new_tag = validate_tag(tag) if tag is not None else None
        if new_name is None and new_tag is None:
            raise FacepipeError(ErrorCode.EMPTY_PARAMETER, "nothing to set: give a name or a tag")
        with self.db.transaction() as conn:
            if not repo.update_person(conn, person_id, new_name, new_tag):
                raise person_not_found(person_id)
            return self._person_info(conn, person_id)

    def get_person(self, person_id: str) -> PersonInfo:
        """Name, tag, groups and face ids of a person (YouTu getinfo)."""
        person_id = validate_person_id(person_id)
        with self.db.connection() as conn:
            return self._person_info(conn, person_id)

    def _person_info(self, conn: psycopg.Connection, person_id: str) -> PersonInfo:
        row = repo.get_person(conn, person_id)
        if row is None:
            raise person_not_found(person_id)
        return PersonInfo(
            person_id=person_id,
            name=row.name,
            tag=row.tag,
            group_ids=tuple(repo.person_groups(conn, person_id)),
            face_ids=tuple(str(f) for f in repo.person_face_ids(conn, person_id)),
            created_at=row.created_at,
        )

    def list_persons(self, group_id: str, offset: int = 0, limit: int = 100) -> Page[PersonSummary]:
        """A page of the persons of a group, ordered by id (YouTu getpersonids)."""
        group = validate_group_id(group_id)
        offset, limit = validate_page(offset, limit)
        with self.db.connection() as conn:
            if not repo.existing_groups(conn, [group]):
                raise FacepipeError(
                    ErrorCode.GROUP_NOT_FOUND, f"group {group!r} does not exist", group_id=group
                )
            items, total = repo.list_group_persons(conn, group, offset, limit)
        return Page(tuple(items), total, offset, limit)

    def list_groups(self, offset: int = 0, limit: int = 100) -> Page[GroupInfo]:
        """A page of all groups, ordered by id, with person counts (YouTu getgroupids)."""
        offset, limit = validate_page(offset, limit)
        with self.db.connection() as conn:
            items, total = repo.list_groups(conn, offset, limit)
        return Page(tuple(items), total, offset, limit)

    def create_group(
        self,
        group_id: str,
        name: str | None = None,
        tag: str | None = None,
        ex_fields: Sequence[str] = (),
    ) -> GroupDetails:
        """Create an empty group on purpose (IAI CreateGroup): it keeps its name, tag and
        custom field names, and survives losing its last member. GROUP_EXISTS when the id is
        taken (implicit groups included)."""
        group = validate_group_id(group_id)
        name, tag = validate_name(name), validate_tag(tag)
        fields = validate_ex_fields(ex_fields)
        with self.db.transaction() as conn:
            if not repo.insert_group(conn, group, name, tag, fields):
                raise FacepipeError(
                    ErrorCode.GROUP_EXISTS, f"group {group!r} already exists", group_id=group
                )
            return require_group(conn, group)

    def modify_group(
        self,
        group_id: str,
        name: str | None = None,
        tag: str | None = None,
        ex_fields: Sequence[str] | None = None,
    ) -> GroupDetails:
        """Change a group's name, tag or custom field names (None: unchanged)."""
        group = validate_group_id(group_id)
        new_name = validate_name(name) if name is not None else None
        new_tag = validate_tag(tag) if tag is not None else None
        fields = validate_ex_fields(ex_fields) if ex_fields is not None else None
        with self.db.transaction() as conn:
            if not repo.update_group(conn, group, new_name, new_tag, fields):
                raise FacepipeError(ErrorCode.GROUP_NOT_FOUND, f"group {group!r} does not exist")
            return require_group(conn, group)

    def get_group(self, group_id: str) -> GroupDetails:
        """A group's properties and person count (explicit or implicit)."""
        group = validate_group_id(group_id)
        with self.db.connection() as conn:
            return require_group(conn, group)

    def delete_group(self, group_id: str) -> list[str]:
        """Delete a group; its persons that are in no other group are deleted with their faces
        (IAI DeleteGroup). Returns those persons."""
        group = validate_group_id(group_id)
        with self.db.transaction() as conn:
            require_group(conn, group)
            deleted = repo.delete_group(conn, group)
        logger.info("deleted group %s and %d persons only in it", group, len(deleted))
        return deleted

    def set_person_group_values(
        self, person_id: str, group_id: str, values: dict[int, str]
    ) -> tuple[str, ...]:
        """Set a person's values of its group's custom fields, by field index (IAI
        PersonExDescriptionInfos); the other fields keep their values. Returns all values."""
        person_id, group = validate_person_id(person_id), validate_group_id(group_id)
        with self.db.transaction() as conn:
            lock_person(conn, person_id)
            fields = require_group(conn, group).ex_fields
            current = repo.membership_values(conn, person_id)
            if group not in current:
                raise FacepipeError(
                    ErrorCode.GROUP_NOT_FOUND, f"person {person_id!r} is not in group {group!r}"
                )
            merged = list(current[group]) + [""] * (len(fields) - len(current[group]))
            for index, value in values.items():
                if not 0 <= index < len(fields):
                    raise FacepipeError(
                        ErrorCode.ILLEGAL_PARAMETER,
                        f"group {group!r} has {len(fields)} custom fields; no index {index}",
                    )
                merged[index] = validate_name(value)
            repo.set_membership_values(conn, person_id, group, merged[: len(fields)])
            return tuple(merged[: len(fields)])

    def person_group_values(self, person_id: str) -> dict[str, tuple[str, ...]]:
        """A person's custom field values per group it is in."""
        person_id = validate_person_id(person_id)
        with self.db.connection() as conn:
            require_person(conn, person_id)
            return repo.membership_values(conn, person_id)

    def add_person_to_groups(self, person_id: str, group_ids: Sequence[str]) -> PersonInfo:
        """Put a person in more groups (created implicitly); already-member groups are kept."""
        person_id = validate_person_id(person_id)
        groups = validate_group_ids(group_ids)
        with self.db.transaction() as conn:
            lock_person(conn, person_id)
            total = len(set(repo.person_groups(conn, person_id)) | set(groups))
            if total > MAX_GROUPS_PER_PERSON:
                raise FacepipeError(
                    ErrorCode.TOO_MANY_GROUPS,
                    f"person {person_id!r} would be in {total} groups, more than "
                    f"{MAX_GROUPS_PER_PERSON}",
                )
            repo.add_memberships(conn, person_id, groups)
            return self._person_info(conn, person_id)

    def remove_person_from_group(self, person_id: str, group_id: str) -> PersonInfo:
        """Take a person out of one group. Its last group cannot be removed (``LAST_GROUP``;
        Baidu ``group/deleteuser``: "user must be in one group at least"): delete the person."""
        person_id = validate_person_id(person_id)
        group = validate_group_id(group_id)
        with self.db.transaction() as conn:
            lock_person(conn, person_id)
            groups = repo.person_groups(conn, person_id)
            if group not in groups:
                raise FacepipeError(
                    ErrorCode.GROUP_NOT_FOUND, f"person {person_id!r} is not in group {group!r}"
                )
            if len(groups) == 1:
                raise FacepipeError(
                    ErrorCode.LAST_GROUP,
                    f"{group!r} is the last group of person {person_id!r} (delete the person"
                    " instead)",
                    person_id=person_id,
                    group_id=group,
                )
            repo.remove_membership(conn, person_id, group)
            repo.delete_empty_groups(conn, [group])
            return self._person_info(conn, person_id)
