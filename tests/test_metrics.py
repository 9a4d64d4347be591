"""Zero-shot metrics checked against figures computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from t2m_cli.scoring.metrics import (
    Summary,
    ausuc,
    gzsl_scores,
    harmonic_mean,
    mean_per_class_accuracy,
    per_class_accuracy,
    roc_auc,
    seen_unseen_curve,
    summarize,
    tune_calibration,
)


def test_per_class_differs_from_sample_accuracy_when_imbalanced():
    # Class 0: 9 samples, all right; class 1: 1 sample, wrong.
    target = torch.tensor([0] * 9 + [1])
    pred = torch.tensor([0] * 9 + [0])
    assert math.isclose(float((pred == target).double().mean()), 0.9)
    acc = per_class_accuracy(pred, target, torch.tensor([1, 0]))
    assert acc.tolist() == [0.0, 1.0]
    assert math.isclose(mean_per_class_accuracy(pred, target), 0.5)


def test_per_class_accuracy_rejects_a_class_without_samples():
    with pytest.raises(ValueError, match="without any sample"):
        per_class_accuracy(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([0, 1, 2]))


def test_harmonic_mean_by_hand():
    # 2 * 0.8 * 0.4 / 1.2 = 0.64 / 1.2 = 0.5333...
    assert math.isclose(harmonic_mean(0.8, 0.4), 0.64 / 1.2)
    assert math.isclose(harmonic_mean(0.5, 1.0), 2 / 3)


def test_summary_by_hand():
    s = summarize(torch.tensor([1.0, 2.0, 3.0, 6.0], dtype=torch.float64))
    # mean 3; squared deviations 4 + 1 + 0 + 9 = 14; sample var 14/3; sem = sqrt(14/3)/2.
    assert math.isclose(s.mean, 3.0)
    assert s.std is not None and math.isclose(s.std, math.sqrt(14 / 3))
    assert math.isclose(s.sem, math.sqrt(14 / 3) / 2)
    assert s.median == 2.5
    assert s.to_json() == {"mean": 3.0, "sem": s.sem, "n": 4, "median": 2.5, "std": s.std}
    # One value has no spread: its SEM and std are undefined (None, null in JSON), not 0.
    one = summarize(torch.tensor([0.3]))
    assert (one.sem, one.std, one.n, one.median) == (None, None, 1, pytest.approx(0.3))
    assert one.to_json() == {"mean": pytest.approx(0.3), "sem": None, "n": 1, "median": one.median}


def test_summary_positional_construction_still_works():
    s = Summary(0.5, 0.1, 3)
    assert s.median is None and s.to_json() == {"mean": 0.5, "sem": 0.1, "n": 3}


# Classes 0, 1 seen; 2, 3 unseen. Gap = best seen - best unseen score of each row:
#   row 0, class 0: [3, 0, 1, 0]      gap 2.0, right while c < 2 (else predicts 2)
#   row 1, class 1: [0, 2, 1.5, 0]    gap 0.5, right while c < 0.5 (else predicts 2)
#   row 2, class 2: [2, 0, 1, 0]      gap 1.0, right once c > 1 (else predicts 0)
#   row 3, class 3: [0, 1, 0, 0.5]    gap 0.5, right once c > 0.5 (else predicts 1)
SCORES = torch.tensor(
    [[3.0, 0.0, 1.0, 0.0], [0.0, 2.0, 1.5, 0.0], [2.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.5]]
)
TARGET = torch.tensor([0, 1, 2, 3])
SEEN_MASK = torch.tensor([True, True, False, False])
SEEN_ROWS = torch.tensor([True, True, False, False])


@pytest.mark.parametrize(
    ("c", "s", "u"),
    [(0.0, 1.0, 0.0), (0.75, 0.5, 0.5), (1.5, 0.5, 1.0), (3.0, 0.0, 1.0), (-5.0, 1.0, 0.0)],
)
def test_calibrated_stacking_by_hand(c, s, u):
    got = gzsl_scores(SCORES, TARGET, SEEN_MASK, SEEN_ROWS, calibration=c)
    assert got == pytest.approx((s, u, harmonic_mean(s, u)))


def test_tune_calibration_finds_the_constant_by_hand():
    # H is 0, 0.5, 2/3, 0 on the four intervals; the best is (1, 2), midpoint 1.5.
    c = tune_calibration(SCORES, TARGET, SEEN_MASK, SEEN_ROWS)
    assert c == 1.5
    assert gzsl_scores(SCORES, TARGET, SEEN_MASK, SEEN_ROWS, c)[2] == pytest.approx(2 / 3)
    grid = torch.tensor([0.0, 0.75, 1.5, 3.0])
    assert tune_calibration(SCORES, TARGET, SEEN_MASK, SEEN_ROWS, grid) == 1.5


def test_seen_unseen_curve_and_ausuc_by_hand():
    s, u = seen_unseen_curve(SCORES, TARGET, SEEN_MASK, SEEN_ROWS)
    assert s.tolist() == [1.0, 0.5, 0.5, 0.0]
    assert u.tolist() == [0.0, 0.5, 1.0, 1.0]
    # Trapezoids over U: 0.5 * (1 + 0.5) / 2 + 0.5 * (0.5 + 0.5) / 2 + 0 = 0.375 + 0.25.
    assert ausuc(s, u) == pytest.approx(0.625)
    s2, u2 = seen_unseen_curve(SCORES, TARGET, SEEN_MASK, SEEN_ROWS, n_points=2)
    assert (s2.tolist(), u2.tolist()) == ([1.0, 0.0], [0.0, 1.0])


def _split(n_rows: int, n_classes: int, n_seen: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    target = torch.arange(n_rows) % n_classes
    seen_mask = torch.arange(n_classes) < n_seen
    return g, target, seen_mask, seen_mask[target]


def test_ausuc_perfect_scorer_is_one():
    _, target, seen_mask, seen_rows = _split(60, 6, 3, 0)
    scores = torch.zeros(60, 6)
    scores[torch.arange(60), target] = 5.0
    s, u = seen_unseen_curve(scores, target, seen_mask, seen_rows)
    assert ausuc(s, u) == pytest.approx(1.0)
    assert gzsl_scores(scores, target, seen_mask, seen_rows, 0.0) == (1.0, 1.0, 1.0)


def test_ausuc_random_scorer_is_low():
    # Chance per-class accuracy within a half is 1/5, so the area is about 0.2 * 0.2 at best.
    areas = []
    for seed in range(5):
        g, target, seen_mask, seen_rows = _split(200, 10, 5, seed)
        scores = torch.randn(200, 10, generator=g)
        areas.append(ausuc(*seen_unseen_curve(scores, target, seen_mask, seen_rows)))
    assert max(areas) < 0.2
    assert sum(areas) / len(areas) < 0.1


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000))
def test_curve_agrees_with_gzsl_scores(seed):
    # Quarter-integer scores make tied gaps common and keep the arithmetic exact.
    g, target, seen_mask, seen_rows = _split(12, 5, 2, seed)
    scores = torch.randint(0, 6, (12, 5), generator=g).double() / 4
    s, u = seen_unseen_curve(scores, target, seen_mask, seen_rows)
    assert s[-1] == 0.0 and u[0] == 0.0
    assert bool((s[1:] <= s[:-1] + 1e-12).all()) and bool((u[1:] >= u[:-1] - 1e-12).all())
    h_curve = max(harmonic_mean(float(a), float(b)) for a, b in zip(s, u))
    c = tune_calibration(scores, target, seen_mask, seen_rows)
    assert gzsl_scores(scores, target, seen_mask, seen_rows, c)[2] == pytest.approx(h_curve)
    for k in range(-8, 9):
        got = gzsl_scores(scores, target, seen_mask, seen_rows, k / 4 + 1 / 8)
        assert got[2] <= h_curve + 1e-12
        assert any(
            got[:2] == pytest.approx((float(a), float(b))) for a, b in zip(s, u, strict=True)
        )
    assert 0.0 <= ausuc(s, u) <= 1.0


def test_roc_auc_extremes_and_ties():
    labels = torch.tensor([False, False, True, True])
    assert roc_auc(torch.tensor([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert roc_auc(torch.tensor([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert roc_auc(torch.ones(4), labels) == 0.5
    # Pairs (pos, neg): 0.5 vs 0.5 tie, 0.5 vs 0.1 win, 0.9 vs both win: (0.5 + 3) / 4.
    assert roc_auc(torch.tensor([0.5, 0.1, 0.5, 0.9]), labels) == 0.875
    with pytest.raises(ValueError, match="both"):
        roc_auc(torch.tensor([0.1, 0.2]), torch.tensor([True, True]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=2, max_size=30))
def test_roc_auc_equals_pair_counting(rows):
    labels = [b for _, b in rows]
    if all(labels) or not any(labels):
        return
    pos = [v for v, b in rows if b]
    neg = [v for v, b in rows if not b]
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    got = roc_auc(torch.tensor([float(v) for v, _ in rows]), torch.tensor(labels))
    assert got == pytest.approx(wins / (len(pos) * len(neg)))
