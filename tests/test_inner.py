"""The training rule: the inner SGD loop and the hypernetwork update."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from t2m_cli.config import TrainConfig
from t2m_cli.models.hypernet import EVHypernet, linear_target, mlp_target
from t2m_cli.training.inner import (
    InnerSettings,
    hypernet_surrogate,
    inner_train,
    minibatch_order,
)

# The paper's inner loop: the defaults of the config's train.inner_* keys.
DEFAULTS = InnerSettings.from_config(TrainConfig())


def _flat(x):
    """(T, n, D) task features -> the (features, rows) pair `inner_train` reads."""
    t, n, d = x.shape
    return x.reshape(t * n, d), torch.arange(t * n).reshape(t, n)


def _task(n=100, d=6, k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, n, d, generator=g)
    y = torch.randint(0, k, (1, n), generator=g)
    return x, y


def _torch_sgd(module, x, y, order) -> None:
    """Train ``module`` in place on the one task (x, y) with torch's SGD (lr 0.05, momentum
    0.9, weight decay 0.01), in minibatches of 16 taken in ``order``, as the reference that
    `inner_train` must match."""
    opt = torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)
    for perm in order:
        for start in range(0, x.shape[1], 16):
            idx = perm[0, start : start + 16]
            opt.zero_grad()
            F.cross_entropy(module(x[0, idx]), y[0, idx]).backward()
            opt.step()


def test_inner_loop_matches_torch_sgd_step_for_step():
    torch.manual_seed(0)
    settings = InnerSettings(epochs=2, batch_size=16, lr=0.05, momentum=0.9, weight_decay=0.01)
    x, y = _task(n=50)
    theta0 = {"weight": torch.randn(1, 2, 6), "bias": torch.randn(1, 2)}
    order = minibatch_order(torch.tensor([50]), settings.epochs, torch.Generator().manual_seed(3))
    theta_t, _ = inner_train(
        linear_target, theta0, *_flat(x), y, torch.tensor([50]), settings, order
    )

    layer = torch.nn.Linear(6, 2)
    with torch.no_grad():
        layer.weight.copy_(theta0["weight"][0])
        layer.bias.copy_(theta0["bias"][0])
    _torch_sgd(layer, x, y, order)
    assert torch.allclose(theta_t["weight"][0], layer.weight, atol=1e-6)
    assert torch.allclose(theta_t["bias"][0], layer.bias, atol=1e-6)


def test_inner_loop_learns_and_leaves_theta0_alone():
    x, y = _task(n=200)
    x = x + 3.0 * F.one_hot(y, 6).float()  # a separable task
    theta0 = {"weight": torch.zeros(1, 2, 6), "bias": torch.zeros(1, 2)}
    order = minibatch_order(torch.tensor([200]), 3, torch.Generator().manual_seed(0))
    theta_t, first = inner_train(
        linear_target, theta0, *_flat(x), y, torch.tensor([200]), DEFAULTS, order
    )
    assert torch.count_nonzero(theta0["weight"]) == 0
    acc = (linear_target(theta_t, x).argmax(-1) == y).float().mean()
    assert acc > 0.9
    assert torch.allclose(first, torch.tensor([torch.log(torch.tensor(2.0))]))


def _reference_loop(theta0, tasks, settings, order):
    """The plain per-task loop: each task alone, torch.optim.SGD, its own minibatch order."""
    out = []
    for t, (x, y) in enumerate(tasks):
        n = y.shape[1]
        layer = torch.nn.Linear(x.shape[-1], theta0["weight"].shape[1])
        with torch.no_grad():
            layer.weight.copy_(theta0["weight"][t])
            layer.bias.copy_(theta0["bias"][t])
        opt = torch.optim.SGD(
            layer.parameters(),
            lr=settings.lr,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
        )
        for perm in order:
            own = perm[t, :n]
            for start in range(0, n, settings.batch_size):
                idx = own[start : start + settings.batch_size]
                opt.zero_grad()
                F.cross_entropy(layer(x[0, idx]), y[0, idx]).backward()
                opt.step()
        out.append((layer.weight.detach(), layer.bias.detach()))
    return out


def test_batched_tasks_of_different_sizes_match_the_per_task_loop():
    settings = replace(DEFAULTS, epochs=2, batch_size=16, lr=0.05)
    sizes = [50, 23, 64, 7]
    tasks = [_task(n=n, seed=i) for i, n in enumerate(sizes)]
    counts = torch.tensor(sizes)
    n_max = max(sizes)
    x = torch.zeros(len(sizes), n_max, 6)
    y = torch.zeros(len(sizes), n_max, dtype=torch.long)
    for t, (xt, yt) in enumerate(tasks):
        x[t, : sizes[t]], y[t, : sizes[t]] = xt[0], yt[0]
    theta0 = {"weight": torch.randn(4, 2, 6), "bias": torch.randn(4, 2)}
    order = minibatch_order(counts, settings.epochs, torch.Generator().manual_seed(5))
    for t, n in enumerate(sizes):  # each row starts with a permutation of its own samples
        assert sorted(order[0][t, :n].tolist()) == list(range(n))
    batched, _ = inner_train(linear_target, theta0, *_flat(x), y, counts, settings, order)
    for t, (w, b) in enumerate(_reference_loop(theta0, tasks, settings, order)):
        assert torch.allclose(batched["weight"][t], w, atol=1e-5)
        assert torch.allclose(batched["bias"][t], b, atol=1e-5)


def test_batched_step_gives_the_mean_of_per_task_hypernetwork_gradients():
    torch.manual_seed(0)
    hn = EVHypernet(text_dim=5, feature_dim=6, hidden=8).double()
    sizes = [40, 17, 33]
    tasks = [_task(n=n, seed=i) for i, n in enumerate(sizes)]
    text = torch.randn(3, 2, 5, dtype=torch.float64)
    counts = torch.tensor(sizes)
    x = torch.zeros(3, max(sizes), 6, dtype=torch.float64)
    y = torch.zeros(3, max(sizes), dtype=torch.long)
    for t, (xt, yt) in enumerate(tasks):
        x[t, : sizes[t]], y[t, : sizes[t]] = xt[0].double(), yt[0]
    order = minibatch_order(counts, 3, torch.Generator().manual_seed(2))
    theta0 = hn(text)
    theta_t, _ = inner_train(linear_target, theta0, *_flat(x), y, counts, DEFAULTS, order)
    batched = torch.autograd.grad(hypernet_surrogate(theta0, theta_t), list(hn.parameters()))

    per_task = []
    for t, n in enumerate(sizes):
        theta0_t = hn(text[t : t + 1])
        own = [o[t : t + 1, :n] for o in order]
        theta_tt, _ = inner_train(
            linear_target,
            theta0_t,
            *_flat(x[t : t + 1, :n]),
            y[t : t + 1, :n],
            counts[t : t + 1],
            DEFAULTS,
            own,
        )
        per_task.append(
            torch.autograd.grad(hypernet_surrogate(theta0_t, theta_tt), list(hn.parameters()))
        )
    for i, g in enumerate(batched):
        mean = sum(p[i] for p in per_task) / len(sizes)
        assert torch.allclose(g, mean, atol=1e-10)


def test_update_rule_is_gradient_of_half_squared_distance():
    torch.manual_seed(0)
    hn = EVHypernet(text_dim=5, feature_dim=4, hidden=8).double()
    text = torch.randn(1, 2, 5, dtype=torch.float64)
    x, y = _task(n=64, d=4)
    theta0 = hn(text)
    order = minibatch_order(torch.tensor([64]), 3, torch.Generator().manual_seed(0))
    theta_t, _ = inner_train(
        linear_target, theta0, *_flat(x.double()), y, torch.tensor([64]), DEFAULTS, order
    )

    grads_rule = torch.autograd.grad(hypernet_surrogate(theta0, theta_t), list(hn.parameters()))

    # Reference: d/dphi of 0.5 * ||theta(phi) - stopgrad(theta_T)||^2, computed by autograd.
    theta = hn(text)
    half_sq = 0.5 * sum(((theta[k] - theta_t[k]) ** 2).sum() for k in theta)
    grads_ref = torch.autograd.grad(half_sq, list(hn.parameters()))

    # And the explicit vector-Jacobian product (dtheta/dphi)^T (theta_0 - theta_T).
    theta = hn(text)
    vjp = torch.autograd.grad(
        list(theta.values()),
        list(hn.parameters()),
        grad_outputs=[theta[k].detach() - theta_t[k] for k in theta],
    )
    for a, b, c in zip(grads_rule, grads_ref, vjp):
        assert torch.allclose(a, b, atol=1e-12)
        assert torch.allclose(a, c, atol=1e-12)
    assert any(g.abs().sum() > 0 for g in grads_rule)


def test_surrogate_averages_over_tasks():
    w = torch.randn(3, 2, 4, requires_grad=True)
    theta0 = {"weight": w}
    theta_t = {"weight": torch.randn(3, 2, 4)}
    (g,) = torch.autograd.grad(hypernet_surrogate(theta0, theta_t), [w])
    assert torch.allclose(g, (w.detach() - theta_t["weight"]) / 3)


def test_two_layer_inner_loop_matches_torch_sgd():
    torch.manual_seed(0)
    settings = replace(DEFAULTS, epochs=2, batch_size=16, lr=0.05)
    x, y = _task(n=40)
    theta0 = {
        "hidden.weight": torch.randn(1, 5, 6),
        "hidden.bias": torch.randn(1, 5),
        "weight": torch.randn(1, 2, 5),
        "bias": torch.randn(1, 2),
    }
    order = minibatch_order(torch.tensor([40]), settings.epochs, torch.Generator().manual_seed(1))
    theta_t, _ = inner_train(mlp_target, theta0, *_flat(x), y, torch.tensor([40]), settings, order)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    with torch.no_grad():
        net[0].weight.copy_(theta0["hidden.weight"][0])
        net[0].bias.copy_(theta0["hidden.bias"][0])
        net[2].weight.copy_(theta0["weight"][0])
        net[2].bias.copy_(theta0["bias"][0])
    _torch_sgd(net, x, y, order)
    assert torch.allclose(theta_t["hidden.weight"][0], net[0].weight, atol=1e-5)
    assert torch.allclose(theta_t["weight"][0], net[2].weight, atol=1e-5)


def test_single_logit_tasks_match_a_per_task_bce_loop():
    """k = 1 (super-set tasks): BCE with logits on the one logit, step for step like SGD."""
    settings = InnerSettings(epochs=2, batch_size=16, lr=0.05, momentum=0.9, weight_decay=0.01)
    sizes = [50, 23, 64, 7]
    counts = torch.tensor(sizes)
    n_max = max(sizes)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(len(sizes), n_max, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (len(sizes), n_max), generator=g).double()
    theta0 = {
        "weight": torch.randn(4, 1, 6, generator=g, dtype=torch.float64),
        "bias": torch.randn(4, 1, generator=g, dtype=torch.float64),
    }
    order = minibatch_order(counts, settings.epochs, torch.Generator().manual_seed(5))
    batched, first = inner_train(linear_target, theta0, *_flat(x), y, counts, settings, order)

    for t, n in enumerate(sizes):
        layer = torch.nn.Linear(6, 1).double()
        with torch.no_grad():
            layer.weight.copy_(theta0["weight"][t])
            layer.bias.copy_(theta0["bias"][t])
        opt = torch.optim.SGD(layer.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)
        first_ref = None
        for perm in order:
            own = perm[t, :n]
            for start in range(0, n, settings.batch_size):
                idx = own[start : start + settings.batch_size]
                opt.zero_grad()
                loss = F.binary_cross_entropy_with_logits(layer(x[t, idx])[:, 0], y[t, idx])
                if first_ref is None:
                    first_ref = loss.detach()
                loss.backward()
                opt.step()
        assert torch.allclose(batched["weight"][t], layer.weight, atol=1e-12)
        assert torch.allclose(batched["bias"][t], layer.bias, atol=1e-12)
        assert torch.allclose(first[t], first_ref, atol=1e-12)


def test_single_logit_accepts_integer_labels_and_learns():
    x, y = _task(n=200, d=6, k=2)
    x = x + 3.0 * (2 * y - 1).unsqueeze(-1) * F.one_hot(torch.zeros_like(y), 6).float()
    theta0 = {"weight": torch.zeros(1, 1, 6), "bias": torch.zeros(1, 1)}
    order = minibatch_order(torch.tensor([200]), 3, torch.Generator().manual_seed(0))
    theta_t, first = inner_train(
        linear_target, theta0, *_flat(x), y, torch.tensor([200]), DEFAULTS, order
    )
    assert torch.allclose(first, torch.tensor([torch.log(torch.tensor(2.0))]))
    logit = linear_target(theta_t, x)[0, :, 0]
    assert ((logit > 0).long() == y[0]).float().mean() > 0.9


def test_fixed_inner_order_keeps_one_permutation_per_task_for_every_epoch():
    counts = torch.tensor([50, 23, 7])
    fixed = minibatch_order(counts, 3, torch.Generator().manual_seed(5), fixed=True)
    assert len(fixed) == 3 and all(torch.equal(o, fixed[0]) for o in fixed)
    for t, n in enumerate(counts.tolist()):
        assert sorted(fixed[0][t, :n].tolist()) == list(range(n))
    # The default reshuffles: epoch e is the generator's e-th draw, the stream it always was.
    g = torch.Generator().manual_seed(5)
    reshuffled = minibatch_order(counts, 3, torch.Generator().manual_seed(5))
    one_by_one = [minibatch_order(counts, 1, g)[0] for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(reshuffled, one_by_one))
    assert torch.equal(reshuffled[0], fixed[0]) and not torch.equal(reshuffled[1], fixed[1])
    assert InnerSettings.from_config(TrainConfig(inner_order="fixed")).order == "fixed"
    assert DEFAULTS.order == TrainConfig().inner_order == "reshuffle"


def _hidden_kind(target):
    """The same target behind a wrapper, so that `inner_train` cannot tell its kind and
    takes the autograd path."""
    return lambda params, x: target(params, x)


@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("n_tasks", [1, 3])
def test_written_out_gradients_match_autograd(kind, k, n_tasks):
    """Every shortcut (one linear task, the batched written-out gradients of both targets,
    binary cross-entropy for k = 1) against autograd on the same orders, tasks of unequal
    sizes included."""
    g = torch.Generator().manual_seed(k + n_tasks)
    counts = torch.tensor([37, 20, 29][:n_tasks])
    x = torch.randn(n_tasks, 37, 6, generator=g)
    y = torch.randint(0, max(k, 2), (n_tasks, 37), generator=g)
    target = {"linear": linear_target, "mlp": mlp_target}[kind]
    theta0 = {"weight": torch.randn(n_tasks, k, 6 if kind == "linear" else 4, generator=g)}
    theta0["bias"] = torch.randn(n_tasks, k, generator=g)
    if kind == "mlp":
        theta0["hidden.weight"] = torch.randn(n_tasks, 4, 6, generator=g)
        theta0["hidden.bias"] = torch.randn(n_tasks, 4, generator=g)
    settings = InnerSettings(epochs=2, batch_size=8, lr=0.05, momentum=0.9, weight_decay=0.01)
    order = minibatch_order(counts, 2, torch.Generator().manual_seed(1))
    fast, fast_loss = inner_train(target, theta0, *_flat(x), y, counts, settings, order)
    slow, slow_loss = inner_train(
        _hidden_kind(target), theta0, *_flat(x), y, counts, settings, order
    )
    torch.testing.assert_close(fast_loss, slow_loss)
    for name in theta0:
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-5, atol=1e-6)
        assert not torch.equal(fast[name], theta0[name]), "the loop trained nothing"


def test_target_kinds_are_told_apart():
    from t2m_cli.models.hypernet import build_hypernet, target_kind_of

    assert target_kind_of(linear_target) == "linear"
    assert target_kind_of(mlp_target) == "mlp"
    assert target_kind_of(build_hypernet("EV", text_dim=4, feature_dim=3).target) == "linear"
    assert target_kind_of(build_hypernet("WW", text_dim=4, feature_dim=3).target) == "mlp"
    assert target_kind_of(_hidden_kind(linear_target)) is None
