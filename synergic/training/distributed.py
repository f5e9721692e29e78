"""torch.distributed, the way torchrun launches it.

Under ``torchrun`` (or ``synergic run --devices N``, which calls it) the processes already exist
and their environment holds RANK, WORLD_SIZE and LOCAL_RANK: :func:`init_distributed` joins the
process group (NCCL on GPUs, gloo on CPUs) and nothing else changes for a single process.
Every rank draws the same pairs from the seeded sampler and takes its own contiguous share of
the global batch; only rank 0 writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from synergic.errors import SynergicError


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, total: int) -> tuple[int, int]:
        """``(start, stop)`` of this rank's contiguous share of ``total`` items (no padding)."""
        return total * self.rank // self.world_size, total * (self.rank + 1) // self.world_size


def current() -> Distributed:
    if dist.is_available() and dist.is_initialized():
        return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return Distributed()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str = "auto") -> Distributed:
    """Join the process group when launched by torchrun; a no-op otherwise."""
    if not launched_by_torchrun():
        return Distributed()
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device != "cpu"
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return current()


def device_for(device: str, info: Distributed) -> str:
    """Each rank of a multi-GPU run gets its own GPU (cuda:LOCAL_RANK)."""
    if info.enabled and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{info.local_rank}"
    return device


def check_batch(batch_size: int, info: Distributed) -> None:
    if info.enabled and batch_size % info.world_size:
        raise SynergicError(
            f"train.batch_size {batch_size} is the global batch and must divide evenly among "
            f"{info.world_size} processes: use a multiple of {info.world_size}"
        )


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_object(value):
    """Rank 0's ``value`` on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_gather_objects(value) -> list:
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def average(values: torch.Tensor) -> torch.Tensor:
    """The mean over ranks of a float tensor (itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / dist.get_world_size()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
