"""Training speed: the seed's recipe against ours, same model, same data, same machine, one run.

Seed recipe: torchvision ImageFolder on the JPEG files, ``Resize((S, S))``, ``RandomHorizontalFlip``,
``ToTensor``, ``Normalize`` on PIL images every epoch, ``DataLoader(batch_size=32, num_workers=0)``, fp32,
NCHW, SGD (lr 0.01, momentum 0.9) at a constant learning rate.
Ours: the training code's path (dog_data decode cache, channels_last, bf16 autocast where the CPU/GPU has bf16
units, batch 64, training_loop.train_one_epoch), with our SGD (Nesterov, warm-up + cosine).

Parts (each prints figures and ratios, measured in this run; seed and ours alternate round by round so that
load from other processes hits both alike):
1. full finetune, all parameters trainable, same resolution: images/s;
2. frozen backbone (only fc trainable): images/s of the seed's frozen recipe vs ours streamed (the backbone pass
   training_job runs for a frozen backbone: eval mode, BN folded into the convs, no_grad, batch 32, then the fc
   step) and ours with cached backbone features (what hpo.py / train_model.py do for ``--trainable fc``),
   amortised over a 10-epoch run including the one-off feature pass;
3. time to a fixed validation accuracy from random init on the learnable synthetic set.

    .venv/bin/python benchmarks/training_speed.py            # a few minutes on 2 CPU cores
    .venv/bin/python benchmarks/training_speed.py --quick    # smaller, for a smoke run

On a machine shared with other busy processes, add ``--threads 1``: two OpenMP threads stall whenever another
process holds one of the two cores, which makes the 2-thread figures swing by 2-3x from round to round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn
from torchvision import datasets, transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training_code"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dog_data
import dog_model
from training_loop import Compute, choose_compute, evaluate, make_optimizer, train_one_epoch, warmup_cosine

from offline.synthetic_dataset import write_dataset_zip

SEED_BATCH, OUR_BATCH = 32, 64


def seed_loader(folder: Path, image_size: int, *, train: bool) -> torch.utils.data.DataLoader:
    steps = [transforms.Resize((image_size, image_size))]
    if train:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize(dog_data.IMAGENET_MEAN, dog_data.IMAGENET_STD)]
    dataset = datasets.ImageFolder(str(folder), transform=transforms.Compose(steps))
    return torch.utils.data.DataLoader(dataset, batch_size=SEED_BATCH, shuffle=train, num_workers=0)


def endless(make: Callable[[], Iterator]) -> Iterator:
    while True:
        yield from make()


def timed_steps(step: Callable[[torch.Tensor, torch.Tensor], None], batches: Iterator, count: int) -> float:
    """Images per second over ``count`` steps, data loading included, after one untimed warm-up step."""
    step(*next(batches))
    images, started = 0, time.perf_counter()
    for _ in range(count):
        inputs, labels = next(batches)
        step(inputs, labels)
        images += len(labels)
    return images / (time.perf_counter() - started)


def seed_step_fn(model: nn.Module) -> Callable[[torch.Tensor, torch.Tensor], None]:
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    loss_function = nn.CrossEntropyLoss()

    def step(inputs: torch.Tensor, labels: torch.Tensor) -> None:
        model.train()
        loss = loss_function(model(inputs), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def our_step_fn(
    model: nn.Module, compute: Compute, frozen: list[nn.Module], network: nn.Module | None = None
) -> Callable[[torch.Tensor, torch.Tensor], None]:
    network = network or model
    optimizer = make_optimizer(
        network.named_parameters(), name="sgd", learning_rate=0.01, momentum=0.9, weight_decay=1e-4
    )
    loss_function = nn.CrossEntropyLoss()

    def step(inputs: torch.Tensor, labels: torch.Tensor) -> None:
        network.train()
        for module in frozen:
            module.eval()
        with compute.autocast():
            loss = loss_function(network(inputs), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def interleaved(rounds: int, contenders: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Median images/s per contender, alternating contenders within each round."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, measure in contenders.items():
            samples[name].append(measure())
    for name, values in samples.items():
        print(
            f"  {name:<34} {statistics.median(values):8.1f} img/s   (rounds: {', '.join(f'{v:.1f}' for v in values)})"
        )
    return {name: statistics.median(values) for name, values in samples.items()}


class _HeadOnFrozenBackbone(nn.Module):
    """Ours streamed: the frozen backbone runs in eval mode without autograd; only fc is in the graph."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        # The backbone pass training_job._cache_features runs for --trainable fc: BN folded into the convs.
        self.backbone = dog_model.folded_backbone(model)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = dog_model.backbone_features(self.backbone, images)
        return self.model.fc(features.float())


