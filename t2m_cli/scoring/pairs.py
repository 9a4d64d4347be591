"""The paper's pair protocol: a binary classifier induced for every ordered pair of classes.

Each ordered pair (a, b) gets its own classifier from the descriptions of a and b, scored on all
rows of the two classes; its accuracy is computed on its own (the original code kept running
counters across pairs, which turns each "per-pair" accuracy into a running average).

Pairs are induced and scored in chunks, so memory grows with the chunk, not with the number of
pairs. A chunk is scored one of two ways:

- generic, for any ``target(params, x)``: the rows of each pair are gathered into one padded
  (T, n, D) batch and run through the target;
- linear, when the target is known to be `linear_target`: nothing is gathered; each class's rows
  are multiplied once by the weights of every classifier of the chunk that involves the class
  (``X_c @ W^T``, one matrix product a class), which reads each feature row once per chunk
  instead of copying it once per pair.

Both compute the same logits, but as matrix products of different shapes, which may round
differently: a row whose two logits agree to float32 rounding can then fall on either side
(in a CUB-sized run, 7 of 39,800 pairs differed by one row, each within ~1e-6 of a tie).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from t2m_cli.data.dataset import ZeroShotDataset
from t2m_cli.data.texts import Describer
from t2m_cli.errors import DataError
from t2m_cli.models.hypernet import TARGETS, Hypernetwork, Inducer, TargetParams, linear_target
from t2m_cli.scoring.metrics import Summary, summarize


def ordered_pairs(n: int) -> torch.Tensor:
    """All ordered pairs (i, j), i != j, of n items: (n * (n - 1), 2) int64."""
    return torch.tensor(list(itertools.permutations(range(n), 2)), dtype=torch.long).reshape(-1, 2)


@dataclass
class ClassRows:
    """The rows of a list of classes, laid out so that each class is one contiguous block.

    Attributes:
        order: (R,) int64 dataset rows of all classes, class after class (on the CPU).
        offsets: (C,) start of each class's block in ``order``.
        counts: (C,) rows of each class.
        source: features holding each class as one contiguous block, on the model's device:
            the dataset's own features when every class's rows already are contiguous there
            (no copy), else ``features[order]``.
        starts: (C,) start of each class's block in ``source``.
    """

    order: torch.Tensor
    offsets: torch.Tensor
    counts: torch.Tensor
    source: torch.Tensor
    starts: torch.Tensor

    @classmethod
    def build(
        cls, rows: Sequence[torch.Tensor], features: torch.Tensor, copy: bool = True
    ) -> ClassRows:
        """Lay out ``rows`` (ascending dataset rows per class) of ``features``.

        With ``copy=False`` the contiguous ``source`` is not built (the generic path needs only
        ``order``); ``source`` is then ``features`` and ``starts`` is meaningless.
        """
        counts = torch.tensor([len(r) for r in rows], dtype=torch.long)
        offsets = torch.cumsum(counts, 0) - counts
        order = torch.cat([r.cpu() for r in rows]) if rows else torch.zeros(0, dtype=torch.long)
        firsts = torch.tensor([int(r[0]) if len(r) else 0 for r in rows], dtype=torch.long)
        lasts = torch.tensor([int(r[-1]) if len(r) else -1 for r in rows], dtype=torch.long)
        contiguous = bool((lasts - firsts + 1 == counts).all())
        if contiguous or not copy:
            return cls(order, offsets, counts, features, firsts)
        return cls(order, offsets, counts, features[order.to(features.device)], offsets)


def pair_index(
    layout: ClassRows, local: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Padded row indices and labels of a chunk of pairs, without a loop over the pairs.

    Args:
        layout: the rows of the paired classes.
        local: (T, 2) positions of each pair's classes in the layout.

    Returns:
        idx (T, W) dataset rows, the rows of a then those of b, padded with row 0; y (T, W)
        labels, 0 for a's rows, 1 for b's and -1 for padding; sizes (T,) rows of each pair.
        W is the largest size.
    """
    a, b = local[:, 0], local[:, 1]
    n_a = layout.counts[a].unsqueeze(1)
    sizes = layout.counts[a] + layout.counts[b]
    width = int(sizes.max()) if len(sizes) else 0
    j = torch.arange(width).unsqueeze(0)
    in_a = j < n_a
    valid = j < sizes.unsqueeze(1)
    pos = torch.where(
        in_a, layout.offsets[a].unsqueeze(1) + j, layout.offsets[b].unsqueeze(1) + j - n_a
    )
    rows = layout.order[pos.clamp(0, max(len(layout.order) - 1, 0))] if width else pos
    idx = torch.where(valid, rows, torch.zeros_like(rows))
    y = torch.where(in_a, torch.zeros_like(pos), torch.where(valid, 1, -1))
    return idx, y, sizes


