"""EV, IVEV, W and WW against plain NumPy implementations written from the method's equations.

The references below never call the package's modules: each layer is a loop over the classes of
one set, in float64 NumPy, so they share no code (and no activation) with `t2m_cli.models`. They
read the package's ``state_dict`` only to take the same weights, and every parameter must be
used, so an extra or a missing layer in the package shows up as well as a wrong formula.

Where the method leaves a choice open, the reference follows the package, as noted beside it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from t2m_cli.models.hypernet import build_hypernet, linear_target, mlp_target

Array = np.ndarray
Params = dict[str, Array]


def relu(a: Array) -> Array:
    return np.maximum(a, 0.0)


class Weights:
    """The package's parameters as float64 arrays, handed out by name; it notes which were used."""

    def __init__(self, model: nn.Module) -> None:
        self.arrays = {n: t.detach().double().numpy() for n, t in model.state_dict().items()}
        self.used: set[str] = set()

    def affine(self, prefix: str) -> Callable[[Array], Array]:
        """``z -> W z + b`` for one vector z, with the Linear's weights at ``prefix``."""
        w, b = self.arrays[f"{prefix}.weight"], self.arrays[f"{prefix}.bias"]
        self.used |= {f"{prefix}.weight", f"{prefix}.bias"}

        def apply(z: Array) -> Array:
            assert z.ndim == 1
            return np.array([w[o] @ z + b[o] for o in range(len(b))])

        return apply

    def assert_all_used(self) -> None:
        assert self.used == set(self.arrays), set(self.arrays) ^ self.used


def equivariant(weights: Weights, prefix: str, z: Array) -> Array:
    """``out_i = A z_i + B mean_j z_j`` for a set z of shape (k, d_in)."""
    a, b = weights.affine(f"{prefix}.A"), weights.affine(f"{prefix}.B")
    mean = sum(z[j] for j in range(len(z))) / len(z)
    return np.stack([a(z[i]) + b(mean) for i in range(len(z))])


def invariant(weights: Weights, pool: str, out: str, z: Array) -> Array:
    """``C relu(sum_i (A z_i + B mean_j z_j))`` for a set z of shape (k, d_in)."""
    a, b, c = weights.affine(f"{pool}.A"), weights.affine(f"{pool}.B"), weights.affine(out)
    mean = sum(z[j] for j in range(len(z))) / len(z)
    h = sum(a(z[i]) + b(mean) for i in range(len(z)))
    return c(relu(h))


def equivariant_trunk(weights: Weights, text: Array) -> Array:
    """d_text -> H -> H, ReLU after each (the package names the layers trunk.0 and trunk.2)."""
    h = relu(equivariant(weights, "trunk.0", text))
    return relu(equivariant(weights, "trunk.2", h))


def reference_ev(weights: Weights, text: Array, feature_dim: int, hidden: int) -> Params:
    """(k, d_text) -> {"weight": (k, D), "bias": (k,)}: row i and bias i belong to class i."""
    h = equivariant_trunk(weights, text)
    out = {
        "weight": equivariant(weights, "weight_head", h),
        "bias": equivariant(weights, "bias_head", h)[:, 0],
    }
    if "skip.weight.weight" in weights.arrays:
        # model.linear_skip: weight_i += L_w z_i, bias_i += L_b z_i, one map for every class.
        lw, lb = weights.affine("skip.weight"), weights.affine("skip.bias")
        out["weight"] = out["weight"] + np.stack([lw(z) for z in text])
        out["bias"] = out["bias"] + np.array([lb(z)[0] for z in text])
    return out


def reference_ivev(weights: Weights, text: Array, feature_dim: int, hidden: int) -> Params:
    """Invariant heads: the shared hidden layer; equivariant heads: the last layer."""
    h = equivariant_trunk(weights, text)
    # The package pools at width H inside both invariant heads and lays the H x D hidden
    # weights out row by row in C's output (entry h * D + d is weight [h, d]).
    flat = invariant(weights, "hidden_weight_head.pool", "hidden_weight_head.C", h)
    return {
        "hidden.weight": np.stack(
            [flat[r * feature_dim : (r + 1) * feature_dim] for r in range(hidden)]
        ),
        "hidden.bias": invariant(weights, "hidden_bias_head.pool", "hidden_bias_head.C", h),
        "weight": equivariant(weights, "weight_head", h),
        "bias": equivariant(weights, "bias_head", h)[:, 0],
    }


def concat_trunk(weights: Weights, text: Array) -> Array:
    """The baselines' MLP over v_1 .. v_k concatenated in order.

    The method says only "an MLP"; the package's is Linear(k d_text, H) -> ReLU -> Linear(H, H)
    -> ReLU (trunk.0 and trunk.2), followed by one Linear head per emitted tensor.
    """
    z = np.concatenate([text[i] for i in range(len(text))])
    h = relu(weights.affine("trunk.0")(z))
    return relu(weights.affine("trunk.2")(h))


