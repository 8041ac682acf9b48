"""Datasets larger than memory: the decoded-image cache in memory against the on-disk (memory-mapped) cache.

Generates a dogImages-layout zip of ``--images`` 224 px JPEG training images (a few classes of offline's synthetic
images) in a temporary folder, then, in one child process per mode (so each peak is its own):
1. decodes the train split through the real path (``dog_data.decode_splits``), in memory (a budget above the
   split) or on disk (a budget of 1 MiB);
2. one data epoch: every training batch of the split, shuffled and flipped (``dog_data.image_batches``), without a
   network: what the full-finetune path reads from the cache each epoch;
3. a short training pass: ``--train_steps`` steps of the whole ResNet18 on those batches.
Each child reports its peak RSS (``getrusage`` max RSS, which counts mapped file pages too), its peak anonymous
RSS (polled from /proc/self/status: the memory no page reclaim can take back), and images/s per stage.

    .venv/bin/python benchmarks/large_dataset.py                  # 30,000 images: several minutes on 2 cores
    .venv/bin/python benchmarks/large_dataset.py --images 5000    # quicker
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training_code"))
sys.path.insert(0, str(ROOT))

MODES = ("memory", "disk")


def _anon_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def child(mode: str, zip_path: str, cache_dir: str, batch_size: int, train_steps: int, threads: int) -> dict:
    import dog_data
    import dog_model
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    peak_anon = [_anon_rss_bytes()]
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.05):
            peak_anon[0] = max(peak_anon[0], _anon_rss_bytes())

    threading.Thread(target=poll, daemon=True).start()
    index = dog_data.index_dataset(zip_path)
    count = len(index.splits["train"])
    budget = dog_data.decoded_bytes(count, 224) + 1 if mode == "memory" else 2**20
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    train = dog_data.decode_splits(
        index, 224, max_corrupt_fraction=0.0, budget_bytes=budget, cache_dir=cache_dir, splits=("train",)
    )["train"]
    decode_seconds = time.perf_counter() - started
    rss_after_decode = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert train.on_disk == (mode == "disk")

    cpu = torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    seen = 0
    for images, _ in dog_data.image_batches(train, batch_size, cpu, shuffle=True, flip=True, generator=generator):
        seen += len(images)
    epoch_seconds = time.perf_counter() - started

    model = dog_model.build_model(len(index.classes)).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_function = nn.CrossEntropyLoss()
    model.train()
    batches = dog_data.image_batches(
        train, batch_size, cpu, shuffle=True, flip=True, generator=generator, max_batches=train_steps + 1
    )
    inputs, labels = next(batches)  # the first step (allocator warm-up) is left out of the timing
    loss_function(model(inputs), labels).backward()
    started, trained = time.perf_counter(), 0
    for inputs, labels in batches:
        optimizer.zero_grad(set_to_none=True)
        loss_function(model(inputs), labels).backward()
        optimizer.step()
        trained += len(labels)
    train_seconds = time.perf_counter() - started
    stop.set()
    return {
        "mode": mode,
        "images": count,
        "rss_before_decode": rss_before,
        "peak_rss_after_decode": rss_after_decode,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_anon_rss": peak_anon[0],
        "decode_images_per_second": count / decode_seconds,
        "epoch_batches_images_per_second": seen / epoch_seconds,
        "train_images_per_second": trained / train_seconds if train_seconds else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=30_000, help="training images (224 px JPEGs)")
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--train_steps", type=int, default=3, help="ResNet18 full-finetune steps after the epoch")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each child")
    parser.add_argument(
        "--order", default="memory,disk", help="the order the modes run in (the first also reads the zip cold)"
    )
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--zip", help=argparse.SUPPRESS)
    parser.add_argument("--cache_dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(args.child, args.zip, args.cache_dir, args.batch_size, args.train_steps, args.threads)
        print("RESULT " + json.dumps(result), flush=True)
        return

    from benchmarks.machine import cpu_line
    from offline.synthetic_dataset import write_dataset_zip

    order = args.order.split(",")
    if sorted(order) != sorted(MODES):
        parser.error(f"--order must name both modes {MODES}, got {args.order!r}")
    print(cpu_line(), flush=True)
    with tempfile.TemporaryDirectory(prefix="large-dataset-") as scratch:
        started = time.perf_counter()
        zip_path = write_dataset_zip(
            Path(scratch) / "dogImages.zip",
            num_classes=args.classes,
            counts=(args.images, args.classes, args.classes),
            image_size=224,
            seed=0,
        )
        print(
            f"generated {args.images:,} train images at 224 px: {zip_path.stat().st_size / 2**20:.0f} MiB of JPEGs "
            f"in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        results = {}
        for mode in order:
            command = [sys.executable, __file__, "--child", mode, "--zip", str(zip_path), "--cache_dir", scratch,
                       "--batch_size", str(args.batch_size), "--train_steps", str(args.train_steps),
                       "--threads", str(args.threads)]  # fmt: skip
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[mode] = json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[7:])
            print(_line(results[mode]), flush=True)
    memory, disk = results["memory"], results["disk"]
    grown = memory["peak_rss_after_decode"] - memory["rss_before_decode"]
    print(
        f"in-memory decode: peak RSS grows {grown / 2**20 / (args.images / 1000):.0f} MiB per 1,000 images "
        f"(the uint8 cache alone: {150_528 * 1000 / 2**20:.0f} MiB)"
    )
    print(
        f"disk/memory: peak RSS {disk['peak_rss'] / memory['peak_rss']:.2f}x, peak anonymous RSS "
        f"{disk['peak_anon_rss'] / memory['peak_anon_rss']:.2f}x, decode images/s "
        f"{disk['decode_images_per_second'] / memory['decode_images_per_second']:.2f}x, epoch of batches images/s "
        f"{disk['epoch_batches_images_per_second'] / memory['epoch_batches_images_per_second']:.2f}x, training "
        f"images/s {disk['train_images_per_second'] / memory['train_images_per_second']:.2f}x"
    )


def _line(result: dict) -> str:
    mib = 2**20
    return (
        f"{result['mode']:>6}: peak RSS {result['peak_rss'] / mib:,.0f} MiB (after decode "
        f"{result['peak_rss_after_decode'] / mib:,.0f}, before {result['rss_before_decode'] / mib:,.0f}), peak "
        f"anonymous RSS {result['peak_anon_rss'] / mib:,.0f} MiB; decode {result['decode_images_per_second']:.0f} "
        f"images/s, epoch of batches {result['epoch_batches_images_per_second']:.0f} images/s, ResNet18 training "
        f"{result['train_images_per_second']:.1f} images/s"
    )


if __name__ == "__main__":
    main()
