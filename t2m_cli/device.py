"""Which torch device a command runs on, and how many CPU threads each phase uses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from t2m_cli.errors import UserInputError

if TYPE_CHECKING:
    import torch


def resolve_device(name: str) -> torch.device:
    """The device a ``--device`` / ``train.device`` value names.

    Args:
        name: ``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        UserInputError: CUDA is asked for on a machine without it.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(
            f"Device '{name}' was asked for but this machine has no CUDA device; "
            "use --device cpu (or auto)."
        )
    return device


THREADS_ENV = "T2M_THREADS"
"""Environment variable that fixes the CPU thread count of every phase (a positive integer)."""


def available_cores() -> int:
    """CPU cores this process may run on."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def busy_cores(samples: int = 5, interval: float = 0.01, stat: str = "/proc/stat") -> int:
    """Cores that other processes keep busy now: the median over ``samples`` readings,
    ``interval`` seconds apart, of Linux's runnable-process count (``procs_running`` in
    ``stat``), less this process.

    Returns:
        0 where the count cannot be read (not Linux).
    """
    import statistics
    import time

    readings = []
    for i in range(samples):
        try:
            with open(stat, encoding="ascii") as lines:
                line = next(x for x in lines if x.startswith("procs_running"))
        except (OSError, StopIteration):
            return 0
        readings.append(int(line.split()[1]) - 1)
        if i + 1 < samples:
            time.sleep(interval)
    return max(0, int(statistics.median(readings)))


def fixed_threads() -> int | None:
    """The thread count ``T2M_THREADS`` fixes, or None when it is unset or empty.

    Raises:
        UserInputError: it is set to anything but a whole number from 1 to the cores this
            process may run on (`available_cores`): more threads than cores only wait for
            each other, and tens of thousands make the thread library itself fail.
    """
    import os
    import re

    fixed = os.environ.get(THREADS_ENV, "").strip()
    if not fixed:
        return None
    cores = available_cores()
    if not re.fullmatch(r"[0-9]+", fixed) or not 1 <= int(fixed) <= cores:
        raise UserInputError(
            f"{THREADS_ENV}={fixed!r} is not a thread count for this machine; set it to a "
            f"whole number from 1 to {cores} (its cores), or unset it to let t2m choose per "
            "phase."
        )
    return int(fixed)


def phase_threads(small_steps: bool, adaptive: bool = True) -> int:
    """The intra-op thread count of a phase of work on the CPU.

    - ``T2M_THREADS`` set: that many, for every phase.
    - Small steps (one task a step, as the paper's rule and t2m's default training take): 1.
      Their operations are too small for threads to pay: measured on 2 cores, 200 tasks/s
      on one thread against 191 on two, and 40 on two when another process keeps one core
      busy.
    - Large steps, ``adaptive`` (evaluation, induction, prediction): one per core that no
      other process keeps busy at the phase's start (`busy_cores`), at least 1. Threads wait
      for each other at every operation, so one thread on a core another process holds slows
      all of them: on 2 cores with one busy, the pair protocol ran 3.8x slower on two threads
      than on one (27x on a larger run), where on an idle machine two are 1.4x faster.
    - Large steps, not ``adaptive`` (batched training, PointNet): every core. Their results
      must not depend on the machine's load: a float sum splits differently across another
      number of threads, and a resumed run must end with the weights of an unbroken one.

    Raises:
        UserInputError: ``T2M_THREADS`` is not a thread count (`fixed_threads`).
    """
    fixed = fixed_threads()
    if fixed is not None:
        return fixed
    if small_steps:
        return 1
    if not adaptive:
        return available_cores()
    return max(1, available_cores() - busy_cores())


@contextmanager
def cpu_threads(threads: int) -> Iterator[None]:
    """Run a phase on ``threads`` intra-op threads (`phase_threads`), then restore the count
    before it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
