"""Metrics as pure functions of tensors.

Two families live here: summaries of per-pair accuracies (the paper's protocol: mean +- SEM over
pairs) and the wider zero-shot protocol (per-class accuracy, GZSL S/U/H with calibrated stacking,
the seen-unseen curve and its area, ROC AUC).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Summary:
    """Mean and standard error of the mean of a set of values, with median and std when known.

    ``sem`` and ``std`` are None for a single value: a spread of one value is undefined, and
    reading it as 0 would claim an exact figure. ``median`` and ``std`` come last with defaults
    so that ``Summary(mean, sem, n)`` still works.
    """

    mean: float
    sem: float | None
    n: int
    median: float | None = None
    std: float | None = None

    def to_json(self) -> dict[str, float | int | None]:
        # sem is always written (null for one value); median and std only where known.
        out: dict[str, float | int | None] = {"mean": self.mean, "sem": self.sem, "n": self.n}
        # Omitted rather than null so that readers of older reports see the same keys and types.
        if self.median is not None:
            out["median"] = self.median
        if self.std is not None:
            out["std"] = self.std
        return out


def summarize(values: torch.Tensor) -> Summary:
    """Mean +- SEM (sample standard deviation / sqrt(n)), median and sample std.

    SEM and std are None for a single value (the sample std divides by n - 1 = 0): one pair,
    class or attribute gives a mean with no error bar, shown without "+-" and written as null.
    The median of an even count is the mean of the two middle values (not torch.median's lower
    one).

    Args:
        values: (n,) values, n >= 1.
    """
    v = values.detach().double().flatten().cpu()
    n = int(v.numel())
    if n == 0:
        raise ValueError("summarize() needs at least one value")
    std = float(v.std(unbiased=True)) if n > 1 else None
    return Summary(
        mean=float(v.mean()),
        sem=None if std is None else std / math.sqrt(n),
        n=n,
        median=float(torch.quantile(v, 0.5)),
        std=std,
    )


def running_counter_accuracies(correct: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """What the original evaluation reported as each pair's accuracy: a running average.

    Its correct / total counters were never reset between pairs, so pair i got
    ``sum(correct[:i+1]) / sum(total[:i+1])``. Kept only to show the defect next to the true
    per-pair accuracies that t2m reports: the running values are smoothed towards the mean, so
    their SEM is understated.

    Args:
        correct: (P,) correct predictions of each pair, in evaluation order.
        total: (P,) rows scored for each pair.
    """
    return correct.double().cumsum(0) / total.double().cumsum(0)


def harmonic_mean(seen: float, unseen: float) -> float:
    """H = 2SU / (S + U), 0 when both are 0."""
    return 0.0 if seen + unseen == 0 else 2 * seen * unseen / (seen + unseen)


def per_class_accuracy(
    pred: torch.Tensor, target: torch.Tensor, classes: torch.Tensor
) -> torch.Tensor:
    """Top-1 accuracy of each listed class over its own samples.

    Args:
        pred: (N,) predicted class ids.
        target: (N,) true class ids.
        classes: (C,) the class ids to report, in the order wanted.

    Returns:
        (C,) float64 accuracies in [0, 1].

    Raises:
        ValueError: if shapes disagree or a listed class has no sample.
    """
    if pred.shape != target.shape or pred.dim() != 1:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must be (N,)")
    hit = (pred == target).double()
    # (C, N) membership; a dense mask keeps this a pure tensor op without a Python loop.
    member = (target.unsqueeze(0) == classes.reshape(-1, 1)).double()
    count = member.sum(dim=1)
    if bool((count == 0).any()):
        missing = classes.reshape(-1)[count == 0].tolist()
        raise ValueError(f"classes without any sample: {missing}")
    return (member @ hit) / count


def mean_per_class_accuracy(
    pred: torch.Tensor, target: torch.Tensor, classes: torch.Tensor | None = None
) -> float:
    """The ZSL metric: mean over classes of per-class top-1 accuracy (not a mean over samples).

    Args:
        pred: (N,) predicted class ids.
        target: (N,) true class ids.
        classes: (C,) class ids to average over; default the classes present in ``target``.

    Returns:
        Mean per-class accuracy in [0, 1].
    """
    if classes is None:
        classes = torch.unique(target)
    return float(per_class_accuracy(pred, target, classes).mean())


def _check_gzsl(
    scores: torch.Tensor, target: torch.Tensor, seen_mask: torch.Tensor, seen_rows: torch.Tensor
) -> None:
    n, c = scores.shape
    if target.shape != (n,) or seen_rows.shape != (n,) or seen_mask.shape != (c,):
        raise ValueError(
            f"shapes: scores {tuple(scores.shape)}, target {tuple(target.shape)}, "
            f"seen_mask {tuple(seen_mask.shape)}, seen_rows {tuple(seen_rows.shape)}; "
            "want (N, C), (N,), (C,), (N,)"
        )
    if not bool(seen_mask.any()) or bool(seen_mask.all()):
        raise ValueError("GZSL needs at least one seen and one unseen class")
    if not bool(seen_rows.any()) or bool(seen_rows.all()):
        raise ValueError("GZSL needs at least one seen-class row and one unseen-class row")


def gzsl_scores(
    scores: torch.Tensor,
    target: torch.Tensor,
    seen_mask: torch.Tensor,
    seen_rows: torch.Tensor,
    calibration: float = 0.0,
) -> tuple[float, float, float]:
    """GZSL seen accuracy S, unseen accuracy U and their harmonic mean H.

    Calibrated stacking: ``calibration`` is subtracted from the scores of seen classes before the
    argmax over all classes, so a positive constant moves predictions towards unseen classes.

    Args:
        scores: (N, C) class scores, higher is more likely.
        target: (N,) true class ids in [0, C).
        seen_mask: (C,) bool, True for seen classes.
        seen_rows: (N,) bool, True for rows whose true class is seen.
        calibration: constant subtracted from seen-class scores.

    Returns:
        (S, U, H): mean per-class accuracy over seen rows, over unseen rows, and H = 2SU/(S+U).
    """
    _check_gzsl(scores, target, seen_mask, seen_rows)
    # float64 so that a constant tuned by tune_calibration lands on the same side of each gap.
    shifted = scores.double() - calibration * seen_mask.double()
    pred = shifted.argmax(dim=1)
    s = mean_per_class_accuracy(pred[seen_rows], target[seen_rows])
    u = mean_per_class_accuracy(pred[~seen_rows], target[~seen_rows])
    return s, u, harmonic_mean(s, u)


def _exact_curve(
    scores: torch.Tensor, target: torch.Tensor, seen_mask: torch.Tensor, seen_rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The whole seen-unseen curve, one point per interval of the calibration constant.

    A row's prediction depends on the constant c only through gap = best seen score - best unseen
    score: it is the best seen class while c < gap and the best unseen class once c > gap. So the
    curve changes only at the distinct gaps, and S and U are sums of per-row terms weighted by
    1 / (classes x class size), which a cumulative sum over rows sorted by gap gives in one pass.

    Returns:
        (S, U, c), each (K + 1,) float64 for K distinct gaps: point 0 has every row predicted seen
        (c = -inf side), point K every row predicted unseen; c holds a finite constant strictly
        inside each interval (midpoints between gaps, gap -/+ 1 at the ends).
    """
    _check_gzsl(scores, target, seen_mask, seen_rows)
    x = scores.double()
    neg_inf = torch.tensor(-math.inf, dtype=torch.float64)
    only_seen = torch.where(seen_mask, x, neg_inf)
    only_unseen = torch.where(seen_mask, neg_inf, x)
    # argmax, not max(dim): it promises the first of tied indices, as gzsl_scores' argmax does.
    seen_pred = only_seen.argmax(dim=1)
    unseen_pred = only_unseen.argmax(dim=1)
    best_seen = only_seen.gather(1, seen_pred.unsqueeze(1)).squeeze(1)
    best_unseen = only_unseen.gather(1, unseen_pred.unsqueeze(1)).squeeze(1)
    gap = best_seen - best_unseen
    hit_if_seen = (seen_pred == target).double()
    hit_if_unseen = (unseen_pred == target).double()

    # Weight of a row in its half's mean per-class accuracy: 1 / (#classes in half * class size).
    weight = torch.zeros_like(gap)
    for rows in (seen_rows, ~seen_rows):
        _, inverse, counts = torch.unique(target[rows], return_inverse=True, return_counts=True)
        weight[rows] = 1.0 / (counts.numel() * counts[inverse].double())

    order = torch.argsort(gap)
    g = gap[order]
    delta = (weight * (hit_if_unseen - hit_if_seen))[order]
    in_seen = seen_rows[order]
    # Raising c past a gap turns every row with that gap from its seen to its unseen prediction.
    ds = torch.cumsum(torch.where(in_seen, delta, 0.0), 0)
    du = torch.cumsum(torch.where(in_seen, 0.0, delta), 0)
    uniq, counts = torch.unique_consecutive(g, return_counts=True)
    last = torch.cumsum(counts, 0) - 1
    s0 = float((weight * hit_if_seen)[seen_rows].sum())
    u0 = float((weight * hit_if_seen)[~seen_rows].sum())
    zero = torch.zeros(1, dtype=torch.float64)
    s = s0 + torch.cat([zero, ds[last]])
    u = u0 + torch.cat([zero, du[last]])
    # Rounding can leave -1e-17 where the true value is 0; the metric lives in [0, 1].
    s, u = s.clamp(0.0, 1.0), u.clamp(0.0, 1.0)
    mids = (uniq[:-1] + uniq[1:]) / 2
    c = torch.cat([uniq[:1] - 1.0, mids, uniq[-1:] + 1.0])
    return s, u, c


