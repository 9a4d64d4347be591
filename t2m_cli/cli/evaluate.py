"""`t2m evaluate`: run the protocols and baselines, render tables, JSON and figures."""

from __future__ import annotations

import math
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
    comma_list,
    handle_errors,
)
from t2m_cli.errors import UserInputError

METRIC_COLUMNS = {
    "pairs": ("seen", "unseen", "H", "val"),
    "zsl": ("top1",),
    "gzsl": ("S", "U", "H", "AUSUC"),
    "supersets": ("seen", "unseen", "H", "val"),
}
PROTOCOL_TITLES = {
    "pairs": "pair accuracy (%)",
    "zsl": "ZSL mean per-class top-1 (%)",
    "gzsl": "GZSL per-class accuracy (%); calibrated stacking tuned without unseen data",
    "supersets": "superset ROC-AUC per attribute (%)",
}
OVER_TEXT = {
    "pairs": "ordered pairs",
    "classes": "classes",
    "attributes": "attributes",
    "draws": "description draws",
}
SAME = "*"
"""Marks an aggregate that every run gave alike: its +- is the SEM within a run, not over runs."""


def _cell(figure) -> str:
    # An undefined figure (no method value, or a NaN mean) reads as n/a, never as "nan".
    if figure is None or not math.isfinite(figure.mean):
        return "n/a"
    mark = SAME if figure.same_in_every_run else ""
    if figure.sem is None or not math.isfinite(figure.sem):
        return f"{100 * figure.mean:.1f}{mark}"
    return f"{100 * figure.mean:.1f} +- {100 * figure.sem:.1f}{mark}"


def _same_note(in_cells, n_runs: int) -> str | None:
    """The footnote that explains the marked cells among the figures ``in_cells``, if any."""
    same = [f for f in in_cells if f.same_in_every_run]
    if not same:
        return None
    kinds = sorted({OVER_TEXT.get(f.sem_over, f.sem_over) for f in same if f.sem_over})
    bare = list(dict.fromkeys(f.metric for f in same if f.sem_over is None))
    note = f"{SAME} the same in all {n_runs} runs"
    if kinds:
        note += f": +- is the SEM over {' / '.join(kinds)} within a run"
    if bare:
        note += f"; no SEM available for {', '.join(bare)}"
    return note


def _render_eval(evaluations, figures) -> None:
    """One table per protocol: a row per method (GZSL: two, without and with calibration)."""
    from rich.table import Table

    from t2m_cli.evaluation.report import HYPERNET

    first = evaluations[0]
    label = {HYPERNET: f"T2M-HN ({first.info['hn_type']})"}
    several = len(evaluations) > 1
    by_key = {f.key: f for f in figures}
    methods = list(dict.fromkeys(f.method for f in figures))
    for protocol, metrics in METRIC_COLUMNS.items():
        rows = [f for f in figures if f.protocol == protocol]
        if not rows:
            continue
        if several:
            over = f"mean +- SEM over {len(evaluations)} runs"
        else:
            kinds = {f.over for f in rows if f.metric in ("seen", "unseen", "top1", "S", "U")}
            over = "mean +- SEM over " + ", ".join(OVER_TEXT.get(k, k) for k in sorted(kinds))
        title = first.run if not several else f"{len(evaluations)} runs"
        present = [m for m in metrics if any(f.metric == m for f in rows)]
        in_cells = [f for f in rows if f.metric.removesuffix("_calibrated") in present]
        table = Table(
            title=f"{title}: {PROTOCOL_TITLES[protocol]}, {over}",
            caption=_same_note(in_cells, len(evaluations)),
            caption_justify="left",
        )
        table.add_column("method")
        gzsl = protocol == "gzsl"
        if gzsl:
            table.add_column("stacking")
        for metric in present:
            table.add_column(metric, justify="right")
        for method in methods:
            cells = [_cell(by_key.get((method, protocol, m))) for m in present]
            if not gzsl:
                table.add_row(label.get(method, method), *cells)
                continue
            table.add_row(label.get(method, method), "none", *cells)
            if (method, protocol, "S") not in by_key:
                continue
            constant = by_key[(method, protocol, "calibration")].mean
            calibrated = [
                _cell(by_key.get((method, protocol, f"{m}_calibrated"))) if m != "AUSUC" else ""
                for m in present
            ]
            shown = f"c = {constant:.3g}" if math.isfinite(constant) else "c = n/a"
            table.add_row("", shown, *calibrated)
        console.result(table)
    asked = list(dict.fromkeys(f.protocol for f in figures))
    for method in methods:
        own = {f.protocol for f in figures if f.method == method}
        if own != set(asked):
            console.log(
                f"{label.get(method, method)}: {', '.join(p for p in asked if p in own)} only "
                "(a hypernetwork of fixed k cannot induce a classifier over other numbers of "
                "classes)."
            )


