"""`t2m evaluate`: every protocol for a run's hypernetwork and for baselines, in one harness.

Protocols (`PROTOCOLS`, a registry of functions that each return their figures and details):

- ``pairs`` (the paper): every ordered pair of a split part's classes gets its own induced binary
  classifier. Seen: the seen classes' held-out rows; validation and unseen: all their rows.
  Mean +- SEM over pairs of true per-pair accuracies, and H = 2SU / (S + U).
- ``zsl`` and ``gzsl``: one classifier over many classes (`t2m_cli.evaluation.classwise`).
- ``supersets``: one attribute's description against the classes that lack it
  (`t2m_cli.evaluation.supersets`).

Baselines (`BASELINES`) fit on the seen classes, choose their hyperparameters on validation
classes, and are then scored by exactly the same code (ridge and ESZSL are fitted here in closed
form; the W hypernetwork is trained by `t2m train --baseline W RUN` and only read here), on
the same features and the same description draws. Descriptions at evaluation follow the run's
text settings unless the ``eval`` section says otherwise (``eval.source``,
``eval.p_negative``), and ``eval.draws`` draws are averaged. Nothing here reads unseen-class
data to choose anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2m_cli import runs
from t2m_cli.errors import UserInputError
from t2m_cli.evaluation.baselines import BASELINES, BaselineInputs
from t2m_cli.evaluation.report import HYPERNET, Figure, RunEvaluation
from t2m_cli.paths import text_cache_dir

if TYPE_CHECKING:
    import torch

    from t2m_cli.config import EvalConfig
    from t2m_cli.data.dataset import ZeroShotDataset
    from t2m_cli.data.texts import Describer
    from t2m_cli.encoders.text import TextEncoder
    from t2m_cli.models.hypernet import Inducer

# Which rows of each part's classes are scored.
PAIR_PARTS = {"seen": "test", "val": "all", "unseen": "all"}
TRAINED_VAL_PAIR_PARTS = {**PAIR_PARTS, "val": "test"}
"""The rows scored when validation classes were trained on (``train.val_classes: train``): their
held-out rows only, the rows the run chose its epoch on."""
CURVE_POINTS = 1000
"""Most points of a GZSL curve kept for plots."""


def evaluate_run(
    run_dir: Path,
    cache_dir: Path | None = None,
    checkpoint: runs.Checkpoint = "best",
    seed: int | None = None,
    protocols: Sequence[str] = ("pairs",),
    baselines: Sequence[str] = (),
    overrides: Sequence[str] = (),
    values: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    flags: Mapping[str, str] | None = None,
    shard: tuple[int, int] = (0, 1),
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
        values: typed ``eval.key`` settings, set after `overrides` as they are (no YAML).
        log: receives progress messages (e.g. that a baseline is being trained).
        flags: the option that set each key of `values` (``{"eval.draws": "--draws"}``), so
            that a bad value is blamed on it.
        shard: ``(rank, world_size)`` in a torch.distributed group that the caller joined:
            the pair protocol scores its chunks in shares (`pair_accuracies`); every process
            gets the whole evaluation.

    Raises:
        UserInputError: for an unknown protocol or baseline, an override outside ``eval``,
            or a protocol the run's hypernetwork cannot take part in (`check_protocols`).
        ConfigError: a setting has an unknown key or a bad value (named as ``--set`` or the
            flag gave it).
        DataError: the text model found under the run's ``text.model`` is not the one the
            run (or its W baseline) was trained with (`check_trained_model`), or the run's
            dataset's feature file now holds other features (`check_trained_features`).
    """
    _check_names(protocols, baselines)
    outside = [o for o in [*overrides, *(values or {})] if not o.strip().startswith("eval.")]
    if outside:
        raise UserInputError(
            f"Only eval.* settings can change at evaluation, not {outside}; the rest of a "
            "run's config is what it was trained with."
        )

    from t2m_cli.config import load_config
    from t2m_cli.data.registry import open_dataset
    from t2m_cli.data.texts import NegativeDescriptions, describer_for, with_policy
    from t2m_cli.device import cpu_threads, phase_threads, resolve_device
    from t2m_cli.encoders.dataset import check_trained_features
    from t2m_cli.encoders.text import check_trained_model, make_text_encoder
    from t2m_cli.models.checkpoint import load_checkpoint
    from t2m_cli.paths import RUN_CONFIG

    threads = phase_threads(small_steps=False)  # a bad T2M_THREADS is refused first
    trained, _ = runs.load_run(run_dir)
    changed = overrides or values
    config = (
        load_config(
            run_dir / RUN_CONFIG,
            overrides,
            {**_predating(run_dir, overrides), **(values or {})},
            flags=flags,
            override_option="--set",
            override_form="--set eval.key=value",
        )
        if changed
        else trained
    )
    if config.model.hn_type in baselines:
        raise UserInputError(
            f"This run is itself a {config.model.hn_type} hypernetwork; drop "
            f"--baseline {config.model.hn_type}."
        )
    device = resolve_device(config.train.device)
    hypernet, meta, norm = load_checkpoint(runs.checkpoint_path(run_dir, checkpoint), device)
    # Before the dataset is read or any baseline fitted.
    check_protocols(hypernet, protocols)
    dataset = open_dataset(
        config.dataset.name, config.dataset.root, config.dataset.features, cache_dir
    )
    check_trained_features(meta, dataset.source, f"Run {run_dir}", run_dir, trained)
    if norm is not None:
        # The statistics saved at training time (seen classes' training rows), never refitted.
        dataset = norm.apply(dataset)
    encoder = make_text_encoder(config.text.model, cache_dir=text_cache_dir(cache_dir))
    check_trained_model(encoder, meta, f"Run {run_dir}")
    settings = config.eval
    text = config.text.model_copy(
        update={
            "source": settings.source or config.text.source,
            "p_negative": config.text.p_negative
            if settings.p_negative is None
            else settings.p_negative,
        }
    )
    # Every method induces from the same texts: the baselines fit on class means of the
    # positive descriptions, and all are scored on this bank's draws (or means).
    bank = with_policy(describer_for(dataset, text, encoder), settings.descriptions).to(device)
    if settings.descriptions == "mean" and text.p_negative <= 0:
        # Class means leave nothing to draw: further draws would repeat the first, and their
        # SEM of 0 would read as an exact figure.
        settings = settings.model_copy(update={"draws": 1})
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
            "descriptions": settings.descriptions,
            "text_source": text.source,
            "p_negative": text.p_negative,
            "checkpoint": checkpoint,
            "epoch": meta.get("epoch"),
        },
    )
    methods: list[tuple[str, Inducer]] = [(HYPERNET, hypernet)]
    positive = bank.bank if isinstance(bank, NegativeDescriptions) else bank
    inputs = BaselineInputs(dataset, positive.to("cpu"), draw_seed, run_dir, device, encoder)
    with cpu_threads(threads):
        for baseline in baselines:
            if log is not None:
                # A trained baseline (W) is read from the run folder, the others fitted here.
                verb = "reading" if baseline in runs.TRAINED_BASELINES else "fitting"
                log(f"{verb} baseline {baseline}")
            model, hyper = BASELINES[baseline](inputs)
            evaluation.hyperparameters[baseline] = hyper
            methods.append((baseline, model.to(device)))
        for method, model in methods:
            if log is not None:
                log(f"scoring {method}")
            figures, details = score_method(
                model,
                method,
                bank,
                dataset,
                protocols,
                settings,
                draw_seed,
                encoder,
                pair_parts=TRAINED_VAL_PAIR_PARTS
                if config.train.val_classes == "train"
                else PAIR_PARTS,
                shard=shard,
            )
            evaluation.figures.extend(figures)
            evaluation.details[method] = details
    return evaluation


