"""What `t2m evaluate` reports, as one flat list of figures, and its JSON schema.

Every result is a `Figure`: one metric of one protocol for one method, with its mean, its
standard error and what the mean is taken over. One run gives figures over pairs, classes or
attributes; several runs (seeds) of one setting are aggregated into figures over runs.

JSON schema ``t2m-eval/1`` (``t2m evaluate --json``, and ``eval.json`` under ``--output``)::

    {
      "schema": "t2m-eval/1",
      "runs": [                          # one entry per evaluated run, in the order given
        {"run": "20261127-...-EV",       # run folder name
         "label": "20261127-...-EV",     # unique among the runs: the folder name, -2, -3, ...
                                         # added where runs in different folders share it
         "dataset": "shapes", "encoder": "all-MiniLM-L6-v2", "hn_type": "EV",
         "task": "classes",              # train.task: classes or supersets
         "seed": 0,                      # training seed
         "eval_seed": 0, "draws": 1,     # description draws averaged, and their seed
         "descriptions": "draw",         # eval.descriptions: one drawn text per class, or "mean"
         "text_source": "descriptions", "p_negative": 0.0,   # descriptions at evaluation
         "checkpoint": "best", "epoch": 37,
         "hyperparameters": {"ridge": {"alpha": 10.0}, ...}}  # chosen on validation classes
      ],
      "over": "pairs/classes/attributes" | "runs",
      "results": [                       # the headline table
        {"method": "T2M-HN", "protocol": "pairs", "metric": "unseen",
         "mean": 0.79, "sem": 0.012, "n": 42, "over": "pairs",
         "sem_over": "pairs",            # what sem is over; null when sem is
         "median": 0.8, "std": 0.08}     # median and std only where defined
      ],
      "per_run": {"<label>": [figures]}, # only when several runs were aggregated
      "details": {"<label>": {...}}      # only in eval.json: pair matrices and GZSL curves
    }

Methods: ``T2M-HN`` (the run's own hypernetwork, its type in ``runs[].hn_type``) and the
baselines by their ``--baseline`` names. Metrics by protocol (accuracies and AUCs in [0, 1]):

- ``pairs``: ``seen``, ``unseen``, ``val`` (mean over ordered pairs of each pair's accuracy),
  ``H`` (harmonic mean of the seen and unseen means; no SEM).
- ``zsl``: ``top1`` (mean over unseen classes of per-class top-1 accuracy).
- ``gzsl``: ``S``, ``U`` (over classes), ``H``, the same three with ``_calibrated``, the
  ``calibration`` constant and ``AUSUC``.
- ``supersets``: ``seen``, ``unseen``, ``val`` (mean over attributes of ROC-AUC) and ``H``.

``over`` says what ``mean`` is a mean of: pairs, classes or attributes within a run; draws for
the calibration constant and AUSUC; runs when several runs are aggregated; "means" for an H,
the harmonic mean of two means (``n`` 2). ``sem`` is null where no spread is defined (H, a
mean of a single pair, class or attribute, a constant or AUSUC of a single draw). With
several draws, per-pair and per-class figures are averaged over the draws before the mean over
pairs or classes; constants and AUSUC are averaged over draws, their SEM over draws.

``sem_over`` says what ``sem`` is over: the same as ``over`` within a run. Aggregated over
runs, it is ``runs`` for a figure that varied between them; a figure that was the same in every
run (a closed-form baseline does not depend on the training seed) keeps its SEM within a run
instead, with ``sem_over`` pairs, classes, attributes or draws, or null (no SEM) where it has
no per-item scores, such as an H. ``sem_over`` is null whenever ``sem`` is.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2m_cli.errors import UserInputError
from t2m_cli.runs import run_name
from t2m_cli.scoring.metrics import Summary

SCHEMA = "t2m-eval/1"
HYPERNET = "T2M-HN"
"""Method name of the evaluated run's own hypernetwork."""

# Run facts that must agree for runs to be aggregated as seeds of one setting.
SETTING_KEYS = (
    "dataset",
    "encoder",
    "hn_type",
    "task",
    "text_source",
    "p_negative",
    "draws",
    "descriptions",
    "checkpoint",
)


@dataclass(frozen=True)
class Figure:
    """One metric of one protocol for one method.

    Attributes:
        method: ``T2M-HN`` or a baseline name.
        protocol: pairs, zsl, gzsl or supersets.
        metric: see the module docstring.
        mean: the value (a mean over ``n`` items of kind ``over``).
        sem: its standard error, None where undefined.
        n: how many items the mean is over.
        over: pairs, classes, attributes, draws, runs, or means (an H).
        median, std: of the items, where defined.
        sem_over: what ``sem`` is the standard error over: ``over`` unless given (an
            aggregate of a figure the same in every run keeps its SEM within a run, over
            pairs, classes, attributes or draws); None whenever ``sem`` is None or not finite.
    """

    method: str
    protocol: str
    metric: str
    mean: float
    sem: float | None
    n: int
    over: str
    median: float | None = None
    std: float | None = None
    sem_over: str | None = None

    def __post_init__(self) -> None:
        # A frozen dataclass sets a derived field through object.__setattr__.
        if self.sem is None or not math.isfinite(self.sem):
            object.__setattr__(self, "sem_over", None)
        elif self.sem_over is None:
            object.__setattr__(self, "sem_over", self.over)

    @classmethod
    def of(cls, method: str, protocol: str, metric: str, summary: Summary, over: str) -> Figure:
        return cls(
            method,
            protocol,
            metric,
            summary.mean,
            summary.sem,
            summary.n,
            over,
            summary.median,
            summary.std,
        )

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.method, self.protocol, self.metric)

    @property
    def same_in_every_run(self) -> bool:
        """An aggregate of runs that all gave this value: its SEM, if any, is within a run."""
        return self.over == "runs" and self.sem_over != "runs" and math.isfinite(self.mean)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "protocol": self.protocol,
            "metric": self.metric,
            "mean": self.mean,
            "sem": self.sem,
            "n": self.n,
            "over": self.over,
            "sem_over": self.sem_over,
        }
        if self.median is not None:
            out["median"] = self.median
        if self.std is not None:
            out["std"] = self.std
        return out


