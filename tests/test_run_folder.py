"""A failed `t2m train` leaves nothing that blocks the next: a run with no finished epoch is
removed, one with finished epochs is kept and the message says what to do with it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from t2m_cli.cli import app
from t2m_cli.errors import DataError, RunFailure
from t2m_cli.training.loop import Trainer

runner = CliRunner()
TINY = ["text.model=hashing", "train.epochs=2", "train.tasks_per_epoch=10", "model.hidden=8"]


def _train(tiny_root, tmp_path, *extra: str):
    return runner.invoke(
        app,
        [
            "train",
            f"dataset.root={tiny_root}",
            *TINY,
            *extra,
            "--name",
            "r1",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "-q",
        ],
    )


def _fail_at_epoch(monkeypatch, epoch: int, error: Exception) -> None:
    """Make validation of ``epoch`` raise ``error`` (after that epoch's training steps)."""
    real = Trainer.validate
    calls = {"n": 0}

    def validate(self):
        calls["n"] += 1
        if calls["n"] == epoch:
            raise error
        return real(self)

    monkeypatch.setattr(Trainer, "validate", validate)


def test_a_run_that_fails_in_its_first_epoch_leaves_no_folder(tiny_root, tmp_path, monkeypatch):
    _fail_at_epoch(monkeypatch, 1, RunFailure("The disk is full."))
    result = _train(tiny_root, tmp_path)
    assert result.exit_code == 1
    assert "The disk is full." in result.stderr and "--resume" not in result.stderr
    assert not (tmp_path / "runs" / "r1").exists()
    monkeypatch.undo()
    result = _train(tiny_root, tmp_path)
    assert result.exit_code == 0, result.output


def test_a_folder_that_was_there_keeps_what_it_held(tiny_root, tmp_path, monkeypatch):
    folder = tmp_path / "runs" / "r1"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    _fail_at_epoch(monkeypatch, 1, RunFailure("The disk is full."))
    assert _train(tiny_root, tmp_path).exit_code == 1
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_a_run_that_fails_after_an_epoch_is_kept_and_says_resume(tiny_root, tmp_path, monkeypatch):
    _fail_at_epoch(monkeypatch, 2, RunFailure("The disk is full."))
    result = _train(tiny_root, tmp_path)
    folder = tmp_path / "runs" / "r1"
    assert result.exit_code == 1
    assert "The disk is full." in result.stderr
    assert f"t2m train --resume {folder}" in result.stderr.replace("\n", "")
    monkeypatch.undo()
    result = runner.invoke(app, ["train", "--resume", str(folder), "-q"])
    assert result.exit_code == 0, result.output


def test_bad_input_after_an_epoch_says_to_use_another_name(tiny_root, tmp_path, monkeypatch):
    """Resuming would replay the same input, so the message does not offer it."""
    _fail_at_epoch(monkeypatch, 2, DataError("The features changed."))
    result = _train(tiny_root, tmp_path)
    assert result.exit_code == 2
    assert "another run.name" in result.stderr and "--resume" not in result.stderr
    assert (tmp_path / "runs" / "r1" / "state.safetensors").is_file()


def test_an_unfinished_run_folder_says_how_to_start_again(tiny_root, tmp_path, monkeypatch):
    """A folder left by a hard kill in the first epoch: neither command loops to the other."""
    assert _train(tiny_root, tmp_path).exit_code == 0
    folder = tmp_path / "runs" / "r1"
    for name in ("state.safetensors", "metrics.jsonl", "best.safetensors", "last.safetensors"):
        (folder / name).unlink()
    result = _train(tiny_root, tmp_path)
    assert result.exit_code == 2
    assert "no finished epoch" in result.stderr and "delete the folder" in result.stderr
    result = runner.invoke(app, ["train", "--resume", str(folder), "-q"])
    assert result.exit_code == 2
    assert "nothing to resume" in result.stderr and "Delete that folder" in result.stderr


@pytest.mark.parametrize("when", [1, 2])
def test_an_interrupted_run_is_removed_only_without_a_finished_epoch(
    tiny_root, tmp_path, monkeypatch, when
):
    _fail_at_epoch(monkeypatch, when, KeyboardInterrupt())
    result = _train(tiny_root, tmp_path)
    assert result.exit_code == 130
    assert (tmp_path / "runs" / "r1").exists() == (when == 2)
