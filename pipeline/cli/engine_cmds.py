"""Engine commands: ``facepipe detect``, ``facepipe embed``, ``facepipe compare``, and
``facepipe models install`` (the attribute model files, at install time).

Every SRC may be a file, a directory (recursive), an http(s) URL, an ``s3://`` key or prefix,
or base64 (``data:image/...;base64,...`` / ``base64:...``). Bad inputs are reported per input
(an error object or line) and the others continue: the exit status is non-zero only for usage
errors, and for ``compare`` when the comparison could not be made.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import numpy as np
import typer
from numpy.typing import NDArray
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.cli.app import app
from pipeline.config import Settings, get_settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.types import DetectMode, Face, ImageAnalysis

SourcesArg = Annotated[
    list[str],
    typer.Argument(
        help="Image files, directories (recursive), http(s) URLs, s3://bucket/key or "
        "s3://bucket/prefix/, data:/base64: strings.",
        show_default=False,
    ),
]
LargestOpt = Annotated[
    bool, typer.Option("--largest", help="Keep only the largest face (reference mode=1).")
]
BatchOpt = Annotated[
    int | None,
    typer.Option("--batch-size", min=1, help="Images per model batch (default: settings)."),
]


def _round_list(values: NDArray[np.floating], digits: int) -> list[Any]:
    rounded: list[Any] = np.round(np.asarray(values, dtype=np.float64), digits).tolist()
    return rounded


def embedding_json(vector: NDArray[np.float32]) -> list[float]:
    """The shortest decimals that round-trip each float32 component (exact, and compact)."""
    return [float(str(v)) for v in np.asarray(vector, dtype=np.float32)]


def face_json(face: Face, *, with_embedding: bool, with_attributes: bool = False) -> dict[str, Any]:
    """One face in the CLI's JSON shape (box, score, landmarks, pose, quality[, attributes]
    [, embedding]); ``attributes`` is null when the engine has no attribute model."""
    out: dict[str, Any] = {
        "box": _round_list(np.asarray(face.box), 2),
        "score": round(float(face.score), 4),
        "landmarks": _round_list(face.landmarks, 2),
        "pose": face.pose.to_dict(),
        "quality": face.quality.to_dict(),
    }
    if with_attributes:
        out["attributes"] = face.attributes.to_dict() if face.attributes is not None else None
    if with_embedding:
        out["embedding"] = embedding_json(face.embedding) if face.embedding is not None else None
    return out


def outcome_json(
    source: str,
    analysis: ImageAnalysis | None,
    error: FacepipeError | None,
    *,
    model: str,
    with_embedding: bool,
    with_attributes: bool = False,
) -> dict[str, Any]:
    """One input's line: ``{source, width, height, model, faces, error}``.

    An image without a face keeps ``faces: []`` and carries the NO_FACE error, like the
    reference detect call.
    """
    if analysis is not None and error is None and not analysis.faces:
        error = FacepipeError(ErrorCode.NO_FACE, f"{source}: no face was detected")
    return {
        "source": source,
        "width": analysis.width if analysis is not None else None,
        "height": analysis.height if analysis is not None else None,
        "model": analysis.model_id if analysis is not None else model,
        "faces": [
            face_json(f, with_embedding=with_embedding, with_attributes=with_attributes)
            for f in analysis.faces
        ]
        if analysis is not None
        else [],
        "error": error.to_dict() if error is not None else None,
    }


def _engine(settings: Settings) -> Any:
    """Load the engine (imported here so ``facepipe --help`` stays fast); a pack that cannot
    be loaded (MODEL_INVALID...) is reported on stderr with exit status 1, not a traceback."""
    from pipeline.engine import FaceEngine

    try:
        return FaceEngine.from_settings(settings)
    except FacepipeError as exc:
        Console(stderr=True).print(
            f"[red]error {exc.numeric_code} {exc.code.value}[/red]: {exc.message}",
            highlight=False,
        )
        raise typer.Exit(code=1) from exc


def _settings(max_faces: int | None = None, rotate: bool | None = None) -> Settings:
    settings = get_settings()
    update: dict[str, Any] = {}
    if max_faces is not None:
        update["max_faces"] = max_faces
    if rotate is not None:
        update["rotate_detection"] = rotate
    return settings.model_copy(update=update) if update else settings


class _Expansion:
    """Expands the command's sources one by one. A source whose listing fails (an S3 prefix
    without credentials, say) is passed on as itself, and its error is kept here so that its
    line carries the listing's error: a bad input never stops the others."""

    def __init__(self, sources: Iterable[str], settings: Settings) -> None:
        self.sources = sources
        self.settings = settings
        self.failed: dict[str, FacepipeError] = {}

    def __iter__(self) -> Iterator[str]:
        from pipeline.sources import expand_sources

        for source in self.sources:
            try:
                yield from expand_sources([source], self.settings)
            except FacepipeError as exc:
                self.failed[source] = exc
                yield source

    def error_of(self, source: str, error: FacepipeError | None) -> FacepipeError | None:
        """The error to report for an outcome: the listing's, when its expansion failed."""
        return self.failed.get(source, error)


