"""The documentation's configuration table (docs/configuration.md) lists every field of
pipeline.config.Settings (regenerate with ``.venv/bin/python -m tests.docs_tables``)."""

from __future__ import annotations

from pipeline.config import Settings
from tests.docs_tables import current_table, render_settings


def test_docs_settings_table_matches_code() -> None:
    assert current_table("settings") == render_settings(), (
        "docs/configuration.md's settings table is out of date: run .venv/bin/python -m "
        "tests.docs_tables"
    )


def test_every_setting_is_documented() -> None:
    missing = [name for name, f in Settings.model_fields.items() if not f.description]
    assert not missing, f"settings without a description: {missing}"
