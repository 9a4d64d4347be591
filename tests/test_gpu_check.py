"""benchmarks/gpu_check.py runs where it is needed, a GPU machine, rarely: so it runs here too,
on the CPU and cut short, to keep it working."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.mark.slow
def test_gpu_check_prints_every_figure_on_the_cpu(capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--quick"])
    out = capsys.readouterr().out
    for rule in module.RULES:
        assert f"{rule}" in out
    assert "pairs/s" in out and "tasks/s" in out
