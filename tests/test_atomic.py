"""Atomic folders and the one safetensors reader: all or nothing, no leftovers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_custom import make_folder
from typer.testing import CliRunner

from t2m_cli.atomic import load_safetensors, save_safetensors, staged_dir
from t2m_cli.cli import app
from t2m_cli.errors import DataError, RunFailure, UserInputError

runner = CliRunner()


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_staged_dir_moves_the_finished_folder_into_place(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "data"
    with staged_dir(target) as tmp:
        assert tmp.is_dir() and not any(tmp.iterdir())
        assert tmp.parent == target.parent and tmp.name.startswith(".data.")
        assert not target.exists()
        (tmp / "a.txt").write_text("a")
    assert (target / "a.txt").read_text() == "a"
    assert _hidden(target.parent) == []


def test_staged_dir_exception_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "data"
    with pytest.raises(DataError, match="midway"), staged_dir(target) as tmp:
        (tmp / "a.txt").write_text("a")
        raise DataError("failed midway")
    assert list(tmp_path.iterdir()) == []


def test_staged_dir_refuses_a_target_that_appeared(tmp_path: Path) -> None:
    target = tmp_path / "data"
    with pytest.raises(UserInputError, match="already exists"), staged_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
        target.mkdir()
        (target / "theirs.txt").write_text("theirs")
    assert [p.name for p in target.iterdir()] == ["theirs.txt"]
    assert _hidden(tmp_path) == []


def test_staged_dir_replace_swaps_the_old_folder_out(tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with staged_dir(target, replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert _hidden(tmp_path) == []


def test_staged_dir_turns_oserror_into_runfailure(tmp_path: Path) -> None:
    target = tmp_path / "data"
    with pytest.raises(RunFailure, match=str(target)), staged_dir(target):
        raise PermissionError(13, "Permission denied")
    assert list(tmp_path.iterdir()) == []


def test_load_safetensors_reads_tensors_and_header(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "x.safetensors"
    save_safetensors(path, {"w": torch.ones(2, 3)}, {"t2m": json.dumps({"k": [1, 2]})})
    tensors, header = load_safetensors(path, "Thing file")
    assert torch.equal(tensors["w"], torch.ones(2, 3)) and header == {"k": [1, 2]}
    save_safetensors(path, {"w": torch.ones(1)})
    assert load_safetensors(path, "Thing file")[1] == {}


def test_load_safetensors_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    with pytest.raises(DataError, match=r"^Thing file .*x\.safetensors does not exist\."):
        load_safetensors(path, "Thing file")
    path.write_bytes(b"not safetensors")
    with pytest.raises(DataError, match=r"^Thing file .*x\.safetensors cannot be read \("):
        load_safetensors(path, "Thing file")


def test_failed_import_leaves_nothing_and_a_rerun_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import t2m_cli.data.dataset as dataset

    folder = make_folder(tmp_path / "mine")
    cache = tmp_path / "cache"
    args = ["data", "import", str(folder), "--name", "mine", "--cache-dir", str(cache)]
    real_write_json = dataset.write_json
    written: list[Path] = []

    def fail_after_features(path: Path, data: object) -> None:
        # The feature file is already in the folder being built when this fails.
        written.extend(path.parent.rglob("*.safetensors"))
        raise DataError("descriptions could not be written")

    monkeypatch.setattr(dataset, "write_json", fail_after_features)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "descriptions could not be written" in result.stderr
    assert written, "the failure should come after the folder was started"
    datasets = cache / "datasets"
    assert not datasets.exists() or list(datasets.iterdir()) == []

    monkeypatch.setattr(dataset, "write_json", real_write_json)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in datasets.iterdir()) == ["mine"]
    assert (datasets / "mine" / "split.json").is_file()


def test_load_safetensors_reads_files_of_the_older_per_field_layout(tmp_path: Path) -> None:
    # Feature files and text caches keep one JSON string per field; they must stay readable.
    import torch

    path = tmp_path / "features.safetensors"
    meta = {"classes": json.dumps(["a", "b"]), "meta": json.dumps({"d": 3}), "model": "m-1"}
    save_safetensors(path, {"w": torch.ones(2)}, meta)
    assert load_safetensors(path, "Feature file")[1] == {
        "classes": ["a", "b"],
        "meta": {"d": 3},
        "model": "m-1",
    }