def reference_w(weights: Weights, text: Array, feature_dim: int, hidden: int) -> Params:
    """A linear target; class i's weight row is block i of the weight head's output."""
    k = len(text)
    h = concat_trunk(weights, text)
    flat = weights.affine("weight_head")(h)
    return {
        "weight": np.stack([flat[i * feature_dim : (i + 1) * feature_dim] for i in range(k)]),
        "bias": weights.affine("bias_head")(h),
    }


def reference_ww(weights: Weights, text: Array, feature_dim: int, hidden: int) -> Params:
    """A two-layer target, each tensor from its own Linear head, laid out row by row."""
    k = len(text)
    h = concat_trunk(weights, text)
    hidden_flat = weights.affine("hidden_weight_head")(h)
    flat = weights.affine("weight_head")(h)
    return {
        "hidden.weight": np.stack(
            [hidden_flat[r * feature_dim : (r + 1) * feature_dim] for r in range(hidden)]
        ),
        "hidden.bias": weights.affine("hidden_bias_head")(h),
        "weight": np.stack([flat[i * hidden : (i + 1) * hidden] for i in range(k)]),
        "bias": weights.affine("bias_head")(h),
    }


def reference_linear(params: Params, x: Array) -> Array:
    """(n, D) features -> (n, k) logits, ``logit[n, i] = w_i . x_n + b_i``."""
    return np.einsum("nd,id->ni", x, params["weight"]) + params["bias"]


def reference_mlp(params: Params, x: Array) -> Array:
    """Linear(D, H) -> ReLU -> Linear(H, k) on (n, D) features."""
    h = relu(np.einsum("nd,hd->nh", x, params["hidden.weight"]) + params["hidden.bias"])
    return np.einsum("nh,ih->ni", h, params["weight"]) + params["bias"]


REFERENCES = {
    "EV": (reference_ev, reference_linear),
    "IVEV": (reference_ivev, reference_mlp),
    "W": (reference_w, reference_linear),
    "WW": (reference_ww, reference_mlp),
}
N_TASKS, N_ROWS = 3, 9


def _build(
    hn_type: str,
    k: int,
    seed: int,
    text_dim: int,
    feature_dim: int,
    hidden: int,
    linear_skip: bool = False,
):
    torch.manual_seed(seed)
    extra = {"linear_skip": True} if linear_skip else {}
    model = build_hypernet(
        hn_type, text_dim=text_dim, feature_dim=feature_dim, hidden=hidden, k=k, **extra
    ).double()
    g = torch.Generator().manual_seed(seed + 1)
    text = torch.randn(N_TASKS, k, text_dim, generator=g, dtype=torch.float64)
    x = torch.randn(N_TASKS, N_ROWS, feature_dim, generator=g, dtype=torch.float64)
    return model, text, x


def _differences(model, text: torch.Tensor, x: torch.Tensor) -> dict[str, float]:
    """Largest |package - reference| of each emitted tensor and of the logits, over all tasks."""
    induce, target = REFERENCES[model.hn_type]
    with torch.no_grad():
        params = model(text)
        logits = model.target(params, x).numpy()
    out: dict[str, float] = {}
    for t in range(len(text)):
        weights = Weights(model)
        ref = induce(weights, text[t].numpy(), model.feature_dim, model.hidden)
        weights.assert_all_used()
        assert ref.keys() == params.keys()
        for name, value in ref.items():
            assert params[name][t].shape == value.shape, name
            diff = float(np.abs(params[name][t].numpy() - value).max())
            out[name] = max(out.get(name, 0.0), diff)
        diff = float(np.abs(logits[t] - target(ref, x[t].numpy())).max())
        out["logits"] = max(out.get("logits", 0.0), diff)
    return out


@pytest.mark.parametrize("hn_type", ["EV", "IVEV", "W", "WW"])
@settings(max_examples=25, deadline=None)
@given(
    k=st.integers(2, 5),
    seed=st.integers(0, 2**16),
    text_dim=st.integers(1, 6),
    feature_dim=st.integers(1, 6),
    hidden=st.integers(1, 7),
)
def test_hypernetwork_matches_its_reference(hn_type, k, seed, text_dim, feature_dim, hidden):
    # W and WW are built for this k (they cannot emit any other); EV and IVEV take any k.
    model, text, x = _build(hn_type, k, seed, text_dim, feature_dim, hidden)
    differences = _differences(model, text, x)
    assert max(differences.values()) <= 1e-10, differences


