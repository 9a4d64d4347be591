"""The inner loop and the hypernetwork update of the pFedHN-style training rule.

For a task, the hypernetwork emits theta_0. A detached copy is trained by minibatch SGD on the
task's features (the inner loop); the hypernetwork then moves along
``dphi = (dtheta/dphi)^T (theta_0 - theta_T)``, which is the gradient of
``0.5 * ||theta(phi) - stopgrad(theta_T)||^2`` at the current phi.

The inner optimiser is plain SGD with momentum and weight decay, written out on tensors so that
many tasks, of any sizes, train at once along a leading task dimension; its update matches
``torch.optim.SGD`` (dampening 0, no Nesterov) step for step. The inner gradients of the known
targets are written out (cross-entropy's softmax minus one-hot, back through one or two
layers): a task's some 45 tiny steps cost their per-operation overhead, not arithmetic, and
autograd doubles the operations.

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

from t2m_cli.models.hypernet import TargetParams, linear_target, target_kind_of

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
    # One draw for all epochs: the same numbers as one (T, n_max) draw per epoch in turn.
    keys = torch.rand(draws, len(counts), n_max, generator=generator).masked_fill(pad, 2.0)
    orders = list(keys.argsort(2).unbind(0))
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

    For the targets `target_kind_of` knows (linear and two-layer) the gradients are written
    out rather than taken by autograd, and one task of a linear target (the paper's rule)
    takes `_one_linear_task`; any other target takes autograd. All give the same updates up
    to float rounding. The loop reads no value back from the device: ``counts`` is read on
    the CPU, before the first step.

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
    names = list(theta0)
    params = [theta0[k].detach().to(features.dtype).clone() for k in names]
    momentum = [torch.zeros_like(p) for p in params]
    kind = target_kind_of(target)
    if (
        kind == "linear"
        and rows.shape[0] == 1
        and not torch.is_autocast_enabled(features.device.type)
    ):
        return _one_linear_task(
            params, features, rows[0], y[0], int(counts.cpu()[0]), settings, order
        )
    gradient = _ANALYTIC.get(str(kind))
    if gradient is None:
        gradient = _autograd_gradient(target)
    n_tasks, n_max = rows.shape
    device = features.device
    batch = settings.batch_size
    # Everything that depends on the counts is worked out once, on the CPU (the counts come
    # from there): the loop itself then needs no value back from the device.
    counts = counts.cpu()
    n_steps = -(-int(counts.max()) // batch)
    position = torch.arange(n_max)
    valid = position < counts.unsqueeze(1)
    step_of = position // batch
    n_valid = torch.zeros(n_tasks, n_steps, dtype=torch.long).scatter_add_(
        1, step_of.expand(n_tasks, -1), valid.long()
    )
    # Each sample's weight in its task's minibatch mean: 1 / (real samples in that minibatch),
    # 0 for padding. A task with no sample in a step sits it out.
    weight = (valid / n_valid.gather(1, step_of.expand(n_tasks, -1)).clamp_min(1)).to(
        device=device, dtype=features.dtype
    )
    everyone = (n_valid > 0).all(0).tolist()
    active = (n_valid > 0).to(device=device, dtype=features.dtype)
    first_loss: torch.Tensor | None = None
    # One buffer for every minibatch: index_select into preallocated memory measured 3x faster
    # than advanced indexing on CPU, and the gather is most of an inner step's time.
    buffer = torch.empty(n_tasks * batch, features.shape[1], dtype=features.dtype, device=device)
    decay, lr, beta = settings.weight_decay, settings.lr, settings.momentum
    for perm in order:
        perm = perm.to(device)
        # Sample order of this epoch as rows of `features`: each minibatch is then one
        # row-gather from the feature matrix, never a copy of the whole task.
        epoch_rows = torch.gather(rows, 1, perm)
        epoch_y = torch.gather(y, 1, perm)
        for step in range(n_steps):
            window = slice(step * batch, (step + 1) * batch)
            picked = epoch_rows[:, window].reshape(-1)
            xb = torch.index_select(features, 0, picked, out=buffer[: len(picked)]).view(
                n_tasks, -1, features.shape[1]
            )
            by_name, loss = gradient(
                dict(zip(names, params)), xb, epoch_y[:, window], weight[:, window], first_loss
            )
            if first_loss is None:
                first_loss = loss
            grads = [by_name[k] for k in names]
            # SGD with momentum and weight decay, as torch.optim.SGD: d = g + decay * p,
            # buf = beta * buf + d, p -= lr * buf (buf = d on the first step, buf being 0).
            d_p = torch._foreach_add(grads, params, alpha=decay)
            if everyone[step]:
                torch._foreach_mul_(momentum, beta)
                torch._foreach_add_(momentum, d_p)
                torch._foreach_add_(params, momentum, alpha=-lr)
            else:
                # Tasks without a sample in this step keep their weights and momentum.
                on = active[:, step]
                for p, buf, d in zip(params, momentum, d_p):
                    mask = on.view(-1, *[1] * (p.ndim - 1))
                    buf.mul_(1 - mask * (1 - beta)).add_(d * mask)
                    p.sub_(buf * mask, alpha=lr)
    assert first_loss is not None, "inner loop ran no step"
    return dict(zip(names, params)), first_loss


def _one_linear_task(
    params: list[torch.Tensor],
    features: torch.Tensor,
    rows: torch.Tensor,
    y: torch.Tensor,
    count: int,
    settings: InnerSettings,
    order: list[torch.Tensor],
) -> tuple[TargetParams, torch.Tensor]:
    """`inner_train` of one task and a linear target (the paper's rule), in the fewest
    operations: six tensor operations a minibatch, against some twenty in the general path.

    The weight and bias train as one (k, D + 1) matrix against features with a column of
    ones, so one matrix product gives both gradients and adds them into the momentum buffer;
    each epoch's rows are gathered once, in that epoch's order, and every minibatch is a
    view of them. Same updates as the general path, up to float rounding.

    Args:
        params: ``[weight (1, k, D), bias (1, k)]``, detached copies (trained in place).
        features: (N, D) feature matrix.
        rows: (n_max,) the task's rows of ``features``, padded past ``count``.
        y: (n_max,) labels, as for `inner_train`.
        count: real samples of the task.
        settings: inner optimiser settings.
        order: per inner epoch, a (1, n_max) order (see `minibatch_order`).
    """
    weight, bias = params
    k, width = weight.shape[1], features.shape[1]
    theta = torch.cat([weight[0], bias[0].unsqueeze(1)], 1)
    momentum = torch.zeros_like(theta)
    # The task's rows are read from the feature matrix once, with a column of ones for the
    # bias; each epoch then reorders this small copy, which stays in cache.
    rows_of_task = torch.empty(count, width + 1, dtype=features.dtype, device=features.device)
    torch.index_select(features, 0, rows[:count], out=rows_of_task[:, :width])
    rows_of_task[:, width] = 1.0
    x = torch.empty_like(rows_of_task)
    single = k == 1
    # Cross-entropy's gradient subtracts the one-hot label; binary cross-entropy's the label.
    if single:
        labels = y[:count].unsqueeze(1).to(features.dtype)
    else:  # one-hot, built without F.one_hot's range check (a read back from a GPU)
        labels = torch.zeros(count, k, dtype=features.dtype, device=features.device)
        labels.scatter_(1, y[:count].unsqueeze(1), 1.0)
    target = torch.empty_like(labels)
    batch = settings.batch_size
    sizes = [min(batch, count - start) for start in range(0, count, batch)]
    decay, lr, beta = settings.weight_decay, settings.lr, settings.momentum
    first_loss: torch.Tensor | None = None
    for perm in order:
        # The padding sorts last in every order, so the first `count` entries are the task.
        perm = perm[0, :count].to(features.device)
        torch.index_select(rows_of_task, 0, perm, out=x)
        torch.index_select(labels, 0, perm, out=target)
        for xb, yb, size in zip(x.split(batch), target.split(batch), sizes):
            logits = torch.mm(xb, theta.t())
            if first_loss is None:
                first_loss = _task_loss(logits.unsqueeze(0), y[perm[:size]]).mean().reshape(1)
            grad = logits.sigmoid_() if single else logits.softmax(1)
            grad.sub_(yb)
            # momentum = beta * momentum + grad, then + decay * theta: d = g + decay * theta.
            momentum.addmm_(grad.t(), xb, beta=beta, alpha=1 / size)
            momentum.add_(theta, alpha=decay)
            theta.sub_(momentum, alpha=lr)
    assert first_loss is not None, "inner loop ran no step"
    return {"weight": theta[:, :width].unsqueeze(0), "bias": theta[:, width].unsqueeze(0)}, (
        first_loss
    )


GradientFn = Callable[
    [TargetParams, torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"],
    tuple[TargetParams, torch.Tensor],
]
"""``(params, xb, yb, weight, first_loss) -> (gradients, loss)``: the gradient of
``sum_t sum_i weight[t, i] * loss(t, i)`` for a minibatch ``xb`` (T, b, D) with labels
``yb`` (T, b), and, while ``first_loss`` is None, the (T,) weighted loss (else anything)."""


def _output_gradient(
    logits: torch.Tensor, yb: torch.Tensor, weight: torch.Tensor, want_loss: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """d(weighted loss)/d(logits) of (T, b, k) logits, and the (T,) weighted loss if wanted.

    Cross-entropy for k >= 2: softmax minus the one-hot label; binary cross-entropy with
    logits for k = 1: sigmoid minus the 0 / 1 label. Each row scaled by its weight.
    """
    w = weight.unsqueeze(-1)
    if logits.shape[-1] == 1:
        target = yb.unsqueeze(-1).to(logits.dtype)
        grad = (torch.sigmoid(logits) - target) * w
    else:
        grad = torch.softmax(logits, -1)
        grad.scatter_add_(-1, yb.unsqueeze(-1), torch.full_like(grad[..., :1], -1.0))
        grad.mul_(w)
    if not want_loss:
        return grad, grad
    per_sample = _task_loss(logits, yb).view_as(weight)
    return grad, (per_sample * weight).sum(1)


def _written_out_gradient(
    params: TargetParams,
    xb: torch.Tensor,
    yb: torch.Tensor,
    weight: torch.Tensor,
    first_loss: torch.Tensor | None,
) -> tuple[TargetParams, torch.Tensor]:
    """`GradientFn` of `linear_target` (dW = G^T x, db = sum_i G_i) and of `mlp_target`
    (the same for its last layer, then back through the ReLU to its hidden layer); the
    two-layer target is told by its ``hidden.weight``."""
    two_layer = "hidden.weight" in params
    inputs = xb
    if two_layer:
        pre = torch.baddbmm(
            params["hidden.bias"].unsqueeze(1), xb, params["hidden.weight"].transpose(1, 2)
        )
        inputs = pre.relu()
    grad, loss = _output_gradient(linear_target(params, inputs), yb, weight, first_loss is None)
    grads = {"weight": torch.bmm(grad.transpose(1, 2), inputs), "bias": grad.sum(1)}
    if two_layer:
        back = torch.bmm(grad, params["weight"]).mul_(pre > 0)
        grads["hidden.weight"] = torch.bmm(back.transpose(1, 2), xb)
        grads["hidden.bias"] = back.sum(1)
    return grads, loss


_ANALYTIC: dict[str, GradientFn] = {"linear": _written_out_gradient, "mlp": _written_out_gradient}
"""Inner gradients written out for the known targets (`target_kind_of`): about half the
operations of autograd's, which is most of what one small task costs."""


def _autograd_gradient(target: TargetFn) -> GradientFn:
    """`GradientFn` of any target, by autograd (for targets `target_kind_of` does not know)."""

    def gradient(
        params: TargetParams,
        xb: torch.Tensor,
        yb: torch.Tensor,
        weight: torch.Tensor,
        first_loss: torch.Tensor | None,
    ) -> tuple[TargetParams, torch.Tensor]:
        with torch.enable_grad():
            leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
            per_sample = _task_loss(target(leaves, xb), yb).view_as(weight)
            loss = (per_sample * weight).sum(1)
            grads = torch.autograd.grad(loss.sum(), list(leaves.values()))
        return dict(zip(leaves, grads)), loss.detach()

    return gradient


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
    # index_select, not features[...]: advanced indexing measured 3x slower on the CPU.
    x = torch.index_select(features, 0, rows.reshape(-1)).view(n_tasks, n_max, features.shape[1])
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


def hypernet_update(theta0: TargetParams, theta_t: TargetParams) -> TargetParams:
    """Each task's update of the emitted weights, ``theta_0 - theta_T`` (the pFedHN-style rule,
    T2M-HN Section 3).

    Back-propagated from theta_0 and divided by the number of tasks T
    (``torch.autograd.backward(theta_0, update / T)``), it gives the hypernetwork
    ``(dtheta/dphi)^T (theta_0 - theta_T)`` averaged over the tasks; `hypernet_surrogate` is
    the same as a scalar loss. Its norm per task is the update norm training logs.

    Args:
        theta0: weights emitted by the hypernetwork, each (T, ...).
        theta_t: weights after the inner loop, same shapes, detached.

    Returns:
        Per name, a detached (T, ...) tensor.
    """
    return {k: theta0[k].detach() - theta_t[k] for k in theta0}


def hypernet_surrogate(theta0: TargetParams, theta_t: TargetParams) -> torch.Tensor:
    """A scalar whose gradient w.r.t. the hypernetwork is ``(dtheta/dphi)^T (theta_0 - theta_T)``.

    ``sum(theta_0 * stopgrad(theta_0 - theta_T))`` has exactly that gradient, and it equals the
    gradient of ``0.5 * ||theta(phi) - stopgrad(theta_T)||^2`` at the current phi. The sum runs
    over tasks and is divided by their number, so a batch of tasks gives the mean task update.
    Training back-propagates `hypernet_update` instead, which skips building this scalar.

    Args:
        theta0: weights emitted by the hypernetwork (attached to its graph), each (T, ...).
        theta_t: weights after the inner loop, same shapes, detached.
    """
    update = hypernet_update(theta0, theta_t)
    n_tasks = next(iter(theta0.values())).shape[0]
    return torch.stack([(theta0[k] * update[k]).sum() for k in theta0]).sum() / n_tasks
