"""`t2m evaluate`: the paper's pair protocol on a trained run.

Seen: every ordered pair of seen classes, scored on their held-out rows. Unseen: every ordered
pair of unseen classes, on all their rows. H = 2SU / (S + U). Each figure is mean +- SEM over
pairs of true per-pair accuracies. Validation pairs are reported too, for reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2m_cli.data.dataset import ZeroShotDataset
from t2m_cli.data.texts import Describer, NegativeDescriptions
from t2m_cli.errors import UserInputError
from t2m_cli.evaluation.metrics import Summary, harmonic_mean
from t2m_cli.models.hypernet import Inducer
from t2m_cli.paths import CHECKPOINT_BEST, CHECKPOINT_LAST, text_cache_dir

# Which rows of each part's classes are scored.
PAIR_PARTS = {"seen": "test", "val": "all", "unseen": "all"}


@dataclass
class EvalReport:
    """Results of evaluating one run.

    Attributes:
        run: the run folder's name.
        info: dataset, text model, hypernetwork type, seed, checkpoint epoch.
        pairs: split part -> mean +- SEM of pair accuracy.
        h: harmonic mean of the seen and unseen means.
    """

    run: str
    info: dict[str, Any]
    pairs: dict[str, Summary] = field(default_factory=dict)
    h: float = 0.0
    classwise: dict[str, dict[str, float]] = field(default_factory=dict)
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            **self.info,
            "protocols": _protocols_json(self.pairs, self.h, self.classwise),
            "baselines": self.baselines,
        }


def evaluate_run(
    run_dir: Path,
    cache_dir: Path | None = None,
    checkpoint: str = "best",
    seed: int | None = None,
    protocols: Sequence[str] = ("pairs",),
    baselines: Sequence[str] = (),
) -> EvalReport:
    """Evaluate a run's hypernetwork with the pair protocol.

    Args:
        run_dir: a folder written by `t2m train`.
        cache_dir: cache root override (dataset and text embeddings).
        checkpoint: 'best' (selected on validation classes) or 'last'.
        seed: seed of the description draws; default the run config's ``eval.seed``.
        protocols: any of 'pairs', 'zsl' and 'gzsl' (see `t2m_cli.evaluation.classwise`).
        baselines: names of `BASELINES` to fit and score beside the hypernetwork.
    """
    from t2m_cli.evaluation.classwise import PROTOCOLS

    wrong = [b for b in baselines if b not in BASELINES]
    if wrong:
        raise UserInputError(f"Unknown baseline(s) {wrong}; choose from {', '.join(BASELINES)}.")
    unknown = [p for p in protocols if p != "pairs" and p not in PROTOCOLS]
    if unknown or not protocols:
        raise UserInputError(
            f"Unknown protocol(s) {unknown}; choose from pairs, {', '.join(PROTOCOLS)}."
        )

    from t2m_cli.data.registry import open_dataset
    from t2m_cli.encoders.text import make_text_encoder
    from t2m_cli.training.checkpoint import load_checkpoint
    from t2m_cli.training.loop import resolve_device
    from t2m_cli.training.run import describer_for, load_run

    config, _ = load_run(run_dir)
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
    bank = describer_for(dataset, config, encoder).to(device)
    draw_seed = config.eval.seed if seed is None else seed
    report = EvalReport(
        run=run_dir.name,
        info={
            "dataset": dataset.name,
            "encoder": config.text.model,
            "text_source": config.text.source,
            "hn_type": meta["hn_type"],
            "seed": config.train.seed,
            "eval_seed": draw_seed,
            "checkpoint": checkpoint,
            "epoch": meta.get("epoch"),
        },
    )
    report.pairs, report.h, report.classwise = _score(
        hypernet, bank, dataset, protocols, draw_seed, config.eval.chunk
    )
    for name in baselines:
        # Baselines fit on the positive descriptions of the seen classes and pick their
        # hyperparameters on validation classes; they are then scored exactly like T2M-HN.
        positive = bank.bank if isinstance(bank, NegativeDescriptions) else bank
        model, hyper = BASELINES[name](dataset, positive.to("cpu"), draw_seed)
        pairs, h, classwise = _score(
            model.to(device), bank, dataset, protocols, draw_seed, config.eval.chunk
        )
        report.baselines[name] = {
            "hyperparameters": hyper,
            **_protocols_json(pairs, h, classwise),
        }
    return report


def _fit_ridge(dataset, bank, seed):
    from t2m_cli.evaluation.baselines import fit_ridge_baseline

    model, alpha = fit_ridge_baseline(dataset, bank, seed=seed)
    return model, {"alpha": alpha}


def _fit_eszsl(dataset, bank, seed):
    from t2m_cli.evaluation.baselines import fit_eszsl

    model, gamma, lam = fit_eszsl(dataset, bank, seed=seed)
    return model, {"gamma": gamma, "lambda": lam}


BASELINES = {"ridge": _fit_ridge, "eszsl": _fit_eszsl}
"""Baselines `t2m evaluate --baseline` fits and scores beside the run's hypernetwork."""


def _score(
    inducer: Inducer,
    bank: Describer,
    dataset: ZeroShotDataset,
    protocols: Sequence[str],
    draw_seed: int,
    chunk: int,
) -> tuple[dict[str, Summary], float, dict[str, dict[str, float]]]:
    """Run the asked protocols for one model, each with the same description draws."""
    import torch

    from t2m_cli.evaluation.classwise import PROTOCOLS
    from t2m_cli.evaluation.metrics import summarize
    from t2m_cli.evaluation.pairs import pair_accuracies

    classwise = {
        name: PROTOCOLS[name](inducer, bank, dataset, torch.Generator().manual_seed(draw_seed))
        for name in protocols
        if name != "pairs"
    }
    pairs: dict[str, Summary] = {}
    for part, rows in PAIR_PARTS.items() if "pairs" in protocols else ():
        generator = torch.Generator().manual_seed(draw_seed)
        _, acc = pair_accuracies(
            inducer, bank, dataset, dataset.split.part(part), rows, generator, chunk=chunk
        )
        pairs[part] = summarize(acc)
    h = harmonic_mean(pairs["seen"].mean, pairs["unseen"].mean) if pairs else 0.0
    return pairs, h, classwise


def _protocols_json(
    pairs: dict[str, Summary], h: float, classwise: dict[str, dict[str, float]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if pairs:
        out["pairs"] = {**{part: s.to_json() for part, s in pairs.items()}, "H": h}
    return {**out, **classwise}
