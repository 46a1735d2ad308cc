"""The shipped calibration of the default recognizer, reproduced from the shared lfw-dev photos
by the command an operator runs (``python -m bench.accuracy --calibrate``), on a fresh machine.

The shipped file was measured on all 4,854 photos (11.8M impostor pairs); embedding them all
takes minutes, so this test embeds a deterministic half: every 2nd identity in sorted order
(764 of 1,527 identities, 2,406 photos, 2.9M impostor pairs, about 40 s on 2 cores). The real
engine embeds them and ``bench.accuracy.main`` builds the calibration from them, the same code
path as the shipped file's, into a temporary folder (no embedding cache is read or written).

Compared: every knot the half's data can measure (at least 100 impostor pairs above it:
confidence 15 to 54.5, FAR down to 3.5e-5), against the shipped knot at the same confidence.
Tolerance: ``Z`` = 4 standard errors of the half's own knot, as the command records them (a
delete-one-identity jackknife of the FAR at the knot, turned into cosine by the local slope:
``pipeline.calibration.knot_standard_errors``), plus 0.0005 cosine for embedding differences
between onnxruntime builds (the cached embeddings of all 4,854 photos give the shipped knots
back to 7e-5). That is 0.0027 cosine at confidence 20, 0.004 at 30, 0.006 at 40, 0.013 at 50
(2 confidence points there, under 1 point below 40). Checked on those cached embeddings: over
100 random identity halves the largest deviation of any knot was 2.7 of its standard errors
(95% of halves under 1.9), and the jackknife slightly overstates the error (deviations / se
have sd 0.63 where a right se and a half of the set give 0.71); this half's largest is 0.8 se.
A scale shifted by half a confidence point fails at 25 of the 80 knots.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from bench import accuracy
from bench.embed_cache import read_label_rows
from pipeline.calibration import (
    DEFAULT_MODEL_ID,
    calibration_for,
    far_from_confidence,
    read_calibration,
)

SUBSET_STEP = 2
Z = 4.0
ENGINE_BUILD_MARGIN = 0.0005
DATA_DOWN_TO = 54.5
"""The highest confidence 2.9M impostor pairs measure (FAR 3.5e-5: 100 pairs above it)."""


def _subset_labels(labels: Path, out: Path) -> tuple[int, int]:
    """Every ``SUBSET_STEP``-th identity of ``labels`` (sorted), as a labels.csv of absolute
    paths at ``out``. Returns (photos, identities)."""
    rows = read_label_rows(labels)
    names = set(sorted({identity for _, identity in rows})[::SUBSET_STEP])
    chosen = [(str(labels.parent / path), identity) for path, identity in rows if identity in names]
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "identity"])
        writer.writerows(chosen)
    return len(chosen), len(names)


@pytest.mark.slow
@pytest.mark.shared_data
def test_shipped_calibration_reproduced_from_half_of_lfw_dev(
    shared_faces: Path, tmp_path: Path
) -> None:
    labels = shared_faces / "lfw-dev" / "labels.csv"
    if not labels.is_file():
        pytest.skip("../shared/data/faces/lfw-dev is not present")
    subset = tmp_path / "labels.csv"
    photos, identities = _subset_labels(labels, subset)
    assert (photos, identities) == (2406, 764)  # the set on ../shared is the one measured
    out = tmp_path / "calibrations"
    argv = ["--labels", str(subset), "--face", "centre", "--no-cache"]
    assert accuracy.main([*argv, "--calibrate", str(out), "--out", str(tmp_path / "out")]) == 0

    # the command keyed its calibration by the engine's recognizer
    fitted = read_calibration(out / f"{DEFAULT_MODEL_ID}.json")
    assert fitted.provenance["photos"] == photos  # a face found in every photo
    assert fitted.provenance["impostor_pairs"] == 2_889_615
    shipped = calibration_for(DEFAULT_MODEL_ID)
    errors = fitted.provenance["knot_standard_errors"]
    levels = np.asarray(errors["confidence"])
    se = np.asarray(errors["cosine_se"])
    assert levels[0] == 15.0 and levels[-1] == DATA_DOWN_TO and levels.size == 80
    # the shipped knots at these levels were read from data too (its data reach 60.7)
    assert shipped.provenance["data_down_to_far"] < far_from_confidence(DATA_DOWN_TO)
    deviation = fitted.cosine(levels) - shipped.cosine(levels)
    tolerance = Z * se + ENGINE_BUILD_MARGIN
    worst = int(np.argmax(np.abs(deviation) / tolerance))
    assert np.all(np.abs(deviation) <= tolerance), (
        f"confidence {levels[worst]:g}: cosine {fitted.cosine(levels[worst]):.4f} from the half, "
        f"shipped {shipped.cosine(levels[worst]):.4f}, allowed +-{tolerance[worst]:.4f}"
    )
    # the errors are real sampling errors: small in the bulk, growing towards the data's end
    assert 0.0002 < se[levels == 20.0][0] < se[levels == 40.0][0] < se[levels == 50.0][0] < 0.006
