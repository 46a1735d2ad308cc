"""Helpers shared by the benchmark scripts: machine description, progress, output paths."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "bench" / "out"
SHARED_FACES = REPO_ROOT.parent / "shared" / "data" / "faces"

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})

T = TypeVar("T")


def list_photos(folder: Path, limit: int | None = None) -> list[Path]:
    """Image files under ``folder`` (recursive, by suffix), sorted; the first ``limit`` if given."""
    photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    return photos[:limit] if limit is not None else photos


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform.processor()."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, load averages, library versions."""
    import onnxruntime as ort

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_avg_1_5_15": [round(x, 2) for x in load],
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "numpy": np.__version__,
    }


def machine_line(info: dict[str, Any]) -> str:
    """One human-readable line describing the machine."""
    load = ", ".join(f"{x:.2f}" for x in info["load_avg_1_5_15"])
    return (
        f"machine: {info['cpu']}, {info['cores']} cores, load average {load}; "
        f"onnxruntime {info['onnxruntime']} ({', '.join(info['providers'])})"
    )


def progress(items: Iterable[T], total: int | None, description: str) -> Iterator[T]:
    """``items`` with a progress bar on stderr when it is a terminal, plain otherwise."""
    if not sys.stderr.isatty():
        yield from items
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")


def dumps(payload: dict[str, Any]) -> str:
    """``payload`` as indented JSON (NumPy scalars and paths converted)."""
    return json.dumps(payload, indent=2, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
