"""The ``facepipe`` command line: one entry point, commands grouped by module."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

import typer

from pipeline.cli.app import app

# Other installed packages add commands through this entry-point group: each entry is a
# callable taking the Typer app (the workers package adds ``worker``, ``beat`` and ``demo``).
COMMAND_ENTRY_POINTS = "facepipe.commands"

# Each module registers its commands on ``app`` when imported.
COMMAND_MODULES = (
    "pipeline.cli.engine_cmds",
    "pipeline.cli.library_cmds",
    "pipeline.cli.jobs_cmds",
    "pipeline.cli.index_cmds",
    "pipeline.cli.api_cmds",
    "pipeline.cli.metrics_cmds",
    "pipeline.cli.keys_cmds",
    "pipeline.cli.models_cmds",
    "pipeline.cli.reembed_cmds",
)


def load_commands() -> typer.Typer:
    """The ``facepipe`` app with every command attached (this package's and the installed
    ``facepipe.commands`` entry points')."""
    for name in COMMAND_MODULES:
        importlib.import_module(name)
    for entry in entry_points(group=COMMAND_ENTRY_POINTS):
        # idempotent: a second call (tests build the app more than once) adds nothing twice
        if entry.name not in _added_entry_points:
            entry.load()(app)
            _added_entry_points.add(entry.name)
    return app


_added_entry_points: set[str] = set()


def main() -> None:
    """Entry point of the ``facepipe`` console script."""
    load_commands()
    app()
