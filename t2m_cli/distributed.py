"""Training on several processes (and GPUs) through torch.distributed, started by torchrun.

    torchrun --nproc-per-node 4 -m t2m_cli train CONFIG
    torchrun --nnodes 2 --nproc-per-node 4 --node-rank R --master-addr HOST -m t2m_cli train CONFIG

torchrun starts the processes and sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; t2m reads
them, joins the group (NCCL on CUDA, gloo on the CPU) and each process takes its share of
every step's tasks (`Trainer.accumulate`); their gradients are summed before each step. Every
process draws the whole batch's descriptions and orders, so their random streams stay in step
and the run is the single-process run up to float rounding, whatever the world size; a run can
therefore be resumed with another. Process 0 alone writes the run folder, logs and
checkpoints; the others train and score validation pairs with it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from t2m_cli.errors import UserInputError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Group:
    """This process's place among the processes torchrun started.

    Attributes:
        rank: 0 .. world_size - 1; 0 writes the run.
        world_size: number of processes.
        local_rank: this process's index on its node (its GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def writes(self) -> bool:
        """Whether this process writes files and logs (rank 0)."""
        return self.rank == 0


SINGLE = Group()
"""A process on its own."""


def from_environment() -> Group:
    """The group torchrun's variables describe, or `SINGLE` when they are absent.

    Raises:
        UserInputError: the variables are set but not integers in range.
    """
    if "WORLD_SIZE" not in os.environ:
        return SINGLE
    try:
        world = int(os.environ["WORLD_SIZE"])
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise UserInputError(
            "WORLD_SIZE, RANK and LOCAL_RANK must be integers (torchrun sets them); unset "
            "them to train in one process."
        ) from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise UserInputError(
            f"RANK={rank} is not a process of WORLD_SIZE={world} (or LOCAL_RANK={local} is "
            "negative); start several processes with torchrun, or unset them."
        )
    return Group(rank, world, local) if world > 1 else SINGLE


def process_device(device: torch.device, group: Group) -> torch.device:
    """The device of this process: its own GPU (``cuda:LOCAL_RANK``) when the run is on CUDA."""
    import torch

    if group.world_size > 1 and device.type == "cuda" and device.index is None:
        return torch.device("cuda", group.local_rank)
    return device


@contextmanager
def joined(group: Group) -> Iterator[None]:
    """Join the process group for the block (nothing for `SINGLE`), then leave it.

    gloo carries CPU tensors and, where CUDA is present, NCCL carries GPU tensors (each
    process on GPU ``LOCAL_RANK``); torchrun's ``MASTER_ADDR`` and ``MASTER_PORT`` say where
    to meet. A group already joined (by a caller) is used as it is and left joined.
    """
    if group.world_size == 1:
        yield
        return
    import torch
    import torch.distributed as dist

    already = dist.is_initialized()
    if not already:
        backend = "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(group.local_rank)
            backend = "cpu:gloo,cuda:nccl"
        dist.init_process_group(backend, rank=group.rank, world_size=group.world_size)
    if already:
        yield
        return
    try:
        yield
        # Leave together: a process that tears its connections down while another still
        # uses them makes that one abort (gloo).
        dist.barrier()
    finally:
        dist.destroy_process_group()


def from_writer(group: Group, value: Any) -> Any:
    """Process 0's ``value``, on every process (``value`` as given with one process).

    It carries what only process 0 reads or decides (a resumed state, whether its run folder
    could be made), so that all processes go on, or stop, together.
    """
    if group.world_size == 1:
        return value
    import torch.distributed as dist

    box = [value if group.writes else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