def _predating(run_dir: Path, overrides: Sequence[str]) -> dict[str, Any]:
    """`runs.predating_keys` of a run, less those this evaluation's overrides set."""
    from t2m_cli.config_text import override_keys

    given = override_keys(overrides)
    return {k: v for k, v in runs.predating_keys(run_dir).items() if k not in given}


def _check_names(protocols: Sequence[str], baselines: Sequence[str]) -> None:
    wrong = [b for b in baselines if b not in BASELINES]
    if wrong:
        raise UserInputError(f"Unknown baseline(s) {wrong}; choose from {', '.join(BASELINES)}.")
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise UserInputError(f"Unknown protocol(s) {unknown}; choose from {', '.join(PROTOCOLS)}.")


@dataclass
class Scoring:
    """One method to score, and everything a protocol scores it with.

    Attributes:
        inducer: the run's hypernetwork or a fitted baseline.
        method: its name in the tables (`HYPERNET` or a baseline name).
        bank: the descriptions drawn at evaluation.
        dataset: features, standardised as at training.
        settings: the ``eval`` section in force.
        draw_seed: seed of the description draws.
        encoder: embeds texts a protocol makes (attribute descriptions).
        pair_parts: split part -> the rows of its classes the pair protocol scores.
        shard: ``(rank, world_size)``: the pair protocol's share (`pair_accuracies`).
    """

    inducer: Inducer
    method: str
    bank: Describer
    dataset: ZeroShotDataset
    settings: EvalConfig
    draw_seed: int
    encoder: TextEncoder
    pair_parts: dict[str, str]
    shard: tuple[int, int] = (0, 1)


