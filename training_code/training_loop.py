"""The loop: one training epoch, one evaluation, the precision and memory-format choices, checkpoints.

Speed choices (measured on the 2-core CPU in research/cpu-performance.md, and standard on GPUs):
- channels_last for model and batches: the convolution kernels run faster in NHWC (1.29x on this CPU in fp32).
- bf16 autocast for forward and loss, weights and optimizer in fp32; only where the hardware has bf16 units
  (avx512_bf16 / amx_bf16 CPU flags, or a CUDA device that supports bf16), detected, never assumed: elsewhere bf16
  emulation is slower than fp32. Even there, small images can run faster in fp32: the frozen backbone's feature
  pass times both and takes the faster (training_job.feature_pass_compute).
- no torch.compile: it costs ~33 s up front, was slower than eager here, and breaks the smdebug hooks.

Optimiser: SGD with Nesterov momentum 0.9, weight decay on weights only (not BN or biases), a linear warm-up then
cosine decay to zero over the whole run, stepped per batch. It is the standard recipe for ResNets, it takes the
tuner's ``learning_rate`` on the usual scale (0.001-0.1), and a schedule that ends at zero makes the last epoch's
weights the good ones, so no "best epoch" bookkeeping is needed. ``--optimizer adamw`` is there for experiments.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dog_model
import torch
from torch import nn

CHECKPOINT_NAME = "checkpoint.pth"
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Compute:
    device: torch.device
    autocast_dtype: torch.dtype | None

    @property
    def precision(self) -> str:
        return "bf16" if self.autocast_dtype == torch.bfloat16 else "fp32"

    def autocast(self) -> AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class GpuUnavailable(RuntimeError):
    """The instance has GPUs but torch cannot use them: training on its CPU would be silently ~50x slower."""


def check_gpus_visible(instance_gpus: int) -> None:
    """GpuUnavailable when SageMaker gave the job ``instance_gpus`` GPUs (SM_NUM_GPUS) and torch sees none: the
    image's CUDA build does not suit the instance's driver or GPU generation (torch 2.13's cu130 build has kernels
    for sm_75 and newer only), or the image is a CPU build."""
    if instance_gpus > 0 and not torch.cuda.is_available():
        raise GpuUnavailable(
            f"this instance has {instance_gpus} GPU(s) (SM_NUM_GPUS) but torch {torch.__version__} (CUDA "
            f"{torch.version.cuda or 'none: a CPU build'}) can use none; the job stopped instead of training on the "
            "CPU. Use a training image whose CUDA build suits the instance type (TrainingImageUri; docs/deploy.md, "
            '"Container images") or another instance type'
        )


def choose_compute(precision: str = "auto", *, local_rank: int = 0) -> Compute:
    """The device and autocast dtype; ``precision`` is "auto", "bf16" or "fp32". On a GPU host each rank takes the
    GPU of its ``local_rank``."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {precision!r}")
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        supported = torch.cuda.is_bf16_supported()
    else:
        supported = dog_model.cpu_has_native_bf16()
    use_bf16 = precision == "bf16" or (precision == "auto" and supported)
    return Compute(device, torch.bfloat16 if use_bf16 else None)


def make_optimizer(
    parameters: Iterable[tuple[str, nn.Parameter]],
    *,
    name: str,
    learning_rate: float,
    momentum: float,
    weight_decay: float,
) -> torch.optim.Optimizer:
    decayed, not_decayed = [], []
    for _, parameter in parameters:
        if parameter.requires_grad:
            # Decaying BN scales and biases only fights the normalisation; weights of convs and fc are what overfit.
            (decayed if parameter.ndim > 1 else not_decayed).append(parameter)
    groups = [{"params": decayed, "weight_decay": weight_decay}, {"params": not_decayed, "weight_decay": 0.0}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=learning_rate, momentum=momentum, nesterov=momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=learning_rate)
    raise ValueError(f"optimizer must be sgd or adamw, got {name!r}")


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warm-up, then cosine decay to zero at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


