"""`t2m evaluate --output DIR`: eval.json and the PNG figures.

Layout, for one run::

    DIR/eval.json                      the t2m-eval/1 document, with "details"
    DIR/unseen_pairs_<method>.png      ordered-pair accuracy of the unseen classes, per method
    DIR/training_curves.png            validation accuracy, inner loss, update norm by epoch
    DIR/gzsl_curve.png                 seen-unseen curves of every method (with --protocol gzsl)

With several runs, eval.json holds the aggregate and each run's figures go to ``DIR/<run>/``.
Every file is written atomically; a failure leaves earlier files as they were.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from t2m_cli.atomic import write_json
from t2m_cli.errors import UserInputError
from t2m_cli.evaluation.report import HYPERNET, RunEvaluation, report_json
from t2m_cli.paths import METRICS

EVAL_JSON = "eval.json"


def _slug(method: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", method.lower()).strip("-")


def write_output(evaluations: list[RunEvaluation], folder: Path) -> list[Path]:
    """Write eval.json and the plots for ``evaluations`` into ``folder``.

    Returns:
        the files written, eval.json first.
    """
    from t2m_cli.evaluation.plots import (
        plot_gzsl_curves,
        plot_pair_matrix,
        plot_training_curves,
    )
    from t2m_cli.runs import read_metrics

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"Cannot create the output folder {folder} ({exc}).") from exc
    written = [folder / EVAL_JSON]
    write_json(written[0], report_json(evaluations, details=True))
    for evaluation in evaluations:
        where = folder if len(evaluations) == 1 else folder / evaluation.run
        where.mkdir(exist_ok=True)
        hn = f"T2M-HN ({evaluation.info['hn_type']})"
        label = {HYPERNET: hn}
        for method, details in evaluation.details.items():
            pairs = details.get("unseen_pairs")
            if pairs is None:
                continue
            matrix = [[math.nan if v is None else v for v in row] for row in pairs["matrix"]]
            path = where / f"unseen_pairs_{_slug(method)}.png"
            title = f"{label.get(method, method)}: unseen pair accuracy, {evaluation.run}"
            written.append(plot_pair_matrix(pairs["classes"], matrix, path, title))
        metrics = evaluation.run_dir / METRICS
        if metrics.is_file():
            path = where / "training_curves.png"
            title = f"{hn} training, {evaluation.run}"
            written.append(plot_training_curves(read_metrics(metrics), path, title))
        curves = {
            label.get(m, m): (d["gzsl_curve"]["S"], d["gzsl_curve"]["U"])
            for m, d in evaluation.details.items()
            if "gzsl_curve" in d
        }
        if curves:
            points = {
                label.get(m, m): tuple(d["gzsl_curve"]["calibrated"])
                for m, d in evaluation.details.items()
                if "gzsl_curve" in d
            }
            path = where / "gzsl_curve.png"
            title = f"GZSL seen-unseen curve, {evaluation.run}"
            written.append(plot_gzsl_curves(curves, path, title, points))
    return written
