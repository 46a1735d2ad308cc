"""Command-line options that several command groups share, defined once so that their names
and help read the same everywhere."""

from __future__ import annotations

from typing import Annotated

import typer

MatchThresholdOpt = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        help="Match at or above this confidence (default: "
        "FACEPIPE_IDENTIFY_MATCH_THRESHOLD, 70 = FAR 1e-6 per comparison).",
    ),
]
FalseMatchRateOpt = Annotated[
    float | None,
    typer.Option(
        "--false-match-rate",
        help="Instead of --threshold: the share of faces of people NOT enrolled "
        "allowed to match someone (e.g. 0.01); the threshold follows the gallery's size.",
    ),
]
