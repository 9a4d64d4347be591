"""Feature standardisation fitted on the seen classes' training rows only.

The statistics never see validation or unseen classes, nor any seen class's held-out rows. A
classifier induced on standardised features is folded back to raw features before it is saved
(``w . (x - mu) / sigma + b == (w / sigma) . x + (b - (w / sigma) . mu)``), so a user applies it
to the features their extractor gives, with nothing to remember.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from t2m_cli.data.dataset import ZeroShotDataset


@dataclass(frozen=True)
class FeatureNorm:
    """Per-dimension mean and standard deviation.

    Attributes:
        mean: (D,) mean.
        std: (D,) standard deviation, floored so constant dimensions stay finite.
    """

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, dataset: ZeroShotDataset, eps: float = 1e-6) -> FeatureNorm:
        """Statistics of the seen classes' training rows."""
        rows = torch.cat([dataset.class_rows(c, "train") for c in dataset.split.seen])
        x = dataset.features[rows].double()
        return cls(x.mean(0).float(), x.std(0).clamp_min(eps).float())

    def apply(self, dataset: ZeroShotDataset) -> ZeroShotDataset:
        """A copy of the dataset with standardised features."""
        return replace(dataset, features=(dataset.features - self.mean) / self.std)

    def fold(self, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Turn a linear classifier over standardised features into one over raw features.

        Args:
            weight: (k, D) weights.
            bias: (k,) biases.
        """
        w = weight / self.std
        return w, bias - w @ self.mean

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "std": self.std}
