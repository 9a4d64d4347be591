"""The pair protocol and its metrics."""

from __future__ import annotations

import math

import pytest
import torch

from t2m_cli.data.dataset import Split, ZeroShotDataset, load_dataset
from t2m_cli.data.texts import TextBank
from t2m_cli.encoders.text import HashingEncoder
from t2m_cli.errors import DataError
from t2m_cli.models.hypernet import EVHypernet, build_hypernet, linear_target
from t2m_cli.scoring import pairs as pairs_module
from t2m_cli.scoring.metrics import harmonic_mean, running_counter_accuracies, summarize
from t2m_cli.scoring.pairs import (
    ClassRows,
    is_linear,
    ordered_pairs,
    pair_accuracies,
    pair_index,
)


def test_summary_mean_and_sem_by_hand():
    s = summarize(torch.tensor([0.5, 0.7, 0.9, 1.0], dtype=torch.float64))
    assert math.isclose(s.mean, 0.775)
    std = math.sqrt(sum((v - 0.775) ** 2 for v in (0.5, 0.7, 0.9, 1.0)) / 3)
    assert math.isclose(s.sem, std / 2)
    assert s.n == 4
    assert summarize(torch.tensor([0.3])).sem is None  # one pair: no spread to report


def test_harmonic_mean():
    assert math.isclose(harmonic_mean(0.9, 0.6), 2 * 0.9 * 0.6 / 1.5)
    assert harmonic_mean(0.0, 0.0) == 0.0


def test_ordered_pairs():
    pairs = ordered_pairs(4)
    assert pairs.shape == (12, 2)
    assert len({tuple(p) for p in pairs.tolist()}) == 12
    assert all(a != b for a, b in pairs.tolist())


class _Oracle(EVHypernet):
    """Emits weights that score x by its distance to fixed per-class means (by text)."""

    def __init__(self, means: torch.Tensor, bank: TextBank) -> None:
        super().__init__(bank.dim, means.shape[1], hidden=4)
        self.means, self.bank = means, bank

    def forward(self, text):
        # Find which class each text row belongs to, then emit the nearest-mean classifier.
        sims = text @ self.bank.embeddings.T
        rows = sims.argmax(-1)
        owner = torch.tensor(
            [
                next(c for c, o in enumerate(self.bank.options) if int(r) in o)
                for r in rows.flatten()
            ]
        ).reshape(rows.shape)
        mu = self.means[owner]
        return {"weight": 2 * mu, "bias": -(mu**2).sum(-1)}


def test_pair_accuracy_is_per_pair_and_matches_a_direct_count(tiny_root):
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    bank = TextBank.build(ds.classes, ds.descriptions, "names", HashingEncoder(64))
    means = torch.stack([ds.features[ds.labels == c].mean(0) for c in range(len(ds.classes))])
    hn = _Oracle(means, bank)
    classes = ds.split.unseen
    pairs, acc = pair_accuracies(hn, bank, ds, classes, "all", torch.Generator(), chunk=2)
    assert acc.shape == (len(classes) * (len(classes) - 1),)
    for (a, b), value in zip(pairs.tolist(), acc.tolist()):
        x = ds.features[(ds.labels == a) | (ds.labels == b)]
        y = ds.labels[(ds.labels == a) | (ds.labels == b)]
        d_a = ((x - means[a]) ** 2).sum(1)
        d_b = ((x - means[b]) ** 2).sum(1)
        pred = torch.where(d_a <= d_b, a, b)
        assert math.isclose(value, float((pred == y).float().mean()), rel_tol=1e-6)


def test_running_counters_of_the_original_differ_from_true_per_pair_accuracy(tiny_root):
    # By hand: pairs at 100%, 50%, 100%, 50% of 10 rows each.
    correct, total = torch.tensor([10, 5, 10, 5]), torch.full((4,), 10)
    true = correct / total
    running = running_counter_accuracies(correct, total)
    assert torch.allclose(running, torch.tensor([1.0, 0.75, 25 / 30, 0.75], dtype=torch.float64))
    assert summarize(true).sem == pytest.approx(0.5 / 3**0.5 / 2)
    assert summarize(running).sem < summarize(true).sem / 2  # understated

    # On real pairs (an untrained EV, so accuracies vary): t2m reports each pair's own count.
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    bank = TextBank.build(ds.classes, ds.descriptions, "names", HashingEncoder(64))
    torch.manual_seed(0)
    hn = build_hypernet("EV", text_dim=64, feature_dim=ds.feature_dim, hidden=8, k=2)
    pairs, acc = pair_accuracies(hn, bank, ds, ds.split.seen, "all", torch.Generator())
    sizes = torch.tensor(
        [int(((ds.labels == a) | (ds.labels == b)).sum()) for a, b in pairs.tolist()]
    )
    running = running_counter_accuracies((acc.double() * sizes).round(), sizes)
    assert running[0] == pytest.approx(float(acc[0]))
    assert not torch.allclose(running.float(), acc, atol=1e-3)
    assert summarize(running).sem < summarize(acc).sem


