"""Is the CUDA path ready? Training and evaluation speed on the CPU and on a GPU, peak GPU memory,
and how often each training rule waits for the GPU (host synchronisations).

On the generated dataset of `trainer_speed.py` (40 classes, 450 training rows each, 512-d
features; the paper's settings: k = 2, inner batch 64, 3 inner epochs; the EV hypernetwork at
H = 120), for each device (the CPU, and CUDA when there is one) it prints:

- training tasks per second under the paper's rule (one task a step), the batched update rule
  (``--tasks-per-step`` tasks a step) and t2m's default, the induced objective (one task a
  step, k from 2 to 8, no inner loop), each also under bfloat16 autocast on CUDA;
- evaluation: ordered validation-and-unseen pairs scored per second;
- on CUDA, the peak memory allocated, and host synchronisations per task of each rule,
  counted with ``torch.cuda.set_sync_debug_mode("warn")`` over the timed steps. One a step is
  expected (the divergence check); more means something inside the step reads from the GPU.

Every device runs the same tasks; a GPU figure is next to the CPU's from the same run. It runs
in about three minutes on one GPU; ``--quick`` cuts the work tenfold (a smoke test).

    python benchmarks/gpu_check.py [--quick] [--tasks-per-step 100]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from t2m_cli.config import TrainConfig
from t2m_cli.data.texts import TextBank
from t2m_cli.encoders.text import HashingEncoder
from t2m_cli.models.hypernet import build_hypernet
from t2m_cli.scoring.pairs import pair_accuracies
from t2m_cli.training.inner import InnerSettings
from t2m_cli.training.loop import OuterSettings, Trainer

RULES = {
    "paper rule (1 task a step)": {"tasks_per_step": 1, "objective": "update"},
    "batched update rule": {"objective": "update"},
    "recommended (induced, k 2-8)": {
        "tasks_per_step": 1,
        "objective": "induced",
        "classes_per_task_max": 8,
    },
}


def _make_dataset():
    """The dataset of `trainer_speed.py`, imported by path (benchmarks are scripts)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("trainer_speed.py")
    spec = importlib.util.spec_from_file_location("trainer_speed", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_dataset()


@contextmanager
def counted_syncs(device: torch.device) -> Iterator[list[int]]:
    """Count CUDA host synchronisations inside the block (``[count]``; stays 0 on the CPU)."""
    count = [0]
    if device.type != "cuda":
        yield count
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield count
        finally:
            torch.cuda.set_sync_debug_mode("default")
    count[0] = sum("synchroniz" in str(w.message) for w in caught)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()  # time the work, not its queueing


def train_speed(
    dataset, bank, device: torch.device, rule: dict, tasks: int, per_step: int, amp: bool
) -> tuple[float, float]:
    """(tasks per second, host syncs per task) of one rule on one device."""
    torch.manual_seed(0)
    hypernet = build_hypernet("EV", text_dim=bank.dim, feature_dim=dataset.feature_dim)
    settings = {"tasks_per_step": per_step, "classes_per_task_max": None, **rule}
    train = TrainConfig(
        epochs=1,
        tasks_per_epoch=tasks,
        lr=0.005 * settings["tasks_per_step"],
        weight_decay=1e-4,
        patience=None,
        amp=amp,
        **settings,
    )
    inner, outer = InnerSettings.from_config(train), OuterSettings.from_config(train, eval_seed=0)
    trainer = Trainer(hypernet, bank, dataset, inner, outer, device)
    batches = trainer.epoch_batches()
    trainer.step(batches[0])  # warm-up: kernels, allocator
    _sync(device)
    began = time.perf_counter()
    with counted_syncs(device) as syncs:
        for batch in batches[1:]:
            trainer.step(batch)
        _sync(device)
    seconds = time.perf_counter() - began
    done = sum(len(b) for b in batches[1:])
    return done / seconds, syncs[0] / done


def eval_speed(dataset, bank, device: torch.device) -> float:
    """Ordered pairs of the validation and unseen classes scored per second."""
    torch.manual_seed(0)
    hypernet = build_hypernet("EV", text_dim=bank.dim, feature_dim=dataset.feature_dim)
    hypernet = hypernet.to(device)
    classes = [*dataset.split.val, *dataset.split.unseen]
    run = lambda: pair_accuracies(  # noqa: E731
        hypernet, bank.to(device), dataset, classes, "all", torch.Generator().manual_seed(0)
    )
    run()
    _sync(device)
    began = time.perf_counter()
    pairs, _ = run()
    _sync(device)
    return len(pairs) / (time.perf_counter() - began)


def main(argv: list[str] | None = None) -> None:
    """The command line (module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="A tenth of the work.")
    parser.add_argument("--tasks-per-step", type=int, default=100)
    args = parser.parse_args(argv)
    scale = 10 if args.quick else 1
    dataset = _make_dataset()
    bank = TextBank.build(dataset.classes, dataset.descriptions, "descriptions", HashingEncoder())
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    else:
        print(f"CUDA: not available (torch {torch.__version__}); CPU figures only")
    threads = torch.get_num_threads()
    print(f"CPU: {threads} threads (one for one task a step, as `t2m train` does)")
    for rule_name, rule in RULES.items():
        per_step = rule.get("tasks_per_step", args.tasks_per_step)
        tasks = (600 if per_step == 1 else 3000) // scale
        for device in devices:
            for amp in (False, True) if device.type == "cuda" else (False,):
                if device.type == "cpu":
                    # As `t2m train` chooses (`phase_threads`): one a task a step.
                    torch.set_num_threads(1 if per_step == 1 else threads)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                speed, syncs = train_speed(dataset, bank, device, rule, tasks, per_step, amp)
                line = f"{rule_name:30s} {device.type:4s}{' bf16' if amp else '     '}"
                line += f" {speed:9.1f} tasks/s"
                if device.type == "cuda":
                    peak = torch.cuda.max_memory_allocated() / 2**20
                    line += f"   peak {peak:7.1f} MiB   host syncs/task {syncs:.3f}"
                print(line, flush=True)
    torch.set_num_threads(threads)
    for device in devices:
        print(f"{'evaluation, ordered pairs':30s} {device.type:9s} ", end="")
        print(f"{eval_speed(dataset, bank, device):9.1f} pairs/s", flush=True)


if __name__ == "__main__":
    main()