@dataclass
class ProtocolResult:
    """What a protocol returns: its figures, and details for plots and eval.json."""

    figures: list[Figure]
    details: dict[str, Any]


def score_method(
    inducer: Inducer,
    method: str,
    bank: Describer,
    dataset: ZeroShotDataset,
    protocols: Sequence[str],
    settings: EvalConfig,
    draw_seed: int,
    encoder: TextEncoder,
    pair_parts: dict[str, str] = PAIR_PARTS,
    shard: tuple[int, int] = (0, 1),
) -> tuple[list[Figure], dict[str, Any]]:
    """Run the asked protocols for one model, each with the same description draws.

    ``pair_parts`` says which rows of each part's classes the pair protocol scores
    (`TRAINED_VAL_PAIR_PARTS` for a run that trained on its validation classes); ``shard``
    is this process's share of its pairs (`pair_accuracies`).

    A baseline built for a fixed number of classes (W) takes part only in the protocols that
    ask for that number (`FIXED_K_PROTOCOLS`); the run's own hypernetwork asked for a protocol
    it cannot do is a user error, raised before anything is scored.

    Returns:
        the figures and, for plots, the details (unseen pair matrix, GZSL curve, ...).

    Raises:
        UserInputError: the run's own W / WW hypernetwork is asked for a protocol that needs
            another number of classes (`check_protocols`).
    """
    if method == HYPERNET:
        check_protocols(inducer, protocols)
    fixed = getattr(inducer, "fixed_k", None)
    scoring = Scoring(
        inducer, method, bank, dataset, settings, draw_seed, encoder, pair_parts, shard
    )
    figures: list[Figure] = []
    details: dict[str, Any] = {}
    for protocol in protocols:
        if fixed is not None and FIXED_K_PROTOCOLS.get(protocol) != fixed:
            continue
        result = PROTOCOLS[protocol](scoring)
        figures.extend(result.figures)
        details.update(result.details)
    return figures, details


def _h_figure(method: str, protocol: str, metric: str, seen: float, unseen: float) -> Figure:
    from t2m_cli.scoring.metrics import harmonic_mean

    return Figure(method, protocol, metric, harmonic_mean(seen, unseen), None, 2, "means")


