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


def linear_target(params: TargetParams, x: torch.Tensor) -> torch.Tensor:
    """Run T linear classifiers on their own batches of features.

    Args:
        params: ``{"weight": (T, k, D), "bias": (T, k)}``.
        x: (T, n, D) features, one batch per task.

    Returns:
        (T, n, k) logits.
    """
    return torch.baddbmm(params["bias"].unsqueeze(1), x, params["weight"].transpose(1, 2))


def mlp_target(params: TargetParams, x: torch.Tensor) -> torch.Tensor:
    """Run T two-layer classifiers, Linear(D, H) -> ReLU -> Linear(H, k).

    Args:
        params: ``{"hidden.weight": (T, H, D), "hidden.bias": (T, H), "weight": (T, k, H),
            "bias": (T, k)}``.
        x: (T, n, D) features.

    Returns:
        (T, n, k) logits.
    """
    h = torch.baddbmm(
        params["hidden.bias"].unsqueeze(1), x, params["hidden.weight"].transpose(1, 2)
    ).relu()
    return linear_target(params, h)


TARGETS = {"linear": linear_target, "mlp": mlp_target}
"""Target forward passes by kind; an induced classifier records its kind."""


class Hypernetwork(nn.Module):
    """Common interface: (T, k, d_text) description sets -> target weights.

    Subclasses set ``hn_type`` (the registry name), ``target_kind`` (a key of `TARGETS`) and,
    when they can only emit classifiers of one size, ``fixed_k``.

    Args:
        text_dim: width of a description embedding.
        feature_dim: width D of the features the target classifies.
        hidden: hypernetwork width H (120 in the paper), also the target's hidden width.
    """

    hn_type = ""
    target_kind = "linear"
    fixed_k: int | None = None

    def __init__(self, text_dim: int, feature_dim: int, hidden: int = 120) -> None:
        super().__init__()
        self.text_dim = text_dim
        self.feature_dim = feature_dim
        self.hidden = hidden

    def target(self, params: TargetParams, x: torch.Tensor) -> torch.Tensor:
        """The target model this hypernetwork feeds: (T, n, D) features -> (T, n, k) logits."""
        return TARGETS[self.target_kind](params, x)

    def check_k(self, k: int) -> None:
        """Refuse a set size the network cannot handle (W and WW fix k when built)."""
        if self.fixed_k is not None and k != self.fixed_k:
            built = (
                "one description (a super-set model)"
                if self.fixed_k == 1
                else f"exactly {self.fixed_k} classes"
            )
            raise UserInputError(
                f"The {self.hn_type} hypernetwork was built for {built} and cannot emit a "
                f"classifier over {k}. Use EV or IVEV, which work on sets of any size, or give "
                "it exactly that many."
            )

    def build_args(self) -> dict[str, Any]:
        """Constructor arguments, saved with checkpoints so a model can be rebuilt."""
        return {"text_dim": self.text_dim, "feature_dim": self.feature_dim, "hidden": self.hidden}


class Invariant(nn.Module):
    """DeepSets invariant layer: ``C relu(sum_i (A z_i + B mean_j z_j))``.

    Args:
        d_in: input width per element.
        d_hidden: width of the pooled sum.
        d_out: output width.
    """

    def __init__(self, d_in: int, d_hidden: int, d_out: int) -> None:
        super().__init__()
        self.pool = Equivariant(d_in, d_hidden)
        self.C = nn.Linear(d_hidden, d_out)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(T, k, d_in) sets -> (T, d_out), the same for any order of the k elements."""
        return self.C(self.pool(z).sum(dim=-2).relu())


class LinearSkip(nn.Module):
    """A linear path from each description embedding to its class's last-layer weights.

    ``weight_i = L_w z_i``, ``bias_i = L_b z_i``: one map applied to every element, so it is
    equivariant and adds to the equivariant heads' output without breaking the symmetry
    (``model.linear_skip``, t2m's addition; the paper's hypernetworks have none).

    Args:
        text_dim: width of a description embedding.
        out_dim: width of a class's weight row (D for EV, H for IVEV's last layer).
    """

    def __init__(self, text_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Linear(text_dim, out_dim)
        self.bias = nn.Linear(text_dim, 1)

    def forward(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, k, text_dim) -> weight rows (T, k, out_dim) and biases (T, k)."""
        return self.weight(text), self.bias(text).squeeze(-1)


