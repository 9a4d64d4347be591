"""Splits and rows that training or a protocol could not use: `t2m data check`, import, the
loader and `t2m train` (before it writes anything) refuse them in the same words."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from t2m_cli.cli import app
from t2m_cli.data.requirements import split_requirements

runner = CliRunner()
FAST = ["text.model=hashing", "train.epochs=1", "train.tasks_per_epoch=5", "model.hidden=8"]
SPLIT = {
    "seen": [f"class_{i}" for i in range(6)],
    "val": ["class_6", "class_7"],
    "unseen": ["class_8", "class_9"],
}


def write_folder(
    root: Path,
    n_classes: int = 10,
    rows: int = 6,
    split: dict | None = None,
    is_test: np.ndarray | None = None,
) -> Path:
    """An import folder of ``n_classes`` classes of ``rows`` 4-d rows each."""
    root.mkdir(parents=True)
    classes = [f"class_{i}" for i in range(n_classes)]
    rng = np.random.default_rng(0)
    np.save(root / "features.npy", rng.standard_normal((n_classes * rows, 4)).astype(np.float32))
    np.save(root / "labels.npy", np.repeat(np.arange(n_classes), rows))
    (root / "classes.json").write_text(json.dumps(classes))
    (root / "descriptions.json").write_text(json.dumps({c: f"a thing called {c}" for c in classes}))
    if split is not None:
        (root / "split.json").write_text(json.dumps(split))
    if is_test is not None:
        np.save(root / "is_test.npy", is_test)
    return root


def _import(folder: Path, tmp_path: Path):
    cache = ["--cache-dir", str(tmp_path / "cache")]
    return runner.invoke(app, ["data", "import", str(folder), "--name", "mine", *cache])


def _train(tmp_path: Path, *extra: str):
    return runner.invoke(
        app,
        [
            "train",
            "dataset.name=mine",
            "dataset.features=custom",
            *FAST,
            *extra,
            "--name",
            "r",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "-q",
        ],
    )


def _held_out_last(n_classes: int = 10, rows: int = 6, keep: int = 4) -> np.ndarray:
    return np.tile(np.arange(rows) >= keep, n_classes)


def test_a_seen_class_without_held_out_rows_is_refused_by_check_and_import(tmp_path):
    is_test = _held_out_last()
    is_test[:6] = False  # class_0, a seen class, holds out nothing
    folder = write_folder(tmp_path / "mine", split=SPLIT, is_test=is_test)
    result = runner.invoke(app, ["data", "check", str(folder)])
    assert result.exit_code == 2
    assert "split.json has seen classes ['class_0'] with no held-out rows" in result.stderr
    assert "Traceback" not in result.output
    result = _import(folder, tmp_path)
    assert result.exit_code == 2
    assert "['class_0'] with no held-out rows" in result.stderr
    assert not (tmp_path / "cache" / "datasets" / "mine").exists()


@pytest.mark.parametrize(
    ("val", "words"),
    [([], "0 classes in 'val' (none)"), (["class_6"], "1 class in 'val' (class_6)")],
)
def test_fewer_than_two_validation_classes_are_refused_by_check_and_import(tmp_path, val, words):
    split = {**SPLIT, "val": val}
    folder = write_folder(tmp_path / "mine", split=split, is_test=_held_out_last())
    result = runner.invoke(app, ["data", "check", str(folder)])
    assert result.exit_code == 2
    assert f"split.json has {words}" in result.stderr and "at least 2" in result.stderr
    assert _import(folder, tmp_path).exit_code == 2
    assert not (tmp_path / "cache" / "datasets" / "mine").exists()


def test_ten_classes_without_a_split_draw_every_part_and_train(tmp_path):
    folder = write_folder(tmp_path / "mine")
    result = runner.invoke(app, ["data", "check", str(folder)])
    assert result.exit_code == 0, result.output
    assert _import(folder, tmp_path).exit_code == 0
    split = json.loads((tmp_path / "cache" / "datasets" / "mine" / "split.json").read_text())
    assert [len(split[p]) >= 2 for p in ("seen", "val", "unseen")] == [True] * 3
    result = _train(tmp_path)
    assert result.exit_code == 0, result.output


def test_too_few_classes_or_rows_for_a_drawn_split_are_refused(tmp_path):
    result = runner.invoke(app, ["data", "check", str(write_folder(tmp_path / "five", 5))])
    assert result.exit_code == 2
    assert "only 5 classes; a drawn split needs at least 6" in result.stderr
    one_row = write_folder(tmp_path / "thin", rows=1)
    result = runner.invoke(app, ["data", "check", str(one_row)])
    assert result.exit_code == 2
    assert "any class may be drawn as seen" in result.stderr
    assert "each needs at least 2 rows" in result.stderr


def test_a_drawn_held_out_share_leaves_every_class_a_row_of_each(tmp_path):
    """Three rows at 0.2 held out used to hold out none (int(0.6) = 0)."""
    folder = write_folder(tmp_path / "mine", rows=3, split=SPLIT)
    assert runner.invoke(app, ["data", "check", str(folder)]).exit_code == 0
    assert _import(folder, tmp_path).exit_code == 0
    result = _train(tmp_path)
    assert result.exit_code == 0, result.output


def test_train_refuses_a_split_edited_in_the_cache_before_writing_anything(tmp_path):
    folder = write_folder(tmp_path / "mine", split=SPLIT, is_test=_held_out_last())
    assert _import(folder, tmp_path).exit_code == 0
    split_file = tmp_path / "cache" / "datasets" / "mine" / "split.json"
    split_file.write_text(json.dumps({**SPLIT, "seen": [*SPLIT["seen"], *SPLIT["val"]], "val": []}))
    result = _train(tmp_path)
    assert result.exit_code == 2
    assert f"{split_file} (with custom.safetensors) has 0 classes in 'val'" in result.stderr
    assert not (tmp_path / "runs").exists()
    split_file.write_text(json.dumps(SPLIT))
    result = _train(tmp_path)
    assert result.exit_code == 0, result.output


def test_train_checks_classes_per_task_before_its_first_epoch(tmp_path):
    """Kind 4: the failed run leaves no folder, and the rerun with the same name works."""
    folder = write_folder(tmp_path / "mine", split=SPLIT, is_test=_held_out_last())
    assert _import(folder, tmp_path).exit_code == 0
    result = _train(tmp_path, "train.classes_per_task=7")
    assert result.exit_code == 2
    assert "train.classes_per_task=7" in result.stderr
    assert "has 6 classes in 'seen'" in result.stderr and "at least 7" in result.stderr
    assert "lower train.classes_per_task" in result.stderr
    assert not (tmp_path / "runs").exists()
    result = _train(tmp_path, "train.classes_per_task=6")
    assert result.exit_code == 0, result.output


def test_evaluate_refuses_a_seen_class_that_lost_its_held_out_rows(tiny_root, tmp_path):
    """A folder edited after training: gzsl used to crash, pairs to score on one class's rows."""
    from t2m_cli.data.dataset import load_features, save_features

    runs = tmp_path / "runs"
    args = [f"dataset.root={tiny_root}", "text.model=hashing", "train.epochs=1"]
    args += ["train.tasks_per_epoch=5", "model.hidden=8", "--runs-dir", str(runs), "-q"]
    result = runner.invoke(app, ["train", *args, "--name", "r"])
    assert result.exit_code == 0, result.output
    feature_file = tiny_root / "features" / "pointnet.safetensors"
    features, labels, is_test, classes, meta = load_features(feature_file)
    is_test[labels == classes.index("class_00")] = False
    feature_file.unlink()
    save_features(feature_file, features, labels, is_test, classes, meta)
    for protocol in ("gzsl", "pairs"):
        result = runner.invoke(app, ["evaluate", str(runs / "r"), "--protocol", protocol])
        assert result.exit_code == 2
        assert "seen classes ['class_00'] with no held-out rows" in result.stderr
        assert "Traceback" not in result.output