def test_a_random_subset_of_pairs_is_the_same_for_every_draw_and_method(tiny_root):
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    bank = TextBank.build(ds.classes, ds.descriptions, "descriptions", HashingEncoder(64))
    means = torch.stack([ds.features[ds.labels == c].mean(0) for c in range(len(ds.classes))])
    hn = _Oracle(means, bank)
    everything, all_acc = pair_accuracies(hn, bank, ds, ds.split.seen, "all", torch.Generator())
    g = torch.Generator().manual_seed(1)
    sub, acc = pair_accuracies(hn, bank, ds, ds.split.seen, "all", g, max_pairs=10, subset_seed=4)
    assert sub.shape == (10, 2) and acc.shape == (10,)
    assert len({tuple(p) for p in sub.tolist()}) == 10
    rows = [everything.tolist().index(p) for p in sub.tolist()]
    assert rows == sorted(rows)  # kept in ordered-pair order
    again, _ = pair_accuracies(hn, bank, ds, ds.split.seen, "all", g, max_pairs=10, subset_seed=4)
    assert torch.equal(again, sub)
    other, _ = pair_accuracies(hn, bank, ds, ds.split.seen, "all", g, max_pairs=10, subset_seed=5)
    assert not torch.equal(other, sub)
    # The oracle ignores draws, so the subset's accuracies are those pairs' own.
    assert torch.equal(acc, all_acc[rows])
    big, _ = pair_accuracies(hn, bank, ds, ds.split.seen, "all", g, max_pairs=10**6)
    assert torch.equal(big, everything)


def test_held_out_rows_only_for_part_test(tiny_root):
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    c = ds.split.seen[0]
    test = ds.class_rows(c, "test")
    train = ds.class_rows(c, "train")
    assert set(test.tolist()).isdisjoint(train.tolist())
    assert len(test) + len(train) == len(ds.class_rows(c, "all"))
    assert bool(ds.is_test[test].all())


# --- Batched scoring: the vectorised indices and the linear fast path ---------------------------


def _loop_index(rows, local):
    """The per-pair loop the vectorised `pair_index` replaced, kept as its reference."""
    sizes = torch.tensor([len(rows[a]) + len(rows[b]) for a, b in local.tolist()])
    width = int(sizes.max())
    idx = torch.zeros(len(local), width, dtype=torch.long)
    y = torch.full((len(local), width), -1, dtype=torch.long)
    for t, (a, b) in enumerate(local.tolist()):
        both = torch.cat([rows[a], rows[b]])
        idx[t, : len(both)] = both
        y[t, : len(rows[a])] = 0
        y[t, len(rows[a]) : len(both)] = 1
    return idx, y, sizes


def _uneven_dataset(dim=12, n_classes=7, seed=0):
    """Classes of 0 to 9 rows in shuffled order (rows of a class not contiguous), some test."""
    g = torch.Generator().manual_seed(seed)
    counts = [5, 9, 1, 0, 7, 3, 8][:n_classes]
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=g)]
    means = 3 * torch.randn(n_classes, dim, generator=g)
    features = means[labels] + torch.randn(len(labels), dim, generator=g)
    is_test = torch.rand(len(labels), generator=g) < 0.3
    classes = [f"c{i}" for i in range(n_classes)]
    split = Split((), (), tuple(classes))
    return ZeroShotDataset("uneven", classes, features, labels, is_test, split, {})


def _bank(classes, dim=10, per_class=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(len(classes) * per_class, dim, generator=g)
    options = [list(range(c * per_class, (c + 1) * per_class)) for c in range(len(classes))]
    return TextBank(list(classes), emb, options)


class _Wrapped(torch.nn.Module):
    """The same model behind a target of its own, which only the generic path can score."""

    hn_type = "wrapped"

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, text):
        return self.inner(text)

    def target(self, params, x):
        return self.inner.target(params, x)


def test_vectorised_pair_index_equals_the_per_pair_loop():
    ds = _uneven_dataset()
    classes = ["c6", "c2", "c0", "c3", "c1", "c5"]  # not in label order; c3 has no rows
    for part in ("all", "train", "test"):
        rows = [ds.class_rows(c, part) for c in classes]
        layout = ClassRows.build(rows, ds.features)
        local = ordered_pairs(len(classes))
        for chunk in (local[:1], local[3:11], local):
            idx, y, sizes = pair_index(layout, chunk)
            ref_idx, ref_y, ref_sizes = _loop_index(rows, chunk)
            assert torch.equal(idx, ref_idx)
            assert torch.equal(y, ref_y)
            assert torch.equal(sizes, ref_sizes)


def test_layout_views_contiguous_classes_and_copies_the_rest():
    features = torch.arange(20.0).reshape(10, 2)
    rows = [torch.tensor([4, 5, 6]), torch.tensor([0, 1]), torch.tensor([], dtype=torch.long)]
    layout = ClassRows.build(rows, features)
    assert layout.source is features
    assert layout.starts[:2].tolist() == [4, 0]
    gappy = ClassRows.build([torch.tensor([1, 3]), torch.tensor([2])], features)
    assert torch.equal(gappy.source, features[[1, 3, 2]])
    assert gappy.starts.tolist() == [0, 2]
    assert ClassRows.build([torch.tensor([1, 3])], features, copy=False).source is features


