"""`t2m induce`: a classifier file for classes described in a text file."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from t2m_cli import console
from t2m_cli.atomic import dumps_json
from t2m_cli.cli.common import (
    CacheDir,
    JsonOut,
    Quiet,
    RunsDir,
    handle_errors,
)
from t2m_cli.errors import UserInputError
from t2m_cli.textio import decode_text, read_text


def _check_output(target: Path, descriptions: Path | None, run: Path) -> None:
    """Refuse an output that is one of the command's inputs: the descriptions file, or a file
    of the run (its checkpoints, config, state), which the classifier would replace."""
    from t2m_cli.paths import RUN_FILES

    inputs = [descriptions] if descriptions is not None else []
    inputs += [run / name for name in RUN_FILES]
    for source in inputs:
        if target.is_file() and source.is_file() and os.path.samefile(target, source):
            what = "the descriptions file" if source == descriptions else f"a file of run {run}"
            raise UserInputError(
                f"--output {target} is {what}, which the classifier would replace. Give "
                "another path with -o (by default the classifier goes beside the descriptions "
                "file, as <name>.t2m.safetensors)."
            )


def induce(
    descriptions: Annotated[
        str,
        typer.Argument(
            help="Descriptions file, one class per line as 'name: description' or a bare "
            "name; '-' reads stdin. A line whose first non-blank character is '#' is a "
            "comment; a '#' later in a line is part of the name or description. A .yaml, "
            ".yml or .json file (or JSON on stdin) maps each class to a description or a "
            "list of them; a class with several is induced from their mean embedding."
        ),
    ],
    run: Annotated[
        Path | None, typer.Option(help="Run folder (default: the latest under runs/).")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Classifier file (default: <input>.t2m.safetensors)."),
    ] = None,
    runs_dir: RunsDir = Path("runs"),
    json_out: JsonOut = False,
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
) -> None:
    """Induce a classifier for described classes and write it to a safetensors file."""
    with handle_errors(quiet):
        from t2m_cli.induction import STRUCTURED_SUFFIXES, parse_class_texts

        # Bytes on both paths, so stdin and a file meet the same decoding rule.
        path: Path | None = None
        if descriptions == "-":
            text, source = decode_text(sys.stdin.buffer.read(), "stdin"), "stdin"
            default_out = Path("classifier.t2m.safetensors")
        else:
            path = Path(descriptions)
            text, source = read_text(path, "Descriptions file"), str(path)
            default_out = path.with_suffix(".t2m.safetensors")
        structured = (
            text.lstrip("\ufeff \t\r\n").startswith(("{", "["))
            if path is None
            else path.suffix.lower() in STRUCTURED_SUFFIXES
        )
        classes = parse_class_texts(text, source, structured)
        from t2m_cli.induction import induce_from_run
        from t2m_cli.runs import latest_run

        folder = run if run is not None else latest_run(runs_dir)
        target = output or default_out
        _check_output(target, path, folder)
        from t2m_cli.device import cpu_threads, phase_threads

        # Embedding the descriptions is most of the work: threads on the idle cores.
        threads = cpu_threads(phase_threads(small_steps=False))
        with threads, console.progress_task(f"induce {len(classes)} classes"):
            classifier = induce_from_run(folder, classes, cache_dir=cache_dir)
        classifier.save(target)
        summary = {
            "output": str(target),
            "classes": classifier.class_names,
            "feature_dim": classifier.feature_dim,
            **classifier.info,
        }
        if json_out:
            console.out.print_json(dumps_json(summary))
        else:
            console.out.print(
                f"classifier: {target} ({len(classes)} classes over "
                f"{classifier.feature_dim}-d features, from run {folder.name})"
            )
