"""The inner loop and the hypernetwork update of the pFedHN-style training rule.

For a task, the hypernetwork emits theta_0. A detached copy is trained by minibatch SGD on the
task's features (the inner loop); the hypernetwork then moves along
``dphi = (dtheta/dphi)^T (theta_0 - theta_T)``, which is the gradient of
``0.5 * ||theta(phi) - stopgrad(theta_T)||^2`` at the current phi.

The inner optimiser is plain SGD with momentum and weight decay, written out on tensors so that
several tasks of equal size can be trained at once along a leading task dimension; its update
matches ``torch.optim.SGD`` (dampening 0, no Nesterov) step for step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from t2m_cli.models.hypernet import TargetParams

TargetFn = Callable[[TargetParams, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class InnerSettings:
    """Settings of the inner SGD loop (the paper's defaults).

    The original code hard-codes lr 0.01, momentum 0.9 and weight decay 0.01 and ignores its own
    flags for them; here they are real settings with those defaults.
    """

    epochs: int = 3
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.01


def minibatch_order(
    n_tasks: int, n: int, epochs: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """The sample order of every inner epoch: one random permutation per task and epoch.

    Returns:
        ``epochs`` tensors of shape (n_tasks, n), on the CPU.
    """
    return [
        torch.stack([torch.randperm(n, generator=generator) for _ in range(n_tasks)])
        for _ in range(epochs)
    ]


def inner_train(
    target: TargetFn,
    theta0: TargetParams,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: InnerSettings,
    order: list[torch.Tensor],
) -> tuple[TargetParams, torch.Tensor]:
    """Train T target models on their own tasks with minibatch SGD.

    Args:
        target: the target forward pass, ``target(params, x) -> logits``.
        theta0: starting weights, each tensor (T, ...); not modified.
        x: (T, n, D) features of each task.
        y: (T, n) labels, the position of each sample's class in its task.
        settings: inner optimiser settings.
        order: per inner epoch, a (T, n) permutation of the samples (see `minibatch_order`).

    Returns:
        The trained weights theta_T (detached, same shapes as ``theta0``) and (T,) the mean
        cross-entropy of each task's first minibatch under theta_0.
    """
    params = {k: v.detach().clone().requires_grad_(True) for k, v in theta0.items()}
    momentum = {k: torch.zeros_like(v) for k, v in params.items()}
    n_tasks, n = y.shape
    first_loss: torch.Tensor | None = None
    for perm in order:
        perm = perm.to(x.device)
        for start in range(0, n, settings.batch_size):
            idx = perm[:, start : start + settings.batch_size]
            xb = torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
            yb = torch.gather(y, 1, idx)
            logits = target(params, xb)
            per_task = (
                F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="none"
                )
                .reshape(n_tasks, -1)
                .mean(1)
            )
            if first_loss is None:
                first_loss = per_task.detach()
            # Summing per-task means keeps each task's gradient equal to its own mean-loss
            # gradient: the tasks share no parameters.
            grads = torch.autograd.grad(per_task.sum(), list(params.values()))
            with torch.no_grad():
                for (name, p), g in zip(params.items(), grads):
                    d_p = g.add(p, alpha=settings.weight_decay)
                    buf = momentum[name].mul_(settings.momentum).add_(d_p)
                    p.sub_(buf, alpha=settings.lr)
    assert first_loss is not None, "inner loop ran no step"
    return {k: v.detach() for k, v in params.items()}, first_loss


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
