"""`t2m evaluate`: every protocol for a run's hypernetwork and for baselines, in one harness.

Protocols (`PROTOCOLS`):

- ``pairs`` (the paper): every ordered pair of a split part's classes gets its own induced binary
  classifier. Seen: the seen classes' held-out rows; validation and unseen: all their rows.
  Mean +- SEM over pairs of true per-pair accuracies, and H = 2SU / (S + U).
- ``zsl`` and ``gzsl``: one classifier over many classes (`t2m_cli.evaluation.classwise`).
- ``supersets``: one attribute's description against the classes that lack it
  (`t2m_cli.evaluation.supersets`).

Baselines (`BASELINES`) fit on the seen classes, choose their hyperparameters on validation
classes, and are then scored by exactly the same code, on the same features and the same
description draws. Descriptions at evaluation follow the run's text settings unless the
``eval`` section says otherwise (``eval.source``, ``eval.p_negative``), and ``eval.draws``
draws are averaged. Nothing here reads unseen-class data to choose anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2m_cli.errors import UserInputError
from t2m_cli.evaluation.report import HYPERNET, Figure, RunEvaluation
from t2m_cli.paths import (
    CHECKPOINT_BEST,
    CHECKPOINT_LAST,
    METRICS,
    RUN_CONFIG,
    RUN_INFO,
    TRAIN_STATE,
    text_cache_dir,
)

if TYPE_CHECKING:
    import torch

    from t2m_cli.config import Config, EvalConfig
    from t2m_cli.data.dataset import ZeroShotDataset
    from t2m_cli.data.texts import Describer, TextBank
    from t2m_cli.encoders.text import TextEncoder
    from t2m_cli.models.hypernet import Inducer

# Which rows of each part's classes are scored.
PAIR_PARTS = {"seen": "test", "val": "all", "unseen": "all"}
PROTOCOLS = ("pairs", "zsl", "gzsl", "supersets")
"""Names `t2m evaluate --protocol` takes."""
BASELINE_RUNS = "baselines"
"""Folder inside a run where trained baselines (the W hypernetwork) are kept."""
CURVE_POINTS = 1000
"""Most points of a GZSL curve kept for plots."""


@dataclass
class BaselineInputs:
    """What a baseline may use: the seen classes' data, validation classes, the run's config.

    Attributes:
        dataset: features, standardised as the run's hypernetwork sees them.
        bank: the positive descriptions (CPU).
        seed: seed of the description draws used to pick hyperparameters.
        config: the run's config as trained (without evaluation overrides).
        run_dir: the run folder (trained baselines are cached inside it).
        cache_dir: cache root override.
        device: where scoring happens.
    """

    dataset: ZeroShotDataset
    bank: TextBank
    seed: int
    config: Config
    run_dir: Path
    cache_dir: Path | None
    device: torch.device


def evaluate_run(
    run_dir: Path,
    cache_dir: Path | None = None,
    checkpoint: str = "best",
    seed: int | None = None,
    protocols: Sequence[str] = ("pairs",),
    baselines: Sequence[str] = (),
    overrides: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
) -> RunEvaluation:
    """Evaluate a run's hypernetwork, and any baselines, with the asked protocols.

    Args:
        run_dir: a folder written by `t2m train`.
        cache_dir: cache root override (dataset and text embeddings).
        checkpoint: 'best' (selected on validation classes) or 'last'.
        seed: seed of the description draws; default the run config's ``eval.seed``.
        protocols: names from `PROTOCOLS`.
        baselines: names from `BASELINES`.
        overrides: ``eval.key=value`` settings for this evaluation only (draws, source, ...).
        log: receives progress messages (e.g. that a baseline is being trained).

    Raises:
        UserInputError: for an unknown protocol or baseline, an override outside ``eval``,
            or a protocol the run's hypernetwork cannot take part in.
    """
    _check_names(protocols, baselines)
    outside = [o for o in overrides if not o.strip().startswith("eval.")]
    if outside:
        raise UserInputError(
            f"Only eval.* settings can change at evaluation, not {outside}; the rest of a "
            "run's config is what it was trained with."
        )

    from t2m_cli.config import load_config
    from t2m_cli.data.registry import open_dataset
    from t2m_cli.data.texts import NegativeDescriptions
    from t2m_cli.encoders.text import make_text_encoder
    from t2m_cli.training.checkpoint import load_checkpoint
    from t2m_cli.training.loop import resolve_device
    from t2m_cli.training.run import describer_for, load_run

    trained, _ = load_run(run_dir)
    config = load_config(run_dir / RUN_CONFIG, list(overrides)) if overrides else trained
    if config.model.hn_type in baselines:
        raise UserInputError(
            f"This run is itself a {config.model.hn_type} hypernetwork; drop "
            f"--baseline {config.model.hn_type}."
        )
    device = resolve_device(config.train.device)
    name = CHECKPOINT_BEST if checkpoint == "best" else CHECKPOINT_LAST
    hypernet, meta, norm = load_checkpoint(run_dir / name, device)
    dataset = open_dataset(
        config.dataset.name, config.dataset.root, config.dataset.features, cache_dir
    )
    if norm is not None:
        # The statistics saved at training time (seen classes' training rows), never refitted.
        dataset = norm.apply(dataset)
    encoder = make_text_encoder(config.text.model, cache_dir=text_cache_dir(cache_dir))
    settings = config.eval
    text = config.text.model_copy(
        update={
            "source": settings.source or config.text.source,
            "p_negative": config.text.p_negative
            if settings.p_negative is None
            else settings.p_negative,
        }
    )
    bank = describer_for(dataset, config.model_copy(update={"text": text}), encoder).to(device)
    draw_seed = settings.seed if seed is None else seed
    evaluation = RunEvaluation(
        run_dir=run_dir,
        info={
            "dataset": dataset.name,
            "encoder": config.text.model,
            "hn_type": meta["hn_type"],
            "task": config.train.task,
            "seed": config.train.seed,
            "eval_seed": draw_seed,
            "draws": settings.draws,
            "text_source": text.source,
            "p_negative": text.p_negative,
            "checkpoint": checkpoint,
            "epoch": meta.get("epoch"),
        },
    )
    methods: list[tuple[str, Inducer]] = [(HYPERNET, hypernet)]
    positive = bank.bank if isinstance(bank, NegativeDescriptions) else bank
    inputs = BaselineInputs(
        dataset, positive.to("cpu"), draw_seed, trained, run_dir, cache_dir, device
    )
    for baseline in baselines:
        if log is not None:
            log(f"fitting baseline {baseline}")
        model, hyper = BASELINES[baseline](inputs, log)
        evaluation.hyperparameters[baseline] = hyper
        methods.append((baseline, model.to(device)))
    for method, model in methods:
        if log is not None:
            log(f"scoring {method}")
        figures, details = score_method(
            model, method, bank, dataset, protocols, settings, draw_seed, encoder
        )
        evaluation.figures.extend(figures)
        evaluation.details[method] = details
    return evaluation


def _check_names(protocols: Sequence[str], baselines: Sequence[str]) -> None:
    wrong = [b for b in baselines if b not in BASELINES]
    if wrong:
        raise UserInputError(f"Unknown baseline(s) {wrong}; choose from {', '.join(BASELINES)}.")
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise UserInputError(f"Unknown protocol(s) {unknown}; choose from {', '.join(PROTOCOLS)}.")


def score_method(
    inducer: Inducer,
    method: str,
    bank: Describer,
    dataset: ZeroShotDataset,
    protocols: Sequence[str],
    settings: EvalConfig,
    draw_seed: int,
    encoder: TextEncoder,
) -> tuple[list[Figure], dict[str, Any]]:
    """Run the asked protocols for one model, each with the same description draws.

    A baseline with a fixed number of classes (W) takes part in the pair protocol only; the
    run's own hypernetwork asked for a protocol it cannot do is a user error.

    Returns:
        the figures and, for plots, the details (unseen pair matrix, GZSL curve, ...).
    """
    fixed = getattr(inducer, "fixed_k", None)
    figures: list[Figure] = []
    details: dict[str, Any] = {}
    for protocol in protocols:
        if protocol != "pairs" and fixed is not None:
            if method == HYPERNET:
                raise UserInputError(
                    f"The {getattr(inducer, 'hn_type', '')} hypernetwork emits classifiers over "
                    f"exactly {fixed} classes; the {protocol} protocol needs EV or IVEV."
                )
            continue
        if protocol == "pairs":
            _pairs(inducer, method, bank, dataset, settings, draw_seed, figures, details)
        elif protocol == "zsl":
            _zsl(inducer, method, bank, dataset, settings, draw_seed, figures, details)
        elif protocol == "gzsl":
            _gzsl(inducer, method, bank, dataset, settings, draw_seed, figures, details)
        else:
            _supersets(inducer, method, encoder, dataset, settings, figures, details)
    return figures, details


def _h_figure(method: str, protocol: str, metric: str, seen: float, unseen: float) -> Figure:
    from t2m_cli.evaluation.metrics import harmonic_mean

    return Figure(method, protocol, metric, harmonic_mean(seen, unseen), None, 2, "means")


def _pairs(inducer, method, bank, dataset, settings, draw_seed, figures, details) -> None:
    import torch

    from t2m_cli.evaluation.metrics import summarize
    from t2m_cli.evaluation.pairs import pair_accuracies

    means = {}
    for part, rows in PAIR_PARTS.items():
        classes = dataset.split.part(part)
        # Each part starts from the seed, so adding a part never changes another's draws.
        generator = torch.Generator().manual_seed(draw_seed)
        total = None
        for _ in range(settings.draws):
            pairs, acc = pair_accuracies(
                inducer,
                bank,
                dataset,
                classes,
                rows,
                generator,
                chunk=settings.chunk,
                max_pairs=settings.max_pairs,
                subset_seed=settings.seed,
            )
            total = acc.double() if total is None else total + acc.double()
        assert total is not None
        acc = total / settings.draws
        summary = summarize(acc)
        means[part] = summary.mean
        figures.append(Figure.of(method, "pairs", part, summary, "pairs"))
        if part == "unseen":
            details["unseen_pairs"] = _pair_matrix(dataset, classes, pairs, acc)
    figures.append(_h_figure(method, "pairs", "H", means["seen"], means["unseen"]))


def _pair_matrix(dataset, classes, pairs, acc) -> dict[str, Any]:
    """Ordered-pair accuracies as a square matrix (None on the diagonal), JSON-ready."""
    local = {dataset.index(c): i for i, c in enumerate(classes)}
    matrix: list[list[float | None]] = [[None] * len(classes) for _ in classes]
    for (a, b), value in zip(pairs.tolist(), acc.tolist()):
        # A pair with no rows has no accuracy (NaN); JSON has no NaN, so it stays None.
        matrix[local[a]][local[b]] = None if math.isnan(value) else value
    return {"classes": list(classes), "matrix": matrix}


def _zsl(inducer, method, bank, dataset, settings, draw_seed, figures, details) -> None:
    import torch

    from t2m_cli.evaluation.classwise import zsl
    from t2m_cli.evaluation.metrics import summarize

    generator = torch.Generator().manual_seed(draw_seed)
    results = [zsl(inducer, bank, dataset, generator) for _ in range(settings.draws)]
    per_class = torch.stack([r.per_class for r in results]).mean(0)
    figures.append(Figure.of(method, "zsl", "top1", summarize(per_class), "classes"))
    details["zsl_per_class"] = dict(zip(results[0].classes, per_class.tolist()))


def _gzsl(inducer, method, bank, dataset, settings, draw_seed, figures, details) -> None:
    import torch

    from t2m_cli.evaluation.classwise import gzsl
    from t2m_cli.evaluation.metrics import summarize

    generator = torch.Generator().manual_seed(draw_seed)
    results = [
        gzsl(inducer, bank, dataset, generator, settings.calibration_share, settings.seed)
        for _ in range(settings.draws)
    ]

    def mean_of(attr: str) -> torch.Tensor:
        return torch.stack([getattr(r, attr) for r in results]).mean(0)

    s, u = summarize(mean_of("seen")), summarize(mean_of("unseen"))
    s_cal, u_cal = summarize(mean_of("seen_calibrated")), summarize(mean_of("unseen_calibrated"))
    figures += [
        Figure.of(method, "gzsl", "S", s, "classes"),
        Figure.of(method, "gzsl", "U", u, "classes"),
        _h_figure(method, "gzsl", "H", s.mean, u.mean),
        Figure.of(method, "gzsl", "S_calibrated", s_cal, "classes"),
        Figure.of(method, "gzsl", "U_calibrated", u_cal, "classes"),
        _h_figure(method, "gzsl", "H_calibrated", s_cal.mean, u_cal.mean),
    ]
    for metric, values in (
        ("calibration", [r.calibration for r in results]),
        ("AUSUC", [r.ausuc for r in results]),
    ):
        summary = summarize(torch.tensor(values))
        figures.append(
            Figure(
                method,
                "gzsl",
                metric,
                summary.mean,
                summary.sem if len(values) > 1 else None,
                len(values),
                "draws",
            )
        )
    first = results[0]
    keep = torch.linspace(0, len(first.curve_s) - 1, min(CURVE_POINTS, len(first.curve_s)))
    keep = keep.round().long()
    details["gzsl_curve"] = {
        "S": first.curve_s[keep].tolist(),
        "U": first.curve_u[keep].tolist(),
        "calibrated": [s_cal.mean, u_cal.mean],
    }


def _supersets(inducer, method, encoder, dataset, settings, figures, details) -> None:
    from t2m_cli.evaluation.supersets import supersets

    result = supersets(inducer, encoder, dataset, settings.superset_template)
    for part in ("seen", "unseen", "val"):
        figures.append(Figure.of(method, "supersets", part, result[part], "attributes"))
    figures.append(_h_figure(method, "supersets", "H", result["seen"].mean, result["unseen"].mean))
    details["supersets"] = result["per_attribute"]


def _fit_ridge(inputs: BaselineInputs, log) -> tuple[Any, dict[str, Any]]:
    from t2m_cli.evaluation.baselines import fit_ridge_baseline

    model, alpha = fit_ridge_baseline(inputs.dataset, inputs.bank, seed=inputs.seed)
    return model, {"alpha": alpha}


def _fit_eszsl(inputs: BaselineInputs, log) -> tuple[Any, dict[str, Any]]:
    from t2m_cli.evaluation.baselines import fit_eszsl

    model, gamma, lam = fit_eszsl(inputs.dataset, inputs.bank, seed=inputs.seed)
    return model, {"gamma": gamma, "lambda": lam}


def _fit_w(inputs: BaselineInputs, log) -> tuple[Any, dict[str, Any]]:
    """The non-symmetric W hypernetwork, trained exactly as the run was (same data, texts,
    seed and schedule) except for its type and pairs as tasks. Trained once and kept in
    ``RUN/baselines/W``; an interrupted training resumes there."""
    import shutil

    from t2m_cli.config import config_to_dict, validate_config
    from t2m_cli.training.checkpoint import load_checkpoint
    from t2m_cli.training.loggers import read_metrics
    from t2m_cli.training.run import resume_run, train_run

    folder = inputs.run_dir / BASELINE_RUNS / "W"
    data = config_to_dict(inputs.config)
    data["model"]["hn_type"] = "W"
    data["train"]["classes_per_task"] = 2
    data["run"] = {"dir": str(folder.parent), "name": folder.name}
    data["wandb"]["enabled"] = False
    config = validate_config(data, "the W baseline's config")

    def finished() -> bool:
        metrics = folder / METRICS
        if not (folder / CHECKPOINT_BEST).is_file() or not metrics.is_file():
            return False
        return read_metrics(metrics)[-1]["epoch"] >= config.train.epochs

    if not finished():
        if log is not None:
            log(f"training the W baseline ({config.train.epochs} epochs) in {folder}")
        if (folder / TRAIN_STATE).is_file():
            resume_run(folder, inputs.cache_dir)
        else:
            if (folder / RUN_INFO).exists():
                shutil.rmtree(folder)  # started, but no epoch finished: nothing to keep
            train_run(config, inputs.cache_dir)
    model, meta, _ = load_checkpoint(folder / CHECKPOINT_BEST, inputs.device)
    return model, {
        "folder": f"{BASELINE_RUNS}/W",
        "epoch": meta.get("epoch"),
        "epochs": config.train.epochs,
    }


# A fitted baseline is an nn.Module that is also an Inducer.
BASELINES: dict[str, Callable[[BaselineInputs, Any], tuple[Any, dict[str, Any]]]] = {
    "ridge": _fit_ridge,
    "eszsl": _fit_eszsl,
    "W": _fit_w,
}
"""Baselines `t2m evaluate --baseline` fits and scores beside the run's hypernetwork."""
