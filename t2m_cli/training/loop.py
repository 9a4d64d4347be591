"""The outer training loop: tasks of seen classes, the inner loop, one hypernetwork step each.

The loop is a generator of per-epoch results so that callers (the CLI, a notebook, a test) decide
what to log and when to checkpoint; it never touches files itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from t2m_cli.data.dataset import ZeroShotDataset
from t2m_cli.data.texts import TextBank
from t2m_cli.errors import UserInputError
from t2m_cli.evaluation.metrics import Summary, summarize
from t2m_cli.evaluation.pairs import ordered_pairs, pair_accuracies
from t2m_cli.models.hypernet import Hypernetwork
from t2m_cli.training.inner import (
    InnerSettings,
    hypernet_surrogate,
    inner_train,
    minibatch_order,
)


@dataclass(frozen=True)
class OuterSettings:
    """Settings of the outer loop (the paper's defaults)."""

    epochs: int = 100
    tasks_per_epoch: int = 100
    classes_per_task: int = 2
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 1e-4
    seed: int = 0
    eval_seed: int = 0


@dataclass(frozen=True)
class EpochResult:
    """What one outer epoch did.

    Attributes:
        epoch: 1-based epoch number.
        tasks: tasks trained on in this epoch.
        inner_loss: mean cross-entropy of theta_0 on the tasks' first minibatches.
        update_norm: mean ||theta_0 - theta_T|| over the epoch's tasks.
        val: accuracy over ordered pairs of validation classes.
        seconds: wall time of the epoch, validation included.
        is_best: this epoch has the best validation accuracy so far.
    """

    epoch: int
    tasks: int
    inner_loss: float
    update_norm: float
    val: Summary
    seconds: float
    is_best: bool

    def to_json(self) -> dict[str, float | int | bool]:
        return {
            "epoch": self.epoch,
            "tasks": self.tasks,
            "inner_loss": self.inner_loss,
            "update_norm": self.update_norm,
            "val_acc": self.val.mean,
            "val_sem": self.val.sem,
            "seconds": self.seconds,
            "is_best": self.is_best,
        }


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; an unavailable CUDA request is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(
            f"Device '{name}' was asked for but this machine has no CUDA device; "
            "use --device cpu (or auto)."
        )
    return device


def sample_tasks(n_classes: int, k: int, n_tasks: int, generator: torch.Generator) -> torch.Tensor:
    """Tasks of one epoch: ordered k-tuples of distinct classes.

    For k = 2, as in the paper, all ordered pairs are shuffled and the first ``n_tasks`` taken
    (no pair twice in an epoch, unless there are fewer pairs than tasks). For k > 2 each task
    is an independent random ordered k-subset.

    Returns:
        (n_tasks, k) int64 indices in ``range(n_classes)``.
    """
    if k > n_classes:
        raise UserInputError(
            f"Tasks of {k} classes need at least {k} training classes; the dataset has "
            f"{n_classes}. Lower train.classes_per_task."
        )
    if k == 2:
        pairs = ordered_pairs(n_classes)
        reps = -(-n_tasks // len(pairs))
        order = torch.cat([torch.randperm(len(pairs), generator=generator) for _ in range(reps)])
        return pairs[order[:n_tasks]]
    return torch.stack([torch.randperm(n_classes, generator=generator)[:k] for _ in range(n_tasks)])


class Trainer:
    """Trains a hypernetwork on a dataset's seen classes, one task per hypernetwork step.

    Args:
        hypernet: the hypernetwork; trained in place.
        bank: text embeddings indexed by dataset label.
        dataset: features, split and labels.
        inner: inner-loop settings.
        outer: outer-loop settings.
        device: where tensors live; features are moved there once.
    """

    def __init__(
        self,
        hypernet: Hypernetwork,
        bank: TextBank,
        dataset: ZeroShotDataset,
        inner: InnerSettings,
        outer: OuterSettings,
        device: torch.device,
    ) -> None:
        self.hypernet = hypernet.to(device)
        self.bank = bank.to(device)
        self.dataset = dataset
        self.inner = inner
        self.outer = outer
        self.device = device
        self.features = dataset.features.to(device)
        self.seen = torch.tensor([dataset.index(c) for c in dataset.split.seen])
        # Seen classes train on their training rows only; their held-out rows are for evaluation.
        self.train_rows = [dataset.class_rows(c, "train").to(device) for c in dataset.split.seen]
        self.optimizer = torch.optim.SGD(
            self.hypernet.parameters(),
            lr=outer.lr,
            momentum=outer.momentum,
            weight_decay=outer.weight_decay,
        )
        self.generator = torch.Generator().manual_seed(outer.seed)
        self.best_val = -1.0

    def task_data(self, task: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels of one task.

        Args:
            task: (k,) indices into the seen classes.

        Returns:
            x (1, n, D) and y (1, n), label = position of the class in the task.
        """
        rows = [self.train_rows[int(c)] for c in task]
        x = self.features[torch.cat(rows)]
        y = torch.cat(
            [
                torch.full((len(r),), i, dtype=torch.long, device=self.device)
                for i, r in enumerate(rows)
            ]
        )
        return x.unsqueeze(0), y.unsqueeze(0)

    def step(self, task: torch.Tensor) -> tuple[float, float]:
        """One task: emit theta_0, run the inner loop, take one hypernetwork step.

        Returns:
            the first-minibatch inner loss and ||theta_0 - theta_T||.
        """
        x, y = self.task_data(task)
        text = self.bank.draw(self.seen[task].unsqueeze(0), self.generator)
        theta0 = self.hypernet(text)
        order = minibatch_order(1, y.shape[1], self.inner.epochs, self.generator)
        theta_t, first_loss = inner_train(self.hypernet.target, theta0, x, y, self.inner, order)
        self.optimizer.zero_grad(set_to_none=True)
        hypernet_surrogate(theta0, theta_t).backward()
        self.optimizer.step()
        delta = torch.sqrt(sum(((theta0[k].detach() - theta_t[k]) ** 2).sum() for k in theta0))
        return float(first_loss.mean()), float(delta)

    def validate(self) -> Summary:
        """Mean pair accuracy over the validation classes, with fixed description draws."""
        generator = torch.Generator().manual_seed(self.outer.eval_seed)
        _, acc = pair_accuracies(
            self.hypernet, self.bank, self.dataset, self.dataset.split.val, "all", generator
        )
        return summarize(acc)

    def epochs(self, start: int = 1) -> Iterator[EpochResult]:
        """Run epochs ``start..outer.epochs``, yielding each one's result."""
        for epoch in range(start, self.outer.epochs + 1):
            began = time.perf_counter()
            tasks = sample_tasks(
                len(self.seen),
                self.outer.classes_per_task,
                self.outer.tasks_per_epoch,
                self.generator,
            )
            losses, norms = [], []
            self.hypernet.train()
            for task in tasks:
                loss, norm = self.step(task)
                losses.append(loss)
                norms.append(norm)
            val = self.validate()
            is_best = val.mean > self.best_val
            if is_best:
                self.best_val = val.mean
            yield EpochResult(
                epoch=epoch,
                tasks=len(tasks),
                inner_loss=sum(losses) / len(losses),
                update_norm=sum(norms) / len(norms),
                val=val,
                seconds=time.perf_counter() - began,
                is_best=is_best,
            )
