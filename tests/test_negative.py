"""Negative descriptions: 'that is not: ' + attributes another class has and this one lacks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from t2m_cli.cli import app
from t2m_cli.data.texts import NegativeDescriptions, TextBank, build_describer
from t2m_cli.encoders.text import HashingEncoder
from t2m_cli.errors import DataError

ATTRS = ["black", "furry", "striped", "big", "swims", "flies", "spots"]


def _describer(class_attrs, p_negative=1.0, n_attributes=4):
    classes = [f"c{i}" for i in range(len(class_attrs))]
    descriptions = {c: [f"the {c} animal"] for c in classes}
    attributes = {c: list(a) for c, a in zip(classes, class_attrs)}
    return build_describer(
        classes,
        descriptions,
        attributes,
        HashingEncoder(32),
        "descriptions",
        p_negative,
        n_attributes,
        "Animal that is not: ",
    )


class_sets = st.lists(st.sets(st.sampled_from(ATTRS)), min_size=2, max_size=5)


@settings(max_examples=60, deadline=None)
@given(class_attrs=class_sets, n=st.integers(1, 5), seed=st.integers(0, 1000))
def test_negative_text_names_only_what_the_others_have_and_this_lacks(class_attrs, n, seed):
    d = _describer(class_attrs, n_attributes=n)
    assert isinstance(d, NegativeDescriptions)
    g = torch.Generator().manual_seed(seed)
    for cls in range(len(class_attrs)):
        others = [o for o in range(len(class_attrs)) if o != cls]
        text = d.negative_text(cls, others, g)
        allowed = set().union(*(class_attrs[o] for o in others)) - class_attrs[cls]
        if not allowed:
            assert text is None
            continue
        assert text is not None and text.startswith("Animal that is not: ")
        named = text.removeprefix("Animal that is not: ").split(", ")
        assert set(named) <= allowed
        assert len(named) == len(set(named)) == min(n, len(allowed))


def test_draw_uses_negatives_with_probability_p():
    d = _describer([{"black", "furry"}, {"striped", "big"}, {"swims"}], p_negative=1.0)
    tasks = torch.tensor([[0, 1], [1, 2], [2, 0]] * 20)
    out = d.draw(tasks, torch.Generator().manual_seed(0))
    positives = d.bank.embeddings
    # With p = 1 no row is a positive description: every class lacks something the other has.
    for row in out.reshape(-1, out.shape[-1]):
        assert not (positives == row).all(1).any()
    assert all(t.startswith("Animal that is not: ") for t in d._cache)

    none = _describer([{"black"}, {"big"}], p_negative=0.0)
    assert isinstance(none, TextBank)
    half = _describer([{"black"}, {"big"}], p_negative=0.5)
    out = half.draw(torch.tensor([[0, 1]] * 400), torch.Generator().manual_seed(1))
    share = (~(half.bank.embeddings[None, None] == out[:, :, None]).all(-1).any(-1)).float()
    assert 0.4 < float(share.mean()) < 0.6


def test_negatives_need_attributes():
    with pytest.raises(DataError, match="attributes"):
        build_describer(
            ["a", "b"],
            {"a": ["x"], "b": ["y"]},
            {"a": ["q"]},
            HashingEncoder(8),
            "descriptions",
            0.5,
        )


def test_training_with_negative_descriptions(tiny_root, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "train",
            f"dataset.root={tiny_root}",
            "text.model=hashing",
            "text.p_negative=0.5",
            "train.epochs=2",
            "train.tasks_per_epoch=10",
            "--runs-dir",
            str(tmp_path / "runs"),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    (tiny_root / "attributes.json").unlink()
    result = CliRunner().invoke(
        app,
        ["train", f"dataset.root={tiny_root}", "text.model=hashing", "text.p_negative=0.5"],
    )
    assert result.exit_code == 2
    assert "attributes.json" in result.stderr


def test_original_style_joins_with_spaces_and_gives_the_bare_prefix():
    def describer(style):
        return build_describer(
            ["a", "b", "c"],
            {c: [f"the {c} animal"] for c in "abc"},
            {"a": ["black"], "b": ["black", "furry", "striped", "big"], "c": ["black", "swims"]},
            HashingEncoder(32),
            "descriptions",
            1.0,
            4,
            "Animal that is not: ",
            style,
        )

    g = torch.Generator().manual_seed(0)
    original, t2m = describer("original"), describer("t2m")
    assert isinstance(original, NegativeDescriptions) and original.style == "original"
    text = original.negative_text(0, [1], g)
    assert text is not None and text.startswith("Animal that is not: ") and "," not in text
    named = text.removeprefix("Animal that is not: ").split(" ")
    assert sorted(named) == ["big", "furry", "striped"]
    assert original.negative_text(0, [2], g) == "Animal that is not: swims"
    # b has everything a has: the original still describes it, by the prefix alone.
    assert original.negative_text(1, [0], g) == "Animal that is not: "
    assert t2m.negative_text(1, [0], g) is None
    assert ", " in (t2m.negative_text(0, [1], g) or "")
    # With p = 1 every class of a task is negative in the original style, the bare one too.
    out = original.to("cpu").draw(torch.tensor([[1, 0]]), g)
    assert torch.equal(out[0, 0], original._embed(["Animal that is not: "])[0])
    assert torch.equal(t2m.draw(torch.tensor([[1, 0]]), g)[0, 0], t2m.bank.embeddings[1])


def test_the_text_config_chooses_the_style(tiny_root):
    from t2m_cli.config import TextConfig
    from t2m_cli.data.dataset import load_dataset
    from t2m_cli.data.texts import describer_for

    ds = load_dataset(tiny_root, "tiny", "pointnet")
    for style in ("t2m", "original"):
        text = TextConfig(p_negative=0.5, negative_style=style)
        describer = describer_for(ds, text, HashingEncoder(16))
        assert isinstance(describer, NegativeDescriptions) and describer.style == style
