"""Explicit groups (IAI CreateGroup) next to the implicit ones, on the real embedded Postgres."""

from __future__ import annotations

import pytest

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.library import FaceLibrary
from pipeline.store.db import Database


@pytest.fixture()
def lib(clean_database: Database) -> FaceLibrary:
    return FaceLibrary(clean_database, None, Settings())


def code_of(fn: object, *args: object, **kwargs: object) -> ErrorCode:
    with pytest.raises(FacepipeError) as err:
        fn(*args, **kwargs)  # type: ignore[operator]
    return err.value.code


def test_explicit_group_survives_its_last_member(lib: FaceLibrary) -> None:
    made = lib.create_group("staff", "Staff", "hq", ["badge", "floor"])
    assert (made.name, made.tag, made.ex_fields, made.explicit, made.person_count) == (
        "Staff",
        "hq",
        ("badge", "floor"),
        True,
        0,
    )
    assert code_of(lib.create_group, "staff") is ErrorCode.GROUP_EXISTS
    lib.create_person("ann", ["staff", "implicit"])
    assert code_of(lib.create_group, "implicit") is ErrorCode.GROUP_EXISTS
    assert lib.get_group("staff").person_count == 1
    lib.delete_person("ann")
    assert lib.get_group("staff").person_count == 0  # explicit: still there
    assert code_of(lib.get_group, "implicit") is ErrorCode.GROUP_NOT_FOUND  # implicit: gone
    assert [g.group_id for g in lib.list_groups().items] == ["staff"]


def test_modify_and_delete_group(lib: FaceLibrary) -> None:
    lib.create_group("g1", "One")
    changed = lib.modify_group("g1", tag="t", ex_fields=["a"])
    assert (changed.name, changed.tag, changed.ex_fields) == ("One", "t", ("a",))
    assert code_of(lib.modify_group, "nope", name="x") is ErrorCode.GROUP_NOT_FOUND
    assert code_of(lib.create_group, "g2", ex_fields=["a"] * 2) is ErrorCode.ILLEGAL_PARAMETER
    assert code_of(lib.create_group, "g2", ex_fields=list("abcdef")) is (
        ErrorCode.ILLEGAL_PARAMETER
    )
    lib.create_person("only", ["g1"])
    lib.create_person("both", ["g1", "other"])
    assert lib.delete_group("g1") == ["only"]
    assert code_of(lib.get_person, "only") is ErrorCode.PERSON_NOT_FOUND
    assert lib.get_person("both").group_ids == ("other",)
    assert code_of(lib.delete_group, "g1") is ErrorCode.GROUP_NOT_FOUND


def test_person_values_of_group_fields(lib: FaceLibrary) -> None:
    lib.create_group("club", "Club", ex_fields=["card", "level"])
    lib.create_person("ann", ["club", "plain"])
    assert lib.set_person_group_values("ann", "club", {1: "gold"}) == ("", "gold")
    assert lib.set_person_group_values("ann", "club", {0: "A-1"}) == ("A-1", "gold")
    assert lib.person_group_values("ann") == {"club": ("A-1", "gold"), "plain": ()}
    assert code_of(lib.set_person_group_values, "ann", "club", {2: "x"}) is (
        ErrorCode.ILLEGAL_PARAMETER
    )
    assert code_of(lib.set_person_group_values, "ann", "plain", {0: "x"}) is (
        ErrorCode.ILLEGAL_PARAMETER  # "plain" has no custom fields
    )
    lib.create_group("other", ex_fields=["x"])
    assert code_of(lib.set_person_group_values, "ann", "other", {0: "x"}) is (
        ErrorCode.GROUP_NOT_FOUND  # not a member
    )
    assert code_of(lib.person_group_values, "nobody") is ErrorCode.PERSON_NOT_FOUND
