"""The small, explicit device-specific part: process group from torchrun's environment,
NCCL on CUDA and gloo on CPU, one device per process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    process_group: bool = False  # launched by torchrun: one process included, as on 8 GPUs

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or self.process_group


def setup(device: str = "auto") -> Context:
    """Join the process group if launched by ``torchrun`` (``WORLD_SIZE`` set, 1 included: a
    one-GPU run takes the path of an 8-GPU one, DDP and SyncBN over NCCL) and pick the device."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("run.device is 'cuda' but no CUDA device is available")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    launched = "WORLD_SIZE" in os.environ
    if launched and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Context(rank, world_size, local_rank, torch_device, process_group=launched)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: Context) -> None:
    if context.distributed:
        dist.barrier()


def gather_objects(context: Context, items: list) -> list:
    """Concatenate per-rank lists on every rank (the predictions of a sharded evaluation)."""
    if not context.distributed:
        return items
    gathered: list[list] = [None] * context.world_size  # type: ignore[list-item]
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]
