"""The outer training loop: tasks of seen classes, their inner loops, hypernetwork steps.

`Trainer` trains on ordered sets of seen classes (the paper's class task); the super-set tasks
of ``train.task: supersets`` subclass it (`t2m_cli.training.supersets.SupersetTrainer`).

The loop is a generator of per-epoch results so that callers (the CLI, a notebook, a test) decide
what to log and when to checkpoint; it never touches files itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Literal

import torch

from t2m_cli.data.dataset import ZeroShotDataset
from t2m_cli.data.texts import Describer
from t2m_cli.errors import TrainingDiverged, UserInputError
from t2m_cli.models.hypernet import Hypernetwork
from t2m_cli.scoring.metrics import Summary
from t2m_cli.scoring.pairs import ordered_pairs, validation_pair_accuracy
from t2m_cli.training.inner import (
    InnerSettings,
    hypernet_update,
    induced_loss,
    inner_train,
    minibatch_order,
)

if TYPE_CHECKING:
    from t2m_cli.config import TrainConfig


@dataclass(frozen=True)
class OuterSettings:
    """Settings of the outer loop: the ``train`` keys of the same names, and ``eval.seed``.

    Their defaults (the recommended mode's; examples/paper.yaml has the paper's) live in
    `TrainConfig` and `EvalConfig` alone.
    """

    epochs: int
    tasks_per_epoch: int
    classes_per_task: int
    classes_per_task_max: int | None
    objective: Literal["update", "induced", "both"]
    patience: int | None
    tasks_per_step: int
    amp: bool
    lr: float
    momentum: float
    weight_decay: float
    seed: int
    task_sampling: Literal["fill", "once"]
    val_classes: Literal["holdout", "train"]
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
            on the tasks' first minibatches; with ``train.objective: induced``, on all the
            tasks' training rows (the loss the hypernetwork descends).
        update_norm: mean ||theta_0 - theta_T|| over the epoch's tasks; 0 with
            ``train.objective: induced``, which runs no inner loop.
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

    def to_json(self) -> dict[str, float | int | bool | None]:
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


def shuffled(n: int, n_tasks: int, generator: torch.Generator, fill: bool = True) -> torch.Tensor:
    """``n_tasks`` indices in ``range(n)``, none twice until all have come: successive random
    permutations, as many as ``n_tasks`` needs (``fill``), or one (without ``fill``: then at
    most ``n`` indices).

    Returns:
        (min(n_tasks, n) or n_tasks,) int64.
    """
    reps = -(-n_tasks // n) if fill else 1
    return torch.cat([torch.randperm(n, generator=generator) for _ in range(reps)])[:n_tasks]


def sample_tasks(
    n_classes: int | Sequence[int],
    k: int,
    n_tasks: int,
    generator: torch.Generator,
    fill: bool = True,
) -> torch.Tensor:
    """Tasks of one epoch: ordered k-tuples of distinct classes, never mixing groups.

    Classes are numbered group after group: ``n_classes=(28, 12)`` makes 0-27 the first
    group (the seen classes) and 28-39 the second (the validation classes, with
    ``train.val_classes: train``); an int is a single group.

    For k = 2, as in the paper, the ordered pairs within each group are pooled, group after
    group, shuffled, and the first ``n_tasks`` taken, as the original code does: a group is
    drawn in proportion to its ordered pairs, and no pair comes twice in an epoch. When there
    are fewer pairs than tasks, ``fill`` shuffles them again until there are ``n_tasks``;
    without it the epoch has each pair once (the original's ``train.task_sampling: once``).
    For k > 2 each task is an independent random ordered k-subset of one group, the group
    drawn in proportion to its ordered k-tuples; ``fill`` does not apply.

    Returns:
        (n, k) int64 class numbers; n = ``n_tasks``, or the number of ordered pairs if smaller
        and ``fill`` is False.

    Raises:
        UserInputError: no group has k classes.
    """
    sizes = [n_classes] if isinstance(n_classes, int) else list(n_classes)
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    if k > max(sizes):
        raise UserInputError(
            f"Tasks of {k} classes need at least {k} training classes; the dataset has "
            f"{max(sizes)}. Lower train.classes_per_task."
        )
    if k == 2:
        pairs = torch.cat([ordered_pairs(n) + at for n, at in zip(sizes, offsets) if n >= 2])
        return pairs[shuffled(len(pairs), n_tasks, generator, fill)]
    tuples = torch.tensor([float(math.perm(n, k)) for n in sizes], dtype=torch.float64)
    if int((tuples > 0).sum()) == 1:
        # One group to draw from: no draw of the group, so a single group's stream is as it
        # always was.
        group = [int(tuples.argmax())] * n_tasks
    else:
        group = torch.multinomial(tuples, n_tasks, replacement=True, generator=generator).tolist()
    return torch.stack(
        [torch.randperm(sizes[g], generator=generator)[:k] + offsets[g] for g in group]
    )


class Trainer:
    """Trains a hypernetwork on a dataset's seen classes (and, with ``outer.val_classes ==
    "train"``, on its validation classes' training rows too, as the original code does).

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
        val_bank: the descriptions validation induces from (``eval.descriptions``); default
            ``bank``.
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
        val_bank: Describer | None = None,
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
        groups = [dataset.split.seen]
        if outer.val_classes == "train":
            groups.append(dataset.split.val)
        # Tasks draw from these groups, never mixing them; the seen classes come first, so a
        # seen class's index is the same in both modes.
        self.groups = tuple(len(g) for g in groups)
        names = [c for g in groups for c in g]
        self.classes = torch.tensor([dataset.index(c) for c in names])
        # Tasks train on training rows only; seen classes' held-out rows are for evaluation,
        # validation classes' (in "train" mode) for choosing the epoch.
        self.train_rows = [dataset.class_rows(c, "train").to(device) for c in names]
        # The same as one padded (classes, most rows) table on the device, and the row counts
        # on the CPU, so that a batch of tasks finds its rows in a few tensor operations and
        # its sizes without reading anything back from the device.
        self.row_counts = torch.tensor([len(r) for r in self.train_rows])
        self.row_table = torch.nn.utils.rnn.pad_sequence(self.train_rows, batch_first=True)
        self.optimizer = torch.optim.SGD(
            self.hypernet.parameters(),
            lr=outer.lr,
            momentum=outer.momentum,
            weight_decay=outer.weight_decay,
            # One fused kernel for all tensors: the default per-tensor loop cost a tenth of a
            # task's time under the paper's rule (0.38 ms against 0.12 ms on 2 CPU cores).
            fused=device.type in ("cpu", "cuda") or None,
        )
        self.generator = torch.Generator().manual_seed(outer.seed)
        self.best_val = -1.0
        self.since_best = 0
        self.val_bank = self.bank if val_bank is None else val_bank.to(device)

    def task_data(self, tasks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Feature rows and labels of a batch of tasks, padded to the largest.

        Args:
            tasks: (T, k) indices into `classes` (the seen classes, then any validation ones).

        Returns:
            rows (T, n_max) into the feature matrix, y (T, n_max) with label = position of
            the class in its task, and counts (T,) of real samples per task.
        """
        tasks = tasks.cpu()
        sizes = self.row_counts[tasks]
        counts = sizes.sum(1)
        n_max = int(counts.max())
        # Position p of task t belongs to the class in the first slot whose cumulative row
        # count exceeds p; padding (p >= counts[t]) points at row 0 with label 0, and the inner
        # loop masks it out by the counts.
        on_device = tasks.to(self.device)
        ends = sizes.to(self.device).cumsum(1)
        position = torch.arange(n_max, device=self.device).expand(len(tasks), n_max)
        slot = torch.searchsorted(ends, position.contiguous(), right=True)
        valid = slot < tasks.shape[1]
        slot = slot.clamp_max(tasks.shape[1] - 1)
        local = position - (ends - sizes.to(self.device)).gather(1, slot)
        rows = self.row_table[
            on_device.gather(1, slot), local.clamp_max(self.row_table.shape[1] - 1)
        ]
        zero = torch.zeros((), dtype=torch.long, device=self.device)
        return torch.where(valid, rows, zero), torch.where(valid, slot, zero), counts

    def draw_text(self, tasks: torch.Tensor) -> torch.Tensor:
        """(T, k, d) description embeddings of a batch of tasks, drawn with the generator."""
        return self.bank.draw(self.classes[tasks], self.generator)

    def sample_epoch(self) -> torch.Tensor:
        """The tasks of one epoch, (n, k) indices into `classes`; see `sample_tasks`."""
        return sample_tasks(
            self.groups,
            self.outer.classes_per_task,
            self.outer.tasks_per_epoch,
            self.generator,
            fill=self.outer.task_sampling == "fill",
        )

    def epoch_batches(self) -> list[torch.Tensor]:
        """The tasks of one epoch in hypernetwork steps: (T, k) indices into `classes` each.

        With ``classes_per_task_max`` above ``classes_per_task`` each step draws its own k,
        uniformly from ``classes_per_task`` to that maximum (capped by the largest group),
        then its ``tasks_per_step`` tasks of k classes (`sample_tasks`); the epoch still has
        ``tasks_per_epoch`` tasks. Otherwise the epoch's tasks are drawn at once and cut into
        steps, as `sample_epoch` gives them (the paper's stream).
        """
        top, low = self.outer.classes_per_task_max, self.outer.classes_per_task
        if top is None or top == low:
            return list(self.sample_epoch().split(self.outer.tasks_per_step))
        high = max(low, min(top, max(self.groups)))
        batches = []
        left = self.outer.tasks_per_epoch
        while left > 0:
            n = min(self.outer.tasks_per_step, left)
            k = int(torch.randint(low, high + 1, (1,), generator=self.generator))
            batches.append(sample_tasks(self.groups, k, n, self.generator))
            left -= n
        return batches

    def accumulate(self, tasks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add this process's share of a step's hypernetwork gradient to ``.grad``.

        Every process draws the descriptions and minibatch orders of the whole batch, so that
        their generators stay in step, then trains tasks ``rank::world_size`` only. Each share
        is weighted by its size over the batch's, so the shares summed over processes give
        the mean update of all T tasks.

        Args:
            tasks: (T, k) indices into `classes`.

        Returns:
            (T_own,) first-minibatch inner losses and (T_own,) ||theta_0 - theta_T|| of this
            process's tasks.
        """
        rows, y, counts = self.task_data(tasks)
        text = self.draw_text(tasks)
        mine = slice(self.rank, None, self.world_size)
        share = len(counts[mine]) / len(tasks)
        objective = self.outer.objective
        if objective == "induced":
            if not len(counts[mine]):
                empty = torch.zeros(0, device=self.device)
                return empty, empty
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.outer.amp):
                theta0 = self.hypernet(text[mine])
                loss = induced_loss(
                    self.hypernet.target, theta0, self.features, rows[mine], y[mine], counts[mine]
                )
            (loss.mean() * share).backward()
            return loss.detach(), torch.zeros_like(loss.detach())
        fixed = self.inner.order == "fixed"
        order = minibatch_order(counts, self.inner.epochs, self.generator, fixed)
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
        update = hypernet_update(theta0, theta_t)
        emitted = list(theta0.values())
        # The mean task update of the whole batch: this process's tasks, each 1 / T of it.
        grads = [update[k] * (share / len(first_loss)) for k in theta0]
        if objective == "both":
            own = induced_loss(
                self.hypernet.target, theta0, self.features, rows[mine], y[mine], counts[mine]
            )
            emitted.append(own.mean() * share)
            grads.append(torch.ones((), device=self.device))
        # The gradient of `hypernet_surrogate` (times the share), without building it.
        torch.autograd.backward(emitted, grads)
        sq = torch.stack([update[k].flatten(1).square().sum(1) for k in theta0])
        return first_loss, sq.sum(0).sqrt()

    def step(self, tasks: torch.Tensor, where: str = "a step") -> tuple[torch.Tensor, torch.Tensor]:
        """One hypernetwork step from a batch of tasks.

        Emits theta_0 for every task, runs all inner loops at once, and steps along the mean
        of the tasks' updates. With one task per step this is the paper's rule exactly. Under
        torch.distributed (``world_size > 1``) the processes split the tasks and their
        gradients are summed before the step.

        Args:
            tasks: (T, k) indices into `classes`.
            where: which step this is, for the error message (``"epoch 3, task 17 of 100"``).

        Returns:
            (T_own,) first-minibatch inner losses and (T_own,) ||theta_0 - theta_T||.

        Raises:
            TrainingDiverged: an inner loss or update of the batch (of any process) is NaN or
                infinite; the hypernetwork keeps the weights it had before this step.
        """
        self.optimizer.zero_grad()
        first_loss, norms = self.accumulate(tasks)
        # The update norm is finite only if theta_0 and theta_T are, so the two cover the
        # hypernetwork's output, the inner loop and (one step late) the hypernetwork's weights.
        diverged = (~torch.isfinite(torch.cat([first_loss, norms])).all()).to(torch.float32)
        if self.world_size > 1:
            import torch.distributed as dist

            # One all-reduce a step, of every gradient and the divergence flag flattened into
            # one buffer (one call per tensor cost 20 round trips a step). Every process must
            # stop at the same step, or the others wait in the next all-reduce.
            params = list(self.hypernet.parameters())
            flat = torch.cat(
                [
                    p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel())
                    for p in params
                ]
                + [diverged.to(params[0].dtype).reshape(1)]
            )
            dist.all_reduce(flat)
            diverged = flat[-1]
            for p, summed in zip(params, flat[:-1].split([p.numel() for p in params])):
                p.grad = summed.view_as(p)
        # CPU-GPU sync point, once per step: about 15 us on the CPU, where the paper's one task
        # per step takes some 4 ms; on CUDA it stalls the queue of kernels between steps.
        if bool(diverged):
            if not bool(torch.isfinite(first_loss).all()):
                what = (
                    "the induced classifier's loss"
                    if self.outer.objective == "induced"
                    else "the inner loss"
                )
            elif not bool(torch.isfinite(norms).all()):
                what = "the update ||theta_0 - theta_T||"
            else:
                what = "another process's inner loss or update"
            raise self._diverged(f"{what} became NaN or infinite at {where}")
        self.optimizer.step()
        return first_loss, norms

    def _diverged(self, what: str) -> TrainingDiverged:
        """The error for a run that diverged: what, where, and which settings to lower."""
        from t2m_cli.config import TrainConfig

        paper = TrainConfig()
        if self.outer.objective == "induced":
            # No inner loop runs: train.inner_lr would change nothing.
            return TrainingDiverged(
                f"Training diverged: {what}. The learning rate is likely too high for these "
                f"features: lower train.lr (now {self.outer.lr:g}; the default is "
                f"{paper.lr:g}). Nothing of this epoch was saved."
            )
        return TrainingDiverged(
            f"Training diverged: {what}. The learning rates are likely too high for these "
            f"features: lower train.lr (now {self.outer.lr:g}) or train.inner_lr (now "
            f"{self.inner.lr:g}); the paper's are {paper.lr:g} and {paper.inner_lr:g}. Nothing "
            "of this epoch was saved."
        )

    def _check_weights(self, epoch: int) -> None:
        """Refuse an epoch whose hypernetwork weights are not all finite (before it is saved)."""
        params = dict(self.hypernet.named_parameters())
        # One CPU-GPU sync per epoch for all the weights.
        finite = torch.stack([torch.isfinite(p).all() for p in params.values()])
        if not bool(finite.all()):
            bad = [name for name, ok in zip(params, finite.tolist()) if not ok]
            raise self._diverged(
                f"hypernetwork weights {', '.join(bad)} became NaN or infinite in epoch {epoch}"
            )

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
        return tensors, {"best_val": self.best_val, "since_best": self.since_best}

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
        # States saved before train.patience existed have no count: none was kept.
        self.since_best = int(facts.get("since_best", 0))

    def stopped_early(self) -> bool:
        """``train.patience`` epochs in a row have not bettered the best validation score."""
        patience = self.outer.patience
        return patience is not None and self.since_best >= patience

    def validate(self) -> Summary:
        """Mean pair accuracy over the validation classes, with fixed description draws.

        Scored on all their rows, or on their held-out rows only when their training rows are
        trained on (``val_classes == "train"``).
        """
        part = "test" if self.outer.val_classes == "train" else "all"
        # Under torchrun each process scores its share of the pairs.
        return validation_pair_accuracy(
            self.hypernet,
            self.val_bank,
            self.dataset,
            self.outer.eval_seed,
            part,
            shard=(self.rank, self.world_size),
        )

    def _epoch_means(
        self, losses: list[torch.Tensor], norms: list[torch.Tensor]
    ) -> tuple[float, float]:
        """The epoch's mean loss and update norm over all its tasks, whichever process
        trained them (each process holds its own share)."""
        loss, norm = torch.cat(losses), torch.cat(norms)
        if self.world_size == 1:
            return float(loss.mean()), float(norm.mean())
        import torch.distributed as dist

        count = torch.tensor(float(len(loss)), device=loss.device)
        totals = torch.stack([loss.sum(), norm.sum(), count]).double()
        dist.all_reduce(totals)
        return float(totals[0] / totals[2]), float(totals[1] / totals[2])

    def epochs(self, start: int = 1) -> Iterator[EpochResult]:
        """Run epochs ``start..outer.epochs``, yielding each one's result; stop early once
        `stopped_early` (``train.patience``)."""
        for epoch in range(start, self.outer.epochs + 1):
            if self.stopped_early():
                return
            began = time.perf_counter()
            batches = self.epoch_batches()
            n_tasks = sum(len(b) for b in batches)
            losses, norms = [], []
            self.hypernet.train()
            done = 0
            for batch in batches:
                first, last = done + 1, done + len(batch)
                which = f"task {first}" if first == last else f"tasks {first}-{last}"
                where = f"epoch {epoch}, {which} of {n_tasks}"
                loss, norm = self.step(batch, where)
                losses.append(loss)
                norms.append(norm)
                done += len(batch)
            self._check_weights(epoch)
            val = self.validate()
            # A score that is not a number never selects an epoch.
            is_best = math.isfinite(val.mean) and val.mean > self.best_val
            if is_best:
                self.best_val = val.mean
            self.since_best = 0 if is_best else self.since_best + 1
            inner_loss, update_norm = self._epoch_means(losses, norms)
            yield EpochResult(
                epoch=epoch,
                tasks=n_tasks,
                inner_loss=inner_loss,
                update_norm=update_norm,
                val=val,
                seconds=time.perf_counter() - began,
                is_best=is_best,
            )
