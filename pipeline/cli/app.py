"""The Typer application every command module attaches its commands to."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="facepipe",
    help="Self-hosted face recognition: detect, embed, enrol, identify, run the pipeline.",
    no_args_is_help=True,
    add_completion=False,
)
