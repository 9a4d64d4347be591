"""Zero-shot results on a generated dataset over several seeds, with baselines, in both modes.

For each seed the whole pipeline runs anew: the dataset is generated with that seed; then each
mode trains a hypernetwork on it (``recommended``: t2m's defaults, or ``--config``; ``paper``:
examples/paper.yaml, with the offline text model), and `t2m evaluate`'s harness scores T2M-HN
and the baselines (ridge prototypes, ESZSL and the W hypernetwork, trained with the mode's own
settings) with every protocol, once per description policy (``eval.descriptions``: ``mean`` of
a class's description embeddings, or one random ``draw``, the paper's), every method of an
evaluation inducing from the same texts. Prints each seed's headline figures and, per mode
and policy, the mean +- SEM across seeds (a figure the same for every seed is marked and keeps
its SEM within a seed); ``--output DIR`` also writes eval.json and the PNG figures, a folder
per mode and policy.

- ``--dataset shapes``: the embedded point-cloud dataset, with PointNet features trained on
  its seen classes (default config examples/shapes.yaml).
- ``--dataset textmap``: `benchmarks/textmap.py`'s sentences-to-features dataset, features and
  all, embedded with the config's ``text.model`` (default config: t2m's defaults; the
  ``pointnet`` settings do not apply).

``--set KEY=VALUE`` (repeatable) applies to every mode's config, after the benchmark's own
settings (dataset folder, seeds, run folder), so ``--set train.epochs=20`` trains shorter and
``--set text.model=hashing`` runs without the sentence model.

    python benchmarks/zero_shot.py --dataset textmap --seeds 0 1 2 [--config FILE]
        [--modes recommended paper] [--descriptions mean draw] [--set train.lr=0.001]
        [--baselines ridge eszsl]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from textmap import FEATURE_NAME, make_textmap

from t2m_cli.config import Config, load_config
from t2m_cli.data.registry import download
from t2m_cli.encoders.dataset import encode_dataset
from t2m_cli.evaluation.protocol import evaluate_run
from t2m_cli.evaluation.report import Figure, RunEvaluation, aggregate
from t2m_cli.runs import TRAINED_BASELINES
from t2m_cli.training.run import train_baseline, train_run

DATASETS = ("shapes", "textmap")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DEFAULT_CONFIGS = {"shapes": EXAMPLES / "shapes.yaml", "textmap": None}
PAPER_CONFIG = EXAMPLES / "paper.yaml"
MODE_SETTINGS = {"paper": ("text.model=all-MiniLM-L6-v2",)}
"""Settings a mode adds: the paper mode's text model, paraphrase-MiniLM-L6-v2, needs a network
the first time, so the benchmark gives it the offline model every other run uses."""
POLICIES = ("mean", "draw")
PROTOCOLS = ("pairs", "zsl", "gzsl", "supersets")
BASELINES = ("ridge", "eszsl", "W")
COLUMNS = (
    ("pairs", "seen", "pairs S"),
    ("pairs", "unseen", "pairs U"),
    ("pairs", "H", "pairs H"),
    ("zsl", "top1", "ZSL top-1"),
    ("gzsl", "H", "GZSL H"),
    ("gzsl", "H_calibrated", "GZSL H cal."),
    ("gzsl", "AUSUC", "AUSUC"),
    ("supersets", "unseen", "supersets AUC U"),
)
SAME = "*"
"""Marks an aggregate that every seed gave alike: its +- is the SEM within a seed."""


def _prepare(dataset: str, seed: int, config: Config, root: Path, cache: Path) -> None:
    """Generate the seed's dataset at ``root`` and, for shapes, its PointNet features."""
    if dataset == "shapes":
        download("shapes", cache_dir=cache, seed=seed, root=root)
        encode_dataset(config, cache_dir=cache)
    else:
        made = make_textmap(root, seed, cache_dir=cache, text_model=config.text.model)
        print(
            f"seed {seed}: textmap nearest-class-mean on seen classes {100 * made.ncm_seen:.1f}%",
            flush=True,
        )