def pairs_protocol(s: Scoring) -> ProtocolResult:
    """The paper's protocol: a binary classifier induced for every ordered pair of each part's
    classes, scored on the rows of ``s.pair_parts``; mean +- SEM over pairs, and H."""
    import torch

    from t2m_cli.scoring.metrics import summarize
    from t2m_cli.scoring.pairs import pair_accuracies

    figures: list[Figure] = []
    details: dict[str, Any] = {}
    means = {}
    for part, rows in s.pair_parts.items():
        classes = s.dataset.split.part(part)
        # Each part starts from the seed, so adding a part never changes another's draws.
        generator = torch.Generator().manual_seed(s.draw_seed)
        total = None
        for _ in range(s.settings.draws):
            pairs, acc = pair_accuracies(
                s.inducer,
                s.bank,
                s.dataset,
                classes,
                rows,
                generator,
                chunk=s.settings.chunk,
                max_pairs=s.settings.max_pairs,
                subset_seed=s.settings.seed,
                shard=s.shard,
            )
            total = acc.double() if total is None else total + acc.double()
        assert total is not None
        acc = total / s.settings.draws
        summary = summarize(acc)
        means[part] = summary.mean
        figures.append(Figure.of(s.method, "pairs", part, summary, "pairs"))
        if part == "unseen":
            details["unseen_pairs"] = _pair_matrix(s.dataset, classes, pairs, acc)
    figures.append(_h_figure(s.method, "pairs", "H", means["seen"], means["unseen"]))
    return ProtocolResult(figures, details)


def _pair_matrix(dataset, classes, pairs, acc) -> dict[str, Any]:
    """Ordered-pair accuracies as a square matrix (None on the diagonal), JSON-ready."""
    local = {dataset.index(c): i for i, c in enumerate(classes)}
    matrix: list[list[float | None]] = [[None] * len(classes) for _ in classes]
    # Every class of a part has rows to score (the split is checked when a dataset loads), so
    # every off-diagonal pair has an accuracy.
    for (a, b), value in zip(pairs.tolist(), acc.tolist()):
        matrix[local[a]][local[b]] = value
    return {"classes": list(classes), "matrix": matrix}


def zsl_protocol(s: Scoring) -> ProtocolResult:
    """One classifier over the unseen classes: per-class top-1, mean +- SEM over classes."""
    import torch

    from t2m_cli.evaluation.classwise import zsl
    from t2m_cli.scoring.metrics import summarize

    generator = torch.Generator().manual_seed(s.draw_seed)
    results = [zsl(s.inducer, s.bank, s.dataset, generator) for _ in range(s.settings.draws)]
    per_class = torch.stack([r.per_class for r in results]).mean(0)
    return ProtocolResult(
        [Figure.of(s.method, "zsl", "top1", summarize(per_class), "classes")],
        {"zsl_per_class": dict(zip(results[0].classes, per_class.tolist()))},
    )