# Called once per finished step with its wall-clock start, the seconds spent waiting for the batch and the seconds
# from then until the next batch was asked for (forward, backward, optimiser step: the compute as the CPU sees it).
StepCallback = Callable[[float, float, float], None]


def timed_batches(batches: Iterable[Batch], on_step: StepCallback | None = None) -> Iterator[tuple[float, Batch]]:
    """Yields (seconds waited for the batch, batch); reports each step to ``on_step`` once the caller is done with
    it (when it asks for the next batch)."""
    iterator = iter(batches)
    while True:
        asked = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            return
        ready = time.perf_counter()
        yield ready - asked, batch
        if on_step is not None:
            done = time.perf_counter()
            on_step(time.time() - (done - asked), ready - asked, done - ready)


@dataclass
class EpochResult:
    loss: float
    images: int
    data_seconds: float
    compute_seconds: float

    @property
    def seconds(self) -> float:
        return self.data_seconds + self.compute_seconds

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def train_one_epoch(
    network: nn.Module,
    batches: Iterable[Batch],
    loss_function: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    compute: Compute,
    *,
    before_train: Callable[[], None] | None = None,
    on_step: StepCallback | None = None,
    sum_across_ranks: Callable[[torch.Tensor], torch.Tensor] = lambda totals: totals,
) -> EpochResult:
    """One pass over ``batches``; times data preparation apart from compute (forward, backward, step). The loss
    and image count are of every rank (``sum_across_ranks``); the timings are this process's."""
    if before_train is not None:
        before_train()
    loss_sum = torch.zeros((), device=compute.device)
    images = 0
    data_seconds = 0.0
    epoch_started = time.perf_counter()
    for wait_seconds, (inputs, labels) in timed_batches(batches, on_step):
        data_seconds += wait_seconds
        with compute.autocast():
            loss = loss_function(network(inputs), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        # No .item() per step: on a GPU that would stall the queue and stop batch preparation overlapping compute.
        loss_sum += loss.detach().float() * len(labels)
        images += len(labels)
    compute.synchronize()
    # Wall time not spent preparing batches is compute (including any wait for queued GPU work).
    compute_seconds = time.perf_counter() - epoch_started - data_seconds
    loss_total, image_total = sum_across_ranks(torch.stack([loss_sum, loss_sum.new_tensor(float(images))])).tolist()
    mean_loss = loss_total / image_total if image_total else float("nan")
    return EpochResult(mean_loss, int(image_total), data_seconds, compute_seconds)


@torch.no_grad()
def evaluate(
    network: nn.Module,
    batches: Iterable[Batch],
    loss_function: nn.Module,
    compute: Compute,
    *,
    on_step: StepCallback | None = None,
    sum_across_ranks: Callable[[torch.Tensor], torch.Tensor] = lambda totals: totals,
) -> tuple[float, float]:
    """Mean loss and accuracy over ``batches`` of every rank (the caller puts the network in eval mode)."""
    loss_sum = torch.zeros((), device=compute.device)
    correct = torch.zeros((), device=compute.device, dtype=torch.long)
    count = 0
    for _, (inputs, labels) in timed_batches(batches, on_step):
        with compute.autocast():
            outputs = network(inputs)
            loss = loss_function(outputs, labels)
        loss_sum += loss.float() * len(labels)
        correct += (outputs.argmax(dim=1) == labels).sum()
        count += len(labels)
    totals = sum_across_ranks(torch.stack([loss_sum.double(), correct.double(), loss_sum.new_tensor(count).double()]))
    loss_total, correct_total, count_total = totals.tolist()
    if count_total == 0:
        return float("nan"), float("nan")
    return loss_total / count_total, correct_total / count_total


def save_checkpoint(checkpoint_dir: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write atomically, so a spot interruption mid-write leaves the previous checkpoint intact."""
    directory = Path(checkpoint_dir)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / CHECKPOINT_NAME
    temporary = directory / f".{CHECKPOINT_NAME}.tmp"
    torch.save(state, temporary)
    os.replace(temporary, target)
    return target


def load_checkpoint(checkpoint_dir: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    if not checkpoint_dir:
        return None
    path = Path(checkpoint_dir) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)
