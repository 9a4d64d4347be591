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
        from t2m_cli.errors import UserInputError
        from t2m_cli.induction import InducedClassifier
        from t2m_cli.prediction import MeshExtractor, collect_inputs
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
        with cpu_threads(threads), console.progress_task("predict") as progress:
            answers = list(predict_items(model, found, top_k, extractor, progress))
        if csv is not None:
            _write_csv(csv, answers)
            console.log(f"wrote {csv}")
        if json_out:
            from t2m_cli.prediction import prediction_json

            console.out.print_json(dumps_json([prediction_json(a) for a in answers]))
            return
        _render(answers, top_k)


def _render(answers, top_k: int) -> None:
    """A table: item, then class and probability for each of the top ``top_k``."""
    from rich.table import Table

    table = Table()
    table.add_column("item")
    for rank in range(1, top_k + 1):
        suffix = "" if top_k == 1 else f" {rank}"
        table.add_column(f"class{suffix}")
        table.add_column(f"probability{suffix}", justify="right")
    for answer in answers:
        cells = [answer.item]
        for name, p in zip(answer.classes, answer.probabilities):
            cells += [name, f"{p:.3f}"]
        table.add_row(*cells)
    console.result(table)


def _write_csv(path: Path, answers) -> None:
    """The answers as CSV (item, rank, class, probability), written atomically."""
    import csv
    import io

    from t2m_cli.atomic import write_text

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["item", "rank", "class", "probability"])
    for answer in answers:
        for rank, (name, p) in enumerate(zip(answer.classes, answer.probabilities), 1):
            writer.writerow([answer.item, rank, name, f"{p:.6f}"])
    write_text(path, buffer.getvalue())


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
        if format != "onnx":
            raise UserInputError(f"--format {format} is not one t2m writes; use --format onnx.")
        target = output or classifier.with_name(classifier.name.split(".")[0] + ".onnx")
        if target.resolve() == classifier.resolve():
            raise UserInputError(f"--output {target} is the classifier file itself.")
        model = InducedClassifier.load(classifier)
        front = MeshExtractor.for_classifier(model, runs_dir, run, cache_dir) if extractor else None
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
