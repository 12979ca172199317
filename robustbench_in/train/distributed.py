"""DistributedDataParallel plumbing: one process per device under ``torchrun``, gloo on CPU, nccl on CUDA.

Rank 0 alone logs and writes; metrics are summed across ranks; at the end every rank's weights are compared.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_world(device: torch.device) -> tuple[World, torch.device]:
    """The process group torchrun describes in the environment (none for a single process), and this rank's
    device (``cuda:LOCAL_RANK`` under torchrun on GPUs)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(), device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), local_rank), device


def sum_across(world: World, values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (the values themselves in a single process)."""
    if not world.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def weights_agree(world: World, module: torch.nn.Module, device: torch.device) -> bool:
    """Do all ranks hold the same weights? (A float64 checksum of every parameter and buffer, gathered.)"""
    if not world.distributed:
        return True
    total = sum(float(t.double().sum()) + float(t.double().abs().sum()) for t in module.state_dict().values()
                if t.is_floating_point())
    gathered = [torch.zeros(1, dtype=torch.float64, device=device) for _ in range(world.size)]
    dist.all_gather(gathered, torch.tensor([total], dtype=torch.float64, device=device))
    return all(torch.equal(g, gathered[0]) for g in gathered)


def sync_buffers(world: World, module: torch.nn.Module) -> None:
    """Rank 0's buffers (batch-norm running statistics) to every rank: DDP broadcasts them before each forward,
    so after the last step of an epoch each rank holds the statistics of its own last batch."""
    if world.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
