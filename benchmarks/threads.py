"""Why each phase runs on the threads it does: speed on one thread and on every core, on an idle
machine and with other work on it.

For the paper's rule (one task a step), t2m's default induced objective and the pair protocol
(the phases of `gpu_check.py`, same data), it times each thread count in turn, ``--rounds``
times, first on an idle machine, then with one busy process per ``--busy`` core started by this
script (a plain Python loop, the kind of neighbour a shared machine has). It prints medians,
the ratio of every core to one thread, and what `phase_threads` chose in each case.

    python benchmarks/threads.py [--rounds 3] [--busy 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from t2m_cli.data.texts import TextBank
from t2m_cli.device import available_cores, phase_threads
from t2m_cli.encoders.text import HashingEncoder


def _gpu_check():
    spec = importlib.util.spec_from_file_location(
        "gpu_check", Path(__file__).with_name("gpu_check.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> None:
    """The command line (module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--busy", type=int, default=1, help="Cores kept busy, second pass.")
    parser.add_argument("--tasks", type=int, default=200)
    args = parser.parse_args(argv)
    check = _gpu_check()
    dataset = check._make_dataset()
    bank = TextBank.build(dataset.classes, dataset.descriptions, "descriptions", HashingEncoder())
    cpu = torch.device("cpu")
    phases = {
        "paper rule": lambda: check.train_speed(
            dataset, bank, cpu, check.RULES["paper rule (1 task a step)"], args.tasks, 1, False
        )[0],
        "induced": lambda: check.train_speed(
            dataset, bank, cpu, check.RULES["recommended (induced, k 2-8)"], args.tasks, 1, False
        )[0],
        "pair protocol": lambda: check.eval_speed(dataset, bank, cpu),
    }
    # As t2m chooses: training one task a step on one thread, evaluation on the idle cores.
    small = {"paper rule": True, "induced": True, "pair protocol": False}
    cores = available_cores()
    print(f"{cores} cores; figures: tasks/s (training) or pairs/s (protocol), medians")
    for busy in (0, args.busy):
        workers = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)
        ]
        try:
            time.sleep(0.5 if busy else 0)
            print(f"-- {busy} core(s) kept busy by other processes")
            for name, phase in phases.items():
                speeds: dict[int, list[float]] = {1: [], cores: []}
                for _ in range(args.rounds):
                    for threads in speeds:
                        torch.set_num_threads(threads)
                        speeds[threads].append(phase())
                one, every = (statistics.median(speeds[t]) for t in (1, cores))
                chosen = phase_threads(small[name])
                print(
                    f"{name:14s} 1 thread {one:9.1f}   {cores} threads {every:9.1f}   "
                    f"x{every / one:5.2f}   t2m chooses {chosen}"
                )
        finally:
            for worker in workers:
                worker.kill()
                worker.wait()


if __name__ == "__main__":
    main()
