"""`t2m predict`: feature files and meshes in, the most probable classes out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from t2m_cli.cli import app
from t2m_cli.induction import InducedClassifier

runner = CliRunner()


def _classifier(tmp_path: Path, width: int = 4) -> Path:
    """Three classes, each the direction of one feature: row e_i is class i."""
    weight = torch.zeros(3, width)
    weight[torch.arange(3), torch.arange(3)] = 5.0
    path = tmp_path / "c.t2m.safetensors"
    InducedClassifier(
        ["ant", "bee", "cat"], ["a", "b", "c"], {"weight": weight, "bias": torch.zeros(3)}
    ).save(path)
    return path


def _rows(width: int = 4) -> np.ndarray:
    rows = np.zeros((5, width), dtype=np.float32)
    rows[[0, 1, 2, 3, 4], [2, 0, 1, 2, 0]] = 1.0
    return rows  # cat, ant, bee, cat, ant


def test_feature_files_give_each_row_its_class_in_order(tmp_path):
    from safetensors.numpy import save_file

    classifier = _classifier(tmp_path)
    np.save(tmp_path / "f.npy", _rows())
    save_file({"features": _rows()[:2]}, str(tmp_path / "g.safetensors"))
    result = runner.invoke(
        app,
        [
            "predict",
            str(classifier),
            *(str(tmp_path / name) for name in ("f.npy", "g.safetensors")),
            *("--top-k", "2", "--json", "--csv", str(tmp_path / "out.csv")),
        ],
    )
    assert result.exit_code == 0, result.output
    answers = json.loads(result.stdout)
    expected = ["cat", "ant", "bee", "cat", "ant", "cat", "ant"]
    assert [a["top"][0]["class"] for a in answers] == expected
    assert answers[0]["item"].endswith("f.npy[0]") and answers[5]["item"].endswith(
        "g.safetensors[0]"
    )
    first = answers[0]["top"]
    assert len(first) == 2 and first[0]["probability"] > first[1]["probability"]
    # The probabilities are the softmax of the logits.
    logits = torch.tensor([0.0, 0.0, 5.0])
    assert first[0]["probability"] == pytest.approx(float(torch.softmax(logits, 0)[2]))
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "item,rank,class,probability" and len(lines) == 1 + 7 * 2
    assert lines[1].split(",")[1:3] == ["1", "cat"]


def test_large_inputs_stream_in_chunks(tmp_path):
    from t2m_cli.prediction import collect_inputs, predict

    rows = np.tile(_rows(), (7, 1))  # 35 rows
    np.save(tmp_path / "big.npy", rows)
    classifier = InducedClassifier.load(_classifier(tmp_path))
    seen = []
    answers = list(
        predict(
            classifier,
            collect_inputs([tmp_path / "big.npy"]),
            progress=lambda done, total: seen.append((done, total)),
            chunk=8,
        )
    )
    assert [a.classes[0] for a in answers] == ["cat", "ant", "bee", "cat", "ant"] * 7
    assert seen == [(8, 35), (16, 35), (24, 35), (32, 35), (35, 35)]


def test_a_width_mismatch_names_both_widths(tmp_path):
    classifier = _classifier(tmp_path)
    np.save(tmp_path / "wide.npy", np.zeros((2, 6), dtype=np.float32))
    result = runner.invoke(app, ["predict", str(classifier), str(tmp_path / "wide.npy")])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "width 6" in message and "4-d features" in message
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: (p / "empty").mkdir(), "holds no .off mesh"),
        (lambda p: (p / "notes.txt").write_text("x"), "neither a feature file"),
        (lambda p: None, "does not exist"),
        (lambda p: np.save(p / "nan.npy", np.full((1, 4), np.nan, dtype=np.float32)), "NaN"),
        (lambda p: (p / "bad.npy").write_bytes(b"not numpy"), "cannot be read"),
    ],
)
def test_bad_inputs_are_refused_with_exit_2(tmp_path, make, expected):
    classifier = _classifier(tmp_path)
    make(tmp_path)
    name = {"holds no": "empty", "neither": "notes.txt", "NaN": "nan.npy", "cannot": "bad.npy"}
    target = next((v for k, v in name.items() if expected.startswith(k)), "absent.npy")
    csv = tmp_path / "out.csv"
    result = runner.invoke(
        app, ["predict", str(classifier), str(tmp_path / target), "--csv", str(csv)]
    )
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
    assert not csv.exists()


@pytest.mark.slow
def test_meshes_go_through_the_runs_own_pointnet(tmp_path):
    """Meshes of a generated `shapes` dataset: encoded, trained, induced, then predicted; a
    mesh's answer is the one its features give, and a dataset encoded again is refused."""
    from t2m_cli.data.shapes import generate_shapes
    from t2m_cli.prediction import MeshExtractor

    cache = tmp_path / "cache"
    root = generate_shapes(cache / "datasets" / "shapes", seed=0, n_train=2, n_test=1)
    fast = ["pointnet.epochs=1", "pointnet.n_points=32", "pointnet.train_points=16"]
    common = ["text.model=hashing", "--cache-dir", str(cache)]
    assert runner.invoke(app, ["encode", *fast, *common]).exit_code == 0
    runs = tmp_path / "runs"
    trained = runner.invoke(
        app, ["train", "train.epochs=1", *common, "--runs-dir", str(runs), "--name", "r", "-q"]
    )
    assert trained.exit_code == 0, trained.output
    texts = tmp_path / "classes.txt"
    texts.write_text("rocket: a tall cylinder with a cone on top\ndonut: a fat ring\n")
    classifier = tmp_path / "c.t2m.safetensors"
    induced = runner.invoke(
        app, ["induce", str(texts), "--run", str(runs / "r"), "-o", str(classifier), *common[1:]]
    )
    assert induced.exit_code == 0, induced.output
    meshes = [root / "rocket" / "test", root / "donut" / "test"]
    result = runner.invoke(
        app,
        [
            "predict",
            str(classifier),
            *map(str, meshes),
            "--runs-dir",
            str(runs),
            "--json",
            *common[1:],
        ],
    )
    assert result.exit_code == 0, result.output
    answers = json.loads(result.stdout)
    files = sorted((root / "rocket" / "test").glob("*.off")) + sorted(
        (root / "donut" / "test").glob("*.off")
    )
    assert [a["item"] for a in answers] == [str(f) for f in files]
    model = InducedClassifier.load(classifier)
    extractor = MeshExtractor.for_classifier(model, runs, cache_dir=cache)
    expected = model.predict(extractor.features(files))
    assert [a["top"][0]["class"] for a in answers] == expected

    # The dataset encoded again: its PointNet is not the one the classifier reads.
    assert runner.invoke(app, ["encode", *fast, "pointnet.seed=5", *common]).exit_code == 0
    again = runner.invoke(
        app, ["predict", str(classifier), str(files[0]), "--runs-dir", str(runs), *common[1:]]
    )
    assert again.exit_code == 2 and "built again" in " ".join(again.output.split())

    # A run folder that is not there.
    missing = runner.invoke(
        app, ["predict", str(classifier), str(files[0]), "--runs-dir", str(tmp_path / "nowhere")]
    )
    assert missing.exit_code == 2 and "not a run folder" in " ".join(missing.output.split())


