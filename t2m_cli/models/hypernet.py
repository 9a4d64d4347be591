"""Hypernetworks: a set of description embeddings -> the weights of a target classifier.

All tensors carry a leading task dimension T so that many tasks are induced in one call:
descriptions arrive as (T, k, d_text) and the weights leave as (T, k, D) and (T, k).

The layers follow DeepSets: an equivariant layer maps each element with one linear map and adds a
second linear map of the set's mean, ``out_i = A z_i + B mean_j z_j``, so permuting the inputs
permutes the outputs. That symmetry is what lets one trained network emit a classifier for any
number of classes, in any order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import torch
from torch import nn

from t2m_cli.errors import UserInputError

TargetParams = dict[str, torch.Tensor]
"""Target weights by name, each with a leading task dimension."""


class Inducer(Protocol):
    """What the evaluation protocols need of a model: text sets in, target weights out.

    The hypernetworks satisfy it, and so do the baselines, so both are scored by the same code.
    """

    hn_type: str
    training: bool

    def __call__(self, text: torch.Tensor) -> TargetParams: ...

    def target(self, params: TargetParams, x: torch.Tensor) -> torch.Tensor: ...

    def parameters(self) -> Iterator[nn.Parameter]: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...


class Equivariant(nn.Module):
    """DeepSets equivariant layer: ``out_i = A z_i + B mean_j(z_j)``.

    Args:
        d_in: input width per element.
        d_out: output width per element.
    """

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.A = nn.Linear(d_in, d_out)
        self.B = nn.Linear(d_in, d_out)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map a batch of sets.

        Args:
            z: (T, k, d_in) sets of k elements.

        Returns:
            (T, k, d_out), row i depending on z_i and the set's mean only.
        """
        return self.A(z) + self.B(z.mean(dim=-2, keepdim=True))


class EVHypernet(nn.Module):
    """T2M-HN "EV": an equivariant trunk and equivariant heads emitting a linear classifier.

    Two equivariant layers (d_text -> H -> H, ReLU after each), then per class i an equivariant
    head for the weight row (H -> D) and one for the bias (H -> 1). The target is one linear
    layer D -> k whose row i belongs to class i.

    Args:
        text_dim: width of a description embedding.
        feature_dim: width D of the features the target classifies.
        hidden: trunk width H (120 in the paper).
    """

    hn_type = "EV"

    @staticmethod
    def target(params: TargetParams, x: torch.Tensor) -> torch.Tensor:
        """The target this hypernetwork feeds: one linear layer (see `linear_target`)."""
        return linear_target(params, x)

    def __init__(self, text_dim: int, feature_dim: int, hidden: int = 120) -> None:
        super().__init__()
        self.text_dim = text_dim
        self.feature_dim = feature_dim
        self.hidden = hidden
        self.trunk = nn.Sequential(
            Equivariant(text_dim, hidden),
            nn.ReLU(),
            Equivariant(hidden, hidden),
            nn.ReLU(),
        )
        self.weight_head = Equivariant(hidden, feature_dim)
        self.bias_head = Equivariant(hidden, 1)

    def forward(self, text: torch.Tensor) -> TargetParams:
        """Emit target weights for a batch of description sets.

        Args:
            text: (T, k, text_dim) description embeddings, one set of k per task.

        Returns:
            ``{"weight": (T, k, D), "bias": (T, k)}``.
        """
        h = self.trunk(text)
        return {"weight": self.weight_head(h), "bias": self.bias_head(h).squeeze(-1)}

    def build_args(self) -> dict[str, Any]:
        """Constructor arguments, saved with checkpoints so a model can be rebuilt."""
        return {"text_dim": self.text_dim, "feature_dim": self.feature_dim, "hidden": self.hidden}


def linear_target(params: TargetParams, x: torch.Tensor) -> torch.Tensor:
    """Run T linear classifiers on their own batches of features.

    Args:
        params: ``{"weight": (T, k, D), "bias": (T, k)}``.
        x: (T, n, D) features, one batch per task.

    Returns:
        (T, n, k) logits.
    """
    return torch.baddbmm(params["bias"].unsqueeze(1), x, params["weight"].transpose(1, 2))


HYPERNETWORKS: dict[str, type[EVHypernet]] = {"EV": EVHypernet}
"""Hypernetwork types by the name the CLI and configs use."""


def build_hypernet(hn_type: str, **kwargs: Any) -> EVHypernet:
    """Build a hypernetwork by type name (see `HYPERNETWORKS`)."""
    try:
        cls = HYPERNETWORKS[hn_type]
    except KeyError:
        raise UserInputError(
            f"Unknown hypernetwork type '{hn_type}'; choose one of {sorted(HYPERNETWORKS)}."
        ) from None
    return cls(**kwargs)
