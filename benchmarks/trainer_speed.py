"""Tasks per second of the paper's training rule, and of the batched trainer, at the paper's
settings.

All train the EV hypernetwork with the same rule (k = 2, inner batch 64, 3 inner epochs,
512-d features, 40 classes of 500 vectors, 450 of them training rows) on a generated dataset
whose features follow its class descriptions, so that validation accuracy means something:

- the paper's rule (`train.tasks_per_step=1`, one thread) with the autograd inner loop t2m had
  before its inner gradients were written out: the baseline every ratio is against;
- the paper's rule as t2m runs it now (written-out gradients, one fused update); the same
  weights up to float rounding (tests/test_paper_rule_speed_path.py);
- the batched trainer: `--tasks-per-step` inner loops at once, their updates averaged into one
  step (two threads).

Each sees the same tasks; they run in turn, ``--rounds`` times, and the figures are medians of
tasks per second of training (validation excluded), the ratio to the baseline, and validation
pair accuracy after those tasks.

    python benchmarks/trainer_speed.py [--tasks 2000] [--tasks-per-step 100] [--device cpu]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch

import t2m_cli.training.inner as inner_module
from t2m_cli.config import TrainConfig
from t2m_cli.data.dataset import Split, ZeroShotDataset
from t2m_cli.data.texts import TextBank
from t2m_cli.encoders.text import HashingEncoder
from t2m_cli.models.hypernet import build_hypernet
from t2m_cli.training.inner import InnerSettings
from t2m_cli.training.loop import OuterSettings, Trainer, sample_tasks

WORDS = ["red", "blue", "green", "round", "square", "long", "flat", "large", "small", "striped"]


def make_dataset(n_classes: int = 40, per_class: int = 500, dim: int = 512) -> ZeroShotDataset:
    """Classes described by three attribute words; features a noisy linear map of them."""
    g = torch.Generator().manual_seed(0)
    combos = list(itertools.combinations(range(len(WORDS)), 3))
    picks = torch.randperm(len(combos), generator=g)[:n_classes].tolist()
    attrs = torch.zeros(n_classes, len(WORDS))
    classes, descriptions = [], {}
    for c, pick in enumerate(picks):
        words = [WORDS[w] for w in combos[pick]]
        attrs[c, list(combos[pick])] = 1.0
        classes.append("_".join(words))
        descriptions[classes[-1]] = [
            f"a {' '.join(words)} thing",
            f"{words[1]}, {words[2]}, {words[0]}",
        ]
    projection = torch.randn(len(WORDS), dim, generator=g) / len(WORDS) ** 0.5
    features = (attrs @ projection).repeat_interleave(per_class, 0)
    features += 2.0 * torch.randn(features.shape, generator=g)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    is_test = (torch.arange(per_class) >= int(0.9 * per_class)).repeat(n_classes)
    n_seen, n_val = int(0.7 * n_classes), int(0.15 * n_classes)
    split = Split(
        tuple(classes[:n_seen]),
        tuple(classes[n_seen : n_seen + n_val]),
        tuple(classes[n_seen + n_val :]),
    )
    return ZeroShotDataset("synthetic", classes, features, labels, is_test, split, descriptions)


def update_rule_trainer(
    dataset, bank, epochs: int, tasks_per_epoch: int, tasks_per_step: int, lr: float, device
) -> Trainer:
    """A fresh EV hypernetwork (H = 120, seed 0) and its trainer under the paper's update rule
    (pairs, inner loop and update; outer weight decay 1e-4), ``tasks_per_step`` tasks a step."""
    torch.manual_seed(0)
    hypernet = build_hypernet("EV", text_dim=bank.dim, feature_dim=dataset.feature_dim)
    train = TrainConfig(
        epochs=epochs,
        tasks_per_epoch=tasks_per_epoch,
        tasks_per_step=tasks_per_step,
        lr=lr,
        objective="update",
        classes_per_task_max=None,
        weight_decay=1e-4,
        patience=None,
    )
    inner, outer = InnerSettings.from_config(train), OuterSettings.from_config(train, eval_seed=0)
    return Trainer(hypernet, bank, dataset, inner, outer, device)


def run(dataset, bank, tasks: int, tasks_per_step: int, lr: float, device, threads: int):
    """Train a fresh EV hypernetwork on ``tasks`` tasks; (tasks per second, val accuracy)."""
    torch.set_num_threads(threads)
    trainer = update_rule_trainer(dataset, bank, 1, tasks, tasks_per_step, lr, device)
    batch = sample_tasks(trainer.groups, 2, tasks, trainer.generator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    for chunk in batch.split(tasks_per_step):
        trainer.step(chunk)
    if device.type == "cuda":
        torch.cuda.synchronize()  # CPU-GPU sync point: time the work, not its queueing
    seconds = time.perf_counter() - began
    return tasks / seconds, trainer.validate().mean


@contextmanager
def autograd_inner_loop() -> Iterator[None]:
    """Train as t2m did before its inner gradients were written out: every target of unknown
    kind to the inner loop, so each inner step takes autograd's backward pass."""
    real = inner_module.target_kind_of
    inner_module.target_kind_of = lambda target: None
    try:
        yield
    finally:
        inner_module.target_kind_of = real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="Alternating runs; medians.")
    parser.add_argument("--tasks-per-step", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.005, help="Outer lr of the per-task loop.")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    dataset = make_dataset()
    bank = TextBank.build(dataset.classes, dataset.descriptions, "descriptions", HashingEncoder())
    print(f"device {device}, {args.tasks} tasks, k=2, batch 64, 3 inner epochs, 512-d features")
    t = args.tasks_per_step
    threads = torch.get_num_threads() if device.type == "cuda" else 2
    # The batched step averages T task updates: the outer lr is scaled by T so that a step
    # moves as far as the T per-task steps it replaces (the linear scaling rule).
    modes = {
        "paper rule, autograd inner loop": (1, args.lr, 1, autograd_inner_loop),
        "paper rule": (1, args.lr, 1, nullcontext),
        f"batched, {t} tasks a step": (t, args.lr * t, threads, nullcontext),
    }
    speeds: dict[str, list[float]] = {name: [] for name in modes}
    accuracy: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, (per_step, lr, n_threads, context) in modes.items():
            with context():
                speed, val = run(dataset, bank, args.tasks, per_step, lr, device, n_threads)
            speeds[name].append(speed)
            accuracy[name] = val
    base = statistics.median(speeds["paper rule, autograd inner loop"])
    for name in modes:
        speed = statistics.median(speeds[name])
        print(
            f"{name:34s} {speed:8.1f} tasks/s  x{speed / base:5.2f}   "
            f"val pair accuracy {100 * accuracy[name]:.1f}%"
        )


if __name__ == "__main__":
    main()
