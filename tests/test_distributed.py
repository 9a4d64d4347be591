"""Training under torchrun: several processes share each step's tasks (gloo on the CPU) and
reach the single-process run's weights; a run resumes with another world size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from t2m_cli import distributed
from t2m_cli.errors import UserInputError

SETTINGS = [
    "text.model=hashing",
    "train.epochs=2",
    "train.tasks_per_epoch=24",
    "train.tasks_per_step=4",
    "train.objective=update",
    "model.hidden=16",
]


def test_torchrun_variables_make_the_group(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.from_environment() == distributed.SINGLE
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    group = distributed.from_environment()
    assert (group.rank, group.world_size, group.local_rank, group.writes) == (2, 4, 0, False)
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert distributed.from_environment() == distributed.SINGLE


@pytest.mark.parametrize(("world", "rank"), [("2", "2"), ("two", "0"), ("0", "0")])
def test_torchrun_variables_out_of_range_are_refused(monkeypatch, world, rank):
    monkeypatch.setenv("WORLD_SIZE", world)
    monkeypatch.setenv("RANK", rank)
    with pytest.raises(UserInputError, match=r"WORLD_SIZE|RANK"):
        distributed.from_environment()


def _torchrun(
    tmp_path: Path, nproc: int, *args: str, command_name: str = "train"
) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node N -m t2m_cli COMMAND ARGS`` on the CPU."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(CUDA_VISIBLE_DEVICES="", T2M_THREADS="1", HF_HUB_OFFLINE="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc-per-node={nproc}", "-m", "t2m_cli", command_name, *args]
    command += ["--cache-dir", str(tmp_path / "cache"), "-q"]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "last.safetensors")


def _assert_same_weights(a: Path, b: Path) -> None:
    left, right = _weights(a), _weights(b)
    assert left.keys() == right.keys()
    for name in left:
        torch.testing.assert_close(left[name], right[name], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_two_processes_train_the_single_process_weights_and_resume_with_another_size(
    tiny_root, tmp_path
):
    from conftest import invoke_train

    data = [f"dataset.root={tiny_root}", *SETTINGS]
    single = invoke_train(tiny_root, tmp_path, "single", *SETTINGS)
    assert single.exit_code == 0, single.output

    two = _torchrun(tmp_path, 2, *data, "--name", "two", "--runs-dir", str(tmp_path / "runs"))
    assert two.returncode == 0, two.stderr[-3000:]
    runs = tmp_path / "runs"
    _assert_same_weights(runs / "single", runs / "two")
    # Process 0 alone wrote the run, with the epoch figures of all processes' tasks.
    single_metrics = (runs / "single" / "metrics.jsonl").read_text().splitlines()
    two_metrics = (runs / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(two_metrics) == len(single_metrics) == 2
    for line_1, line_2 in zip(single_metrics, two_metrics):
        a, b = json.loads(line_1), json.loads(line_2)
        assert a["inner_loss"] == pytest.approx(b["inner_loss"], rel=1e-5)
        assert a["val_acc"] == b["val_acc"]

    # A run cut after epoch 1 in one process, resumed by two: the same run again.
    from t2m_cli.config import load_config
    from t2m_cli.training.run import train_run

    config = load_config(None, [*data, f"run.dir={runs}", "run.name=cut"])

    def interrupt(result):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(config, tmp_path / "cache", on_epoch=interrupt)
    resumed = _torchrun(tmp_path, 2, "--resume", str(runs / "cut"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_weights(runs / "single", runs / "cut")

    # Evaluated by two processes in shares of 2 pairs: the figures of one process.
    from typer.testing import CliRunner

    from t2m_cli.cli import app

    evaluate = [str(runs / "single"), "--protocol", "pairs,zsl", "--set", "eval.chunk=2"]
    alone = CliRunner().invoke(
        app,
        [
            "evaluate",
            *evaluate,
            "--output",
            str(tmp_path / "alone"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "-q",
        ],
    )
    assert alone.exit_code == 0, alone.output
    shared = _torchrun(
        tmp_path, 2, *evaluate, "--output", str(tmp_path / "shared"), command_name="evaluate"
    )
    assert shared.returncode == 0, shared.stderr[-3000:]
    one, two = (json.loads((tmp_path / d / "eval.json").read_text()) for d in ("alone", "shared"))
    assert two["results"] == one["results"]
    # Every pair's accuracy in its place, not only their mean.
    assert two["details"] == one["details"]
    assert one["details"]


def test_a_baseline_is_refused_under_torchrun_before_anything_is_written(
    tiny_root, tmp_path, monkeypatch
):
    from conftest import invoke_train
    from typer.testing import CliRunner

    from t2m_cli.cli import app

    made = invoke_train(tiny_root, tmp_path, "r", "text.model=hashing", "train.epochs=1")
    assert made.exit_code == 0, made.output
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    run = tmp_path / "runs" / "r"
    result = CliRunner().invoke(app, ["train", "--baseline", "W", str(run), "-q"])
    assert result.exit_code == 2, result.output
    assert "without torchrun" in result.output
    assert not (run / "baselines").exists()


@pytest.mark.parametrize(("rank", "says"), [("0", True), ("1", False)])
def test_a_mistake_is_said_once_under_torchrun(tiny_root, tmp_path, monkeypatch, rank, says):
    """Every process meets a bad setting alike; process 0 alone says so, all exit with 2."""
    from conftest import invoke_train

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", rank)
    result = invoke_train(tiny_root, tmp_path, "r", "train.epochz=2")
    assert result.exit_code == 2
    assert ("epochz" in result.output) is says


def test_a_taken_run_name_is_refused_before_the_data_loads(tiny_root, tmp_path, monkeypatch):
    from conftest import invoke_train

    from t2m_cli.training import run

    made = invoke_train(tiny_root, tmp_path, "r", "text.model=hashing", "train.epochs=1")
    assert made.exit_code == 0, made.output

    def no_building(*args, **kwargs):
        raise AssertionError("the data were loaded for a run that cannot be made")

    monkeypatch.setattr(run, "_build_trainer", no_building)
    again = invoke_train(tiny_root, tmp_path, "r", "text.model=hashing", "train.epochs=1")
    assert again.exit_code == 2 and "already holds a run" in again.output
