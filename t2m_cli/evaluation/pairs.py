"""The paper's pair protocol: a binary classifier induced for every ordered pair of classes.

Each ordered pair (a, b) gets its own classifier from the descriptions of a and b, scored on all
rows of the two classes; its accuracy is computed on its own (the original code kept running
counters across pairs, which turns each "per-pair" accuracy into a running average).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from t2m_cli.data.dataset import ZeroShotDataset
from t2m_cli.data.texts import Describer
from t2m_cli.errors import DataError
from t2m_cli.models.hypernet import Inducer


def ordered_pairs(n: int) -> torch.Tensor:
    """All ordered pairs (i, j), i != j, of n items: (n * (n - 1), 2) int64."""
    return torch.tensor(list(itertools.permutations(range(n), 2)), dtype=torch.long).reshape(-1, 2)


@torch.no_grad()
def pair_accuracies(
    hypernet: Inducer,
    bank: Describer,
    dataset: ZeroShotDataset,
    classes: Sequence[str],
    part: str,
    generator: torch.Generator,
    chunk: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy of the induced binary classifier of every ordered pair of ``classes``.

    Args:
        hypernet: a trained hypernetwork, or anything that maps (T, k, d_text) texts to
            target weights and has a ``target(params, x)`` (a baseline); its device is used.
        bank: text embeddings indexed by dataset label (``bank.classes == dataset.classes``).
        dataset: features and labels.
        classes: the class names to pair.
        part: which rows of each class to score: 'train', 'test' or 'all'.
        generator: draws the description of each class in each pair.
        chunk: pairs induced and scored at once; memory grows with it, not with the pair count.

    Returns:
        pairs (P, 2) dataset labels and acc (P,) float accuracies, P = len(classes) * (len - 1).
    """
    if len(classes) < 2:
        raise DataError(
            f"The pair protocol needs at least two classes, and this split part has "
            f"{len(classes)} ({', '.join(classes) or 'none'}). Give the split at least two "
            "validation and two unseen classes."
        )
    device = next(hypernet.parameters()).device
    labels = torch.tensor([dataset.index(c) for c in classes], dtype=torch.long)
    rows = [dataset.class_rows(c, part) for c in classes]
    features = dataset.features.to(device)
    local = ordered_pairs(len(classes))
    pairs = labels[local]
    accs = []
    was_training = hypernet.training
    hypernet.eval()
    for start in range(0, len(pairs), chunk):
        pair_chunk = pairs[start : start + chunk]
        local_chunk = local[start : start + chunk]
        params = hypernet(bank.draw(pair_chunk, generator))
        sizes = torch.tensor([len(rows[a]) + len(rows[b]) for a, b in local_chunk.tolist()])
        width = int(sizes.max())
        idx = torch.zeros(len(pair_chunk), width, dtype=torch.long)
        y = torch.full((len(pair_chunk), width), -1, dtype=torch.long)
        for t, (a, b) in enumerate(local_chunk.tolist()):
            both = torch.cat([rows[a], rows[b]])
            idx[t, : len(both)] = both
            y[t, : len(rows[a])] = 0
            y[t, len(rows[a]) : len(both)] = 1
        x = features[idx.to(device)]
        pred = hypernet.target(params, x).argmax(-1).cpu()
        correct = ((pred == y) & (y >= 0)).sum(1)
        accs.append(correct.double() / sizes.double())
    hypernet.train(was_training)
    return pairs, torch.cat(accs).float()