def run_seed(
    dataset: str,
    seed: int,
    modes: dict[str, Path | None],
    work: Path,
    cache: Path,
    settings: Sequence[str] = (),
    baselines: Sequence[str] = BASELINES,
    policies: Sequence[str] = POLICIES,
) -> dict[tuple[str, str], RunEvaluation]:
    """Generate one seed's data, then train and evaluate each mode on it; print the tables.

    Args:
        dataset: a name from `DATASETS`.
        seed: seed of the data, the features, training and the description draws.
        modes: mode name -> its run config (None for t2m's defaults); every mode trains on
            the same data and features.
        work: folder for the dataset and the runs (``<dataset>-seed<seed>``, ``runs/``).
        cache: t2m cache root (text embeddings).
        settings: ``section.key=value`` overrides applied to every mode after the benchmark's.
        baselines: names from `BASELINES` scored beside T2M-HN (W is trained with each mode's
            settings).
        policies: ``eval.descriptions`` values each run is evaluated with; every method of
            an evaluation induces from the same texts.

    Returns:
        (mode, policy) -> the evaluation.

    Raises:
        ConfigError: a setting is malformed or invalid.
        T2MError: a step of the pipeline failed.
    """
    root = work / f"{dataset}-seed{seed}"
    out: dict[tuple[str, str], RunEvaluation] = {}
    for i, (mode, config_path) in enumerate(modes.items()):
        own = [
            f"dataset.root={root}",
            f"train.seed={seed}",
            f"eval.seed={seed}",
            f"run.dir={work / 'runs'}",
            f"run.name={dataset}-seed{seed}-{mode}",
            *MODE_SETTINGS.get(mode, ()),
        ]
        if dataset == "shapes":
            own.append(f"pointnet.seed={seed}")
        else:
            own += ["dataset.name=textmap", f"dataset.features={FEATURE_NAME}"]
        config = load_config(config_path, [*own, *settings], override_option="--set")
        t0 = time.perf_counter()
        # A dataset folder already made under --work (an earlier, interrupted benchmark) is
        # reused as it is: the same seed made it.
        if i == 0 and not (root / "features").is_dir():
            _prepare(dataset, seed, config, root, cache)
        t1 = time.perf_counter()
        run = train_run(config, cache_dir=cache)
        for name in baselines:
            if name in TRAINED_BASELINES:
                train_baseline(run, name, cache_dir=cache)
        t2 = time.perf_counter()
        for policy in policies:
            evaluation = evaluate_run(
                run,
                cache_dir=cache,
                protocols=PROTOCOLS,
                baselines=baselines,
                overrides=[f"eval.descriptions={policy}"],
            )
            out[mode, policy] = evaluation
            print_table(
                f"{dataset}, seed {seed}, {mode} mode, descriptions {policy}", evaluation.figures
            )
        t3 = time.perf_counter()
        trained = " and ".join(["T2M-HN", *(b for b in baselines if b in TRAINED_BASELINES)])
        print(
            f"seed {seed}, {mode} mode: data+features {t1 - t0:.0f} s, training ({trained}) "
            f"{t2 - t1:.0f} s, evaluation {t3 - t2:.0f} s\n",
            flush=True,
        )
    return out


def print_table(title: str, figures: list[Figure]) -> None:
    """Print a markdown table: a row per method, a column per headline figure (%)."""
    by_key = {f.key: f for f in figures}
    methods = list(dict.fromkeys(f.method for f in figures))
    print(f"{title}\n| method | " + " | ".join(c[2] for c in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for method in methods:
        cells = []
        for protocol, metric, _ in COLUMNS:
            f = by_key.get((method, protocol, metric))
            mark = SAME if f is not None and f.same_in_every_run else ""
            if f is None:
                cells.append("n/a")
            elif f.sem is None or f.over != "runs":
                cells.append(f"{100 * f.mean:.1f}{mark}")
            else:
                cells.append(f"{100 * f.mean:.1f} +- {100 * f.sem:.1f}{mark}")
        print(f"| {method} | " + " | ".join(cells) + " |", flush=True)
    if any(f.same_in_every_run for f in figures):
        print(
            f"{SAME} the same for every seed: +- is the SEM within a seed (over its pairs, "
            "classes, attributes or draws), not over seeds",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> None:
    """The command line (module docstring); ``argv`` defaults to ``sys.argv[1:]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=DATASETS, default="shapes")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--config", type=Path, default=None, help="Run config (default: per dataset)."
    )
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Config override for every seed (repeatable), e.g. train.epochs=20.",
    )
    parser.add_argument("--baselines", nargs="*", choices=BASELINES, default=list(BASELINES))
    parser.add_argument("--work", type=Path, default=None, help="Folder for data and runs.")
    parser.add_argument("--output", type=Path, default=None, help="eval.json and PNG figures.")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=("recommended", "paper"),
        default=["recommended", "paper"],
        help="recommended: --config (default per dataset: t2m's defaults); paper: "
        "examples/paper.yaml with the offline text model.",
    )
    parser.add_argument(
        "--descriptions",
        nargs="+",
        choices=POLICIES,
        default=list(POLICIES),
        help="eval.descriptions policies each run is evaluated with (all methods alike).",
    )
    args = parser.parse_args(argv)
    config = args.config if args.config is not None else DEFAULT_CONFIGS[args.dataset]
    modes = {m: config if m == "recommended" else PAPER_CONFIG for m in args.modes}
    with tempfile.TemporaryDirectory(prefix="t2m-bench-") as tmp:
        work = args.work or Path(tmp)
        cache = work / "cache"
        per_seed = [
            run_seed(
                args.dataset,
                s,
                modes,
                work,
                cache,
                args.settings,
                args.baselines,
                args.descriptions,
            )
            for s in args.seeds
        ]
        if args.output is not None:
            from t2m_cli.evaluation.output import write_output

            for mode, policy in per_seed[0]:
                folder = args.output / f"{mode}-{policy}"
                for path in write_output([r[mode, policy] for r in per_seed], folder):
                    print(f"wrote {path}")
    n = len(per_seed)
    title = f"mean +- SEM over {n} seeds (%)" if n > 1 else "one seed (%)"
    for key in per_seed[0]:
        mode, policy = key
        print_table(
            f"{args.dataset}, {mode} mode, descriptions {policy}, {title}",
            aggregate([r[key] for r in per_seed]),
        )


if __name__ == "__main__":
    main()