def is_linear(hypernet: Inducer) -> bool:
    """Whether ``hypernet.target`` is known to be `linear_target`, so the fast path applies.

    True for the hypernetworks whose ``target_kind`` is 'linear' and that keep the inherited
    ``target``, and for any inducer whose class sets ``target = staticmethod(linear_target)``.
    Anything else (a two-layer target, a target that wraps `linear_target` in a function of its
    own) is scored by the generic path.
    """
    target = getattr(type(hypernet), "target", None)
    if target is linear_target:
        return True
    kind = getattr(hypernet, "target_kind", None)
    return target is Hypernetwork.target and TARGETS.get(str(kind)) is linear_target


def correct_generic(
    hypernet: Inducer,
    params: TargetParams,
    layout: ClassRows,
    features: torch.Tensor,
    local: torch.Tensor,
) -> torch.Tensor:
    """Correctly classified rows of each pair of a chunk, through ``hypernet.target``.

    Gathers a (T, W, D) batch of the pairs' rows; any target works.

    Returns:
        (T,) int64 counts on the CPU.
    """
    idx, y, _ = pair_index(layout, local)
    x = features[idx.to(features.device)]
    pred = hypernet.target(params, x).argmax(-1).cpu()
    return ((pred == y) & (y >= 0)).sum(1)


