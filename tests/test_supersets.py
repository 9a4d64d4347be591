"""The super-set protocol: one single-logit classifier per attribute, scored by ROC AUC."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from t2m_cli.data.dataset import Split, ZeroShotDataset, load_dataset
from t2m_cli.encoders.text import HashingEncoder
from t2m_cli.errors import DataError, UserInputError
from t2m_cli.evaluation.protocol import PAIR_PARTS
from t2m_cli.evaluation.supersets import supersets
from t2m_cli.models.hypernet import build_hypernet, linear_target
from t2m_cli.scoring.metrics import harmonic_mean, roc_auc
from t2m_cli.scoring.supersets import SUPERSET_PARTS, superset_aucs

# Attribute texts -> unit directions of the 2-D feature space the hand-made datasets use.
DIRECTIONS = {"stripes": [1.0, 0.0], "everywhere": [0.0, 1.0]}


class Probe(nn.Module):
    """Emits the one-logit classifier ``sign * x . text`` for a one-description set."""

    hn_type = "probe"
    fixed_k = None

    def __init__(self, sign: float = 1.0) -> None:
        super().__init__()
        self.sign = sign
        self.calls: list[tuple[int, ...]] = []
        self.unused = nn.Parameter(torch.zeros(1))  # gives the protocol a device and dtype

    def forward(self, text: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls.append(tuple(text.shape))
        return {"weight": self.sign * text, "bias": torch.zeros(text.shape[:2])}

    def target(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return linear_target(params, x)


class LookupEncoder:
    """Embeds a text by the direction of the attribute it names; records every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        out = []
        for text in texts:
            match = [v for k, v in DIRECTIONS.items() if k in text]
            out.append(match[0] if match else [0.0, 0.0])
        return torch.tensor(out)


def make_dataset(
    rows: dict[str, list[tuple[float, bool]]],
    attributes: dict[str, list[str]],
    split: Split,
) -> ZeroShotDataset:
    """Rows given as (stripes coordinate, is_test); the second coordinate is always 1."""
    classes = list(rows)
    feats, labels, is_test = [], [], []
    for c, name in enumerate(classes):
        for value, test in rows[name]:
            feats.append([value, 1.0])
            labels.append(c)
            is_test.append(test)
    return ZeroShotDataset(
        name="hand",
        classes=classes,
        features=torch.tensor(feats),
        labels=torch.tensor(labels),
        is_test=torch.tensor(is_test),
        split=split,
        descriptions={c: [c] for c in classes},
        attributes=attributes,
    )


SPLIT = Split(seen=("s1", "s2"), val=("v1", "v2"), unseen=("u1", "u2"))
ATTRS = {
    "s1": ["everywhere", "stripes"],
    "s2": ["everywhere"],
    "v1": ["everywhere", "stripes"],
    "v2": ["everywhere"],
    "u1": ["everywhere", "stripes"],
    "u2": ["everywhere"],
}


def separable() -> ZeroShotDataset:
    """Striped classes have a large first coordinate, the others a small one."""
    rows = {
        "s1": [(4.0, False), (5.0, True), (6.0, True)],
        "s2": [(-4.0, False), (-5.0, True), (-6.0, True)],
        "v1": [(3.0, False), (2.0, True)],
        "v2": [(-3.0, False), (-2.0, True)],
        "u1": [(1.0, False), (2.0, False)],
        "u2": [(-1.0, False), (-2.0, False)],
    }
    return make_dataset(rows, ATTRS, SPLIT)


def hand_computed() -> ZeroShotDataset:
    """Per part, AUCs worked out by hand in the tests below."""
    rows = {
        # Seen scores the held-out rows only: positives {5}, negatives {4} -> 1.0. The training
        # rows (0 and 9) alone would give 0.0.
        "s1": [(0.0, False), (5.0, True)],
        "s2": [(9.0, False), (4.0, True)],
        # Val scores all rows: positives {5, -1}, negatives {0, 0}: 5 beats both zeros, -1
        # neither -> 2 of 4 pairs -> 0.5 (test rows alone: 0.0, train rows alone: 1.0).
        "v1": [(5.0, False), (-1.0, True)],
        "v2": [(0.0, False), (0.0, True)],
        # Unseen: positives {3, 1}, negatives {2, 0}: 3 > 2, 3 > 0, 1 < 2, 1 > 0 -> 0.75.
        "u1": [(3.0, False), (1.0, True)],
        "u2": [(2.0, True), (0.0, False)],
    }
    return make_dataset(rows, ATTRS, SPLIT)