def tune_calibration(
    scores: torch.Tensor,
    target: torch.Tensor,
    seen_mask: torch.Tensor,
    seen_rows: torch.Tensor,
    candidates: torch.Tensor | None = None,
) -> float:
    """The calibrated-stacking constant that maximises H on the data given.

    The caller must pass validation data only (e.g. held-out seen images and validation classes);
    tuning on the test split would report an optimistic H.

    Args:
        scores: (N, C) class scores.
        target: (N,) true class ids.
        seen_mask: (C,) bool, True for seen classes.
        seen_rows: (N,) bool, True for rows whose true class is seen.
        candidates: (K,) constants to try; default every distinct outcome, each represented by
            the midpoint of its interval of constants (the widest margin to either neighbour).

    Returns:
        The best constant; among ties, the smallest.
    """
    if candidates is None:
        s, u, c = _exact_curve(scores, target, seen_mask, seen_rows)
        h = torch.where(s + u > 0, 2 * s * u / (s + u).clamp_min(1e-300), 0.0)
        return float(c[int(torch.argmax(h))])
    if candidates.numel() == 0:
        raise ValueError("candidates must not be empty")
    values = sorted(float(v) for v in candidates.flatten())
    best_h, best_c = -1.0, values[0]
    for cand in values:
        h_c = gzsl_scores(scores, target, seen_mask, seen_rows, cand)[2]
        if h_c > best_h:
            best_h, best_c = h_c, cand
    return best_c


