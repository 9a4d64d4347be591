"""Metrics as pure functions of tensors."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Summary:
    """Mean and standard error of the mean of a set of values."""

    mean: float
    sem: float
    n: int

    def to_json(self) -> dict[str, float | int]:
        return {"mean": self.mean, "sem": self.sem, "n": self.n}


def summarize(values: torch.Tensor) -> Summary:
    """Mean +- SEM (sample standard deviation / sqrt(n)); SEM is 0 for a single value.

    Args:
        values: (n,) values, n >= 1.
    """
    v = values.detach().double().flatten().cpu()
    n = int(v.numel())
    if n == 0:
        raise ValueError("summarize() needs at least one value")
    sem = float(v.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0
    return Summary(float(v.mean()), sem, n)


def harmonic_mean(seen: float, unseen: float) -> float:
    """H = 2SU / (S + U), 0 when both are 0."""
    return 0.0 if seen + unseen == 0 else 2 * seen * unseen / (seen + unseen)