def test_top_k_above_the_class_count_shows_every_class_once(tmp_path):
    classifier = _classifier(tmp_path)
    np.save(tmp_path / "f.npy", _rows()[:2])
    result = runner.invoke(
        app, ["predict", str(classifier), str(tmp_path / "f.npy"), "--top-k", "9"]
    )
    assert result.exit_code == 0, result.output
    assert "probability 3" in result.stdout and "class 4" not in result.stdout


def test_many_answers_stream_as_lines_and_json_stays_whole(tmp_path, monkeypatch):
    import t2m_cli.cli.predict as command

    monkeypatch.setattr(command, "TABLE_ROWS", 3)
    classifier = _classifier(tmp_path)
    np.save(tmp_path / "f.npy", _rows())
    lines = runner.invoke(app, ["predict", str(classifier), str(tmp_path / "f.npy")])
    assert lines.exit_code == 0, lines.output
    rows = [line.split("\t") for line in lines.stdout.splitlines()]
    assert rows[0] == ["item", "class", "probability"]
    assert [r[1] for r in rows[1:]] == ["cat", "ant", "bee", "cat", "ant"]
    as_json = runner.invoke(app, ["predict", str(classifier), str(tmp_path / "f.npy"), "--json"])
    assert [a["top"][0]["class"] for a in json.loads(as_json.stdout)] == [r[1] for r in rows[1:]]


def test_a_csv_that_cannot_be_written_is_refused_before_any_work(tmp_path, monkeypatch):
    from t2m_cli import prediction

    def no_work(*args, **kwargs):
        raise AssertionError("predicted before checking --csv")

    monkeypatch.setattr(prediction, "predict", no_work)
    classifier = _classifier(tmp_path)
    np.save(tmp_path / "f.npy", _rows())
    (tmp_path / "file").write_text("x")
    result = runner.invoke(
        app,
        [
            "predict",
            str(classifier),
            str(tmp_path / "f.npy"),
            "--csv",
            str(tmp_path / "file" / "a.csv"),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "a.csv" in result.output


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda n, p: (n[:2], p), "2 class names"),
        (lambda n, p: (n, {"weight": p["weight"]}), "no bias"),
    ],
)
def test_a_classifier_whose_parts_disagree_is_refused(tmp_path, change, expected):
    from safetensors.torch import load_file, save_file

    from t2m_cli.atomic import dumps_json

    good = InducedClassifier.load(_classifier(tmp_path))
    names, params = change(good.class_names, load_file(str(tmp_path / "c.t2m.safetensors")))
    header = {"format": "t2m-classifier/1", "class_names": names, "descriptions": names}
    bad = tmp_path / "bad.safetensors"
    save_file(params, str(bad), {"t2m": dumps_json(header)})
    np.save(tmp_path / "f.npy", _rows())
    for command in (["predict", str(bad), str(tmp_path / "f.npy")], ["export", str(bad)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        assert expected in " ".join(result.output.split()) and "Traceback" not in result.output


def test_a_missing_classifier_is_named_plainly(tmp_path):
    np.save(tmp_path / "f.npy", _rows())
    result = runner.invoke(
        app, ["predict", str(tmp_path / "none.safetensors"), str(tmp_path / "f.npy")]
    )
    assert result.exit_code == 2 and "does not exist" in result.output
    assert "mean nothing" not in result.output


def test_a_mesh_gets_the_same_features_whatever_else_the_call_holds(tmp_path):
    from t2m_cli.data.meshes import write_off
    from t2m_cli.encoders.pointnet import PointNet
    from t2m_cli.prediction import MeshExtractor

    rng = np.random.default_rng(0)
    faces = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 1], [1, 3, 2]])
    for name in ("a", "b"):
        write_off(tmp_path / f"{name}.off", rng.normal(size=(4, 3)), faces)
    torch.manual_seed(0)
    extractor = MeshExtractor(PointNet(n_classes=2, global_dim=8, feature_dim=8), 32, seed=0)
    alone = extractor.features([tmp_path / "a.off"])
    after = extractor.features([tmp_path / "b.off", tmp_path / "a.off", tmp_path / "a.off"])
    assert torch.equal(after[1], alone[0]) and torch.equal(after[2], alone[0])
