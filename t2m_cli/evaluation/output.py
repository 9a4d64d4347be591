"""`t2m evaluate --output DIR`: eval.json and the PNG figures.

Layout, for one run::

    DIR/eval.json                      the t2m-eval/1 document, with "details"
    DIR/unseen_pairs_<method>.png      ordered-pair accuracy of the unseen classes, per method
    DIR/training_curves.png            validation accuracy, inner loss, update norm by epoch
    DIR/gzsl_curve.png                 seen-unseen curves of every method (with --protocol gzsl)

With several runs, eval.json holds the aggregate and each run's figures go to ``DIR/<label>/``,
its label in eval.json (the run folder's name, with ``-2``, ``-3``, ... where runs in different
places share it).

All or nothing: every input (each run's ``metrics.jsonl``) is read and checked first, then the
files are drawn in a hidden folder and only moved into ``DIR`` once all of them are there. A
failure leaves ``DIR`` as it was (absent, if it was), so the next attempt starts clean.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from t2m_cli.atomic import staged_dir, write_json
from t2m_cli.errors import DataError, RunFailure, UserInputError
from t2m_cli.evaluation.report import HYPERNET, RunEvaluation, report_json, run_labels
from t2m_cli.paths import METRICS

EVAL_JSON = "eval.json"

# A file of the output, as its path under DIR and what writes it to a given path.
_File = tuple[Path, Callable[[Path], Any]]


def _slug(method: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", method.lower()).strip("-")


def write_output(evaluations: list[RunEvaluation], folder: Path) -> list[Path]:
    """Write eval.json and the plots for ``evaluations`` into ``folder``, all or nothing.

    Files of the same names already in ``folder`` are replaced; other files there are kept.

    Returns:
        the files written, eval.json first.

    Raises:
        DataError: a run's ``metrics.jsonl`` cannot be read or a record has no number for
            epoch or val_acc; nothing is written.
        UserInputError: a path the output needs is taken by a file or folder of the other kind.
        RunFailure: a file could not be drawn (nothing is written), or moved into a folder
            that exists.
    """
    files = _plan(evaluations, folder)
    for relative, _ in files:
        _check_free(folder, relative)
    with _staging(folder) as (tmp, whole):
        for relative, write in files:
            write(tmp / relative)
        if not whole:
            _move_in(tmp, folder, [relative for relative, _ in files])
    return [folder / relative for relative, _ in files]


def _plan(evaluations: list[RunEvaluation], folder: Path) -> list[_File]:
    """Every file of the output, its inputs already read and checked; eval.json first."""
    from t2m_cli.evaluation.plots import (
        plot_gzsl_curves,
        plot_pair_matrix,
        plot_training_curves,
    )

    document = report_json(evaluations, details=True)
    files: list[_File] = [(Path(EVAL_JSON), partial(write_json, data=document))]
    several = len(evaluations) > 1
    for evaluation, label in zip(evaluations, run_labels(evaluations), strict=True):
        where = Path(label) if several else Path()
        hn = f"T2M-HN ({evaluation.info['hn_type']})"
        names = {HYPERNET: hn}
        for method, details in evaluation.details.items():
            pairs = details.get("unseen_pairs")
            if pairs is None:
                continue
            matrix = [[math.nan if v is None else v for v in row] for row in pairs["matrix"]]
            title = f"{names.get(method, method)}: unseen pair accuracy, {evaluation.run}"
            draw = partial(plot_pair_matrix, pairs["classes"], matrix, title=title)
            files.append((where / f"unseen_pairs_{_slug(method)}.png", draw))
        metrics = evaluation.run_dir / METRICS
        if metrics.is_file():
            records = _training_records(metrics, folder)
            title = f"{hn} training, {evaluation.run}"
            draw = partial(plot_training_curves, records, title=title)
            files.append((where / "training_curves.png", draw))
        gzsl = {m: d["gzsl_curve"] for m, d in evaluation.details.items() if "gzsl_curve" in d}
        if gzsl:
            curves = {names.get(m, m): (c["S"], c["U"]) for m, c in gzsl.items()}
            points = {names.get(m, m): tuple(c["calibrated"]) for m, c in gzsl.items()}
            title = f"GZSL seen-unseen curve, {evaluation.run}"
            draw = partial(plot_gzsl_curves, curves, title=title, points=points)
            files.append((where / "gzsl_curve.png", draw))
    return files


def _training_records(path: Path, folder: Path) -> list[dict[str, Any]]:
    """A run's metrics.jsonl records, each with a number for epoch and val_acc.

    Raises:
        DataError: the file cannot be read, or a record lacks those numbers.
    """
    from t2m_cli.runs import read_metrics

    after = (
        f" Nothing was written to {folder}: --output draws the run's training curves from this "
        "file. Repair the line (or restore the file), then run the command again."
    )
    try:
        records = read_metrics(path)
    except DataError as exc:
        raise DataError(f"{exc}{after}") from None
    for number, record in enumerate(records, start=1):
        bad = [k for k in ("epoch", "val_acc") if not _is_number(record.get(k))]
        if bad:
            raise DataError(
                f"Metrics file {path}, record {number}, has no number for "
                f"{' or '.join(bad)} ({_short(record)}).{after}"
            )
    return records


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _short(record: dict[str, Any]) -> str:
    text = ", ".join(f"{k}: {v!r}" for k, v in record.items())
    return text if len(text) <= 80 else text[:79] + "\u2026"


def _check_free(folder: Path, relative: Path) -> None:
    """Refuse a file of the output whose path, or a folder on its way, is of the other kind."""
    target = folder / relative
    for part in reversed(relative.parents[:-1]):
        above = folder / part
        if above.exists() and not above.is_dir():
            raise UserInputError(
                f"{above} is a file, where --output puts a folder of figures. Move it away or "
                "give another --output folder."
            )
    if target.is_dir():
        raise UserInputError(
            f"{target} is a folder, where --output writes a file. Move it away or give another "
            "--output folder."
        )


@contextmanager
def _staging(folder: Path) -> Iterator[tuple[Path, bool]]:
    """A hidden folder to draw the output in, and whether it becomes the output folder whole.

    A new output folder is built beside its place and renamed into it at the end; in a folder
    that exists the files are drawn in a hidden folder inside it, to be moved to their places,
    and that folder is removed afterwards.
    """
    if not folder.exists() and folder.name not in ("", ".", ".."):
        with staged_dir(folder) as tmp:
            yield tmp, True
        return
    tmp = folder / f".{EVAL_JSON}.{uuid.uuid4().hex}.part"
    try:
        tmp.mkdir()
    except OSError as exc:
        raise RunFailure(
            f"Could not write into {folder} ({exc.strerror or exc}); check that it is writable."
        ) from exc
    try:
        yield tmp, False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_in(tmp: Path, folder: Path, relatives: list[Path]) -> None:
    """Move the drawn files from ``tmp`` to their places in ``folder``."""
    try:
        for relative in relatives:
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / relative, folder / relative)
    except OSError as exc:
        raise RunFailure(
            f"Could not move the output into {folder} ({exc.strerror or exc}); check that it is "
            "writable and the disk has room."
        ) from exc