@settings(max_examples=25, deadline=None)
@given(
    k=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    text_dim=st.integers(1, 6),
    feature_dim=st.integers(1, 6),
    hidden=st.integers(1, 7),
)
def test_ev_with_a_linear_skip_matches_its_reference(k, seed, text_dim, feature_dim, hidden):
    model, text, x = _build("EV", k, seed, text_dim, feature_dim, hidden, linear_skip=True)
    assert model.skip is not None
    differences = _differences(model, text, x)
    assert max(differences.values()) <= 1e-10, differences


def test_a_linear_skip_is_equivariant_and_rebuilt_from_its_checkpoint_arguments():
    model, text, _ = _build("EV", 4, 0, 5, 3, 6, linear_skip=True)
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        out, permuted = model(text), model(text[:, perm])
    for name in out:
        assert torch.allclose(out[name][:, perm], permuted[name]), name
    rebuilt = build_hypernet("EV", **model.build_args())
    assert rebuilt.skip is not None and model.build_args()["linear_skip"] is True
    assert build_hypernet("EV", text_dim=5, feature_dim=3, hidden=6).skip is None


@pytest.mark.parametrize("hn_type", ["IVEV", "W", "WW"])
def test_only_ev_takes_a_linear_skip(hn_type):
    from t2m_cli.errors import UserInputError

    with pytest.raises(UserInputError, match="linear_skip"):
        build_hypernet(hn_type, text_dim=5, feature_dim=3, hidden=6, k=2, linear_skip=True)


@pytest.mark.parametrize("hn_type", ["EV", "IVEV"])
def test_one_set_network_matches_its_reference_for_every_k(hn_type):
    torch.manual_seed(0)
    model = build_hypernet(hn_type, text_dim=5, feature_dim=4, hidden=6).double()
    g = torch.Generator().manual_seed(1)
    for k in (2, 3, 4, 5):
        text = torch.randn(N_TASKS, k, 5, generator=g, dtype=torch.float64)
        x = torch.randn(N_TASKS, N_ROWS, 4, generator=g, dtype=torch.float64)
        differences = _differences(model, text, x)
        assert max(differences.values()) <= 1e-10, (k, differences)


@pytest.mark.parametrize("hn_type", ["EV", "IVEV", "W", "WW"])
@pytest.mark.parametrize("layer", ["1", "3"])
def test_reference_catches_a_trunk_without_a_relu(monkeypatch, hn_type, layer):
    """Every type's trunk is a Sequential with its ReLUs at 1 and 3: drop one, and it shows."""
    model, text, x = _build(hn_type, 3, seed=7, text_dim=5, feature_dim=4, hidden=6)
    assert isinstance(getattr(model.trunk, layer), nn.ReLU)
    assert max(_differences(model, text, x).values()) <= 1e-10
    monkeypatch.setattr(model.trunk, layer, nn.Identity())
    assert max(_differences(model, text, x).values()) > 1e-3


@pytest.mark.parametrize("hn_type", ["IVEV", "WW"])
def test_reference_catches_a_missing_relu_in_the_pooling_or_the_target(monkeypatch, hn_type):
    """The invariant heads and the two-layer target apply ``Tensor.relu``; make it identity."""
    model, text, x = _build(hn_type, 3, seed=7, text_dim=5, feature_dim=4, hidden=6)
    before = _differences(model, text, x)
    assert max(before.values()) <= 1e-10
    monkeypatch.setattr(torch.Tensor, "relu", lambda self: self)
    after = _differences(model, text, x)
    assert after["logits"] > 1e-3
    if hn_type == "IVEV":
        assert after["hidden.weight"] > 1e-3 and after["hidden.bias"] > 1e-3


@settings(max_examples=20, deadline=None)
@given(
    k=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    feature_dim=st.integers(1, 6),
    hidden=st.integers(1, 7),
)
def test_target_forward_passes_match_the_reference_targets(k, seed, feature_dim, hidden):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    x = rand(N_TASKS, N_ROWS, feature_dim)
    linear = {"weight": rand(N_TASKS, k, feature_dim), "bias": rand(N_TASKS, k)}
    mlp = {
        "hidden.weight": rand(N_TASKS, hidden, feature_dim),
        "hidden.bias": rand(N_TASKS, hidden),
        "weight": rand(N_TASKS, k, hidden),
        "bias": rand(N_TASKS, k),
    }
    for forward, reference, params in (
        (linear_target, reference_linear, linear),
        (mlp_target, reference_mlp, mlp),
    ):
        logits = forward(params, x)
        assert logits.shape == (N_TASKS, N_ROWS, k)
        for t in range(N_TASKS):
            one = {name: value[t].numpy() for name, value in params.items()}
            expected = reference(one, x[t].numpy())
            np.testing.assert_allclose(logits[t].numpy(), expected, rtol=0, atol=1e-10)