class EVHypernet(Hypernetwork):
    """T2M-HN "EV": an equivariant trunk and equivariant heads emitting a linear classifier.

    Two equivariant layers (d_text -> H -> H, ReLU after each), then per class i an equivariant
    head for the weight row (H -> D) and one for the bias (H -> 1). The target is one linear
    layer D -> k whose row i belongs to class i. With ``linear_skip`` a `LinearSkip` from each
    description embedding adds to the heads' output.
    """

    hn_type = "EV"

    def __init__(
        self, text_dim: int, feature_dim: int, hidden: int = 120, linear_skip: bool = False
    ) -> None:
        super().__init__(text_dim, feature_dim, hidden)
        self.trunk = _equivariant_trunk(text_dim, hidden)
        self.weight_head = Equivariant(hidden, feature_dim)
        self.bias_head = Equivariant(hidden, 1)
        self.skip = LinearSkip(text_dim, feature_dim) if linear_skip else None

    def forward(self, text: torch.Tensor) -> TargetParams:
        """Emit target weights for a batch of description sets.

        Args:
            text: (T, k, text_dim) description embeddings, one set of k per task.

        Returns:
            ``{"weight": (T, k, D), "bias": (T, k)}``.
        """
        h = self.trunk(text)
        weight, bias = self.weight_head(h), self.bias_head(h).squeeze(-1)
        if self.skip is not None:
            skip_weight, skip_bias = self.skip(text)
            weight, bias = weight + skip_weight, bias + skip_bias
        return {"weight": weight, "bias": bias}

    def build_args(self) -> dict[str, Any]:
        return {**super().build_args(), "linear_skip": self.skip is not None}


class IVEVHypernet(Hypernetwork):
    """T2M-HN "IVEV": invariant heads emit a shared hidden layer, equivariant heads the last.

    The same equivariant trunk as EV; invariant heads emit the hidden layer (H x D weights, H
    biases) shared by every class, which no permutation of the descriptions can change, and
    equivariant heads emit the last layer (k x H, k). Target: Linear(D, H) -> ReLU ->
    Linear(H, k).
    """

    hn_type = "IVEV"
    target_kind = "mlp"

    def __init__(self, text_dim: int, feature_dim: int, hidden: int = 120) -> None:
        super().__init__(text_dim, feature_dim, hidden)
        self.trunk = _equivariant_trunk(text_dim, hidden)
        self.hidden_weight_head = Invariant(hidden, hidden, hidden * feature_dim)
        self.hidden_bias_head = Invariant(hidden, hidden, hidden)
        self.weight_head = Equivariant(hidden, hidden)
        self.bias_head = Equivariant(hidden, 1)

    def forward(self, text: torch.Tensor) -> TargetParams:
        """(T, k, text_dim) -> ``{"hidden.weight": (T, H, D), "hidden.bias": (T, H),
        "weight": (T, k, H), "bias": (T, k)}``."""
        h = self.trunk(text)
        n_tasks = text.shape[0]
        return {
            "hidden.weight": self.hidden_weight_head(h).reshape(
                n_tasks, self.hidden, self.feature_dim
            ),
            "hidden.bias": self.hidden_bias_head(h),
            "weight": self.weight_head(h),
            "bias": self.bias_head(h).squeeze(-1),
        }