def correct_linear(params: TargetParams, layout: ClassRows, local: torch.Tensor) -> torch.Tensor:
    """Correctly classified rows of each pair of a chunk, for linear targets, gathering nothing.

    The chunk's (task, slot) entries are grouped by class; for each class c, its rows X_c (a
    view of ``layout.source``) meet all classifiers of the chunk's tasks involving c in one
    matrix product, ``bias + X_c @ W^T``. A row of class c in task t is correct when the
    argmax over the task's classes (first maximum on a tie, as `torch.argmax`) is c's slot.

    Returns:
        (T,) int64 counts on the CPU.
    """
    weight, bias = params["weight"], params["bias"]
    n_tasks, k, dim = weight.shape
    device = weight.device
    classes, perm = torch.sort(local.reshape(-1), stable=True)
    tasks = (perm // k).to(device)
    slots = (perm % k).to(device)
    unique, counts = torch.unique_consecutive(classes, return_counts=True)
    # The classifiers of each entry, grouped by class: one gather of the chunk's weights.
    w = weight[tasks].reshape(-1, dim)
    b = bias[tasks].reshape(-1)
    rows, starts = layout.counts.tolist(), layout.starts.tolist()
    hits = []
    end = 0
    for c, m in zip(unique.tolist(), counts.tolist()):
        begin, end = end, end + m
        n, start = rows[c], starts[c]
        x = layout.source[start : start + n]
        logits = torch.addmm(b[begin * k : end * k], x, w[begin * k : end * k].T)
        hits.append((logits.view(n, m, k).argmax(-1) == slots[begin:end]).sum(0))
    correct = torch.zeros(n_tasks, dtype=torch.long, device=device)
    correct.index_add_(0, tasks, torch.cat(hits))
    return correct.cpu()


@torch.no_grad()
def pair_accuracies(
    hypernet: Inducer,
    bank: Describer,
    dataset: ZeroShotDataset,
    classes: Sequence[str],
    part: str,
    generator: torch.Generator,
    chunk: int = 256,
    max_pairs: int | None = None,
    subset_seed: int = 0,
    shard: tuple[int, int] = (0, 1),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy of the induced binary classifier of every ordered pair of ``classes``.

    Pairs are taken in the order of `ordered_pairs`, ``chunk`` at a time: one description draw
    (``bank.draw``) and one hypernetwork call a chunk, so a given chunk size always consumes
    ``generator`` the same way. A linear target is scored without gathering features (see
    `correct_linear`), any other through ``hypernet.target`` on the gathered rows.

    Args:
        hypernet: a trained hypernetwork, or anything that maps (T, k, d_text) texts to
            target weights and has a ``target(params, x)`` (a baseline); its device is used.
        bank: text embeddings indexed by dataset label (``bank.classes == dataset.classes``).
        dataset: features and labels.
        classes: the class names to pair.
        part: which rows of each class to score: 'train', 'test' or 'all'.
        generator: draws the description of each class in each pair.
        chunk: pairs induced and scored at once; memory grows with it (and with the features
            of ``classes``), not with the pair count.
        max_pairs: score only this many ordered pairs, drawn at random without replacement
            (the paper's 100 random pairs for SUN); None scores them all.
        subset_seed: seed of that subset, separate from ``generator`` so that every method and
            every draw is scored on the same pairs.
        shard: ``(rank, world_size)`` of this process in a torch.distributed group: it scores
            chunks ``rank::world_size`` only, and the group gathers every chunk's figures, so
            each process returns all of them. Every process draws the descriptions of every
            chunk, so the figures are the ones one process would give.

    Returns:
        pairs (P, 2) dataset labels and acc (P,) float accuracies, P = len(classes) * (len - 1)
        or ``max_pairs`` if smaller, in the order of `ordered_pairs`.

    Raises:
        DataError: fewer than two classes, or a class with no rows of ``part``.
    """
    if len(classes) < 2:
        raise DataError(
            f"The pair protocol needs at least two classes, and this split part has "
            f"{len(classes)} ({', '.join(classes) or 'none'}). Give the split at least two "
            "validation and two unseen classes."
        )
    device = next(hypernet.parameters()).device
    labels = torch.tensor([dataset.index(c) for c in classes], dtype=torch.long)
    features = dataset.features.to(device)
    linear = is_linear(hypernet)
    # A class without rows is refused: a pair with it would be scored on its other class's
    # rows alone, which says nothing of telling the two apart.
    rows = dataset.scored_rows(classes, part, "their pairs")
    layout = ClassRows.build(rows, features, linear)
    local = ordered_pairs(len(classes))
    if max_pairs is not None and max_pairs < len(local):
        picked = torch.randperm(len(local), generator=torch.Generator().manual_seed(subset_seed))
        local = local[picked[:max_pairs].sort().values]
    pairs = labels[local]
    rank, world = shard
    accs: dict[int, torch.Tensor] = {}
    was_training = hypernet.training
    hypernet.eval()
    try:
        for index, start in enumerate(range(0, len(pairs), chunk)):
            pair_chunk = pairs[start : start + chunk]
            local_chunk = local[start : start + chunk]
            texts = bank.draw(pair_chunk, generator)
            if index % world != rank:
                continue  # another process's chunk; its draw is taken all the same
            params = hypernet(texts)
            if linear:
                correct = correct_linear(params, layout, local_chunk)
            else:
                correct = correct_generic(hypernet, params, layout, features, local_chunk)
            sizes = layout.counts[local_chunk].sum(1)
            accs[index] = (correct.double() / sizes.double()).float()
    finally:
        hypernet.train(was_training)
    if world > 1:
        import torch.distributed as dist

        shares: list[dict[int, torch.Tensor] | None] = [None] * world
        dist.all_gather_object(shares, {i: acc.cpu() for i, acc in accs.items()})
        accs = {i: acc for share in shares for i, acc in (share or {}).items()}
    return pairs, torch.cat([accs[i] for i in sorted(accs)]).to(device)


def validation_pair_accuracy(
    hypernet: Inducer,
    bank: Describer,
    dataset: ZeroShotDataset,
    seed: int,
    part: str = "all",
    shard: tuple[int, int] = (0, 1),
) -> Summary:
    """Mean +- SEM pair accuracy over the validation classes, with draws seeded by ``seed``.

    The one score that model selection uses: the trainer's best epoch and every baseline's
    hyperparameters are chosen on it, never on unseen classes. ``part`` is the rows scored
    (see `pair_accuracies`): 'test' when the validation classes' training rows were trained
    on (``train.val_classes: train``). ``shard``: as for `pair_accuracies`.
    """
    generator = torch.Generator().manual_seed(seed)
    _, acc = pair_accuracies(
        hypernet, bank, dataset, dataset.split.val, part, generator, shard=shard
    )
    return summarize(acc)
