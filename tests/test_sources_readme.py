"""The README's error catalogue table (section intake) must match pipeline.errors.CATALOGUE.

Regenerate the table with:
``.venv/bin/python -c "from tests.test_sources_readme import render_catalogue as r; print(r())"``
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import CATALOGUE

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN = "<!-- catalogue:begin -->"
END = "<!-- catalogue:end -->"


def render_catalogue() -> str:
    """The markdown table of every catalogue entry, in catalogue order."""
    rows = ["| name | code | retryable | meaning |", "|---|---|---|---|"]
    for code, spec in CATALOGUE.items():
        retry = "yes" if spec.retryable else "no"
        rows.append(f"| `{code.value}` | {spec.code} | {retry} | {spec.message} |")
    return "\n".join(rows)


def test_readme_catalogue_matches_code() -> None:
    text = README.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, "the catalogue markers are missing from README.md"
    table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert table == render_catalogue(), (
        "README error catalogue is out of date; regenerate it (see this module's docstring)"
    )


def test_facepipe_own_codes_are_unique() -> None:
    """The -19xx codes are facepipe's own (the reference APIs have none there): one meaning
    each, so a client can switch on them. (Reference codes such as -1313 are shared on
    purpose: the reference APIs use one code for several refusals.)"""
    own = [spec.code for spec in CATALOGUE.values() if -1999 < spec.code <= -1900]
    assert len(own) == len(set(own)), sorted(own)
