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


YAML = """
rocket: a tall cylinder with a cone on top
donut:
  - a fat ring with a hole
  - a round ring like a bagel
"""


@pytest.mark.parametrize(
    "text",
    [YAML, '{"rocket": "a tall cylinder with a cone on top", '
     '"donut": ["a fat ring with a hole", "a round ring like a bagel"]}'],
)  # fmt: skip
def test_yaml_and_json_map_classes_to_one_or_several_descriptions(text):
    from t2m_cli.induction import parse_class_texts

    assert parse_class_texts(text, "d.yaml", structured=True) == [
        ("rocket", ["a tall cylinder with a cone on top"]),
        ("donut", ["a fat ring with a hole", "a round ring like a bagel"]),
    ]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("- a\n- b\n", "must map each class"),
        ("a: []\nb: x\n", "needs a description"),
        ("a: 3\nb: x\n", "needs a description"),
        ("a: ['x', '']\nb: x\n", "needs a description"),
        ("Cat: x\ncat: y\n", "differ only in case"),
        ("a: x\n", "at least two"),
        ("a: [x\n", "not valid YAML"),
        ("1: x\nb: y\n", "not a non-empty string"),
    ],
)
def test_bad_mappings_are_clear(text, needle):
    from t2m_cli.induction import parse_class_texts

    with pytest.raises(DataError, match=needle):
        parse_class_texts(text, "d.yaml", structured=True)


def test_several_descriptions_induce_from_their_mean_embedding():
    torch.manual_seed(2)
    hn = EVHypernet(text_dim=16, feature_dim=4, hidden=8)
    enc = HashingEncoder(16)
    many = induce(hn, enc, [("a", ["red round", "round and red"]), ("b", "blue square")])
    mean = enc.encode(["red round", "round and red"]).mean(0)
    text = torch.stack([mean, enc.encode(["blue square"])[0]]).unsqueeze(0)
    with torch.no_grad():
        direct = hn.eval()(text)
    torch.testing.assert_close(many.weight, direct["weight"][0])
    assert many.descriptions == [["red round", "round and red"], "blue square"]
    # One description is its own embedding: the same classifier as before.
    one = induce(hn, enc, [("a", ["red round"]), ("b", "blue square")])
    assert torch.equal(
        one.weight, induce(hn, enc, [("a", "red round"), ("b", "blue square")]).weight
    )


def test_induce_reads_a_yaml_file_and_json_on_stdin(tiny_root, tmp_path):
    import json

    from conftest import invoke_train
    from typer.testing import CliRunner

    from t2m_cli.cli import app

    assert (
        invoke_train(tiny_root, tmp_path, "r", "text.model=hashing", "train.epochs=1").exit_code
        == 0
    )
    run = tmp_path / "runs" / "r"
    (tmp_path / "classes.yaml").write_text(YAML)
    common = ["--run", str(run), "--cache-dir", str(tmp_path / "cache"), "--json"]
    result = CliRunner().invoke(app, ["induce", str(tmp_path / "classes.yaml"), *common])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["classes"] == ["rocket", "donut"]
    saved = InducedClassifier.load(tmp_path / "classes.t2m.safetensors")
    assert saved.descriptions[1] == ["a fat ring with a hole", "a round ring like a bagel"]
    piped = CliRunner().invoke(
        app,
        ["induce", "-", *common, "-o", str(tmp_path / "piped.safetensors")],
        input='{"a": ["x y", "y x"], "b": "z"}',
    )
    assert piped.exit_code == 0, piped.output
    assert json.loads(piped.stdout)["classes"] == ["a", "b"]


def test_one_call_induces_a_1000_way_classifier_and_w_says_why_not():
    """1,000 made-up classes (benchmarks/induction_scale.py), one to three descriptions each:
    EV and IVEV emit a 1,000-way classifier in one call; W, built for pairs, refuses."""
    import importlib.util
    from pathlib import Path

    from t2m_cli.errors import UserInputError
    from t2m_cli.models.hypernet import build_hypernet

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "induction_scale.py"
    spec = importlib.util.spec_from_file_location("induction_scale", path)
    assert spec is not None and spec.loader is not None
    scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale)
    classes = scale.class_texts(1000)
    assert len({name for name, _ in classes}) == 1000
    assert {len(texts) for _, texts in classes} == {1, 2, 3}
    encoder = HashingEncoder(32)
    torch.manual_seed(0)
    features = torch.randn(7, 6)
    for hn_type in ("EV", "IVEV"):
        hn = build_hypernet(hn_type, text_dim=32, feature_dim=6, hidden=8)
        clf = induce(hn, encoder, classes)
        assert clf.logits(features).shape == (7, 1000)
        assert len(clf.class_names) == 1000
    w = build_hypernet("W", text_dim=32, feature_dim=6, hidden=8, k=2)
    with pytest.raises(UserInputError, match=r"exactly 2 classes.*EV or IVEV"):
        induce(w, encoder, classes)


def test_two_classes_with_the_same_descriptions_are_refused():
    hn = EVHypernet(text_dim=16, feature_dim=4, hidden=8)
    with pytest.raises(DataError, match="same descriptions"):
        induce(hn, HashingEncoder(16), [("a", "x y"), ("b", "X y "), ("c", "z")])


@pytest.mark.parametrize(
    ("text", "needle"),
    [("{bad json", "not valid JSON"), ('["a", "b"]', "must map each class"), ("", "is empty")],
)
def test_json_mistakes_are_named_as_json(text, needle):
    from t2m_cli.induction import parse_class_texts

    with pytest.raises(DataError, match=needle):
        parse_class_texts(text, "d.json", structured=True)
