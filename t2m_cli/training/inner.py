"""The inner loop and the hypernetwork update of the pFedHN-style training rule.

For a task, the hypernetwork emits theta_0. A detached copy is trained by minibatch SGD on the
task's features (the inner loop); the hypernetwork then moves along
``dphi = (dtheta/dphi)^T (theta_0 - theta_T)``, which is the gradient of
``0.5 * ||theta(phi) - stopgrad(theta_T)||^2`` at the current phi.

The inner optimiser is plain SGD with momentum and weight decay, written out on tensors so that
many tasks, of any sizes, train at once along a leading task dimension; its update matches
``torch.optim.SGD`` (dampening 0, no Nesterov) step for step.

The inner loss follows the target's output width: k >= 2 logits are a class task (cross-entropy,
label = position of the class in the task); a single logit (k = 1) is a super-set task (binary
cross-entropy with logits, label 1 for a row whose class has the task's attribute, else 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F

from t2m_cli.models.hypernet import TargetParams

if TYPE_CHECKING:
    from t2m_cli.config import TrainConfig

TargetFn = Callable[[TargetParams, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class InnerSettings:
    """Settings of the inner SGD loop: the ``train.inner_*`` keys of a config.

    Their defaults (the paper's) live in `TrainConfig`; they apply to ``train.objective``
    update and both (induced runs no inner loop). ``order`` has the same default here
    only so that code building the settings by hand may leave it out. The original code
    hard-codes lr 0.01, momentum 0.9 and weight decay 0.01 and ignores its own flags for them;
    here they are real settings with those defaults.
    """

    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    order: Literal["reshuffle", "fixed"] = "reshuffle"

    @classmethod
    def from_config(cls, train: TrainConfig) -> InnerSettings:
        """The settings of a config's ``train`` section: field ``x`` is ``train.inner_x``.

        Args:
            train: the validated ``train`` section.

        Returns:
            The inner-loop settings.
        """
        return cls(**{f.name: getattr(train, f"inner_{f.name}") for f in fields(cls)})


def minibatch_order(
    counts: torch.Tensor, epochs: int, generator: torch.Generator, fixed: bool = False
) -> list[torch.Tensor]:
    """The sample order of every inner epoch: one random permutation per task and epoch.

    Args:
        counts: (T,) number of samples of each task; rows are padded to the largest.
        epochs: inner epochs.
        generator: CPU generator.
        fixed: draw one permutation per task and use it in every epoch, as the original code
            does (``train.inner_order: fixed``); it then takes one draw from ``generator``
            instead of ``epochs``.

    Returns:
        ``epochs`` tensors (T, n_max) on the CPU. Row t starts with a random permutation of
        ``range(counts[t])``; the padding positions follow it.
    """
    n_max = int(counts.max())
    pad = torch.arange(n_max) >= counts.unsqueeze(1)
    # Random keys below 1 for real samples and 2 for padding: sorting puts a uniformly random
    # permutation of the real samples first, for every task at once.
    draws = 1 if fixed else epochs
    orders = [
        torch.rand(len(counts), n_max, generator=generator).masked_fill(pad, 2.0).argsort(1)
        for _ in range(draws)
    ]
    return orders * epochs if fixed else orders


def inner_train(
    target: TargetFn,
    theta0: TargetParams,
    features: torch.Tensor,
    rows: torch.Tensor,
    y: torch.Tensor,
    counts: torch.Tensor,
    settings: InnerSettings,
    order: list[torch.Tensor],
) -> tuple[TargetParams, torch.Tensor]:
    """Train T target models on their own tasks with minibatch SGD, all at once.

    Task t has ``counts[t]`` samples: rows ``rows[t, :counts[t]]`` of ``features``. At inner
    step j every task takes its own j-th minibatch; a task whose epoch has no j-th minibatch
    sits the step out (no update, momentum untouched), so each task follows exactly the steps
    it would follow alone. A short last minibatch is averaged over its real samples only.

    Args:
        target: the target forward pass, ``target(params, x) -> logits``.
        theta0: starting weights, each tensor (T, ...); not modified.
        features: (N, D) feature matrix the tasks draw from (kept in place: a minibatch copies
            only its own rows).
        rows: (T, n_max) row of ``features`` of each task's samples, padded.
        y: (T, n_max) labels: for a target with k >= 2 logits the position of each
            sample's class in its task (int64, cross-entropy); for a single-logit target
            (k = 1, super-set tasks) 1 for a positive sample and 0 for a negative one (any
            dtype; compared as floats in binary cross-entropy with logits on ``logits[..., 0]``).
            Either loss is averaged over each task's real samples only.
        counts: (T,) real samples per task.
        settings: inner optimiser settings.
        order: per inner epoch, a (T, n_max) order (see `minibatch_order`).

    Returns:
        The trained weights theta_T (detached, same shapes as ``theta0``) and (T,) the mean
        loss (cross-entropy, or binary cross-entropy for k = 1) of each task's first minibatch
        under theta_0.
    """
    # The inner weights live in the features' precision even when theta_0 was emitted under
    # autocast: SGD steps of 1e-4 vanish in bfloat16.
    params = {
        k: v.detach().to(features.dtype).clone().requires_grad_(True) for k, v in theta0.items()
    }
    momentum = {k: torch.zeros_like(v) for k, v in params.items()}
    n_tasks = y.shape[0]
    device = features.device
    counts = counts.to(device)
    batch = settings.batch_size
    n_steps = -(-int(counts.max()) // batch)
    first_loss: torch.Tensor | None = None
    # One buffer for every minibatch: index_select into preallocated memory measured 3x faster
    # than advanced indexing on CPU, and the gather is most of an inner step's time.
    buffer = torch.empty(n_tasks * batch, features.shape[1], dtype=features.dtype, device=device)
    for perm in order:
        perm = perm.to(device)
        # Sample order of this epoch as rows of `features`: each minibatch is then one
        # row-gather from the feature matrix, never a copy of the whole task.
        epoch_rows = torch.gather(rows, 1, perm)
        epoch_y = torch.gather(y, 1, perm)
        for step in range(n_steps):
            window = slice(step * batch, (step + 1) * batch)
            yb = epoch_y[:, window]
            position = torch.arange(window.start, window.start + yb.shape[1], device=device)
            valid = position < counts.unsqueeze(1)
            picked = epoch_rows[:, window].reshape(-1)
            xb = torch.index_select(features, 0, picked, out=buffer[: len(picked)]).view(
                n_tasks, -1, features.shape[1]
            )
            logits = target(params, xb)
            loss = _task_loss(logits, yb).reshape(n_tasks, -1)
            n_valid = valid.sum(1)
            per_task = (loss * valid).sum(1) / n_valid.clamp_min(1)
            if first_loss is None:
                first_loss = per_task.detach()
            # Summing per-task means keeps each task's gradient equal to its own mean-loss
            # gradient: the tasks share no parameters.
            grads = torch.autograd.grad(per_task.sum(), list(params.values()))
            active = n_valid > 0
            with torch.no_grad():
                for (name, p), g in zip(params.items(), grads):
                    on = active.view(-1, *[1] * (p.ndim - 1)).to(p.dtype)
                    d_p = g.add(p, alpha=settings.weight_decay)
                    buf = momentum[name]
                    # Active tasks: buf = momentum * buf + d_p; the others keep theirs.
                    buf.mul_(1 - on * (1 - settings.momentum)).add_(d_p * on)
                    p.sub_(buf * on, alpha=settings.lr)
    assert first_loss is not None, "inner loop ran no step"
    return {k: v.detach() for k, v in params.items()}, first_loss


def induced_loss(
    target: TargetFn,
    theta: TargetParams,
    features: torch.Tensor,
    rows: torch.Tensor,
    y: torch.Tensor,
    counts: torch.Tensor,
) -> torch.Tensor:
    """The loss of each emitted classifier on all its task's rows (``train.objective:
    induced``).

    Cross-entropy for k >= 2 logits, binary cross-entropy for one (as in `inner_train`),
    averaged over each task's real rows. Its gradient reaches the hypernetwork through
    ``theta``: the classifier the hypernetwork induces is trained directly, with no inner loop.

    Args:
        target: the target forward pass.
        theta: emitted weights, each (T, ...), attached to the hypernetwork's graph.
        features: (N, D) feature matrix.
        rows: (T, n_max) row of ``features`` of each task's samples, padded.
        y: (T, n_max) labels, as for `inner_train`.
        counts: (T,) real samples per task.

    Returns:
        (T,) mean loss per task.
    """
    n_tasks, n_max = rows.shape
    x = features[rows.reshape(-1)].view(n_tasks, n_max, features.shape[1])
    loss = _task_loss(target(theta, x), y).reshape(n_tasks, n_max)
    valid = torch.arange(n_max, device=rows.device) < counts.to(rows.device).unsqueeze(1)
    return (loss * valid).sum(1) / valid.sum(1).clamp_min(1)


def _task_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample loss of (T, b, k) logits: cross-entropy for k >= 2, BCE for one logit.

    Returns:
        (T * b,) losses, unreduced (the caller masks padding and averages per task).
    """
    if logits.shape[-1] == 1:
        # Super-set task: a single logit scores "has the attribute"; targets 0 / 1. The loss
        # is taken in at least float32 (logits are bfloat16 under mixed precision).
        dtype = torch.promote_types(logits.dtype, torch.float32)
        return F.binary_cross_entropy_with_logits(
            logits[..., 0].reshape(-1).to(dtype), y.reshape(-1).to(dtype), reduction="none"
        )
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")


def hypernet_surrogate(theta0: TargetParams, theta_t: TargetParams) -> torch.Tensor:
    """A scalar whose gradient w.r.t. the hypernetwork is ``(dtheta/dphi)^T (theta_0 - theta_T)``.

    ``sum(theta_0 * stopgrad(theta_0 - theta_T))`` has exactly that gradient, and it equals the
    gradient of ``0.5 * ||theta(phi) - stopgrad(theta_T)||^2`` at the current phi. The sum runs
    over tasks and is divided by their number, so a batch of tasks gives the mean task update.

    Args:
        theta0: weights emitted by the hypernetwork (attached to its graph), each (T, ...).
        theta_t: weights after the inner loop, same shapes, detached.
    """
    n_tasks = next(iter(theta0.values())).shape[0]
    total = torch.stack([(theta0[k] * (theta0[k].detach() - theta_t[k])).sum() for k in theta0])
    return total.sum() / n_tasks
