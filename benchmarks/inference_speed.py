"""Server-side inference time: the seed's request path against inference.py's, measured in the same run.

Seed path (per image): the client sends the normalised 1x3x224x224 tensor as JSON nested lists (~3.1 MB); the
server runs ``torch.tensor(json.loads(body))`` and a float32 NCHW ResNet18.
Ours: ``input_fn`` -> ``predict_fn`` -> ``output_fn`` on a ~100 KB JPEG (one image), on ``{"images": [16 x
base64]}`` (one request, one forward), and on the seed's own JSON tensor (legacy clients), each with the int8
network (what ``model_fn`` serves on a CPU with int8 dot products once the training job's int8 check passed; here
pinned, since the benchmark's random weights have no test accuracy) and with the float network (bf16 where the CPU
computes it natively, else fp32: what it serves otherwise). The targets are read on the int8 path.

Images are photo-like (colour gradients, blobs, noise) at 500x400, JPEG quality 85, about 100 KB each. Rounds
interleave the variants so that load from other processes hits them alike; each figure is the median over rounds.

    .venv/bin/python benchmarks/inference_speed.py [--rounds 5] [--repeats 8] [--threads N]

On a machine shared with other busy processes, OpenMP threads that find their cores taken wait on each other and
every variant slows down several-fold; ``--threads 1`` then gives steadier (single-core) ratios, and
``--threads 1 --clock cpu`` the CPU cost per image, which time-slicing with other processes hardly changes.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# training_code/ is a SageMaker source dir of top-level modules, not a package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training_code"))

import dog_model
import inference

NUM_CLASSES = 133
BATCH = 16
TARGET_SPEEDUP = 4.0
TARGET_BATCH_THROUGHPUT = 150.0


def photo_like_jpeg(seed: int, size: tuple[int, int] = (500, 400), noise: float = 30.0) -> bytes:
    rng = np.random.default_rng(seed)
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = []
    for _ in range(3):
        angle, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        channels.append(127 + 90 * np.sin((xs * np.cos(angle) + ys * np.sin(angle)) / rng.uniform(20, 80) + phase))
    pixels = np.stack(channels, axis=-1)
    for _ in range(12):
        cx, cy, radius = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(10, 80)
        pixels[(xs - cx) ** 2 + (ys - cy) ** 2 < radius**2] = rng.uniform(0, 255, size=3)
    # Sensor-like noise is what makes a photo's JPEG ~100 KB rather than ~20 KB.
    pixels += rng.normal(0, noise, size=pixels.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def write_model_dir(directory: Path) -> None:
    torch.manual_seed(0)
    torch.save(dog_model.build_model(NUM_CLASSES).state_dict(), directory / "model.pth")
    labels = [f"{index + 1:03d}.Breed_{index + 1}" for index in range(NUM_CLASSES)]
    (directory / "classes.json").write_text(json.dumps(labels))
    # What training_job ships for int8 calibration: decoded images at the training size (not the timed ones).
    calibration = inference.decode_images(tuple(photo_like_jpeg(1000 + seed) for seed in range(32)), 224)
    torch.save(calibration, directory / inference.CALIBRATION_FILE)


def seed_payload(jpeg: bytes) -> str:
    """What the seed's client sent for one image."""
    pixels = torch.from_numpy(np.array(Image.open(io.BytesIO(jpeg)).convert("RGB").resize((224, 224))))
    mean = torch.tensor(inference.IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(inference.IMAGENET_STD).view(3, 1, 1)
    normalised = (pixels.permute(2, 0, 1).float() / 255 - mean) / std
    return json.dumps(normalised.unsqueeze(0).tolist())


def seed_server(model: torch.nn.Module) -> Callable[[str], object]:
    def serve(body: str) -> object:
        with torch.inference_mode():
            inputs = torch.tensor(json.loads(body))
            probabilities = torch.softmax(model(inputs), dim=1)
        return json.dumps(probabilities.tolist())

    return serve


def our_server(model: inference.LoadedModel, content_type: str) -> Callable[[str | bytes], object]:
    def serve(body: str | bytes) -> object:
        return inference.output_fn(inference.predict_fn(inference.input_fn(body, content_type), model), None)

    return serve


def forward(network: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return network(inputs)


def median_seconds(call: Callable[[], object], repeats: int, clock: Callable[[], float]) -> float:
    timings = []
    for _ in range(repeats):
        start = clock()
        call()
        timings.append(clock() - start)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=8, help="calls per variant per round (batch: a quarter)")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads (0: torch's default, one per core)"
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: CPU seconds of this process (all its threads), which other processes do not inflate; "
        "with --threads 1 it is the single-core cost, and 1000 / (ms per image) the img/s per core",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    jpegs = [photo_like_jpeg(seed) for seed in range(BATCH)]
    seed_body = seed_payload(jpegs[0])
    batch_body = json.dumps({"images": [base64.b64encode(jpeg).decode("ascii") for jpeg in jpegs]})
    with tempfile.TemporaryDirectory() as directory:
        write_model_dir(Path(directory))
        # Pinned: random weights have no int8 test accuracy for the automatic choice to read (it logs a warning).
        logging.getLogger("inference").setLevel(logging.ERROR)
        ours = inference.load_model(directory, precision="int8")
        ours_float = inference.load_model(directory)
        seed_model = dog_model.load_state(dog_model.build_model(NUM_CLASSES), str(Path(directory) / "model.pth"))
    seed_model.eval()
    normalised_batch = torch.randn(BATCH, 3, 224, 224)
    float_name = ours_float.precision

    def model_only(model: inference.LoadedModel) -> Callable[[], object]:
        inputs = normalised_batch.to(model.input_dtype, memory_format=torch.channels_last)
        return lambda: forward(model.network, inputs)

    few = max(2, args.repeats // 4)
    variants: dict[str, tuple[Callable[[], object], int, int]] = {
        # name: (call, images per call, calls per round)
        "seed: JSON tensor, fp32 NCHW": (lambda: seed_server(seed_model)(seed_body), 1, args.repeats),
        "ours: JPEG, 1 image": (lambda: our_server(ours, "image/jpeg")(jpegs[0]), 1, args.repeats),
        f"ours {float_name}: JPEG, 1 image": (
            lambda: our_server(ours_float, "image/jpeg")(jpegs[0]), 1, args.repeats
        ),
        "ours: seed's JSON tensor": (lambda: our_server(ours, "application/json")(seed_body), 1, args.repeats),
        f"ours: JSON, {BATCH} base64 JPEGs": (lambda: our_server(ours, "application/json")(batch_body), BATCH, few),
        f"ours {float_name}: JSON, {BATCH} JPEGs": (
            lambda: our_server(ours_float, "application/json")(batch_body), BATCH, few
        ),
        # The model alone, to show how much of a request is network and how much is decoding and JSON.
        f"model only, seed fp32, batch {BATCH}": (lambda: forward(seed_model, normalised_batch), BATCH, few),
        f"model only, int8, batch {BATCH}": (model_only(ours), BATCH, few),
        f"model only, {float_name}, batch {BATCH}": (model_only(ours_float), BATCH, few),
    }  # fmt: skip
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, {args.clock} clock")
    print(
        f"ours: {ours.precision} (int8 dot products on this CPU: {dog_model.cpu_has_int8_dot_product()}), "
        f"else {float_name} (native bf16: {dog_model.cpu_has_native_bf16()}), on {ours.device}"
    )
    print(f"load average at start: {os.getloadavg()[0]:.2f} (other processes slow every variant alike)")
    print(
        f"payloads: JPEG {statistics.mean(map(len, jpegs)) / 1024:.1f} KB mean, seed JSON tensor "
        f"{len(seed_body) / 1e6:.2f} MB, batch JSON {len(batch_body) / 1e6:.2f} MB"
    )

    for call, _, _ in variants.values():  # oneDNN builds its kernels on the first call of each shape
        call()
        call()
    per_image_ms: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (call, images, repeats) in variants.items():
            per_image_ms[name].append(median_seconds(call, repeats, clock) * 1000 / images)

    seed_name = "seed: JSON tensor, fp32 NCHW"
    batch_name = f"ours: JSON, {BATCH} base64 JPEGs"
    print(f"\n{'variant':36s} {'ms/image':>9s} {'img/s':>8s} {'vs seed':>8s} {'best round':>11s} {'img/s':>8s}")
    for name, values in per_image_ms.items():
        # Ratios pair each round with the seed's time in that same round: both saw the same background load.
        speedup = statistics.median(seed / ours for seed, ours in zip(per_image_ms[seed_name], values, strict=True))
        median_ms, best_ms = statistics.median(values), min(values)
        print(
            f"{name:36s} {median_ms:9.2f} {1000 / median_ms:8.1f} {speedup:7.2f}x {best_ms:11.2f} {1000 / best_ms:8.1f}"
        )

    single_speedup = statistics.median(
        seed / ours for seed, ours in zip(per_image_ms[seed_name], per_image_ms["ours: JPEG, 1 image"], strict=True)
    )
    batch_throughput = 1000 / statistics.median(per_image_ms[batch_name])
    best_batch_throughput = 1000 / min(per_image_ms[batch_name])
    print(f"(medians over {args.rounds} rounds; 'best round' is the least disturbed by other processes)")
    print(
        f"\nper image, JPEG (int8) vs seed: {single_speedup:.2f}x faster (target >= {TARGET_SPEEDUP:.0f}x: "
        f"{'met' if single_speedup >= TARGET_SPEEDUP else 'NOT met'})"
    )
    print(
        f"batch {BATCH} (int8): {batch_throughput:.1f} img/s median, {best_batch_throughput:.1f} best round "
        f"(target >= {TARGET_BATCH_THROUGHPUT:.0f} by the median: "
        f"{'met' if batch_throughput >= TARGET_BATCH_THROUGHPUT else 'NOT met'})"
    )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
