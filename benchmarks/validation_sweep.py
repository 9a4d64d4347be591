"""Score training settings on validation classes only, against ridge and ESZSL: how t2m's
recommended mode was chosen.

The validation classes are cut into two halves; in each of two folds one half stands in for
the validation classes and the other for the unseen ones. For each seed and fold it trains a
run with the given settings (its epoch chosen on the fold's validation half), then evaluates
T2M-HN, ridge and ESZSL (their hyperparameters chosen on that half too) with the pairs, ZSL and
GZSL protocols on the other half; each figure is the mean over the two folds. So no figure is
measured on classes that chose anything, and the unseen classes are never read: every dataset
is opened with its split replaced by the fold's.

    python benchmarks/validation_sweep.py --root 'shapes-seed{seed}' --seeds 0 1 2 \\
        --config examples/shapes.yaml --set train.classes_per_task_max=26

``--root`` is the dataset folder, ``{seed}`` replaced by each seed (make them first, e.g. with
`t2m download shapes --seed S` and `t2m encode`, or `benchmarks/textmap.py`). Prints a line per
seed and the mean over seeds; ``--log FILE`` appends them as JSON lines.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import t2m_cli.data.registry as registry
from t2m_cli.config import load_config
from t2m_cli.data.dataset import Split, ZeroShotDataset
from t2m_cli.evaluation.protocol import evaluate_run
from t2m_cli.training.run import train_run

FIGURES = {("pairs", "unseen"), ("zsl", "top1"), ("gzsl", "H_calibrated"), ("gzsl", "AUSUC")}
BASELINES = ("ridge", "eszsl")


def validation_fold(dataset: ZeroShotDataset, fold: int) -> ZeroShotDataset:
    """The dataset with its validation classes cut in two: one half as validation, the other
    as unseen (``fold`` 1 swaps them); its own unseen classes are dropped from the split.

    Raises:
        DataError: a half has fewer classes than a split part needs.
    """
    val = list(dataset.split.val)
    half = len(val) // 2
    first, second = (val[:half], val[half:]) if fold == 0 else (val[half:], val[:half])
    return dataclasses.replace(
        dataset, split=Split(dataset.split.seen, tuple(first), tuple(second))
    )


@contextmanager
def validation_as_unseen(fold: int) -> Iterator[None]:
    """Make every dataset opened inside see `validation_fold` of itself."""
    original = registry.open_dataset

    def opened(*args: Any, **kwargs: Any) -> ZeroShotDataset:
        return validation_fold(original(*args, **kwargs), fold)

    registry.open_dataset = opened
    try:
        yield
    finally:
        registry.open_dataset = original


def score_seed(
    seed: int, root: Path, config: Path | None, settings: Sequence[str], work: Path, tag: str
) -> dict[str, float]:
    """Train and score one seed on both validation folds.

    Returns:
        ``"method|protocol.metric"`` -> the mean over the two folds (fractions), and
        ``train_s``, the training time of both folds in seconds.
    """
    import time

    scores: dict[str, list[float]] = {}
    seconds = 0.0
    for fold in (0, 1):
        own = [
            f"dataset.root={root}",
            f"train.seed={seed}",
            f"eval.seed={seed}",
            f"run.dir={work}",
            f"run.name={tag}-seed{seed}-fold{fold}",
        ]
        with validation_as_unseen(fold):
            began = time.perf_counter()
            run = train_run(load_config(config, [*own, *settings]), quiet=True)
            seconds += time.perf_counter() - began
            evaluation = evaluate_run(run, protocols=("pairs", "zsl", "gzsl"), baselines=BASELINES)
        for f in evaluation.figures:
            if (f.protocol, f.metric) in FIGURES:
                scores.setdefault(f"{f.method}|{f.protocol}.{f.metric}", []).append(f.mean)
    return {**{k: statistics.fmean(v) for k, v in scores.items()}, "train_s": seconds}


def main(argv: Sequence[str] | None = None) -> None:
    """The command line (module docstring); ``argv`` defaults to ``sys.argv[1:]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="Dataset folder; {seed} is replaced.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="K=V")
    parser.add_argument("--work", type=Path, default=Path("runs-validation"))
    parser.add_argument("--tag", default="sweep", help="Run names: <tag>-seed<seed>-fold<f>.")
    parser.add_argument("--log", type=Path, default=None, help="Append JSON lines here.")
    args = parser.parse_args(argv)
    per_seed = []
    for seed in args.seeds:
        root = Path(args.root.format(seed=seed))
        scores = score_seed(seed, root, args.config, args.settings, args.work, args.tag)
        per_seed.append(scores)
        print(args.tag, seed, json.dumps({k: round(v, 4) for k, v in scores.items()}), flush=True)
    mean = {k: statistics.fmean(s[k] for s in per_seed) for k in per_seed[0] if "|" in k}
    print("mean", args.tag, args.settings, json.dumps({k: round(v, 4) for k, v in mean.items()}))
    if args.log is not None:
        with args.log.open("a", encoding="utf-8") as log:
            record = {"tag": args.tag, "settings": args.settings, "seeds": args.seeds}
            log.write(json.dumps({**record, "per_seed": per_seed, "mean": mean}) + "\n")


if __name__ == "__main__":
    main()