def throughput(args: argparse.Namespace, folder: Path, index: dog_data.DatasetIndex, compute: Compute) -> None:
    size, classes = args.image_size, len(index.classes)
    started = time.perf_counter()
    cache = dog_data.decode_split(index, "train", size, max_corrupt_fraction=0.0)
    decode_seconds = time.perf_counter() - started
    print(f"  decode cache: {len(cache)} images at {size}px in {decode_seconds:.1f} s (once per job)")
    seed_train = folder / "train"
    generator = torch.Generator().manual_seed(0)

    def seed_batches() -> Iterator:
        return endless(lambda: iter(seed_loader(seed_train, size, train=True)))

    def our_batches() -> Iterator:
        return endless(lambda: dog_data.image_batches(cache, OUR_BATCH, compute.device, shuffle=True, flip=True,
                                                      generator=generator))  # fmt: skip

    print(f"\n1. full finetune, all {sum(p.numel() for p in dog_model.build_model(classes).parameters()):,} "
          f"parameters trainable, {size}px")  # fmt: skip
    seed_model = dog_model.build_model(classes)
    our_model = dog_model.build_model(classes).to(memory_format=torch.channels_last)
    seed_step, our_step = seed_step_fn(seed_model), our_step_fn(our_model, compute, [])
    seed_iter, our_iter = seed_batches(), our_batches()
    seed_n, our_n = args.steps, max(1, args.steps * SEED_BATCH // OUR_BATCH)
    full = interleaved(args.rounds, {
        "seed (fp32, PIL every epoch, bs 32)": lambda: timed_steps(seed_step, seed_iter, seed_n),
        f"ours ({compute.precision}, channels_last, bs 64)": lambda: timed_steps(our_step, our_iter, our_n),
    })  # fmt: skip
    seed_full, ours_full = full.values()
    print(f"  ratio ours/seed: {ours_full / seed_full:.2f}x   (target >= 2.2x)")

    print(f"\n2. frozen backbone, only fc trainable ({512 * classes + classes:,} parameters), {size}px")
    seed_frozen_model = dog_model.build_model(classes)
    dog_model.freeze(seed_frozen_model, "fc")
    our_frozen_model = dog_model.build_model(classes).to(memory_format=torch.channels_last)
    frozen = dog_model.freeze(our_frozen_model, "fc")
    for module in frozen:
        module.eval()
    head_on_backbone = _HeadOnFrozenBackbone(our_frozen_model)
    seed_frozen_step = seed_step_fn(seed_frozen_model)
    our_frozen_step = our_step_fn(our_frozen_model, compute, frozen, network=head_on_backbone)
    feature_batch = dog_model.FEATURE_BATCH_SIZE  # the batch of training_job's backbone pass
    seed_iter = seed_batches()
    our_iter = endless(lambda: dog_data.image_batches(cache, feature_batch, compute.device, shuffle=True, flip=True,
                                                      generator=generator))  # fmt: skip
    streamed = interleaved(args.rounds, {
        "seed frozen (BN in train mode)": lambda: timed_steps(seed_frozen_step, seed_iter, seed_n),
        f"ours frozen, streamed (bs {feature_batch})": lambda: timed_steps(
            our_frozen_step, our_iter, max(1, args.steps * SEED_BATCH // feature_batch)
        ),
    })  # fmt: skip
    seed_frozen, ours_streamed = streamed.values()

    # Ours as the jobs run it: one pass of the backbone over the image and its mirror, then fc epochs on features.
    started = time.perf_counter()
    features = _features(our_frozen_model, cache, compute)
    feature_seconds = time.perf_counter() - started
    head = our_frozen_model.fc
    optimizer = make_optimizer(head.named_parameters(), name="sgd", learning_rate=0.01, momentum=0.9, weight_decay=0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    started = time.perf_counter()
    epochs = 10
    for _ in range(epochs):
        batches = dog_data.feature_batches(features, cache.labels, OUR_BATCH, shuffle=True, generator=generator)
        train_one_epoch(head, batches, nn.CrossEntropyLoss(), optimizer, scheduler, compute)
    head_seconds = time.perf_counter() - started
    amortised = epochs * len(cache) / (feature_seconds + head_seconds)
    print(
        f"  ours, cached features: backbone pass {feature_seconds:.1f} s for {len(cache)} images x 2 views, "
        f"then {epochs} fc epochs in {head_seconds:.2f} s -> {amortised:.1f} img/s amortised over {epochs} epochs"
    )
    print(f"  ratio ours streamed / seed frozen: {ours_streamed / seed_frozen:.2f}x   (target >= 3x)")
    print(f"  ratio ours cached features (10 epochs) / seed frozen: {amortised / seed_frozen:.1f}x")
    print(f"  ratio ours cached features (10 epochs) / seed full finetune: {amortised / seed_full:.1f}x")


@torch.no_grad()
def _features(model: nn.Module, split: dog_data.DecodedSplit, compute: Compute) -> torch.Tensor:
    model = dog_model.folded_backbone(model)
    views = []
    for mirror in (False, True):
        chunks = []
        for start in range(0, len(split), dog_model.FEATURE_BATCH_SIZE):
            images = split.images[start : start + dog_model.FEATURE_BATCH_SIZE]
            with compute.autocast():
                batch = dog_data.normalise(images.flip(2) if mirror else images, compute.device)
                chunks.append(dog_model.backbone_features(model, batch).float())
        views.append(torch.cat(chunks))
    return torch.stack(views, dim=1)


def time_to_accuracy(args: argparse.Namespace, folder: Path, index: dog_data.DatasetIndex, compute: Compute) -> None:
    size, classes, target = args.tta_image_size, len(index.classes), args.target_accuracy
    print(
        f"\n3. time to valid_accuracy >= {target:.0%} from random init, {classes} classes, {size}px (training "
        f"time incl. our decode cache; validation passes not counted; cap {args.tta_max_seconds:.0f} s)"
    )
    if args.progressive_resize:
        print(
            f"  ours with progressive resizing (training_job --progressive_resize): epochs train at "
            f"{dog_data.progressive_sizes(size, args.tta_planned_epochs)} px; both validate at {size}px"
        )

    def seed_run() -> tuple[float | None, list[str]]:
        torch.manual_seed(0)
        model = dog_model.build_model(classes)
        step = seed_step_fn(model)
        train, valid = seed_loader(folder / "train", size, train=True), seed_loader(folder / "valid", size, train=False)
        elapsed, log = 0.0, []
        for epoch in range(1, 1000):
            started = time.perf_counter()
            for inputs, labels in train:
                step(inputs, labels)
            elapsed += time.perf_counter() - started
            model.eval()
            accuracy = evaluate(model, valid, nn.CrossEntropyLoss(), choose_compute("fp32"))[1]
            log.append(f"{epoch}:{accuracy:.2f}@{elapsed:.0f}s")
            if accuracy >= target:
                return elapsed, log
            if elapsed > args.tta_max_seconds:
                return None, log
        return None, log

    def our_run() -> tuple[float | None, list[str]]:
        torch.manual_seed(0)
        started = time.perf_counter()
        train = dog_data.decode_split(index, "train", size, max_corrupt_fraction=0.0)
        valid = dog_data.decode_split(index, "valid", size, max_corrupt_fraction=0.0)
        elapsed = time.perf_counter() - started
        model = dog_model.build_model(classes).to(compute.device, memory_format=torch.channels_last)
        optimizer = make_optimizer(model.named_parameters(), name="sgd", learning_rate=args.our_learning_rate,
                                   momentum=0.9, weight_decay=1e-4)  # fmt: skip
        steps_per_epoch = -(-len(train) // args.our_batch_size)
        total = steps_per_epoch * args.tta_planned_epochs
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, steps_per_epoch))
        # As training_job does with --progressive_resize: early epochs below the final size, validation always at it.
        sizes = (
            dog_data.progressive_sizes(size, args.tta_planned_epochs)
            if args.progressive_resize
            else [size] * args.tta_planned_epochs
        )
        log = []
        for epoch in range(1, args.tta_planned_epochs + 1):
            generator = torch.Generator().manual_seed(epoch)
            batches = dog_data.image_batches(train, args.our_batch_size, compute.device, shuffle=True, flip=True,
                                             generator=generator, size=sizes[epoch - 1])  # fmt: skip
            result = train_one_epoch(model, batches, nn.CrossEntropyLoss(), optimizer, scheduler, compute,
                                     before_train=model.train)  # fmt: skip
            elapsed += result.seconds
            model.eval()
            batches = dog_data.image_batches(valid, OUR_BATCH, compute.device, shuffle=False, flip=False)
            accuracy = evaluate(model, batches, nn.CrossEntropyLoss(), compute)[1]
            trained_at = f"[{sizes[epoch - 1]}px]" if args.progressive_resize else ""
            log.append(f"{epoch}{trained_at}:{accuracy:.2f}@{elapsed:.1f}s")
            if accuracy >= target:
                return elapsed, log
            if elapsed > args.tta_max_seconds:
                return None, log
        return None, log

    ours, our_log = our_run()
    print(f"  ours: {'not reached' if ours is None else f'{ours:.1f} s'}   epochs (accuracy@time): {' '.join(our_log)}")
    seed, seed_log = seed_run()
    print(
        f"  seed: {'not reached' if seed is None else f'{seed:.1f} s'}   epochs (accuracy@time): {' '.join(seed_log)}"
    )
    if ours is not None and seed is not None:
        print(f"  ratio seed time / our time: {seed / ours:.2f}x   (target >= 3x)")
    elif ours is not None:
        seed_lower_bound = float(seed_log[-1].rsplit("@", 1)[1].rstrip("s"))
        print(f"  ratio seed time / our time: > {seed_lower_bound / ours:.2f}x (seed did not reach it within the cap)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--train-per-class", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224, help="resolution of parts 1 and 2")
    parser.add_argument("--tta-image-size", type=int, default=128, help="resolution of part 3 (both recipes)")
    parser.add_argument("--steps", type=int, default=4, help="timed seed batches per round (ours: same images)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--target-accuracy", type=float, default=0.8)
    parser.add_argument("--tta-max-seconds", type=float, default=150.0)
    parser.add_argument("--tta-planned-epochs", type=int, default=4, help="our cosine schedule's length")
    parser.add_argument("--our-learning-rate", type=float, default=0.01, help="part 3 (training_job's default)")
    parser.add_argument("--our-batch-size", type=int, default=32, help="part 3 (parts 1 and 2 use 64)")
    parser.add_argument(
        "--progressive-resize", action=argparse.BooleanOptionalAction, default=True,
        help="part 3, ours: train early epochs at lower resolution (training_job --progressive_resize)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--parts", default="1,2,3")
    parser.add_argument("--quick", action="store_true", help="smaller settings for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.classes, args.train_per_class, args.image_size, args.tta_image_size = 4, 16, 96, 64
        args.steps, args.rounds, args.tta_max_seconds = 2, 2, 30.0
    if args.threads:
        torch.set_num_threads(args.threads)
    compute = choose_compute("auto")
    print(
        f"device {compute.device}, precision {compute.precision}, torch threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other processes skew both recipes)"
    )
    with tempfile.TemporaryDirectory() as scratch:
        counts = (args.classes * args.train_per_class, args.classes * 8, args.classes)
        zip_path = write_dataset_zip(Path(scratch) / "dogImages.zip", num_classes=args.classes, counts=counts,
                                     realistic=True, seed=0)  # fmt: skip
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(scratch)
        folder = Path(scratch) / "dogImages"
        index = dog_data.index_dataset(zip_path)
        print(f"data: {counts[0]} train / {counts[1]} valid realistic JPEGs, {args.classes} classes")
        parts = set(args.parts.split(","))
        if parts & {"1", "2"}:
            throughput(args, folder, index, compute)
        if "3" in parts:
            time_to_accuracy(args, folder, index, compute)


if __name__ == "__main__":
    main()
