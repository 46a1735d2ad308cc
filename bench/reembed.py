"""A model upgrade through the reembed job: faces/s, and rank-1 before and after the switch.

Run after ``bench/quantized.py`` (it reuses that run's cached lfw-dev faces: crops and fp32
vectors)::

    .venv/bin/python -m bench.reembed --int8 "$FACEPIPE_HOME/models/<id>-int8" \
        --faces-cache ~/.cache/facepipe-bench/<n>-photos/lfw-<det id>-<rec id>.npz [--json]

Starts a private embedded Postgres, enrols every cached face (its fp32 vector and its stored
crop, one person per lfw identity, group ``lfw``), runs a reembed job to the INT8 pack inline
and reads both models' vectors back from the database: leave-one-out rank-1 over the group
before (fp32) and after (INT8), and the job's faces/s.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import SHARED_FACES, dumps, machine_info, machine_line
from bench.accuracy import rank1_identification, read_labels
from pipeline.config import get_settings


def main(argv: list[str] | None = None) -> int:
    from pipeline.jobs.reembed import (
        ReembedParams,
        create_reembed_job,
        recognizer_model_id,
        run_reembed,
    )
    from pipeline.store import repo
    from pipeline.store.crops import encode_crop
    from pipeline.store.db import Database, embedded_server, stop_embedded_server
    from pipeline.store.records import NewFace

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--int8", type=Path, required=True)
    parser.add_argument(
        "--faces-cache",
        type=Path,
        required=True,
        help="an lfw-*.npz file written by bench/quantized.py",
    )
    parser.add_argument("--labels", type=Path, default=SHARED_FACES / "lfw-dev" / "labels.csv")
    parser.add_argument(
        "--identities", type=int, default=None, help="the --identities given to bench/quantized.py"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    data = np.load(args.faces_cache)
    samples = read_labels(args.labels)
    names = sorted({s.identity for s in samples})
    if args.identities and args.identities < len(names):
        step = len(names) / args.identities
        chosen = {names[int(k * step)] for k in range(args.identities)}
        samples = [s for s in samples if s.identity in chosen]
    kept = [int(i) for i in data["kept"]]
    identities = [samples[i].identity for i in kept]
    settings = get_settings()
    from pipeline.models.pack import resolve_pack

    # The cached vectors were made by the configured (fp32) pack.
    source = resolve_pack(settings).recognizer.model_id
    pgdata = Path(tempfile.mkdtemp(prefix="facepipe-bench-pg-")) / "data"
    server = embedded_server(pgdata)
    db = Database.from_url(server.get_uri(), server=server)
    report: dict[str, Any] = {"machine": machine_info(), "faces": len(kept)}
    try:
        with db.transaction() as conn:
            repo.ensure_groups(conn, ["lfw"])
            for person in sorted(set(identities)):
                repo.insert_person(conn, person, "", "")
                repo.add_memberships(conn, person, ["lfw"])
            for k, (person, vector, crop) in enumerate(
                zip(identities, data["vectors"], data["crops"], strict=True)
            ):
                repo.insert_face(
                    conn,
                    NewFace(
                        person_id=person,
                        model_id=source,
                        embedding=vector,
                        box=(0.0, 0.0, 112.0, 112.0),
                        landmarks=np.zeros((5, 2), np.float32),
                        det_score=1.0,
                        quality_score=100.0,
                        quality_level=0,
                        quality={},
                        content_sha256=f"lfw-{k:06d}",
                        face_index=0,
                        crop=encode_crop(crop),
                        crop_format="png",
                    ),
                )
        target = recognizer_model_id(args.int8, settings)
        job = create_reembed_job(db, ReembedParams("lfw", source, target, str(args.int8), 64))
        start = time.perf_counter()
        result = run_reembed(db, job.id, settings)
        report["reembed"] = {**result.to_dict(), "wall_s": round(time.perf_counter() - start, 2)}
        for label, model in (("before (fp32)", source), ("after (int8)", target)):
            with db.connection() as conn:
                rows = conn.execute(
                    "SELECT f.person_id, f.embedding FROM faces f WHERE f.model_id = %s "
                    "ORDER BY f.content_sha256",
                    (model,),
                ).fetchall()
            vectors = np.stack([repo.as_array(r[1]) for r in rows])
            correct, probes, _ = rank1_identification(vectors, [r[0] for r in rows])
            report[f"rank1 {label}"] = {
                "correct": correct,
                "probes": probes,
                "accuracy": round(correct / probes, 4),
            }
    finally:
        db.close()
        stop_embedded_server(pgdata)
        shutil.rmtree(pgdata.parent, ignore_errors=True)
    if args.json:
        sys.stdout.write(dumps(report) + "\n")
        return 0
    sys.stdout.write(machine_line(report["machine"]) + "\n")
    for key, value in report.items():
        if key != "machine":
            sys.stdout.write(f"{key}: {value}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