def test_requirements_name_every_shortfall_at_once():
    parts = {"seen": ["a", "b", "c"], "val": ["d"], "unseen": ["e", "f"]}
    rows = {"a": (3, 0), "b": (0, 2), "c": (0, 0), "d": (2, 1), "e": (1, 0)}
    problems = split_requirements(parts, rows, classes_per_task=4)
    text = "\n".join(problems)
    assert "3 classes in 'seen' (a, b, c); a training task draws 4" in text
    assert "(or lower train.classes_per_task)" in text
    assert "seen classes ['b'] with no training rows" in text
    assert "seen classes ['a'] with no held-out rows" in text
    assert "1 class in 'val' (d)" in text
    assert "'seen' classes ['c'] with no rows" in text
    assert "'unseen' classes ['f'] with no rows" in text
    assert len(problems) == 6
    usable = {"seen": ["a", "b"], "val": ["c", "d"], "unseen": ["e", "f"]}
    counts = {c: (1, 1) for c in "abcdef"}
    assert split_requirements(usable, counts) == []
    assert split_requirements(usable, counts, classes_per_task=3) != []


def test_gzsl_and_zsl_refuse_a_class_without_rows_to_score(tiny_root):
    """Scoring itself refuses such data, whatever loaded it."""
    import dataclasses

    from t2m_cli.data.dataset import load_dataset
    from t2m_cli.data.texts import TextBank
    from t2m_cli.encoders.text import HashingEncoder
    from t2m_cli.errors import DataError
    from t2m_cli.evaluation.classwise import gzsl
    from t2m_cli.models.hypernet import build_hypernet

    ds = load_dataset(tiny_root, "tiny", "pointnet")
    seen = ds.split.seen[0]
    broken = dataclasses.replace(ds, is_test=ds.is_test & (ds.labels != ds.index(seen)))
    bank = TextBank.build(ds.classes, ds.descriptions, "names", HashingEncoder(16))
    hn = build_hypernet("EV", text_dim=16, feature_dim=ds.feature_dim, hidden=8)
    with pytest.raises(DataError, match=rf"\['{seen}'\] of dataset 'tiny' have no held-out rows"):
        gzsl(hn, bank, broken, torch.Generator())
