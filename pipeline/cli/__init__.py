"""The ``facepipe`` command line: one entry point, commands grouped by module."""

from __future__ import annotations

import importlib

from pipeline.cli.app import app

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


def main() -> None:
    """Entry point of the ``facepipe`` console script."""
    for name in COMMAND_MODULES:
        importlib.import_module(name)
    app()