def test_parts_are_the_pair_protocols():
    assert SUPERSET_PARTS == PAIR_PARTS


def test_a_classifier_along_the_attribute_scores_auc_one():
    result = supersets(Probe(), LookupEncoder(), separable())
    for part in ("seen", "val", "unseen"):
        assert result["per_attribute"][part] == {"stripes": 1.0}
        assert result[part].mean == 1.0 and result[part].n == 1
    assert result["H"] == 1.0


def test_the_reversed_sign_scores_auc_zero():
    result = supersets(Probe(sign=-1.0), LookupEncoder(), separable())
    for part in ("seen", "val", "unseen"):
        assert result["per_attribute"][part] == {"stripes": 0.0}
    assert result["H"] == 0.0


def test_hand_computed_aucs_through_the_whole_protocol():
    result = supersets(Probe(), LookupEncoder(), hand_computed())
    assert result["per_attribute"]["seen"] == {"stripes": 1.0}
    assert math.isclose(result["per_attribute"]["val"]["stripes"], 0.5)
    assert math.isclose(result["per_attribute"]["unseen"]["stripes"], 0.75)
    assert math.isclose(result["H"], harmonic_mean(1.0, 0.75))
    assert result["unseen"].sem is None  # one attribute: no spread to report


def test_an_attribute_every_class_of_a_part_has_is_skipped():
    # "everywhere" is held by every class, so no part can score it.
    result = supersets(Probe(), LookupEncoder(), separable())
    for part in ("seen", "val", "unseen"):
        assert "everywhere" not in result["per_attribute"][part]
    ds = separable()
    ds.attributes = {**ATTRS, "v2": ["everywhere", "stripes"]}  # all val classes striped
    with pytest.raises(DataError, match="'val'"):
        supersets(Probe(), LookupEncoder(), ds)


def test_an_attribute_no_class_of_a_part_has_is_skipped():
    ds = separable()
    texts = LookupEncoder().encode(["stripes", "missing"])
    aucs = superset_aucs(Probe(), texts, ["stripes", "missing"], ds, SPLIT.seen, "test")
    assert aucs == {"stripes": 1.0}


def test_rows_scored_per_part_are_the_stated_ones():
    base = supersets(Probe(), LookupEncoder(), hand_computed())["per_attribute"]
    ds = hand_computed()
    g = torch.Generator().manual_seed(0)
    # Scramble the unseen and validation rows, and the seen classes' training rows.
    for name in (*SPLIT.unseen, *SPLIT.val):
        rows = ds.class_rows(name, "all")
        ds.features[rows] = torch.randn(len(rows), 2, generator=g)
    for name in SPLIT.seen:
        rows = ds.class_rows(name, "train")
        ds.features[rows] = torch.randn(len(rows), 2, generator=g)
    result = supersets(Probe(), LookupEncoder(), ds)
    assert result["per_attribute"]["seen"] == base["seen"]
    # And scrambling only the val training rows changes val, which uses all rows.
    ds = hand_computed()
    ds.features[ds.class_rows("v1", "train")] = torch.tensor([[-9.0, 1.0]])
    assert supersets(Probe(), LookupEncoder(), ds)["per_attribute"]["val"]["stripes"] == 0.0


def test_the_template_reaches_the_encoder_in_one_call():
    encoder = LookupEncoder()
    ds = separable()
    ds.attributes = {**ATTRS, "s2": ["everywhere", "ball_part"]}
    supersets(Probe(), encoder, ds, template="a shape with {}")
    assert encoder.calls == [
        ["a shape with ball part", "a shape with everywhere", "a shape with stripes"]
    ]