def gzsl_protocol(s: Scoring) -> ProtocolResult:
    """One classifier over seen and unseen classes: S, U and H, plain and with calibrated
    stacking (constant tuned on seen held-out rows and validation classes), and AUSUC."""
    import torch

    from t2m_cli.evaluation.classwise import gzsl
    from t2m_cli.scoring.metrics import summarize

    generator = torch.Generator().manual_seed(s.draw_seed)
    results = [
        gzsl(
            s.inducer,
            s.bank,
            s.dataset,
            generator,
            s.settings.calibration_share,
            s.settings.seed,
        )
        for _ in range(s.settings.draws)
    ]

    def mean_of(attr: str) -> torch.Tensor:
        return torch.stack([getattr(r, attr) for r in results]).mean(0)

    seen, unseen = summarize(mean_of("seen")), summarize(mean_of("unseen"))
    s_cal, u_cal = summarize(mean_of("seen_calibrated")), summarize(mean_of("unseen_calibrated"))
    m = s.method
    figures = [
        Figure.of(m, "gzsl", "S", seen, "classes"),
        Figure.of(m, "gzsl", "U", unseen, "classes"),
        _h_figure(m, "gzsl", "H", seen.mean, unseen.mean),
        Figure.of(m, "gzsl", "S_calibrated", s_cal, "classes"),
        Figure.of(m, "gzsl", "U_calibrated", u_cal, "classes"),
        _h_figure(m, "gzsl", "H_calibrated", s_cal.mean, u_cal.mean),
    ]
    for metric, values in (
        ("calibration", [r.calibration for r in results]),
        ("AUSUC", [r.ausuc for r in results]),
    ):
        summary = summarize(torch.tensor(values))
        figures.append(Figure(m, "gzsl", metric, summary.mean, summary.sem, len(values), "draws"))
    first = results[0]
    keep = torch.linspace(0, len(first.curve_s) - 1, min(CURVE_POINTS, len(first.curve_s)))
    keep = keep.round().long()
    curve = {
        "S": first.curve_s[keep].tolist(),
        "U": first.curve_u[keep].tolist(),
        "calibrated": [s_cal.mean, u_cal.mean],
    }
    return ProtocolResult(figures, {"gzsl_curve": curve})


def supersets_protocol(s: Scoring) -> ProtocolResult:
    """One attribute's description against the classes that lack it: ROC AUC per attribute."""
    from t2m_cli.evaluation.supersets import supersets

    result = supersets(s.inducer, s.encoder, s.dataset, s.settings.superset_template)
    figures = [
        Figure.of(s.method, "supersets", part, result[part], "attributes")
        for part in ("seen", "unseen", "val")
    ]
    seen, unseen = result["seen"].mean, result["unseen"].mean
    figures.append(_h_figure(s.method, "supersets", "H", seen, unseen))
    return ProtocolResult(figures, {"supersets": result["per_attribute"]})


PROTOCOLS: dict[str, Callable[[Scoring], ProtocolResult]] = {
    "pairs": pairs_protocol,
    "zsl": zsl_protocol,
    "gzsl": gzsl_protocol,
    "supersets": supersets_protocol,
}
"""Protocols `t2m evaluate --protocol` runs, by name."""
FIXED_K_PROTOCOLS = {"pairs": 2, "supersets": 1}
"""Protocols a hypernetwork built for a fixed number of classes (W, WW) can take part in, and
the number each asks for: pairs two classes, supersets one description. ZSL and GZSL ask for
classifiers over many classes at once, which only EV and IVEV emit."""


def check_protocols(inducer: Inducer, protocols: Sequence[str]) -> None:
    """Refuse protocols a hypernetwork built for a fixed number of classes cannot take part in.

    Args:
        inducer: the run's hypernetwork; EV and IVEV (no ``fixed_k``) take part in all.
        protocols: names from `PROTOCOLS`.

    Raises:
        UserInputError: naming the protocols it cannot do and those it can.
    """
    fixed = getattr(inducer, "fixed_k", None)
    if fixed is None:
        return
    refused = [p for p in protocols if FIXED_K_PROTOCOLS.get(p) != fixed]
    if not refused:
        return
    able = [p for p, k in FIXED_K_PROTOCOLS.items() if k == fixed]
    built = "one description (a super-set model)" if fixed == 1 else f"exactly {fixed} classes"
    needs = {
        p: "one description" if k == 1 else f"{k} classes" for p, k in FIXED_K_PROTOCOLS.items()
    }
    asked = "; ".join(
        f"{p} needs {needs[p]}" if p in needs else f"{p} needs classifiers over many classes"
        for p in refused
    )
    other = f"Evaluate it with --protocol {','.join(able)}, or train" if able else "Train"
    raise UserInputError(
        f"The {getattr(inducer, 'hn_type', '')} hypernetwork of this run was built for "
        f"{built}, so it cannot take part in protocol {', '.join(refused)} ({asked}). {other} "
        "EV or IVEV, which work for any number of classes."
    )