@dataclass
class RunEvaluation:
    """Everything evaluating one run produced.

    Attributes:
        run_dir: the run folder.
        info: the run's entry of ``runs`` in the JSON (without hyperparameters).
        figures: the results.
        hyperparameters: per baseline, what it chose on validation classes.
        details: per method, the unseen pair-accuracy matrix and the GZSL curve, for plots.
    """

    run_dir: Path
    info: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    hyperparameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def run(self) -> str:
        return run_name(self.run_dir)

    def figure(self, method: str, protocol: str, metric: str) -> Figure:
        for f in self.figures:
            if f.key == (method, protocol, metric):
                return f
        raise KeyError((method, protocol, metric))

    def run_json(self) -> dict[str, Any]:
        return {"run": self.run, **self.info, "hyperparameters": self.hyperparameters}


def aggregate(evaluations: list[RunEvaluation]) -> list[Figure]:
    """Mean +- SEM across runs of each figure every run has (one run: its own figures).

    A figure that is the same in every run (a baseline fitted in closed form on the same data,
    scored on the same description draws, does not depend on the training seed) would get an
    SEM of 0 over runs, which reads as an exact figure. It keeps instead the SEM within a run,
    over its pairs, classes, attributes or draws (``sem_over`` says which; the largest of the
    runs' if they differ), or none where the figure has no per-item scores (an H). Its ``over``,
    ``n``, ``median`` and ``std`` remain those of the runs. A figure undefined (NaN) in any run
    is NaN, without SEM.

    Raises:
        UserInputError: if the runs differ in a setting (dataset, encoder, hypernetwork type,
            descriptions, draws or checkpoint): only seeds of one setting are averaged.
    """
    if len(evaluations) == 1:
        return list(evaluations[0].figures)
    first = evaluations[0]
    for other in evaluations[1:]:
        differ = [k for k in SETTING_KEYS if other.info.get(k) != first.info.get(k)]
        if differ:
            details = ", ".join(
                f"{k}: {first.info.get(k)!r} vs {other.info.get(k)!r}" for k in differ
            )
            raise UserInputError(
                f"Runs {first.run_dir} and {other.run_dir} differ ({details}); several runs are "
                "averaged only when they are seeds of one setting. Evaluate them separately."
            )
    figures: dict[tuple[str, str, str], list[Figure]] = defaultdict(list)
    for evaluation in evaluations:
        for f in evaluation.figures:
            figures[f.key].append(f)
    out = []
    for key, each in figures.items():
        if len(each) != len(evaluations):
            continue  # a figure only some runs have is not averaged
        v = [f.mean for f in each]
        if not all(math.isfinite(x) for x in v):
            # Undefined in one run (a NaN, which statistics.stdev cannot take): undefined here.
            out.append(Figure(*key, math.nan, None, len(v), "runs"))
            continue
        std = statistics.stdev(v)
        sem: float | None = std / math.sqrt(len(v))
        sem_over: str | None = "runs"
        if _same(v):
            within = max(each, key=lambda f: -1.0 if f.sem_over is None else f.sem or 0.0)
            sem, sem_over = within.sem, within.sem_over
        out.append(
            Figure(
                *key,
                statistics.fmean(v),
                sem,
                len(v),
                "runs",
                statistics.median(v),
                std,
                sem_over,
            )
        )
    return out


def _same(values: list[float]) -> bool:
    """Whether the runs gave one value, up to floating-point rounding."""
    return all(math.isclose(v, values[0], rel_tol=1e-9, abs_tol=1e-12) for v in values)


def report_json(evaluations: list[RunEvaluation], details: bool = False) -> dict[str, Any]:
    """The ``t2m-eval/1`` document for one or several runs (see the module docstring)."""
    several = len(evaluations) > 1
    labels = run_labels(evaluations)
    runs = []
    for e, label in zip(evaluations, labels, strict=True):
        entry = e.run_json()
        runs.append({"run": entry.pop("run"), "label": label, **entry})
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "runs": runs,
        "over": "runs" if several else "pairs/classes/attributes",
        "results": [f.to_json() for f in aggregate(evaluations)],
    }
    if several:
        doc["per_run"] = {
            label: [f.to_json() for f in e.figures]
            for e, label in zip(evaluations, labels, strict=True)
        }
    if details:
        doc["details"] = {label: e.details for e, label in zip(evaluations, labels, strict=True)}
    return doc


def run_labels(evaluations: list[RunEvaluation]) -> list[str]:
    """A name per run, unique among them, in order: its folder name, with ``-2``, ``-3``, ...
    added to a name an earlier run already has (``runs/base other/base``: base, base-2).

    The labels key ``per_run`` and ``details`` in the JSON and name each run's folder of
    figures under ``--output``, so that runs of the same folder name in different places
    neither merge nor overwrite each other.
    """
    names = [e.run for e in evaluations]
    taken: set[str] = set()
    labels = []
    for name in names:
        label, number = name, 1
        while label in taken or (label != name and label in names):
            number += 1
            label = f"{name}-{number}"
        taken.add(label)
        labels.append(label)
    return labels