@contextmanager
def _progress(label: str) -> Iterator[Any]:
    """A progress display on stderr when it is a terminal; a no-op callable otherwise."""
    if not sys.stderr.isatty():
        yield lambda: None
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed} images"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        # rich would otherwise route stdout (the JSON lines) through its stderr console
        redirect_stdout=False,
        redirect_stderr=False,
    )
    with progress:
        task = progress.add_task(label, total=None, rate="")

        def advance() -> None:
            progress.advance(task)
            elapsed = progress.tasks[0].elapsed or 0.0
            done = progress.tasks[0].completed
            if elapsed > 0:
                progress.update(task, rate=f"{done / elapsed:.1f} img/s")

        yield advance


def _write_line(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _detect_table(console: Console, line: dict[str, Any]) -> None:
    size = f"{line['width']}x{line['height']}" if line["width"] is not None else "?"
    error = line["error"]
    if error is not None and not line["faces"]:
        console.print(
            f"[bold]{line['source']}[/bold] {size}: [red]{error['name']} ({error['code']})"
            f"[/red] {error['message']}"
        )
        return
    table = Table(title=f"{line['source']}  {size}  {len(line['faces'])} face(s)")
    columns = ["#", "box (x1,y1,x2,y2)", "score", "quality", "level", "yaw/pitch/roll"]
    with_attributes = any("attributes" in face for face in line["faces"])
    if with_attributes:
        columns += ["gender", "age"]
    for column in columns:
        table.add_column(column, justify="right")
    for i, face in enumerate(line["faces"]):
        pose = face["pose"]
        row = [
            str(i),
            ",".join(str(round(v)) for v in face["box"]),  # round(): no "-0"
            f"{face['score']:.3f}",
            f"{face['quality']['score']:.0f}",
            str(face["quality"]["level"]),
            f"{pose['yaw']:.0f}/{pose['pitch']:.0f}/{pose['roll']:.0f}",
        ]
        if with_attributes:
            row += _attribute_cells(face.get("attributes"))
        table.add_row(*row)
    console.print(table)


def _attribute_cells(attrs: dict[str, Any] | None) -> list[str]:
    if attrs is None:
        return ["-", "-"]
    gender, age = attrs["gender"], str(attrs["age"])
    if "gender_probability" in attrs:
        gender += f" {attrs['gender_probability']:.2f}"
    return [gender, age]


def _result_lines(
    engine: Any,
    sources: list[str],
    settings: Settings,
    largest: bool,
    batch_size: int | None,
    *,
    embed: bool,
    with_embedding: bool = False,
    attributes: bool = False,
) -> Iterator[dict[str, Any]]:
    """One output object per input (sources expanded lazily), errors included, in order."""
    mode = DetectMode.LARGEST if largest else DetectMode.ALL
    expansion = _Expansion(sources, settings)
    outcomes = engine.analyze_stream(
        expansion, mode=mode, embed=embed, batch_size=batch_size, attributes=attributes
    )
    for outcome in outcomes:
        yield outcome_json(
            outcome.source,
            outcome.analysis,
            expansion.error_of(outcome.source, outcome.error),
            model=engine.model_id,
            with_embedding=with_embedding,
            with_attributes=attributes,
        )


@app.command()
def detect(
    sources: SourcesArg,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per image per line.")
    ] = False,
    largest: LargestOpt = False,
    rotate: Annotated[
        bool | None,
        typer.Option(
            "--rotate/--no-rotate",
            help="Also try 90/180/270 degrees when nothing is found upright (default: settings).",
        ),
    ] = None,
    max_faces: Annotated[
        int | None, typer.Option("--max-faces", min=1, help="Most faces kept per image.")
    ] = None,
    batch_size: BatchOpt = None,
    attributes: Annotated[
        bool,
        typer.Option(
            "--attributes",
            help="Also estimate gender and age per face (null when no attribute model).",
        ),
    ] = False,
) -> None:
    """Detect faces: boxes, scores, 5 landmarks, pose and quality (a table, or --json)."""
    settings = _settings(max_faces, rotate)
    engine = _engine(settings)
    console = Console()
    lines = _result_lines(
        engine, sources, settings, largest, batch_size, embed=False, attributes=attributes
    )
    with _progress("detect") as advance:
        for line in lines:
            if as_json:
                _write_line(line)
            else:
                _detect_table(console, line)
            advance()