class _ConcatHypernet(Hypernetwork):
    """Shared part of W and WW: an MLP over the k embeddings concatenated in order.

    k = 1 reads one description and emits a single-logit target: the super-set model of the
    original code (``train.task: supersets``).
    """

    def __init__(self, text_dim: int, feature_dim: int, hidden: int = 120, k: int = 2) -> None:
        super().__init__(text_dim, feature_dim, hidden)
        if k < 1:
            raise UserInputError(
                f"A {self.hn_type} hypernetwork needs k >= 1 descriptions, not {k}."
            )
        self.fixed_k = k
        self.trunk = nn.Sequential(
            nn.Linear(k * text_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )

    def encode(self, text: torch.Tensor) -> torch.Tensor:
        """(T, k, text_dim) -> (T, H); the order of the descriptions matters."""
        self.check_k(text.shape[-2])
        return self.trunk(text.flatten(-2))

    def build_args(self) -> dict[str, Any]:
        return {**super().build_args(), "k": self.fixed_k}


class WHypernet(_ConcatHypernet):
    """Non-symmetric baseline "W": MLP over concatenated embeddings -> a linear classifier."""

    hn_type = "W"

    def __init__(self, text_dim: int, feature_dim: int, hidden: int = 120, k: int = 2) -> None:
        super().__init__(text_dim, feature_dim, hidden, k)
        self.weight_head = nn.Linear(hidden, k * feature_dim)
        self.bias_head = nn.Linear(hidden, k)

    def forward(self, text: torch.Tensor) -> TargetParams:
        """(T, k, text_dim) -> ``{"weight": (T, k, D), "bias": (T, k)}``."""
        h = self.encode(text)
        k = text.shape[-2]
        return {
            "weight": self.weight_head(h).reshape(-1, k, self.feature_dim),
            "bias": self.bias_head(h),
        }


class WWHypernet(_ConcatHypernet):
    """Non-symmetric baseline "WW": MLP over concatenated embeddings -> a two-layer classifier."""

    hn_type = "WW"
    target_kind = "mlp"

    def __init__(self, text_dim: int, feature_dim: int, hidden: int = 120, k: int = 2) -> None:
        super().__init__(text_dim, feature_dim, hidden, k)
        self.hidden_weight_head = nn.Linear(hidden, hidden * feature_dim)
        self.hidden_bias_head = nn.Linear(hidden, hidden)
        self.weight_head = nn.Linear(hidden, k * hidden)
        self.bias_head = nn.Linear(hidden, k)

    def forward(self, text: torch.Tensor) -> TargetParams:
        """(T, k, text_dim) -> the two-layer target's weights (see `mlp_target`)."""
        h = self.encode(text)
        k = text.shape[-2]
        return {
            "hidden.weight": self.hidden_weight_head(h).reshape(-1, self.hidden, self.feature_dim),
            "hidden.bias": self.hidden_bias_head(h),
            "weight": self.weight_head(h).reshape(-1, k, self.hidden),
            "bias": self.bias_head(h),
        }


def _equivariant_trunk(text_dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        Equivariant(text_dim, hidden), nn.ReLU(), Equivariant(hidden, hidden), nn.ReLU()
    )


HYPERNETWORKS: dict[str, type[Hypernetwork]] = {
    "EV": EVHypernet,
    "IVEV": IVEVHypernet,
    "W": WHypernet,
    "WW": WWHypernet,
}
"""Hypernetwork types by the name the CLI and configs use."""


def build_hypernet(hn_type: str, **kwargs: Any) -> Hypernetwork:
    """Build a hypernetwork by type name (see `HYPERNETWORKS`).

    ``k`` (the number of classes) is used only by the types that fix it (W, WW).
    """
    try:
        cls = HYPERNETWORKS[hn_type]
    except KeyError:
        raise UserInputError(
            f"Unknown hypernetwork type '{hn_type}'; choose one of {sorted(HYPERNETWORKS)}."
        ) from None
    if not issubclass(cls, _ConcatHypernet):
        kwargs.pop("k", None)
    if not issubclass(cls, EVHypernet) and kwargs.pop("linear_skip", False):
        raise UserInputError(
            f"model.linear_skip adds a path to the EV hypernetwork's weights; the "
            f"{hn_type} hypernetwork has none. Set model.linear_skip=false, or use EV."
        )
    return cls(**kwargs)


def target_kind_of(target: object) -> str | None:
    """The `TARGETS` key of a target forward pass, or None when it is not known to be one.

    Known: the functions in `TARGETS` themselves, and the ``target`` method of a
    `Hypernetwork` that keeps the inherited one (it runs ``TARGETS[target_kind]``). Anything
    else, such as a function that wraps a target, is unknown; callers then fall back to
    generic code (autograd) rather than assume its form.
    """
    for kind, fn in TARGETS.items():
        if target is fn:
            return kind
    owner = getattr(target, "__self__", None)
    if isinstance(owner, Hypernetwork) and getattr(target, "__func__", None) is (
        Hypernetwork.target
    ):
        return owner.target_kind if owner.target_kind in TARGETS else None
    return None
