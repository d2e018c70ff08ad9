"""Small collectives for code that must make every rank take the same path (FSDP forwards are collectives), and
the policy's weights gathered from FSDP shards."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from lightning.pytorch.strategies import FSDPStrategy


def _collective_device(device=None) -> torch.device:
    """A device the default process group can reduce on: CUDA for NCCL, else the given device or the CPU."""
    backend = str(dist.get_backend())
    if device is not None and torch.device(device).type == "cuda":
        return torch.device(device)
    if "nccl" in backend and "gloo" not in backend and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(flag: bool, device=None) -> bool:
    """True when ``flag`` is True on any rank (an all-reduce MAX); the flag itself outside torch.distributed.

    Every rank must call it at the same point: it is a collective.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return bool(flag)
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_collective_device(device))
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_objects(obj) -> list:
    """Every rank's ``obj`` in rank order (``[obj]`` outside torch.distributed); a collective."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def sharded_over_ranks(trainer) -> bool:
    """FSDP over several processes: each holds a shard, and every forward or state dict is a collective."""
    return isinstance(trainer.strategy, FSDPStrategy) and trainer.world_size > 1


def policy_state_dict(trainer) -> dict | None:
    """Under FSDP, the policy's full state dict gathered from the shards (a collective: call it on every rank);
    otherwise None (the live model's own weights are whole)."""
    if not isinstance(trainer.strategy, FSDPStrategy):
        return None
    full = trainer.strategy.lightning_module_state_dict()
    return {k[len("model.") :]: v for k, v in full.items() if k.startswith("model.")}


def launched_rank() -> int:
    """This process's global rank as the launcher set it, before any process group exists: Lightning re-runs the
    script once per extra device with LOCAL_RANK (and NODE_RANK) set; SLURM and torchrun set RANK."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    local, node = int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("NODE_RANK", 0))
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", 0)) or torch.cuda.device_count() or 1
    return node * per_node + local


def is_launched_rank_zero() -> bool:
    """Whether this process writes the run's files and scores the base model (the others read what it wrote)."""
    return launched_rank() == 0


def training_device(trainer_cfg) -> str:
    """``cpu`` or this process's GPU: under a multi-GPU launch (Lightning re-runs train.py once per GPU, setting
    LOCAL_RANK) every process loads and scores on its own GPU, not all on GPU 0."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        return f"cuda:{local_rank}"
    return "cpu"
