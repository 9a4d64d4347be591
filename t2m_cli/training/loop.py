"""The outer training loop: tasks of seen classes, their inner loops, hypernetwork steps.

Two kinds of task share the loop (``train.task``): `Trainer` trains on ordered sets of seen
classes (the paper's class task); `SupersetTrainer` trains on super-set tasks, one attribute
against the seen classes without it, with a single-logit target and binary cross-entropy.

The loop is a generator of per-epoch results so that callers (the CLI, a notebook, a test) decide
what to log and when to checkpoint; it never touches files itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import torch

from t2m_cli.data.dataset import ZeroShotDataset
from t2m_cli.data.texts import Describer
from t2m_cli.errors import DataError, UserInputError
from t2m_cli.models.hypernet import Hypernetwork
from t2m_cli.scoring.metrics import Summary, summarize
from t2m_cli.scoring.pairs import ordered_pairs, validation_pair_accuracy
from t2m_cli.scoring.supersets import superset_aucs
from t2m_cli.training.inner import (
    InnerSettings,
    hypernet_surrogate,
    inner_train,
    minibatch_order,
)

if TYPE_CHECKING:
    from t2m_cli.config import TrainConfig


@dataclass(frozen=True)
class OuterSettings:
    """Settings of the outer loop: the ``train`` keys of the same names, and ``eval.seed``.

    Their defaults (the paper's) live in `TrainConfig` and `EvalConfig` alone.
    """

    epochs: int
    tasks_per_epoch: int
    classes_per_task: int
    tasks_per_step: int
    amp: bool
    lr: float
    momentum: float
    weight_decay: float
    seed: int
    eval_seed: int

    @classmethod
    def from_config(cls, train: TrainConfig, eval_seed: int) -> OuterSettings:
        """The settings of a config's ``train`` section, whose keys they share, and a seed.

        Args:
            train: the validated ``train`` section.
            eval_seed: seed of the validation description draws (``eval.seed``).

        Returns:
            The outer-loop settings.
        """
        names = [f.name for f in fields(cls) if f.name != "eval_seed"]
        return cls(**{name: getattr(train, name) for name in names}, eval_seed=eval_seed)


@dataclass(frozen=True)
class EpochResult:
    """What one outer epoch did.

    Attributes:
        epoch: 1-based epoch number.
        tasks: tasks trained on in this epoch.
        inner_loss: mean cross-entropy (binary cross-entropy for super-set tasks) of theta_0
            on the tasks' first minibatches.
        update_norm: mean ||theta_0 - theta_T|| over the epoch's tasks.
        val: the model-selection score on the validation classes: accuracy over their ordered
            pairs for class tasks; for super-set tasks the ROC-AUC over attributes (mean +-
            SEM). ``to_json`` writes it as ``val_acc`` / ``val_sem`` either way, so in the
            metrics of a super-set run ``val_acc`` is the mean validation AUC.
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


def superset_tasks(n_attributes: int, n_tasks: int, generator: torch.Generator) -> torch.Tensor:
    """Super-set tasks of one epoch: the attributes shuffled, the first ``n_tasks`` taken.

    The analogue of `sample_tasks` for pairs: no attribute twice in an epoch unless there are
    fewer attributes than tasks, in which case the shuffles repeat.

    Returns:
        (n_tasks, 1) int64 indices in ``range(n_attributes)``.
    """
    if n_attributes < 1:
        raise ValueError("super-set tasks need at least one attribute")
    reps = -(-n_tasks // n_attributes)
    order = torch.cat([torch.randperm(n_attributes, generator=generator) for _ in range(reps)])
    return order[:n_tasks].unsqueeze(1)


class Trainer:
    """Trains a hypernetwork on a dataset's seen classes.

    Each hypernetwork step takes ``outer.tasks_per_step`` tasks; their inner loops run at once
    as batched tensor operations and one backward pass gives the mean of their updates. One
    task per step is the paper's rule.

    Args:
        hypernet: the hypernetwork; trained in place.
        bank: text embeddings indexed by dataset label.
        dataset: features, split and labels.
        inner: inner-loop settings.
        outer: outer-loop settings.
        device: where tensors live; features are moved there once.
        rank: this process's index among ``world_size`` processes sharing each step's tasks
            (torch.distributed); 0 and 1 for a single process.
        world_size: number of such processes.
    """

    def __init__(
        self,
        hypernet: Hypernetwork,
        bank: Describer,
        dataset: ZeroShotDataset,
        inner: InnerSettings,
        outer: OuterSettings,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.rank = rank
        self.world_size = world_size
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

    def task_data(self, tasks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Feature rows and labels of a batch of tasks, padded to the largest.

        Args:
            tasks: (T, k) indices into the seen classes.

        Returns:
            rows (T, n_max) into the feature matrix, y (T, n_max) with label = position of
            the class in its task, and counts (T,) of real samples per task.
        """
        rows = [[self.train_rows[int(c)] for c in task] for task in tasks.tolist()]
        counts = torch.tensor([sum(len(r) for r in task_rows) for task_rows in rows])
        n_max = int(counts.max())
        # Padding points at row 0 with label 0; the inner loop masks it out by the counts.
        idx = torch.zeros(len(rows), n_max, dtype=torch.long, device=self.device)
        y = torch.zeros(len(rows), n_max, dtype=torch.long, device=self.device)
        for t, task_rows in enumerate(rows):
            both = torch.cat(task_rows)
            idx[t, : len(both)] = both
            y[t, : len(both)] = torch.repeat_interleave(
                torch.arange(len(task_rows), device=self.device),
                torch.tensor([len(r) for r in task_rows], device=self.device),
            )
        return idx, y, counts

    def draw_text(self, tasks: torch.Tensor) -> torch.Tensor:
        """(T, k, d) description embeddings of a batch of tasks, drawn with the generator."""
        return self.bank.draw(self.seen[tasks], self.generator)

    def sample_epoch(self) -> torch.Tensor:
        """The tasks of one epoch, (tasks_per_epoch, k) indices into the seen classes."""
        return sample_tasks(
            len(self.seen),
            self.outer.classes_per_task,
            self.outer.tasks_per_epoch,
            self.generator,
        )

    def accumulate(self, tasks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add this process's share of a step's hypernetwork gradient to ``.grad``.

        Every process draws the descriptions and minibatch orders of the whole batch, so that
        their generators stay in step, then trains tasks ``rank::world_size`` only. Each share
        is weighted by its size over the batch's, so the shares summed over processes give
        the mean update of all T tasks.

        Args:
            tasks: (T, k) indices into the seen classes.

        Returns:
            (T_own,) first-minibatch inner losses and (T_own,) ||theta_0 - theta_T|| of this
            process's tasks.
        """
        rows, y, counts = self.task_data(tasks)
        text = self.draw_text(tasks)
        order = minibatch_order(counts, self.inner.epochs, self.generator)
        mine = slice(self.rank, None, self.world_size)
        if not len(counts[mine]):
            empty = torch.zeros(0, device=self.device)
            return empty, empty
        # Mixed precision: matrix products in bfloat16, weights, their updates and the loss in
        # float32; bfloat16 keeps float32's range, so no loss scaling is needed.
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.outer.amp):
            theta0 = self.hypernet(text[mine])
            theta_t, first_loss = inner_train(
                self.hypernet.target,
                theta0,
                self.features,
                rows[mine],
                y[mine],
                counts[mine],
                self.inner,
                [o[mine] for o in order],
            )
        theta0 = {k: v.to(theta_t[k].dtype) for k, v in theta0.items()}
        share = len(counts[mine]) / len(tasks)
        (hypernet_surrogate(theta0, theta_t) * share).backward()
        sq = torch.stack(
            [((theta0[k].detach() - theta_t[k]) ** 2).flatten(1).sum(1) for k in theta0]
        )
        return first_loss, sq.sum(0).sqrt()

    def step(self, tasks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One hypernetwork step from a batch of tasks.

        Emits theta_0 for every task, runs all inner loops at once, and steps along the mean
        of the tasks' updates. With one task per step this is the paper's rule exactly. Under
        torch.distributed (``world_size > 1``) the processes split the tasks and their
        gradients are summed before the step.

        Args:
            tasks: (T, k) indices into the seen classes.

        Returns:
            (T_own,) first-minibatch inner losses and (T_own,) ||theta_0 - theta_T||.
        """
        self.optimizer.zero_grad(set_to_none=False)
        first_loss, norms = self.accumulate(tasks)
        if self.world_size > 1:
            import torch.distributed as dist

            for p in self.hypernet.parameters():
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad)
        self.optimizer.step()
        return first_loss, norms

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """Everything a resumed run needs beyond the config: weights, momentum, RNG, best.

        Returns:
            tensors (model weights, optimiser buffers, generator state) and JSON facts.
        """
        tensors = {f"model.{k}": v for k, v in self.hypernet.state_dict().items()}
        for i, p in enumerate(self.hypernet.parameters()):
            buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                tensors[f"optim.{i}"] = buf
        tensors["rng"] = self.generator.get_state()
        return tensors, {"best_val": self.best_val}

    def load_state(self, tensors: dict[str, torch.Tensor], facts: dict[str, float]) -> None:
        """Restore what `state` returned, so the next epoch is the one an unbroken run had."""
        self.hypernet.load_state_dict(
            {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        )
        for i, p in enumerate(self.hypernet.parameters()):
            if f"optim.{i}" in tensors:
                self.optimizer.state[p]["momentum_buffer"] = tensors[f"optim.{i}"].to(p.device)
        self.generator.set_state(tensors["rng"])
        self.best_val = float(facts["best_val"])

    def validate(self) -> Summary:
        """Mean pair accuracy over the validation classes, with fixed description draws."""
        return validation_pair_accuracy(
            self.hypernet, self.bank, self.dataset, self.outer.eval_seed
        )

    def epochs(self, start: int = 1) -> Iterator[EpochResult]:
        """Run epochs ``start..outer.epochs``, yielding each one's result."""
        for epoch in range(start, self.outer.epochs + 1):
            began = time.perf_counter()
            tasks = self.sample_epoch()
            losses, norms = [], []
            self.hypernet.train()
            for batch in tasks.split(self.outer.tasks_per_step):
                loss, norm = self.step(batch)
                losses.append(loss)
                norms.append(norm)
            val = self.validate()
            is_best = val.mean > self.best_val
            if is_best:
                self.best_val = val.mean
            yield EpochResult(
                epoch=epoch,
                tasks=len(tasks),
                inner_loss=float(torch.cat(losses).mean()),
                update_norm=float(torch.cat(norms).mean()),
                val=val,
                seconds=time.perf_counter() - began,
                is_best=is_best,
            )


class SupersetTrainer(Trainer):
    """Trains a hypernetwork on super-set tasks (``train.task: supersets``).

    A task is one attribute X of ``dataset.attributes`` that splits the seen classes (some
    have it, some lack it). The hypernetwork reads a set of ONE description, the attribute's
    text, and emits a single-logit target; the inner loop trains it with binary cross-entropy
    on the training rows of every seen class that ``dataset.attributes`` lists, label 1 for the
    rows of classes that have X and 0 for the others (unlisted classes are unlabelled and left
    out, as in the evaluation protocol). Everything else (tasks per step, mixed precision,
    processes, the hypernetwork update, state and resume) is the class trainer's.

    Validation is the mean ROC-AUC over attributes on all rows of the validation classes
    (`superset_aucs`; attributes that do not split them are skipped). Unseen classes are
    never read.

    Args:
        attributes: names of the A attributes, as ``dataset.attributes`` spells them.
        texts: (A, d) embeddings of their descriptions (see
            `t2m_cli.scoring.supersets.attribute_texts`), row i for ``attributes[i]``.
        The others: as for `Trainer`; ``bank`` is kept but not read by the super-set tasks.

    Raises:
        DataError: no attribute splits the seen classes, or none splits the validation ones.
    """

    def __init__(
        self,
        hypernet: Hypernetwork,
        bank: Describer,
        dataset: ZeroShotDataset,
        inner: InnerSettings,
        outer: OuterSettings,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
        *,
        attributes: Sequence[str],
        texts: torch.Tensor,
    ) -> None:
        super().__init__(hypernet, bank, dataset, inner, outer, device, rank, world_size)
        names = list(attributes)
        if texts.dim() != 2 or texts.shape[0] != len(names):
            raise ValueError(
                f"texts {tuple(texts.shape)} must be (A, d) with A = {len(names)} attributes"
            )
        param = next(iter(self.hypernet.parameters()))
        self.all_attributes = names
        self.all_texts = texts.to(device=device, dtype=param.dtype)
        seen = dataset.split.seen
        labelled = [i for i, c in enumerate(seen) if c in dataset.attributes]
        has = torch.tensor(
            [[a in dataset.attributes[seen[i]] for i in labelled] for a in names],
            dtype=torch.bool,
        ).reshape(len(names), len(labelled))
        splits = has.any(1) & ~has.all(1)
        if not bool(splits.any()):
            raise DataError(
                f"No attribute of dataset '{dataset.name}' splits its seen classes (each is "
                "held by all of them or by none): train.task supersets needs attributes.json "
                "to give some seen classes an attribute that others lack."
            )
        self._check_val_splits(names)
        keep = torch.nonzero(splits).flatten()
        # The training attributes: those that split the seen classes.
        self.attributes = [names[i] for i in keep.tolist()]
        self.texts = self.all_texts[keep.to(device)]
        rows = [self.train_rows[i] for i in labelled]
        self.task_rows = torch.cat(rows)
        row_class = torch.repeat_interleave(
            torch.arange(len(labelled)), torch.tensor([len(r) for r in rows])
        )
        # (A_train, N): 1 where the row's class has the attribute.
        self.labels = has[keep][:, row_class].to(device=device, dtype=self.features.dtype)

    def _check_val_splits(self, names: list[str]) -> None:
        val = [
            set(self.dataset.attributes[c])
            for c in self.dataset.split.val
            if c in self.dataset.attributes and len(self.dataset.class_rows(c, "all"))
        ]
        if not any(0 < sum(a in own for own in val) < len(val) for a in names):
            raise DataError(
                f"No attribute of dataset '{self.dataset.name}' splits its validation classes, "
                "so train.task supersets has no validation AUC to select epochs with: "
                "attributes.json must give some validation classes an attribute that others "
                "lack."
            )

    def sample_epoch(self) -> torch.Tensor:
        """(tasks_per_epoch, 1) indices into `attributes`, see `superset_tasks`."""
        return superset_tasks(len(self.attributes), self.outer.tasks_per_epoch, self.generator)

    def task_data(self, tasks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows, 0 / 1 labels and counts of a batch of super-set tasks.

        Every task reads the same rows (the training rows of the labelled seen classes);
        only the labels differ.

        Args:
            tasks: (T, 1) indices into `attributes`.

        Returns:
            rows (T, N), y (T, N) floats (1 = the row's class has the attribute), counts (T,).
        """
        n_tasks = len(tasks)
        rows = self.task_rows.unsqueeze(0).expand(n_tasks, -1)
        y = self.labels[tasks[:, 0].to(self.labels.device)]
        counts = torch.full((n_tasks,), len(self.task_rows), dtype=torch.long)
        return rows, y, counts

    def draw_text(self, tasks: torch.Tensor) -> torch.Tensor:
        """(T, 1, d) embeddings of the tasks' attribute descriptions (no random draw)."""
        return self.texts[tasks.to(self.texts.device)]

    def validate(self) -> Summary:
        """ROC-AUC over attributes on all rows of the validation classes (mean +- SEM)."""
        aucs = superset_aucs(
            self.hypernet,
            self.all_texts,
            self.all_attributes,
            self.dataset,
            self.dataset.split.val,
            "all",
        )
        return summarize(torch.tensor(list(aucs.values()), dtype=torch.float64))
