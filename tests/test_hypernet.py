"""The EV hypernetwork: shapes and the permutation symmetry the paper relies on."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from t2m_cli.errors import UserInputError
from t2m_cli.models.hypernet import (
    Equivariant,
    EVHypernet,
    Invariant,
    IVEVHypernet,
    build_hypernet,
    linear_target,
)


def test_equivariant_layer_is_the_deepsets_formula():
    torch.manual_seed(0)
    layer = Equivariant(5, 3)
    z = torch.randn(2, 4, 5)
    expected = layer.A(z) + layer.B(z.mean(dim=1, keepdim=True))
    assert torch.allclose(layer(z), expected)
    # Not a plain per-element map: changing one element changes the others' outputs.
    z2 = z.clone()
    z2[:, 0] += 1.0
    assert not torch.allclose(layer(z2)[:, 1], layer(z)[:, 1])


def test_ev_shapes_and_any_k():
    hn = EVHypernet(text_dim=8, feature_dim=6, hidden=10)
    for k in (2, 3, 7):
        params = hn(torch.randn(4, k, 8))
        assert params["weight"].shape == (4, k, 6)
        assert params["bias"].shape == (4, k)
        logits = linear_target(params, torch.randn(4, 9, 6))
        assert logits.shape == (4, 9, k)


def test_linear_target_matches_per_task_matmul():
    w, b, x = torch.randn(3, 2, 5), torch.randn(3, 2), torch.randn(3, 7, 5)
    out = linear_target({"weight": w, "bias": b}, x)
    for t in range(3):
        assert torch.allclose(out[t], x[t] @ w[t].T + b[t], atol=1e-6)


def _permutation_case(kind, hidden, k, seed):
    """A float64 hypernetwork of ``kind`` (text 12, features 7), k descriptions (1, k, 12),
    11 feature rows (1, 11, 7) and a permutation of the k classes, drawn from ``seed``."""
    torch.manual_seed(seed)
    hn = kind(text_dim=12, feature_dim=7, hidden=hidden).double()
    text = torch.randn(1, k, 12, dtype=torch.float64)
    x = torch.randn(1, 11, 7, dtype=torch.float64)
    return hn, text, x, torch.randperm(k)


@settings(max_examples=25, deadline=None)
@given(k=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_permuting_descriptions_permutes_logits(k, seed):
    hn, text, x, perm = _permutation_case(EVHypernet, 16, k, seed)
    logits = linear_target(hn(text), x)
    permuted = linear_target(hn(text[:, perm]), x)
    assert torch.allclose(permuted, logits[..., perm], atol=1e-10)


def test_build_hypernet_rejects_unknown_type():
    with pytest.raises(UserInputError, match="EV"):
        build_hypernet("XYZ", text_dim=2, feature_dim=2)


@pytest.mark.parametrize("hn_type", ["EV", "IVEV", "W", "WW"])
def test_every_type_emits_its_target(hn_type):
    hn = build_hypernet(hn_type, text_dim=8, feature_dim=6, hidden=10, k=3)
    params = hn(torch.randn(4, 3, 8))
    assert params["weight"].shape[:2] == (4, 3) and params["bias"].shape == (4, 3)
    assert hn.target(params, torch.randn(4, 5, 6)).shape == (4, 5, 3)
    if hn.target_kind == "mlp":
        assert params["hidden.weight"].shape == (4, 10, 6)
        assert params["hidden.bias"].shape == (4, 10)


@settings(max_examples=20, deadline=None)
@given(k=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_ivev_logits_permute_and_its_hidden_layer_does_not_change(k, seed):
    hn, text, x, perm = _permutation_case(IVEVHypernet, 9, k, seed)
    params, permuted = hn(text), hn(text[:, perm])
    assert torch.allclose(permuted["hidden.weight"], params["hidden.weight"], atol=1e-10)
    assert torch.allclose(permuted["hidden.bias"], params["hidden.bias"], atol=1e-10)
    assert torch.allclose(hn.target(permuted, x), hn.target(params, x)[..., perm], atol=1e-10)


def test_invariant_layer_ignores_order():
    layer = Invariant(4, 6, 3)
    z = torch.randn(2, 5, 4)
    assert torch.allclose(layer(z), layer(z[:, torch.randperm(5)]), atol=1e-6)


@pytest.mark.parametrize("hn_type", ["W", "WW"])
def test_concat_hypernets_fix_k_and_say_so(hn_type):
    hn = build_hypernet(hn_type, text_dim=8, feature_dim=6, hidden=10, k=2)
    with pytest.raises(UserInputError, match="exactly 2 classes"):
        hn(torch.randn(1, 3, 8))
    # Not symmetric: swapping the descriptions does not simply swap the classes.
    torch.manual_seed(0)
    text, x = torch.randn(1, 2, 8), torch.randn(1, 5, 6)
    swapped = hn.target(hn(text.flip(1)), x)
    assert not torch.allclose(swapped, hn.target(hn(text), x).flip(-1), atol=1e-4)


@pytest.mark.parametrize("hn_type", ["W", "WW"])
def test_concat_hypernets_build_for_one_description(hn_type):
    # The original's super-set model: one description in, a single-logit target out.
    hn = build_hypernet(hn_type, text_dim=8, feature_dim=6, hidden=10, k=1)
    assert hn.fixed_k == 1 and hn.build_args()["k"] == 1
    params = hn(torch.randn(3, 1, 8))
    assert params["weight"].shape[:2] == (3, 1) and params["bias"].shape == (3, 1)
    assert hn.target(params, torch.randn(3, 5, 6)).shape == (3, 5, 1)
    with pytest.raises(UserInputError, match="built for one description"):
        hn(torch.randn(1, 2, 8))
    with pytest.raises(UserInputError, match="k >= 1"):
        build_hypernet(hn_type, text_dim=8, feature_dim=6, hidden=10, k=0)


def test_ev_and_ivev_accept_any_k_at_induction():
    for cls in (EVHypernet, IVEVHypernet):
        hn = cls(text_dim=8, feature_dim=6, hidden=10)
        hn.check_k(2)
        hn.check_k(17)