def test_only_a_known_linear_target_takes_the_fast_path():
    ev = build_hypernet("EV", text_dim=4, feature_dim=3, hidden=5)
    assert is_linear(ev)
    assert not is_linear(build_hypernet("IVEV", text_dim=4, feature_dim=3, hidden=5))
    assert not is_linear(_Wrapped(ev))

    class Declared(_Wrapped):
        target = staticmethod(linear_target)

    assert is_linear(Declared(ev))


@pytest.mark.parametrize("part", ["all", "train", "test"])
@pytest.mark.parametrize("chunk", [1, 5, 256])
def test_linear_fast_path_equals_the_generic_path(part, chunk):
    ds = _uneven_dataset()
    bank = _bank(ds.classes)
    torch.manual_seed(0)
    hn = build_hypernet("EV", text_dim=bank.dim, feature_dim=ds.feature_dim, hidden=8)
    order = ["c6", "c2", "c0", "c3", "c1", "c5", "c4"]
    # Not in label order, of uneven sizes; a class with no rows in the part cannot be scored.
    classes = [c for c in order if len(ds.class_rows(c, part))]
    assert len(classes) >= 4
    assert is_linear(hn) and not is_linear(_Wrapped(hn))
    fast = pair_accuracies(hn, bank, ds, classes, part, torch.Generator().manual_seed(3), chunk)
    slow = pair_accuracies(
        _Wrapped(hn), bank, ds, classes, part, torch.Generator().manual_seed(3), chunk
    )
    assert torch.equal(fast[0], slow[0])
    torch.testing.assert_close(fast[1], slow[1], rtol=0, atol=0)
    assert bool(((fast[1] >= 0) & (fast[1] <= 1)).all())


@pytest.mark.parametrize(("part", "words"), [("all", "no rows"), ("test", "no held-out rows")])
def test_a_class_without_rows_to_score_is_refused(part, words):
    """A pair with one empty class would be scored on its partner's rows alone."""
    ds = _uneven_dataset()
    bank = _bank(ds.classes)
    hn = build_hypernet("EV", text_dim=bank.dim, feature_dim=ds.feature_dim, hidden=8)
    empty = [c for c in ds.classes if not len(ds.class_rows(c, part))]
    assert "c3" in empty
    with pytest.raises(DataError, match=rf"Classes \[.*'c3'.*\] of dataset 'uneven' have {words}"):
        pair_accuracies(hn, bank, ds, ds.classes, part, torch.Generator())


def test_ties_go_to_the_first_class_on_both_paths():
    """An all-zero classifier ties everywhere: argmax picks class a, so acc = n_a / (n_a + n_b)."""
    ds = _uneven_dataset()
    bank = _bank(ds.classes)
    hn = build_hypernet("EV", text_dim=bank.dim, feature_dim=ds.feature_dim, hidden=8)
    for p in hn.parameters():
        torch.nn.init.zeros_(p)
    classes = ["c0", "c1", "c2", "c4"]
    n = {c: len(ds.class_rows(c)) for c in classes}
    for model in (hn, _Wrapped(hn)):
        pairs, acc = pair_accuracies(model, bank, ds, classes, "all", torch.Generator(), chunk=4)
        for (a, b), value in zip(pairs.tolist(), acc.tolist()):
            na, nb = n[ds.classes[a]], n[ds.classes[b]]
            assert math.isclose(value, na / (na + nb), rel_tol=1e-6)


def test_scoring_a_chunk_does_not_copy_features_per_pair(monkeypatch):
    """The linear path never gathers a (T, n, D) batch: the generic gather is not called."""
    ds = _uneven_dataset()
    bank = _bank(ds.classes)
    hn = build_hypernet("EV", text_dim=bank.dim, feature_dim=ds.feature_dim, hidden=8)

    def refuse(*args, **kwargs):
        raise AssertionError("the linear path gathered features")

    monkeypatch.setattr(pairs_module, "correct_generic", refuse)
    classes = [c for c in ds.classes if c != "c3"]  # c3 has no rows
    pairs, acc = pair_accuracies(hn, bank, ds, classes, "all", torch.Generator(), chunk=8)
    assert len(acc) == len(pairs) == 6 * 5
    assert not bool(torch.isnan(acc).any())


def test_generator_is_consumed_one_draw_per_chunk_in_pair_order():
    ds = _uneven_dataset()
    bank = _bank(ds.classes)
    hn = build_hypernet("EV", text_dim=bank.dim, feature_dim=ds.feature_dim, hidden=8)
    generator = torch.Generator().manual_seed(5)
    classes = [c for c in ds.classes if c != "c3"]  # c3 has no rows
    pair_accuracies(hn, bank, ds, classes, "all", generator, chunk=10)
    replay = torch.Generator().manual_seed(5)
    labels = torch.tensor([ds.index(c) for c in classes])[ordered_pairs(len(classes))]
    for start in range(0, len(labels), 10):
        bank.draw(labels[start : start + 10], replay)
    assert torch.equal(generator.get_state(), replay.get_state())
