"""The EV hypernetwork: shapes and the permutation symmetry the paper relies on."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from t2m_cli.errors import UserInputError
from t2m_cli.models.hypernet import Equivariant, EVHypernet, build_hypernet, linear_target


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


@settings(max_examples=25, deadline=None)
@given(k=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_permuting_descriptions_permutes_logits(k, seed):
    torch.manual_seed(seed)
    hn = EVHypernet(text_dim=12, feature_dim=7, hidden=16).double()
    text = torch.randn(1, k, 12, dtype=torch.float64)
    x = torch.randn(1, 11, 7, dtype=torch.float64)
    perm = torch.randperm(k)
    logits = linear_target(hn(text), x)
    permuted = linear_target(hn(text[:, perm]), x)
    assert torch.allclose(permuted, logits[..., perm], atol=1e-10)


def test_build_hypernet_rejects_unknown_type():
    with pytest.raises(UserInputError, match="EV"):
        build_hypernet("XYZ", text_dim=2, feature_dim=2)