def evaluate(
    runs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Run folder(s) (default: the latest under runs/). Several runs, seeds of one "
            "setting, are averaged: mean +- SEM across runs; a figure the same in every run "
            "(a baseline's) keeps its SEM within a run, marked *.",
            show_default=False,
        ),
    ] = None,
    checkpoint: Annotated[
        str, typer.Option(help="best (picked on validation classes) or last.")
    ] = "best",
    seed: Annotated[int | None, typer.Option(help="Seed of the description draws.")] = None,
    protocol: Annotated[
        list[str] | None,
        typer.Option(
            help="pairs (the paper), zsl, gzsl, supersets; repeat the option or separate with "
            "commas.",
            show_default=False,
        ),
    ] = None,
    baseline: Annotated[
        list[str] | None,
        typer.Option(
            help="Also score a baseline on the same features and texts: ridge and eszsl "
            "(fitted here), W (the non-symmetric hypernetwork that `t2m train --baseline W "
            "RUN` trained); repeat the option or separate with commas.",
            show_default=False,
        ),
    ] = None,
    draws: Annotated[
        int | None,
        typer.Option(
            help="Description draws averaged (eval.draws); 1 under eval.descriptions mean "
            "without negative descriptions, where there is nothing to draw.",
            show_default=False,
        ),
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="An eval.key=value setting for this evaluation, e.g. eval.source=names or "
            "eval.p_negative=1 (repeatable).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FOLDER",
            help="Folder for eval.json and PNG plots (unseen pair matrix, training curves, "
            "GZSL curve); '.' for the working folder.",
            show_default=False,
        ),
    ] = None,
    runs_dir: RunsDir = Path("runs"),
    json_out: JsonOut = False,
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
) -> None:
    """Evaluate runs: the paper's pair protocol, ZSL / GZSL, supersets, and baselines."""
    with handle_errors(quiet):
        if checkpoint not in ("best", "last"):
            raise UserInputError(f"--checkpoint must be 'best' or 'last', not '{checkpoint}'.")
        if seed is not None:
            from t2m_cli.config import check_seed

            check_seed(seed, "--seed")
        if output is not None and not output.strip():
            # An empty value (an unset shell variable) would write into the working folder.
            raise UserInputError(
                "--output is empty; give the folder for eval.json and the plots ('.' for the "
                "working folder)."
            )
        out = Path(output) if output is not None else None
        if out is not None and out.exists() and not out.is_dir():
            raise UserInputError(f"--output {out} is a file; give a folder.")
        from t2m_cli.distributed import from_environment, joined
        from t2m_cli.evaluation.protocol import evaluate_run
        from t2m_cli.evaluation.report import aggregate, report_json
        from t2m_cli.runs import latest_run

        folders = list(runs) if runs else [latest_run(runs_dir)]
        resolved = [f.resolve() for f in folders]
        if len(set(resolved)) != len(resolved):
            raise UserInputError("A run folder is given twice; give each run once.")
        protocols = comma_list(protocol or ["pairs"])
        baselines = comma_list(baseline or [])
        _check_policies(folders, list(settings or []))
        # Under torchrun the processes score the pairs in shares; process 0 writes and prints.
        group = from_environment()
        if not group.writes:
            console.set_quiet(True)
        evaluations = []
        with joined(group):
            for folder in folders:
                with console.progress_task(f"evaluate {folder.name}"):
                    evaluations.append(
                        evaluate_run(
                            folder,
                            cache_dir=cache_dir,
                            checkpoint="best" if checkpoint == "best" else "last",
                            seed=seed,
                            protocols=protocols,
                            baselines=baselines,
                            overrides=list(settings or []),
                            values={"eval.draws": draws} if draws is not None else None,
                            log=console.log,
                            flags={"eval.draws": "--draws"},
                            shard=(group.rank, group.world_size),
                        )
                    )
        if not group.writes:
            return
        figures = aggregate(evaluations)
        if out is not None:
            from t2m_cli.evaluation.output import write_output

            for path in write_output(evaluations, out):
                console.log(f"wrote {path}")
        if json_out:
            console.out.print_json(dumps_json(report_json(evaluations)))
        else:
            _render_eval(evaluations, figures)


def _check_policies(folders: list[Path], settings: list[str]) -> None:
    """Refuse, before anything is scored, runs whose description policies differ (their
    figures could not be averaged), unless ``--set eval.descriptions=...`` sets one for all.

    Raises:
        UserInputError: two runs record different ``eval.descriptions``.
    """
    from t2m_cli.config_text import override_keys

    if len(folders) < 2 or "eval.descriptions" in override_keys(settings):
        return
    from t2m_cli.runs import load_run

    policies = {folder: load_run(folder)[0].eval.descriptions for folder in folders}
    if len(set(policies.values())) > 1:
        which = ", ".join(f"{folder} '{policy}'" for folder, policy in policies.items())
        raise UserInputError(
            f"The runs induce from different descriptions (eval.descriptions: {which}), so "
            "their figures cannot be averaged. Score them alike with --set "
            "eval.descriptions=mean (or draw)."
        )
