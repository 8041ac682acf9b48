"""Data-parallel training across processes: which rank this process is, its shard of the data, sums across ranks.

SageMaker's PyTorch container starts the script under ``torchrun`` on every host when the job's hyperparameters
enable ``torch_distributed`` (StartTuning and StartTraining do when the instance count or the instance type's GPU
count asks for more than one process): ``--nnodes`` hosts, ``--nproc_per_node`` = the GPUs of a host (1 on a
CPU host). torchrun gives each process ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT``; without them the script is one process (world size 1) and nothing here
changes what it does.

The contract the training code keeps under N ranks (DistributedDataParallel, NCCL on GPUs, gloo on CPUs):
- **Data.** Each rank owns a fixed, strided shard of the training and validation images (``shard_refs``: rank r
  takes images r, r+N, r+2N … of the split, so every shard has every class in proportion) and decodes only that
  shard: decoding, memory and the backbone feature pass all shrink N-fold. Each epoch a rank shuffles its own
  shard and trains on the first ``min`` shard size of them, so every rank takes the same number of steps (a
  collective per step) and drops at most one image per epoch. The test split is decoded by rank 0 only, which
  alone scores it after training (test accuracy, the int8 check, the paired champion evaluation).
- **Batch and learning rate.** ``batch_size`` is per rank, so the global batch is ``batch_size x N``; the
  learning rate follows the linear scaling rule (Goyal et al., 2017, "Accurate, Large Minibatch SGD"):
  ``learning_rate x N``, reached through the loop's warm-up. ``--learning_rate_scaling none`` keeps it as given.
- **Outputs.** Metrics lines, progress lines, checkpoints, the model artifact, the rule, profiler and training
  reports come from rank 0 only; the smdebug hook and the profiler run on rank 0 only. SageMaker merges every
  host's ``/opt/ml/model`` and ``/opt/ml/output/data`` into one archive, so a second writer would clash.
- **Spot restarts.** Every rank loads the checkpoint rank 0 wrote (SageMaker restores ``/opt/ml/checkpoints`` from
  S3 on every host), so all ranks resume after the same epoch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import distributed, nn

Item = TypeVar("Item")


class DistributedLaunchError(RuntimeError):
    """The job has several hosts but this process was not started as one rank of them."""


@dataclass(frozen=True)
class Ranks:
    """This process's place among the job's training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world_size} (local rank {self.local_rank} of {self.local_world_size})"


def ranks_from_environment(environment: Mapping[str, str] | None = None) -> Ranks:
    """The ranks torchrun set; world size 1 without them. A job of several hosts (``SM_HOSTS``) not started by
    torchrun would train a separate model on the whole dataset on every host: that is refused."""
    env = os.environ if environment is None else environment
    if "WORLD_SIZE" not in env:
        hosts = json.loads(env.get("SM_HOSTS") or "[]")
        if len(hosts) > 1:
            raise DistributedLaunchError(
                f"this job runs on {len(hosts)} hosts ({', '.join(hosts)}) but this process was not started by "
                "torchrun, so every host would train its own model on the whole dataset. Enable SageMaker's "
                "torch_distributed (hyperparameter sagemaker_torch_distributed_enabled=true, which StartTraining "
                "and StartTuning set when TrainingInstanceCount or TuningInstanceCount is above 1), or use one instance"
            )
        return Ranks()
    return Ranks(
        rank=int(env["RANK"]),
        world_size=int(env["WORLD_SIZE"]),
        local_rank=int(env.get("LOCAL_RANK", "0")),
        local_world_size=int(env.get("LOCAL_WORLD_SIZE", "1")),
    )


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def start(ranks: Ranks, device: torch.device) -> None:
    """Join the job's process group (a no-op for one process); torchrun's MASTER_ADDR/PORT say where."""
    if ranks.distributed and not distributed.is_initialized():
        distributed.init_process_group(backend_for(device), rank=ranks.rank, world_size=ranks.world_size)


def stop() -> None:
    if distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


def shard_refs(items: Sequence[Item], ranks: Ranks) -> list[Item]:
    """This rank's fixed share of a split: items rank, rank + N, rank + 2N … (disjoint across ranks, together all
    of them; strided, so a split listed class by class gives every rank every class)."""
    return list(items[ranks.rank :: ranks.world_size])


def sum_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sums over every rank (the tensor itself for one process); on the tensor's device."""
    if not (distributed.is_available() and distributed.is_initialized()):
        return values
    total = values.clone()
    distributed.all_reduce(total, op=distributed.ReduceOp.SUM)
    return total


def min_across_ranks(value: int, device: torch.device) -> int:
    if not (distributed.is_available() and distributed.is_initialized()):
        return value
    smallest = torch.tensor([value], device=device, dtype=torch.long)
    distributed.all_reduce(smallest, op=distributed.ReduceOp.MIN)
    return int(smallest)


def scaled_learning_rate(learning_rate: float, ranks: Ranks, scaling: str) -> float:
    """The learning rate for a global batch of ``batch_size x world_size``: linear scaling, or as given."""
    if scaling == "linear":
        return learning_rate * ranks.world_size
    if scaling == "none":
        return learning_rate
    raise ValueError(f"learning_rate_scaling must be linear or none, got {scaling!r}")


def data_parallel(network: nn.Module, ranks: Ranks, device: torch.device) -> nn.Module:
    """``network`` wrapped for gradient averaging across ranks (itself for one process). The caller keeps the
    unwrapped module for evaluation, checkpoints and the artifact, so their keys carry no ``module.`` prefix."""
    if not ranks.distributed:
        return network
    device_ids = [device.index] if device.type == "cuda" and device.index is not None else None
    return nn.parallel.DistributedDataParallel(network, device_ids=device_ids)
