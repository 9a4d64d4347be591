"""Descriptions files and induced classifiers."""

from __future__ import annotations

import pytest
import torch

from t2m_cli.encoders.text import HashingEncoder
from t2m_cli.errors import DataError
from t2m_cli.induction import InducedClassifier, induce, parse_descriptions
from t2m_cli.models.hypernet import EVHypernet


def test_parse_names_and_descriptions():
    text = "# my classes\n\nwasher: a flat ring like a washer\npole\n  ball : a sphere: round\n"
    assert parse_descriptions(text) == [
        ("washer", "a flat ring like a washer"),
        ("pole", "pole"),
        ("ball", "a sphere: round"),
    ]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "no class"),
        ("# only a comment\n", "no class"),
        ("cat: a small furry animal\n", "only one class"),
        ("cat: furry\ndog: barks\nCat: meows\n", "line 3"),
        (": no name\nb: x\n", "line 1"),
        ("a:\nb: x\n", "empty description"),
    ],
)
def test_bad_descriptions_are_clear(text, needle):
    with pytest.raises(DataError, match=needle):
        parse_descriptions(text, "my.txt")


def test_induce_save_load_apply(tmp_path):
    torch.manual_seed(0)
    hn = EVHypernet(text_dim=32, feature_dim=5, hidden=8)
    classes = [("a", "red round"), ("b", "blue square"), ("c", "green")]
    clf = induce(hn, HashingEncoder(32), classes, {"run": "r1"})
    assert clf.weight.shape == (3, 5)
    path = tmp_path / "clf.safetensors"
    clf.save(path)
    back = InducedClassifier.load(path)
    assert back.class_names == ["a", "b", "c"]
    assert back.info["hn_type"] == "EV" and back.info["run"] == "r1"
    x = torch.randn(4, 5)
    assert torch.allclose(back.logits(x), clf.logits(x))
    assert back.predict(x) == [clf.class_names[i] for i in clf.logits(x).argmax(1).tolist()]
    with pytest.raises(DataError, match=r"\(n, 5\)"):
        back.logits(torch.randn(4, 6))
    assert [p.name for p in tmp_path.iterdir()] == ["clf.safetensors"]


def test_induce_rows_follow_the_class_order():
    torch.manual_seed(1)
    hn = EVHypernet(text_dim=16, feature_dim=4, hidden=8)
    enc = HashingEncoder(16)
    ab = induce(hn, enc, [("a", "red round"), ("b", "blue square")])
    ba = induce(hn, enc, [("b", "blue square"), ("a", "red round")])
    assert torch.allclose(ab.weight, ba.weight.flip(0), atol=1e-6)


def test_load_rejects_other_files(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(DataError):
        InducedClassifier.load(bad)
    with pytest.raises(DataError, match="does not exist"):
        InducedClassifier.load(tmp_path / "missing.safetensors")
