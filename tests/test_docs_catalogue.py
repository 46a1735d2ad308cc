"""The documentation's error catalogue table (docs/sources.md) matches
pipeline.errors.CATALOGUE (regenerate with ``.venv/bin/python -m tests.docs_tables``)."""

from __future__ import annotations

from pipeline.errors import CATALOGUE
from tests.docs_tables import current_table, render_catalogue


def test_docs_catalogue_matches_code() -> None:
    assert current_table("catalogue") == render_catalogue(), (
        "docs/sources.md's error catalogue is out of date: run .venv/bin/python -m "
        "tests.docs_tables"
    )


def test_facepipe_own_codes_are_unique() -> None:
    """The -19xx codes are facepipe's own (the reference APIs have none there): one meaning
    each, so a client can switch on them. (Reference codes such as -1313 are shared on
    purpose: the reference APIs use one code for several refusals.)"""
    own = [spec.code for spec in CATALOGUE.values() if -1999 < spec.code <= -1900]
    assert len(own) == len(set(own)), sorted(own)
