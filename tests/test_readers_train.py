"""Every reader feeds `t2m train` through the same code: original zips, xlsa17, own data."""

from __future__ import annotations

import json
import zipfile

import pytest
from test_custom import make_folder
from test_original import LAYOUT, write_original
from test_xlsa17 import fake_res101, real_splits
from typer.testing import CliRunner

from t2m_cli.cli import app

runner = CliRunner()
FAST = ["text.model=hashing", "train.epochs=1", "train.tasks_per_epoch=5", "model.hidden=8"]


def _train(tmp_path, name, features):
    return runner.invoke(
        app,
        [
            "train",
            f"dataset.name={name}",
            f"dataset.features={features}",
            *FAST,
            "--runs-dir",
            str(tmp_path / "runs"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "-q",
        ],
    )


def test_original_awa_zip_downloads_converts_and_trains(tmp_path):
    layout = {
        "train_visual_feature_extractor": {"antelope": 6, "killer+whale": 5, "otter": 4},
        "eval_visual_feature_extractor": {"antelope": 2, "killer+whale": 2, "otter": 2},
        "train_hn": {"bat": 3, "cow": 3},
        "eval_hn": {"bat": 2, "cow": 2},
        "zs_classes": {"zebra": 4, "blue+whale": 3},
    }
    write_original(tmp_path / "src", "awa", layout)
    archive = tmp_path / "awa.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in (tmp_path / "src").rglob("*.pkl"):
            z.write(f, f.relative_to(tmp_path / "src"))
    result = runner.invoke(
        app, ["download", "awa", "--from", str(archive), "--cache-dir", str(tmp_path / "cache")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cache" / "datasets" / "awa" / "features" / "original.safetensors").is_file()
    result = _train(tmp_path, "awa", "original")
    assert result.exit_code == 0, result.output


def test_own_data_check_import_and_train(tmp_path):
    folder = make_folder(tmp_path / "mine")
    classes = json.loads((folder / "classes.json").read_text())
    split = {"seen": classes[:2], "val": classes[2:4], "unseen": classes[4:]}
    (folder / "split.json").write_text(json.dumps(split))
    result = runner.invoke(app, ["data", "check", str(folder)])
    assert result.exit_code == 0, result.output
    cache = ["--cache-dir", str(tmp_path / "cache")]
    result = runner.invoke(app, ["data", "import", str(folder), "--name", "mine", *cache])
    assert result.exit_code == 0, result.output
    assert "dataset.features=custom" in result.stdout
    result = _train(tmp_path, "mine", "custom")
    assert result.exit_code == 0, result.output

    result = runner.invoke(app, ["data", "import", str(folder), "--name", "mine", *cache])
    assert result.exit_code == 2 and "already exists" in result.stderr
    result = runner.invoke(app, ["data", "import", str(folder), "--name", "shapes", *cache])
    assert result.exit_code == 2 and "built-in" in result.stderr


def test_data_check_reports_every_problem_and_exits_2(tmp_path):
    folder = make_folder(tmp_path / "bad")
    (folder / "classes.json").write_text(json.dumps(["zebra"]))
    (folder / "descriptions.yaml").write_text("zebra: [striped]\n")
    result = runner.invoke(app, ["data", "check", str(folder)])
    assert result.exit_code == 2
    assert result.stderr.count("\n  - ") >= 2
    assert "Traceback" not in result.output


def test_xlsa17_import_and_train(tmp_path):
    splits = real_splits("AWA2")
    res101 = fake_res101(splits, tmp_path / "res101.mat", n_unseen=10, n_val=13)
    cache = ["--cache-dir", str(tmp_path / "cache")]
    result = runner.invoke(
        app,
        [
            "data",
            "import",
            str(res101),
            "--format",
            "xlsa17",
            "--splits",
            str(splits),
            "--name",
            "awa2",
            *cache,
        ],
    )
    assert result.exit_code == 0, result.output
    split = json.loads((tmp_path / "cache" / "datasets" / "awa2" / "split.json").read_text())
    assert len(split["unseen"]) == 10 and len(split["seen"]) + len(split["val"]) == 40
    result = _train(tmp_path, "awa2", "res101")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name", ["descriptors", "attributes"])
def test_file_entries_are_not_datasets(tmp_path, name):
    result = runner.invoke(app, ["train", f"dataset.name={name}"])
    assert result.exit_code == 2
    assert "feeds another dataset" in result.stderr


def test_a_split_with_one_validation_class_is_refused_at_download(tmp_path):
    layout = {**LAYOUT, "train_hn": {"bat": 2}, "eval_hn": {"bat": 1}}
    write_original(tmp_path / "src", "awa", layout)
    archive = tmp_path / "awa.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in (tmp_path / "src").rglob("*.pkl"):
            z.write(f, f.relative_to(tmp_path / "src"))
    cache = tmp_path / "cache"
    args = ["download", "awa", "--from", str(archive), "--cache-dir", str(cache)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "1 class in 'val' (bat)" in result.stderr and "at least 2" in result.stderr
    assert "train_hn.pkl" in result.stderr and "Traceback" not in result.output
    assert not (cache / "datasets" / "awa").exists()


def test_a_malicious_pickle_in_a_download_exits_2_and_runs_nothing(tmp_path):
    import pickle

    from test_original import _Marker

    write_original(tmp_path / "src", "awa")
    marker = tmp_path / "pwned"
    poisoned = tmp_path / "src" / "awa" / "features" / "zs_classes.pkl"
    poisoned.write_bytes(pickle.dumps(({"x": 1}, {"c": 0}, _Marker(marker))))
    archive = tmp_path / "awa.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in (tmp_path / "src").rglob("*.pkl"):
            z.write(f, f.relative_to(tmp_path / "src"))
    cache = tmp_path / "cache"
    result = runner.invoke(
        app, ["download", "awa", "--from", str(archive), "--cache-dir", str(cache)]
    )
    assert result.exit_code == 2
    assert "Refused" in result.stderr and "plain data" in result.stderr
    assert not marker.exists()
    assert not (cache / "datasets" / "awa").exists()


def test_encode_names_the_features_a_dataset_has(tmp_path):
    folder = make_folder(tmp_path / "mine")
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert runner.invoke(app, ["data", "import", str(folder), "--name", "m", *cache]).exit_code == 0
    result = runner.invoke(app, ["encode", "dataset.name=m", "text.model=hashing", *cache])
    assert result.exit_code == 2
    assert "dataset.features" in result.stderr and "custom" in result.stderr
    result = runner.invoke(
        app, ["encode", "dataset.name=m", "dataset.features=custom", "text.model=hashing", *cache]
    )
    assert result.exit_code == 0, result.output
    assert "custom.safetensors (already there)" in result.stdout