def test_a_template_without_a_placeholder_is_refused():
    with pytest.raises(UserInputError, match="template"):
        supersets(Probe(), LookupEncoder(), separable(), template="a shape")


def test_each_description_is_a_set_of_one_and_chunks_give_the_same_result():
    ds = separable()
    names = ["everywhere", "stripes", "other"]
    ds.attributes = {**ATTRS, "s1": ["everywhere", "stripes", "other"], "u1": ["stripes", "other"]}
    probe = Probe()
    texts = torch.randn(3, 2, generator=torch.Generator().manual_seed(1))
    whole = superset_aucs(probe, texts, names, ds, SPLIT.unseen, "all", chunk=64)
    assert all(shape[1] == 1 for shape in probe.calls)
    one = superset_aucs(probe, texts, names, ds, SPLIT.unseen, "all", chunk=1)
    # u1 has stripes and other, u2 only everywhere: each attribute splits the two classes.
    assert whole == one
    assert set(whole) == {"everywhere", "stripes", "other"}


def test_a_fixed_k_inducer_is_refused():
    w = build_hypernet("W", text_dim=2, feature_dim=2, hidden=4, k=2)
    with pytest.raises(UserInputError, match="EV or IVEV"):
        supersets(w, LookupEncoder(), separable())
    texts = torch.eye(2)
    with pytest.raises(UserInputError, match="EV or IVEV"):
        superset_aucs(w, texts, ["stripes", "everywhere"], separable(), SPLIT.seen, "test")


def test_a_dataset_without_attributes_is_refused():
    ds = separable()
    ds.attributes = {}
    with pytest.raises(DataError, match=r"attributes\.json"):
        supersets(Probe(), LookupEncoder(), ds)


def test_classes_without_an_attribute_entry_are_left_out():
    ds = separable()
    ds.attributes = {k: v for k, v in ATTRS.items() if k != "u2"}
    # Only u1 is labelled in the unseen part: nothing to rank it against.
    with pytest.raises(DataError, match="'unseen'"):
        supersets(Probe(), LookupEncoder(), ds)


# W and WW built for one description (k = 1) are the super-set models of train.task supersets.
@pytest.mark.parametrize("hn_type", ["EV", "IVEV", "W", "WW"])
def test_a_real_hypernetwork_runs_end_to_end_with_one_description(tiny_root, hn_type):
    ds = load_dataset(tiny_root, "tiny", "pointnet")
    encoder = HashingEncoder(64)
    torch.manual_seed(0)
    hn = build_hypernet(hn_type, text_dim=64, feature_dim=ds.feature_dim, hidden=8, k=1)
    hn.train()
    result = supersets(hn, encoder, ds, template="a {} thing", chunk=3)
    assert hn.training  # training mode restored
    vocabulary = {a for values in ds.attributes.values() for a in values}
    for part in ("seen", "val", "unseen"):
        aucs = result["per_attribute"][part]
        assert aucs and set(aucs) <= vocabulary
        assert all(0.0 <= v <= 1.0 for v in aucs.values())
        assert result[part].n == len(aucs)
        assert math.isclose(result[part].mean, sum(aucs.values()) / len(aucs), rel_tol=1e-9)
    assert math.isclose(result["H"], harmonic_mean(result["seen"].mean, result["unseen"].mean))

    # One attribute recomputed directly: its own one-description classifier on the unseen rows.
    name = next(iter(result["per_attribute"]["unseen"]))
    text = encoder.encode([f"a {name} thing"])
    rows = torch.cat([ds.class_rows(c, "all") for c in ds.split.unseen])
    labels = torch.tensor([name in ds.attributes[ds.classes[int(y)]] for y in ds.labels[rows]])
    with torch.no_grad():
        hn.eval()
        logits = hn.target(hn(text.unsqueeze(0)), ds.features[rows].unsqueeze(0))[0, :, 0]
    assert math.isclose(
        result["per_attribute"]["unseen"][name], roc_auc(logits, labels), abs_tol=1e-9
    )
