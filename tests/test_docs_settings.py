"""The documentation's configuration table (docs/configuration.md) must list every field of
pipeline.config.Settings.

Regenerate the table (paste it between the markers) with:
``.venv/bin/python -c "from tests.test_docs_settings import render_settings as r; print(r())"``
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic_core import PydanticUndefined

from pipeline.config import Settings

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
BEGIN = "<!-- settings:begin -->"
END = "<!-- settings:end -->"


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


def test_docs_settings_table_matches_code() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, f"the settings markers are missing from {PAGE.name}"
    table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert table == render_settings(), (
        "docs/configuration.md's settings table is out of date; regenerate it (see this module's "
        "docstring)"
    )


def test_every_setting_is_documented() -> None:
    missing = [name for name, f in Settings.model_fields.items() if not f.description]
    assert not missing, f"settings without a description: {missing}"
