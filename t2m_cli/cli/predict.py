"""Using a classifier file: `t2m predict` (the classes of feature rows or meshes) and
`t2m export` (an ONNX model of it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from t2m_cli import console
from t2m_cli.atomic import dumps_json
from t2m_cli.cli.common import CacheDir, JsonOut, Quiet, RunsDir, handle_errors

ClassifierFile = Annotated[Path, typer.Argument(help="A classifier file written by `t2m induce`.")]
ClassifierRun = Annotated[
    Path | None,
    typer.Option(
        help="The classifier's run folder, whose PointNet reads meshes (default: the run the "
        "classifier names, under --runs-dir).",
        show_default=False,
    ),
]


def predict(
    classifier: ClassifierFile,
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Feature files (.npy or .safetensors, one row per item), .off meshes, or "
            "folders of meshes. Meshes go through the sampling and PointNet of the dataset "
            "the classifier's run was trained on.",
            show_default=False,
        ),
    ],
    top_k: Annotated[
        int, typer.Option("--top-k", help="Classes shown per item, most probable first.")
    ] = 1,
    csv: Annotated[
        Path | None,
        typer.Option(
            "--csv",
            help="Also write the answers to this CSV file: item, rank, class, probability.",
            show_default=False,
        ),
    ] = None,
    run: ClassifierRun = None,
    runs_dir: RunsDir = Path("runs"),
    json_out: JsonOut = False,
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
) -> None:
    """Predict the class of each feature row or mesh with a classifier from `t2m induce`."""
    with handle_errors(quiet):
        import csv as csv_module
        from contextlib import ExitStack

        from t2m_cli.atomic import atomic_path
        from t2m_cli.errors import RunFailure, UserInputError
        from t2m_cli.induction import InducedClassifier
        from t2m_cli.prediction import MeshExtractor, collect_inputs, prediction_json
        from t2m_cli.prediction import predict as predict_items

        if top_k < 1:
            raise UserInputError(f"--top-k must be at least 1, got {top_k}.")
        if csv is not None and csv.is_dir():
            raise UserInputError(f"--csv {csv} is a folder; give a file name.")
        from t2m_cli.device import cpu_threads, phase_threads

        threads = phase_threads(small_steps=False)  # a bad T2M_THREADS is refused first
        found = collect_inputs(inputs)
        model = InducedClassifier.load(classifier)
        extractor = (
            MeshExtractor.for_classifier(model, runs_dir, run, cache_dir) if found.meshes else None
        )
        shown = min(top_k, len(model.class_names))
        with ExitStack() as stack:
            # The CSV is written as the answers come, into a temporary file beside it that
            # replaces it at the end: a path that cannot be written is refused before any work.
            rows = None
            if csv is not None:
                try:
                    part = stack.enter_context(atomic_path(csv))
                    rows = stack.enter_context(part.open("w", encoding="utf-8", newline=""))
                except (OSError, RunFailure) as exc:
                    raise UserInputError(f"--csv {csv} cannot be written ({exc}).") from None
                writer = csv_module.writer(rows, lineterminator="\n")
                writer.writerow(["item", "rank", "class", "probability"])
            stack.enter_context(cpu_threads(threads))
            progress = stack.enter_context(console.progress_task("predict"))
            table: list = []
            streamed = json_out
            count = -1
            if json_out:
                console.out.file.write("[")
            for count, answer in enumerate(predict_items(model, found, top_k, extractor, progress)):
                if rows is not None:
                    for rank, (name, p) in enumerate(zip(answer.classes, answer.probabilities), 1):
                        writer.writerow([answer.item, rank, name, f"{p:.6f}"])
                if json_out:
                    text = dumps_json(prediction_json(answer))
                    console.out.file.write(("," if count else "") + "\n  " + text)
                elif not streamed and len(table) < TABLE_ROWS:
                    table.append(answer)
                else:
                    # Past TABLE_ROWS answers a table would hold them all in memory and draw
                    # them at the end: the rest are printed as they come, tab-separated.
                    if not streamed:
                        _print_lines(table, shown, header=True)
                        table, streamed = [], True
                    _print_lines([answer], shown, header=False)
            if json_out:
                console.out.file.write("\n]\n" if count >= 0 else "]\n")
        if csv is not None:
            console.log(f"wrote {csv}")
        if not streamed:
            _render(table, shown)


TABLE_ROWS = 1000
"""Answers shown as a table; more are printed one line each, as they come."""


def _columns(shown: int) -> list[str]:
    """Column names: item, then class and probability for each of the top ``shown``."""
    columns = ["item"]
    for rank in range(1, shown + 1):
        suffix = "" if shown == 1 else f" {rank}"
        columns += [f"class{suffix}", f"probability{suffix}"]
    return columns


def _cells(answer) -> list[str]:
    """One answer's cells, in `_columns` order."""
    cells = [answer.item]
    for name, p in zip(answer.classes, answer.probabilities):
        cells += [name, f"{p:.3f}"]
    return cells


def _print_lines(answers, shown: int, header: bool) -> None:
    """Answers as tab-separated lines (`_columns`), with the header line first if asked."""
    out = console.out.file
    if header:
        out.write("\t".join(_columns(shown)) + "\n")
    for answer in answers:
        out.write("\t".join(_cells(answer)) + "\n")


def _render(answers, shown: int) -> None:
    """The answers as a table (`_columns`)."""
    from rich.table import Table

    table = Table()
    for column in _columns(shown):
        table.add_column(column, justify="right" if column.startswith("prob") else "left")
    for answer in answers:
        table.add_row(*_cells(answer))
    console.result(table)


def export(
    classifier: ClassifierFile,
    format: Annotated[
        str, typer.Option("--format", help="Model format; onnx is the one there is.")
    ] = "onnx",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Model file (default: the classifier's name with .onnx).",
            show_default=False,
        ),
    ] = None,
    extractor: Annotated[
        bool,
        typer.Option(
            "--with-extractor",
            help="Put the run's PointNet in front: the model reads (N, P, 3) point clouds "
            "instead of features.",
        ),
    ] = False,
    run: ClassifierRun = None,
    runs_dir: RunsDir = Path("runs"),
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
) -> None:
    """Export a classifier from `t2m induce` as an ONNX model, to run without t2m."""
    with handle_errors(quiet):
        from t2m_cli.device import fixed_threads
        from t2m_cli.errors import UserInputError
        from t2m_cli.export import export_onnx
        from t2m_cli.induction import InducedClassifier
        from t2m_cli.prediction import MeshExtractor

        fixed_threads()  # a bad T2M_THREADS is refused as by every command
        if format.lower() != "onnx":
            raise UserInputError(f"--format {format} is not one t2m writes; use --format onnx.")
        target = output or classifier.with_name(classifier.name.split(".")[0] + ".onnx")
        if target.resolve() == classifier.resolve():
            raise UserInputError(f"--output {target} is the classifier file itself.")
        model = InducedClassifier.load(classifier)
        front = (
            MeshExtractor.for_classifier(model, runs_dir, run, cache_dir, "--with-extractor")
            if extractor
            else None
        )
        with console.progress_task("export"):
            export_onnx(model, target, front)
        reads = (
            f"(N, {front.n_points}, 3) point clouds"
            if front
            else f"(N, {model.feature_dim}) features"
        )
        console.out.print(
            f"model: {target} ({target.stat().st_size / 1024:.0f} KiB; reads {reads}, "
            f"gives (N, {len(model.class_names)}) logits)"
        )
