"""The documentation's generated tables: the settings (docs/configuration.md) and the error
catalogue (docs/sources.md), each between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``.

Tests check that each table matches the code; after changing a setting or an error code,
regenerate both with ``.venv/bin/python -m tests.docs_tables``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pydantic_core import PydanticUndefined

from pipeline.config import Settings
from pipeline.errors import CATALOGUE

DOCS = Path(__file__).resolve().parents[1] / "docs"


def render_catalogue() -> str:
    """The markdown table of every catalogue entry, in catalogue order."""
    rows = ["| name | code | retryable | meaning |", "|---|---|---|---|"]
    for code, spec in CATALOGUE.items():
        retry = "yes" if spec.retryable else "no"
        rows.append(f"| `{code.value}` | {spec.code} | {retry} | {spec.message} |")
    return "\n".join(rows)


def _default(field_name: str) -> str:
    field = Settings.model_fields[field_name]
    if field.default_factory is not None:
        if field_name == "home":
            return "per-user data dir (`~/.local/share/facepipe`)"
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, list | dict):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def render_settings() -> str:
    """The markdown table of every setting: variable, default, meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        # "<" escaped: a description's "<prefix>" would read as an HTML tag (on GitHub too).
        doc = (field.description or "").replace("|", "\\|").replace("<", "&lt;")
        rows.append(f"| `FACEPIPE_{name.upper()}` | {_default(name)} | {doc} |")
    return "\n".join(rows)


TABLES: dict[str, tuple[Path, Callable[[], str]]] = {
    "settings": (DOCS / "configuration.md", render_settings),
    "catalogue": (DOCS / "sources.md", render_catalogue),
}
"""Marker name -> (page, renderer)."""


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def current_table(name: str) -> str:
    """The table as the page has it now (AssertionError when its markers are missing)."""
    page, _ = TABLES[name]
    text = page.read_text(encoding="utf-8")
    begin, end = markers(name)
    assert begin in text and end in text, f"the {name} markers are missing from {page.name}"
    return text.split(begin, 1)[1].split(end, 1)[0].strip()


def regenerate() -> None:
    """Write every table into its page."""
    for name, (page, render) in TABLES.items():
        text = page.read_text(encoding="utf-8")
        begin, end = markers(name)
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        page.write_text(f"{head}{begin}\n{render()}\n{end}{tail}", encoding="utf-8")
        print(f"regenerated the {name} table in {page.relative_to(DOCS.parent)}")


if __name__ == "__main__":
    regenerate()
