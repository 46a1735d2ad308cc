"""The documentation's error catalogue table (docs/sources.md) must match
pipeline.errors.CATALOGUE.

Regenerate the table (paste it between the markers) with:
``.venv/bin/python -c "from tests.test_docs_catalogue import render_catalogue as r; print(r())"``
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import CATALOGUE

PAGE = Path(__file__).resolve().parents[1] / "docs" / "sources.md"
BEGIN = "<!-- catalogue:begin -->"
END = "<!-- catalogue:end -->"


def render_catalogue() -> str:
    """The markdown table of every catalogue entry, in catalogue order."""
    rows = ["| name | code | retryable | meaning |", "|---|---|---|---|"]
    for code, spec in CATALOGUE.items():
        retry = "yes" if spec.retryable else "no"
        rows.append(f"| `{code.value}` | {spec.code} | {retry} | {spec.message} |")
    return "\n".join(rows)


def test_docs_catalogue_matches_code() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, f"the catalogue markers are missing from {PAGE.name}"
    table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert table == render_catalogue(), (
        "docs/sources.md's error catalogue is out of date; regenerate it (see this module's "
        "docstring)"
    )


def test_facepipe_own_codes_are_unique() -> None:
    """The -19xx codes are facepipe's own (the reference APIs have none there): one meaning
    each, so a client can switch on them. (Reference codes such as -1313 are shared on
    purpose: the reference APIs use one code for several refusals.)"""
    own = [spec.code for spec in CATALOGUE.values() if -1999 < spec.code <= -1900]
    assert len(own) == len(set(own)), sorted(own)
