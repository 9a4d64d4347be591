"""Interrupted runs resume where they stopped and end as an unbroken run would."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from t2m_cli.cli import app
from t2m_cli.config import load_config
from t2m_cli.training.run import train_run

runner = CliRunner()


def _config(tiny_root, tmp_path, name, tasks_per_step):
    return load_config(
        None,
        [
            f"dataset.root={tiny_root}",
            "text.model=hashing",
            "train.epochs=4",
            "train.tasks_per_epoch=20",
            f"train.tasks_per_step={tasks_per_step}",
            "model.hidden=16",
            f"run.dir={tmp_path / 'runs'}",
            f"run.name={name}",
        ],
    )


def _metrics(folder):
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


def assert_resumes_like_unbroken(config_for, runs_dir):
    """Train ``full``; train ``cut``, interrupted after epoch 2, then resume it through the CLI.
    Its metrics (timings aside), best/last tensors and best epoch must equal the unbroken run's.

    Args:
        config_for: run name -> Config whose ``run.dir`` is ``runs_dir``.

    Returns:
        the resumed run's folder.
    """
    full = train_run(config_for("full"))

    def interrupt(result):
        if result.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(config_for("cut"), on_epoch=interrupt)
    cut = runs_dir / "cut"
    assert len(_metrics(cut)) == 2

    result = runner.invoke(app, ["train", "--resume", str(cut), "-q"])
    assert result.exit_code == 0, result.output
    assert _metrics(cut) == _metrics(full)
    for name in ("best.safetensors", "last.safetensors"):
        a, b = load_file(full / name), load_file(cut / name)
        assert a.keys() == b.keys()
        assert all((a[k] == b[k]).all() for k in a), name
    info = json.loads((cut / "run.json").read_text())
    assert info["resumed_from_epoch"] == 2
    assert info["best"] == json.loads((full / "run.json").read_text())["best"]
    return cut


@pytest.mark.parametrize("tasks_per_step", [1, 5])
def test_resume_after_ctrl_c_ends_like_an_unbroken_run(tiny_root, tmp_path, tasks_per_step):
    cut = assert_resumes_like_unbroken(
        lambda name: _config(tiny_root, tmp_path, name, tasks_per_step), tmp_path / "runs"
    )

    result = runner.invoke(app, ["train", "--resume", str(cut)])
    assert result.exit_code == 2
    assert "nothing to resume" in result.stderr


def test_resume_refuses_other_settings(tmp_path):
    result = runner.invoke(app, ["train", "--resume", str(tmp_path), "--epochs", "3"])
    assert result.exit_code == 2
    assert "--epochs" in result.stderr
    result = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a t2m run folder" in result.stderr
