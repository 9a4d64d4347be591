"""Time to accuracy of the batched update rule: how soon ``train.tasks_per_step`` 10 and 100
reach the validation accuracy of the paper's rule (one task a step).

The paper's rule trains ``--epochs`` epochs; its best validation pair accuracy, less its SEM
over pairs, is the target. Then each batched setting trains the same epochs (each epoch the
same number of tasks), under two learning-rate rules: linear (``lr = 0.005 x tasks_per_step``,
the README's) and square root (``0.005 x sqrt(tasks_per_step)``). Printed per setting: its best
validation accuracy, the first epoch at or above the target, the training wall time until then
(epoch times summed, validation included) and its ratio to the paper rule's time to the same
target.

Data (``--dataset``):

- ``synthetic``: the paper-settings data of `trainer_speed.py` (40 classes, 450 training rows
  each, 512-d features, hashing text encoder).
- ``shapes``: the embedded dataset (seed 0, PointNet features), generated under ``--work`` the
  first time, with examples/paper.yaml's settings and the offline text model.

    python benchmarks/time_to_accuracy.py --dataset synthetic [--epochs 40] [--steps 10 100]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
from pathlib import Path

import torch

from t2m_cli.config import load_config
from t2m_cli.data.texts import TextBank
from t2m_cli.encoders.text import HashingEncoder

HERE = Path(__file__).resolve().parent
PAPER_LR = 0.005
Curve = list[tuple[float, float, float]]
"""Per epoch: (training seconds so far, validation accuracy, its SEM)."""


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthetic_curve(epochs: int, per_step: int, lr: float) -> Curve:
    """Train the EV hypernetwork by the update rule on `trainer_speed`'s data."""
    speed = _script("trainer_speed")
    dataset = speed.make_dataset()
    bank = TextBank.build(dataset.classes, dataset.descriptions, "descriptions", HashingEncoder())
    device = torch.device("cpu")
    trainer = speed.update_rule_trainer(dataset, bank, epochs, 100, per_step, lr, device)
    curve: Curve = []
    elapsed = 0.0
    for result in trainer.epochs():
        elapsed += result.seconds
        curve.append((elapsed, result.val.mean, result.val.sem or 0.0))
    return curve


def shapes_curve(epochs: int, per_step: int, lr: float, work: Path) -> Curve:
    """Train on `shapes` (seed 0) with examples/paper.yaml's settings."""
    from t2m_cli.data.registry import download
    from t2m_cli.device import cpu_threads, phase_threads
    from t2m_cli.encoders.dataset import encode_dataset
    from t2m_cli.training.run import train_run

    root, cache = work / "shapes-seed0", work / "cache"
    settings = [
        f"dataset.root={root}",
        "text.model=all-MiniLM-L6-v2",
        f"train.epochs={epochs}",
        f"train.tasks_per_step={per_step}",
        f"train.lr={lr}",
        f"run.dir={work / 'runs'}",
        f"run.name=t{per_step}-lr{lr:g}",
    ]
    config = load_config(HERE.parent / "examples" / "paper.yaml", settings)
    if not (root / "features").is_dir():
        download("shapes", cache_dir=cache, seed=0, root=root)
        encode_dataset(config, cache_dir=cache)
    curve: Curve = []
    elapsed = [0.0]

    def on_epoch(result) -> None:
        elapsed[0] += result.seconds
        curve.append((elapsed[0], result.val.mean, result.val.sem or 0.0))

    # The thread count `t2m train` would choose for this setting.
    with cpu_threads(phase_threads(per_step == 1, adaptive=False)):
        import shutil

        shutil.rmtree(config.run.dir / str(config.run.name), ignore_errors=True)
        train_run(config, cache, on_epoch=on_epoch, quiet=True)
    return curve


def time_to(curve: Curve, target: float) -> tuple[int, float] | None:
    """(epoch, seconds) at which ``curve`` first reaches ``target``, or None."""
    for epoch, (seconds, acc, _) in enumerate(curve, 1):
        if acc >= target:
            return epoch, seconds
    return None


def main(argv: list[str] | None = None) -> None:
    """The command line (module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["synthetic", "shapes"], default="synthetic")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 100])
    parser.add_argument(
        "--batched-epochs",
        type=int,
        default=None,
        help="Epochs of the batched settings (default --epochs): 100 tasks a step take one "
        "hypernetwork step an epoch.",
    )
    parser.add_argument("--work", type=Path, default=Path("runs-bench/time-to-accuracy"))
    args = parser.parse_args(argv)

    def curve(per_step: int, lr: float) -> Curve:
        epochs = args.epochs if per_step == 1 else args.batched_epochs or args.epochs
        if args.dataset == "synthetic":
            torch.set_num_threads(1 if per_step == 1 else 2)
            return synthetic_curve(epochs, per_step, lr)
        return shapes_curve(epochs, per_step, lr, args.work)

    paper = curve(1, PAPER_LR)
    best = max(range(len(paper)), key=lambda i: paper[i][1])
    target = paper[best][1] - paper[best][2]
    reached = time_to(paper, target)
    assert reached is not None, "the paper rule reaches its own best"
    print(
        f"{args.dataset}, {args.epochs} epochs of 100 tasks (batched settings: "
        f"{args.batched_epochs or args.epochs}); paper rule best val "
        f"{100 * paper[best][1]:.1f} +- {100 * paper[best][2]:.1f}% (epoch {best + 1}); "
        f"target {100 * target:.1f}%"
    )
    header = f"{'tasks/step':>10} {'lr rule':>8} {'lr':>7} {'best val':>9} {'epoch':>6}"
    print(header + f" {'seconds':>8} {'x faster':>8}")
    rows = [(1, "paper", PAPER_LR)]
    for per_step in args.steps:
        rows.append((per_step, "linear", PAPER_LR * per_step))
        rows.append((per_step, "sqrt", PAPER_LR * math.sqrt(per_step)))
    for per_step, rule, lr in rows:
        c = paper if per_step == 1 else curve(per_step, lr)
        top = max(acc for _, acc, _ in c)
        hit = time_to(c, target)
        when = (
            f"{hit[0]:6d} {hit[1]:8.1f} {reached[1] / hit[1]:8.1f}"
            if hit
            else f"{'-':>6} {'never':>8} {'-':>8}"
        )
        print(f"{per_step:10d} {rule:>8} {lr:7.3f} {100 * top:8.1f}% {when}", flush=True)


if __name__ == "__main__":
    main()
