"""Run logging: metrics.jsonl always, wandb offline when asked, silence when not."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from t2m_cli.cli import app

runner = CliRunner()


def _args(tiny_root, tmp_path, name):
    return [
        "train",
        f"dataset.root={tiny_root}",
        "text.model=hashing",
        "train.epochs=2",
        "train.tasks_per_epoch=10",
        "model.hidden=8",
        "--runs-dir",
        str(tmp_path / "runs"),
        "--name",
        name,
    ]


def test_without_wandb_installed_a_run_works_and_says_nothing(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now fails
    result = runner.invoke(app, _args(tiny_root, tmp_path, "plain"))
    assert result.exit_code == 0, result.output
    assert "wandb" not in result.output.replace(str(tmp_path), "").lower()
    lines = (tmp_path / "runs" / "plain" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]

    result = runner.invoke(app, [*_args(tiny_root, tmp_path, "asked"), "--wandb"])
    assert result.exit_code == 2
    assert "pip install wandb" in result.stderr


def test_wandb_offline_writes_a_run_that_sync_can_upload(tiny_root, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    wandb_dir = tmp_path / "wandb-dir"
    wandb_dir.mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(wandb_dir))
    # --quiet alone keeps wandb's own lines (banner, history, sync hint) off the terminal.
    monkeypatch.delenv("WANDB_SILENT", raising=False)
    result = runner.invoke(
        app, [*_args(tiny_root, tmp_path, "wb"), "--wandb", "wandb.tags=[t2m,test]", "-q"]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    runs = list((wandb_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("run-*.wandb"))
    sync = subprocess.run(
        [sys.executable, "-m", "wandb", "sync", "--dry-run", str(runs[0])],
        capture_output=True,
        text=True,
        env={"WANDB_MODE": "offline", "PATH": "", "HOME": str(tmp_path)},
    )
    assert "Would sync 1 run" in sync.stdout + sync.stderr, sync.stdout + sync.stderr


def test_a_resumed_run_logs_to_the_wandb_run_it_started(tiny_root, tmp_path, monkeypatch):
    """The wandb id is kept in run.json from the first epoch; `--resume` passes it back with
    resume="allow", so wandb continues that run instead of opening a new one."""
    import types

    inits = []

    class _Run:
        def log(self, record, step):
            pass

        def finish(self):
            pass

    fake = types.SimpleNamespace(
        init=lambda **kwargs: inits.append(kwargs) or _Run(),
        Settings=lambda **kwargs: None,
    )
    monkeypatch.setitem(sys.modules, "wandb", fake)
    calls = {"n": 0}
    from t2m_cli.training import loop

    real = loop.Trainer.validate

    def validate_then_stop(self):
        calls["n"] += 1
        if calls["n"] == 2:  # during epoch 2, after epoch 1 was saved
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(loop.Trainer, "validate", validate_then_stop)
    first = runner.invoke(app, [*_args(tiny_root, tmp_path, "cut"), "--wandb", "-q"])
    assert first.exit_code == 130, first.output
    monkeypatch.setattr(loop.Trainer, "validate", real)
    run = tmp_path / "runs" / "cut"
    resumed = runner.invoke(app, ["train", "--resume", str(run), "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert len(inits) == 2
    kept = json.loads((run / "run.json").read_text())["wandb_id"]
    assert [i["id"] for i in inits] == [kept, kept]
    assert [i["resume"] for i in inits] == ["allow", "allow"]
