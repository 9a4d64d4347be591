"""Tasks per second of the batched trainer against the per-task loop, at the paper's settings.

Both train the EV hypernetwork with the same rule (k = 2, inner batch 64, 3 inner epochs,
512-d features, 40 classes of 500 vectors) on a generated dataset whose features follow its
class descriptions, so that validation accuracy means something. The per-task loop takes one
hypernetwork step per task (the paper's rule, `train.tasks_per_step=1`); the batched trainer
runs `--tasks-per-step` inner loops at once and averages their updates into one step. Both see
the same number of tasks; the figures printed are tasks per second of training (validation
excluded), their ratio, and validation pair accuracy after the same number of tasks.

    python benchmarks/trainer_speed.py [--tasks 2000] [--tasks-per-step 100] [--device cpu]
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from t2m_cli.config import TrainConfig
from t2m_cli.data.dataset import Split, ZeroShotDataset
from t2m_cli.data.texts import TextBank
from t2m_cli.encoders.text import HashingEncoder
from t2m_cli.models.hypernet import build_hypernet
from t2m_cli.training.inner import InnerSettings
from t2m_cli.training.loop import OuterSettings, Trainer

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
    is_test = (torch.arange(per_class) >= int(0.8 * per_class)).repeat(n_classes)
    n_seen, n_val = int(0.7 * n_classes), int(0.15 * n_classes)
    split = Split(
        tuple(classes[:n_seen]),
        tuple(classes[n_seen : n_seen + n_val]),
        tuple(classes[n_seen + n_val :]),
    )
    return ZeroShotDataset("synthetic", classes, features, labels, is_test, split, descriptions)


def run(dataset, bank, tasks: int, tasks_per_step: int, lr: float, device, threads: int):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    hypernet = build_hypernet("EV", text_dim=bank.dim, feature_dim=dataset.feature_dim)
    # The paper's rule (pairs, inner loop and update), whose speed this measures.
    train = TrainConfig(
        epochs=1,
        tasks_per_epoch=tasks,
        tasks_per_step=tasks_per_step,
        lr=lr,
        objective="update",
        classes_per_task_max=None,
        weight_decay=1e-4,
        patience=None,
    )
    inner, outer = InnerSettings.from_config(train), OuterSettings.from_config(train, eval_seed=0)
    trainer = Trainer(hypernet, bank, dataset, inner, outer, device)
    from t2m_cli.training.loop import sample_tasks

    batch = sample_tasks(len(trainer.seen), 2, tasks, trainer.generator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    for chunk in batch.split(tasks_per_step):
        trainer.step(chunk)
    if device.type == "cuda":
        torch.cuda.synchronize()  # CPU-GPU sync point: time the work, not its queueing
    seconds = time.perf_counter() - began
    return tasks / seconds, trainer.validate().mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="The paper's run: 100 x 100.")
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
    ref_speed, ref_val = run(dataset, bank, args.tasks, 1, args.lr, device, threads=1)
    print(f"per-task loop             {ref_speed:8.1f} tasks/s   val pair accuracy ", end="")
    print(f"{100 * ref_val:.1f}%")
    # The batched step averages T task updates: the outer lr is scaled by T so that a step
    # moves as far as the T per-task steps it replaces (the linear scaling rule).
    t = args.tasks_per_step
    threads = torch.get_num_threads() if device.type == "cuda" else 2
    speed, val = run(dataset, bank, args.tasks, t, args.lr * t, device, threads)
    print(
        f"batched, {t} tasks a step {speed:8.1f} tasks/s   val pair accuracy {100 * val:.1f}%"
        f"   speed-up x{speed / ref_speed:.1f}"
    )


if __name__ == "__main__":
    main()
