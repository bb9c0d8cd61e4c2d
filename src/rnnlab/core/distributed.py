"""Data-parallel training with ``torch.distributed``, started by ``torchrun``.

torchrun starts one process per rank and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and the rendezvous address; :func:`ranks_from_env`
reads them and :func:`start` joins the process group (gloo on the CPU, nccl on CUDA).
Nothing here does rendezvous or process management of its own.

One run, many ranks: every rank builds the same model from the same seed and draws the
same seeded order of global batches; each trains on its contiguous shard of every
global batch (:class:`ShardedBatches`), and DistributedDataParallel averages the
gradients, so a step equals the single-process step on the whole global batch. Every
rank scores the full validation set (it is small), so validation numbers are the
single-process ones; only rank 0 writes the run record. The shards are made by
:class:`rnnlab.core.train.ShardedBatches`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from rnnlab.core.errors import ConfigError, RankError, UserError, check

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the processes training one run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes records and prints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def sum(self, values: Sequence[float]) -> list[float]:
        """``values`` summed over every rank (as they are in a single process)."""
        if not self.active:
            return list(values)
        total = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(total)
        return total.tolist()

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def on_main(self, work: Callable[[], T]) -> T | None:
        """``work()`` on rank 0 only (the others get None). A UserError it raises is raised
        on every rank, so no rank waits for rank 0 forever; it also acts as a barrier."""
        if not self.active:
            return work()
        result, error = None, None
        if self.main:
            try:
                result = work()
            except UserError as err:
                error = err
        box = [None if error is None else str(error)]
        dist.broadcast_object_list(box, src=0)
        if error is not None:
            raise error
        if box[0] is not None:
            raise RankError(box[0])
        return result


SINGLE = Ranks()  # a run in one process


def ranks_from_env(env: Mapping[str, str] = os.environ) -> Ranks:
    """This process's ranks, from the variables torchrun sets (one process without them)."""
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        ranks = Ranks(int(env.get("RANK", "0")), world, int(env.get("LOCAL_RANK", "0")),
                      int(env.get("LOCAL_WORLD_SIZE", str(world))))
    except ValueError:
        raise ConfigError("ranks", "RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE must be "
                          "integers (torchrun sets them)") from None
    check(0 <= ranks.rank < ranks.world, "ranks", f"RANK {ranks.rank} is not below WORLD_SIZE "
          f"{ranks.world}")
    return ranks


def start(ranks: Ranks, device: torch.device | None = None) -> None:
    """Join the process group of this run (gloo for the CPU, nccl for CUDA); a no-op in a
    single process or when already joined."""
    if ranks.active and not dist.is_initialized():
        backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)


def stop(ranks: Ranks) -> None:
    if ranks.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap(model: nn.Module, ranks: Ranks) -> nn.Module:
    """The module that trains: ``model`` itself, or DDP around it (gradients averaged)."""
    if not ranks.active:
        return model
    return nn.parallel.DistributedDataParallel(model)


def threads_per_rank(cores: int, ranks: Ranks) -> int:
    """The cores of this machine shared among its ranks, at least one each."""
    return max(1, math.floor(cores / max(1, ranks.local_world)))