@app.command()
def embed(
    sources: SourcesArg,
    jsonl: Annotated[
        bool,
        typer.Option(
            "--jsonl",
            help="One JSON object per input per line, with 512-d embeddings "
            "(default: a summary table).",
        ),
    ] = False,
    largest: LargestOpt = False,
    batch_size: BatchOpt = None,
) -> None:
    """Detect and embed faces; --jsonl prints {source, width, height, model, faces, error}."""
    settings = _settings()
    engine = _engine(settings)
    console = Console()
    table = Table(title=f"embeddings ({engine.model_id}, {engine.embedding_dim}-d)")
    for column in ("source", "size", "faces", "error"):
        table.add_column(column)
    lines = _result_lines(
        engine, sources, settings, largest, batch_size, embed=True, with_embedding=jsonl
    )
    with _progress("embed") as advance:
        for line in lines:
            if jsonl:
                _write_line(line)
            else:
                size = f"{line['width']}x{line['height']}" if line["width"] is not None else "-"
                err = line["error"]
                table.add_row(
                    line["source"],
                    size,
                    str(len(line["faces"])),
                    f"{err['name']} ({err['code']})" if err else "",
                )
            advance()
    if not jsonl:
        console.print(table)


def _largest_faces(engine: Any, sources: list[str]) -> list[Face | FacepipeError]:
    """The largest face of each source (one batch, decoded in parallel), or its error."""
    found: list[Face | FacepipeError] = []
    for outcome in engine.analyze_stream(sources, mode=DetectMode.LARGEST, embed=True):
        if outcome.error is not None:
            found.append(outcome.error)
        elif outcome.analysis is None or not outcome.analysis.faces:
            found.append(
                FacepipeError(ErrorCode.NO_FACE, f"{outcome.source}: no face was detected")
            )
        else:
            found.append(outcome.analysis.faces[0])
    return found


def compare_images(engine: Any, source_a: str, source_b: str, threshold: float) -> dict[str, Any]:
    """Compare the largest face of two images: similarity 0-100, cosine and is_match."""
    from pipeline.similarity import confidence_from_cosine, cosine

    result: dict[str, Any] = {
        "a": source_a,
        "b": source_b,
        "model": engine.model_id,
        "similarity": None,
        "cosine": None,
        "is_match": None,
        "threshold": threshold,
        "faces": {"a": None, "b": None},
        "error": None,
    }
    faces = _largest_faces(engine, [source_a, source_b])
    for key, face in zip(("a", "b"), faces, strict=True):
        if isinstance(face, FacepipeError):
            result["error"] = {**face.to_dict(), "image": key}
            return result
        result["faces"][key] = face_json(face, with_embedding=False)
    first, second = (face for face in faces if isinstance(face, Face))
    if first.embedding is None or second.embedding is None:  # embed=True: never; says why
        raise FacepipeError(ErrorCode.INTERNAL, "a compared face has no embedding")
    cos = cosine(first.embedding, second.embedding)
    similarity = float(
        confidence_from_cosine(cos, engine.model_id, engine.settings.calibration_dir)
    )
    result.update(
        similarity=round(similarity, 2),
        cosine=round(cos, 6),
        is_match=similarity >= threshold,
    )
    return result


@app.command()
def compare(
    source_a: Annotated[str, typer.Argument(help="First image (any source form).")],
    source_b: Annotated[str, typer.Argument(help="Second image (any source form).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold", min=0, max=100, help="Match threshold 0-100 (default: settings)."
        ),
    ] = None,
) -> None:
    """Compare the largest face of two images: similarity 0-100, cosine, is_match."""
    settings = _settings()
    engine = _engine(settings)
    limit = settings.match_threshold if threshold is None else threshold
    result = compare_images(engine, source_a, source_b, limit)
    if as_json:
        _write_line(result)
    elif result["error"] is not None:
        err = result["error"]
        Console(stderr=True).print(
            f"[red]{err['name']} ({err['code']})[/red] image {err['image']}: {err['message']}"
        )
    else:
        verdict = "[green]match[/green]" if result["is_match"] else "[yellow]no match[/yellow]"
        Console().print(
            f"similarity {result['similarity']:.1f}/100  cosine {result['cosine']:.4f}  "
            f"{verdict} (threshold {limit:g})"
        )
    if result["error"] is not None:
        raise typer.Exit(code=1)