def seen_unseen_curve(
    scores: torch.Tensor,
    target: torch.Tensor,
    seen_mask: torch.Tensor,
    seen_rows: torch.Tensor,
    n_points: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seen and unseen accuracy as the calibration constant sweeps from -inf to +inf.

    The curve is exact: one point per distinct outcome, found from the gaps between each row's
    best seen and best unseen score. It starts with every row predicted seen (U = 0) and ends with
    every row predicted unseen (S = 0); S never rises and U never falls along it.

    Args:
        scores: (N, C) class scores.
        target: (N,) true class ids.
        seen_mask: (C,) bool, True for seen classes.
        seen_rows: (N,) bool, True for rows whose true class is seen.
        n_points: if set (>= 2) and smaller than the exact curve, keep this many points evenly
            spaced along it, endpoints included; the area is then a lower-resolution estimate.

    Returns:
        (S, U), each (P,) float64, ordered by increasing calibration constant.
    """
    s, u, _ = _exact_curve(scores, target, seen_mask, seen_rows)
    if n_points is not None:
        if n_points < 2:
            raise ValueError("n_points must be at least 2 (the two endpoints)")
        if n_points < s.numel():
            idx = torch.linspace(0, s.numel() - 1, n_points).round().long()
            s, u = s[idx], u[idx]
    return s, u


def ausuc(s: torch.Tensor, u: torch.Tensor) -> float:
    """Area under the seen-unseen curve: trapezoids of S over U.

    Args:
        s: (P,) seen accuracies in [0, 1].
        u: (P,) unseen accuracies in [0, 1], paired with ``s``.

    Returns:
        The area in [0, 1]; 0 for fewer than two points.
    """
    if s.shape != u.shape or s.dim() != 1:
        raise ValueError(f"s {tuple(s.shape)} and u {tuple(u.shape)} must both be (P,)")
    if s.numel() < 2:
        return 0.0
    s, u = s.double(), u.double()
    # Sort by U, and at equal U by S falling, which is the order the curve is traced in.
    order = torch.argsort(-s, stable=True)
    order = order[torch.argsort(u[order], stable=True)]
    s, u = s[order], u[order]
    return float(torch.trapezoid(s, u))


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """ROC AUC from ranks (Mann-Whitney U), ties between a positive and a negative counted half.

    Args:
        scores: (N,) scores, higher means more likely positive.
        labels: (N,) bool, True for positives.

    Returns:
        P(score of a random positive > score of a random negative) + P(tie) / 2.

    Raises:
        ValueError: if shapes disagree or either class is absent.
    """
    if scores.shape != labels.shape or scores.dim() != 1:
        raise ValueError(f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} != (N,)")
    labels = labels.bool()
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc needs both positive and negative labels")
    _, inverse, counts = torch.unique(scores.double(), return_inverse=True, return_counts=True)
    # Average 1-based rank of each tie group: ranks before it plus the middle of the group.
    before = torch.cumsum(counts, 0) - counts
    avg_rank = before.double() + (counts.double() + 1) / 2
    rank_sum = float(avg_rank[inverse][labels].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
