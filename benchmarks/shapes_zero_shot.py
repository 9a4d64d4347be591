"""Zero-shot accuracy on the embedded `shapes` dataset over several seeds, with a baseline.

For each seed the whole pipeline runs anew (dataset generation, PointNet features, hypernetwork
training), then T2M-HN (EV) and the ridge prototype baseline are scored with the same pair
protocol, the same features and the same description draws. Prints Seen / Unseen / H per seed
and mean +- SEM across seeds.

    python benchmarks/shapes_zero_shot.py --seeds 0 1 2 [--config examples/shapes.yaml]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from t2m_cli.config import load_config
from t2m_cli.data.normalize import FeatureNorm
from t2m_cli.data.registry import download, open_dataset
from t2m_cli.data.texts import TextBank
from t2m_cli.encoders.dataset import encode_dataset
from t2m_cli.encoders.text import make_text_encoder
from t2m_cli.evaluation.baselines import fit_ridge_baseline
from t2m_cli.evaluation.metrics import harmonic_mean, summarize
from t2m_cli.evaluation.pairs import pair_accuracies
from t2m_cli.evaluation.protocol import PAIR_PARTS, evaluate_run
from t2m_cli.paths import text_cache_dir
from t2m_cli.training.run import train_run


def run_seed(seed: int, config_path: Path, work: Path, cache: Path) -> dict[str, dict[str, float]]:
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
    t2 = time.perf_counter()
    report = evaluate_run(run, cache_dir=cache)
    results = {"T2M-HN (EV)": {p: report.pairs[p].mean for p in ("seen", "unseen", "val")}}

    dataset = open_dataset("shapes", root, config.dataset.features, cache)
    if config.dataset.standardize:
        dataset = FeatureNorm.fit(dataset).apply(dataset)
    encoder = make_text_encoder(config.text.model, cache_dir=text_cache_dir(cache))
    bank = TextBank.build(dataset.classes, dataset.descriptions, config.text.source, encoder)
    ridge, alpha = fit_ridge_baseline(dataset, bank, seed=seed)
    results["ridge prototypes"] = {
        part: summarize(
            pair_accuracies(
                ridge,
                bank,
                dataset,
                dataset.split.part(part),
                rows,
                torch.Generator().manual_seed(seed),
            )[1]
        ).mean
        for part, rows in PAIR_PARTS.items()
    }
    for name, r in results.items():
        r["H"] = harmonic_mean(r["seen"], r["unseen"])
        note = f"  alpha {alpha:g}" if name == "ridge prototypes" else ""
        print(
            f"seed {seed}  {name:18s} seen {100 * r['seen']:5.1f}  unseen {100 * r['unseen']:5.1f}"
            f"  H {100 * r['H']:5.1f}  (val {100 * r['val']:5.1f}){note}",
            flush=True,
        )
    print(f"seed {seed}  data+features {t1 - t0:.0f} s, training {t2 - t1:.0f} s", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", type=Path, default=Path("examples/shapes.yaml"))
    parser.add_argument("--work", type=Path, default=None, help="Folder for data and runs.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="t2m-bench-") as tmp:
        work = args.work or Path(tmp)
        cache = work / "cache"
        per_seed = [run_seed(s, args.config, work, cache) for s in args.seeds]
    print(f"\nmean +- SEM over {len(per_seed)} seeds (pair accuracy, %)")
    for name in per_seed[0]:
        cells = []
        for metric in ("seen", "unseen", "H"):
            s = summarize(torch.tensor([r[name][metric] for r in per_seed], dtype=torch.float64))
            cells.append(f"{metric} {100 * s.mean:5.1f} +- {100 * s.sem:4.1f}")
        print(f"{name:18s} " + "  ".join(cells))


if __name__ == "__main__":
    main()
