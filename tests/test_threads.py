"""CPU threads chosen per phase (`t2m_cli.device.phase_threads`), and T2M_THREADS."""

from __future__ import annotations

import pytest
import torch
from conftest import invoke_train

from t2m_cli import device
from t2m_cli.errors import UserInputError


def test_small_steps_take_one_thread_and_large_ones_the_idle_cores(monkeypatch):
    monkeypatch.delenv(device.THREADS_ENV, raising=False)
    monkeypatch.setattr(device, "available_cores", lambda: 8)
    monkeypatch.setattr(device, "busy_cores", lambda: 3)
    assert device.phase_threads(small_steps=True) == 1
    assert device.phase_threads(small_steps=False) == 5
    monkeypatch.setattr(device, "busy_cores", lambda: 12)
    assert device.phase_threads(small_steps=False) == 1


def test_t2m_threads_fixes_every_phase(monkeypatch):
    monkeypatch.setattr(device, "available_cores", lambda: 8)
    monkeypatch.setenv(device.THREADS_ENV, "3")
    assert device.phase_threads(small_steps=True) == 3
    assert device.phase_threads(small_steps=False) == 3


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5", "\u00b2", "9", "100000"])
def test_a_bad_t2m_threads_is_refused_by_name(monkeypatch, value):
    """Not a whole number (a superscript digit included), or more than the 8 cores."""
    monkeypatch.setattr(device, "available_cores", lambda: 8)
    monkeypatch.setenv(device.THREADS_ENV, value)
    with pytest.raises(UserInputError, match="T2M_THREADS"):
        device.phase_threads(small_steps=False)


def test_busy_cores_is_the_runnable_count_less_this_process(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3\nprocs_running 4\nprocs_blocked 0\n")
    assert device.busy_cores(samples=3, interval=0, stat=str(stat)) == 3
    stat.write_text("procs_running 1\n")  # this process alone
    assert device.busy_cores(samples=1, interval=0, stat=str(stat)) == 0
    assert device.busy_cores(samples=1, interval=0, stat=str(tmp_path / "none")) == 0


def test_a_phase_restores_the_thread_count_before_it():
    before = torch.get_num_threads()
    with device.cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_training_refuses_a_bad_t2m_threads_before_writing_a_run(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setenv(device.THREADS_ENV, "many")
    result = invoke_train(tiny_root, tmp_path, "t", "text.model=hashing", "train.epochs=1")
    assert result.exit_code == 2, result.output
    assert "T2M_THREADS='many'" in result.output
    assert not (tmp_path / "runs" / "t").exists()


def _step_threads(tiny_root, tmp_path, monkeypatch, name, *settings) -> set[int]:
    """Train a run for an epoch; the thread counts its hypernetwork steps ran on."""
    from t2m_cli.training import loop

    monkeypatch.delenv(device.THREADS_ENV, raising=False)
    seen = set()
    real = loop.Trainer.step

    def step(self, *args, **kwargs):
        seen.add(torch.get_num_threads())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(loop.Trainer, "step", step)
    result = invoke_train(
        tiny_root, tmp_path, name, "text.model=hashing", "train.epochs=1", *settings
    )
    assert result.exit_code == 0, result.output
    return seen


def test_training_runs_the_paper_rule_on_one_thread(tiny_root, tmp_path, monkeypatch):
    """The thread count inside training's epochs: 1 under the paper's rule, and the count
    before it is back afterwards."""
    before = torch.get_num_threads()
    paper = ["train.objective=update", "train.tasks_per_step=1"]
    assert _step_threads(tiny_root, tmp_path, monkeypatch, "p", *paper) == {1}
    assert torch.get_num_threads() == before
    # The same run, evaluated with a bad T2M_THREADS: refused before anything is scored.
    from typer.testing import CliRunner

    from t2m_cli.cli import app

    monkeypatch.setenv(device.THREADS_ENV, "0")
    run = tmp_path / "runs" / "p"
    result = CliRunner().invoke(
        app, ["evaluate", str(run), "--cache-dir", str(tmp_path / "cache"), "-q"]
    )
    assert result.exit_code == 2, result.output
    assert "T2M_THREADS='0'" in result.output
    assert not (run / "eval.json").exists()


def test_training_threads_do_not_depend_on_the_load(monkeypatch):
    """Batched training takes every core even when some are busy (its weights must not depend
    on the load); evaluation takes the idle ones."""
    monkeypatch.delenv(device.THREADS_ENV, raising=False)
    monkeypatch.setattr(device, "available_cores", lambda: 4)
    monkeypatch.setattr(device, "busy_cores", lambda: 3)
    assert device.phase_threads(small_steps=False, adaptive=False) == 4
    assert device.phase_threads(small_steps=False) == 1


def test_training_with_the_default_objective_runs_on_one_thread(tiny_root, tmp_path, monkeypatch):
    assert _step_threads(tiny_root, tmp_path, monkeypatch, "d") == {1}


def test_batched_training_takes_every_core_however_busy(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setattr(device, "available_cores", lambda: 2)
    monkeypatch.setattr(device, "busy_cores", lambda: 1)
    batched = ["train.tasks_per_step=4", "train.objective=update"]
    assert _step_threads(tiny_root, tmp_path, monkeypatch, "b", *batched) == {2}
