"""Zero-shot results on the embedded `shapes` dataset over several seeds, with baselines.

For each seed the whole pipeline runs anew (dataset generation, PointNet features, hypernetwork
training). Then `t2m evaluate`'s harness scores T2M-HN and the baselines (ridge prototypes,
ESZSL and the W hypernetwork, trained with the run's own settings) with every protocol, the
same features and the same description draws. Prints each seed's headline figures and the
mean +- SEM across seeds; ``--output DIR`` also writes eval.json and the PNG figures.

    python benchmarks/shapes_zero_shot.py --seeds 0 1 2 [--config examples/shapes.yaml]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from t2m_cli.config import load_config
from t2m_cli.data.registry import download
from t2m_cli.encoders.dataset import encode_dataset
from t2m_cli.evaluation.protocol import evaluate_run
from t2m_cli.evaluation.report import Figure, RunEvaluation, aggregate
from t2m_cli.training.run import train_baseline, train_run

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


def run_seed(seed: int, config_path: Path, work: Path, cache: Path) -> RunEvaluation:
    root = work / f"shapes-seed{seed}"
    config = load_config(
        config_path,
        [
            f"dataset.root={root}",
            f"pointnet.seed={seed}",
            f"train.seed={seed}",
            f"eval.seed={seed}",
            f"run.dir={work / 'runs'}",
            f"run.name=seed{seed}",
        ],
    )
    t0 = time.perf_counter()
    download("shapes", cache_dir=cache, seed=seed, root=root)
    encode_dataset(config, cache_dir=cache)
    t1 = time.perf_counter()
    run = train_run(config, cache_dir=cache)
    train_baseline(run, "W", cache_dir=cache)
    t2 = time.perf_counter()
    evaluation = evaluate_run(run, cache_dir=cache, protocols=PROTOCOLS, baselines=BASELINES)
    t3 = time.perf_counter()
    _print_table(f"seed {seed}", evaluation.figures)
    print(
        f"seed {seed}: data+features {t1 - t0:.0f} s, training (T2M-HN and the W baseline) "
        f"{t2 - t1:.0f} s, evaluation {t3 - t2:.0f} s\n",
        flush=True,
    )
    return evaluation


def _print_table(title: str, figures: list[Figure]) -> None:
    """A markdown table: a row per method, a column per headline figure (%)."""
    by_key = {f.key: f for f in figures}
    methods = list(dict.fromkeys(f.method for f in figures))
    print(f"{title}\n| method | " + " | ".join(c[2] for c in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for method in methods:
        cells = []
        for protocol, metric, _ in COLUMNS:
            f = by_key.get((method, protocol, metric))
            if f is None:
                cells.append("n/a")
            elif f.sem is None or f.over != "runs":
                cells.append(f"{100 * f.mean:.1f}")
            else:
                cells.append(f"{100 * f.mean:.1f} +- {100 * f.sem:.1f}")
        print(f"| {method} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", type=Path, default=Path("examples/shapes.yaml"))
    parser.add_argument("--work", type=Path, default=None, help="Folder for data and runs.")
    parser.add_argument("--output", type=Path, default=None, help="eval.json and PNG figures.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="t2m-bench-") as tmp:
        work = args.work or Path(tmp)
        cache = work / "cache"
        evaluations = [run_seed(s, args.config, work, cache) for s in args.seeds]
        if args.output is not None:
            from t2m_cli.evaluation.output import write_output

            for path in write_output(evaluations, args.output):
                print(f"wrote {path}")
    n = len(evaluations)
    title = f"mean +- SEM over {n} seeds (%)" if n > 1 else "one seed (%)"
    _print_table(title, aggregate(evaluations))


if __name__ == "__main__":
    main()
