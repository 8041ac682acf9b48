"""One training job under the SageMaker container contract, shared by hpo.py and train_model.py.

Hyperparameters arrive as command-line arguments (SageMaker passes each as ``--name value``; values may be
JSON-encoded, e.g. ``"64"`` with quotes). Paths come from ``SM_CHANNEL_TRAINING``, ``SM_CHANNEL_PRETRAINED`` (the
pinned ImageNet weights file, ``--weights pretrained``, the default), ``SM_MODEL_DIR`` and ``SM_OUTPUT_DATA_DIR``,
with local defaults so a person can run it by hand::

    python train_model.py --data_dir dataset.zip --epochs 2 --image_size 64 --model_dir model --weights random

Every epoch prints one line of ``name=value`` metrics (train_loss, valid_loss, valid_accuracy,
images_per_second, plus the data/compute time split), which the jobs' MetricDefinitions read; the end prints
test_accuracy. With a checkpoint folder (``/opt/ml/checkpoints`` when it exists, which SageMaker syncs to S3 for
spot training) each epoch ends with a checkpoint, and a restarted job resumes after the last completed epoch, so
it still runs ``--epochs`` epochs in total.

Artifact (``SM_MODEL_DIR``, tarred by SageMaker into model.tar.gz): ``model.pth`` (state_dict of
``dog_model.build_model(len(classes))``), ``classes.json`` (class folder names in label order), ``metrics.json``
and ``code/`` (inference.py, dog_model.py, requirements.txt) for the PyTorch inference container. With
``--int8_check`` (train_model.py's default) the job also quantises the model as inference.py will on a CPU with
int8 dot-product instructions, records the int8 test accuracy in ``metrics.json`` (``int8``) and ships the
calibration images (``calibration_images.pt``), so the endpoint serves int8 only where it was measured as good.
``rule_report.json`` (our Debugger rule results and the data-loader vs compute time split) and, from profiler.py,
``profiler_report.json`` with the samples it judged (``profiler/``) go to ``SM_OUTPUT_DATA_DIR``: the evidence the
pipeline's gate reads on every account. So do ``training_history.json`` (the per-epoch curves, for the run report)
and, from train_model.py, ``evaluation.json`` (paired_evaluation.py: the model and the serving one scored on the
same test images, for the champion/challenger gate).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import distributed_training
import dog_data
import dog_model
import inference
import numpy as np
import paired_evaluation
import profiler_rules
import torch
from debug_hook import DebugHook, create_debug_hook
from debug_rules import ERROR, ISSUES, RULES, evaluate_rules, resolve_parameters
from distributed_training import DistributedLaunchError, Ranks, ranks_from_environment, sum_across_ranks
from profiler import NoProfiler, Profiler
from torch import nn
from training_loop import (
    Compute,
    GpuUnavailable,
    check_gpus_visible,
    choose_compute,
    evaluate,
    load_checkpoint,
    make_optimizer,
    save_checkpoint,
    train_one_epoch,
    warmup_cosine,
)

logger = logging.getLogger("training_job")

CODE_SOURCE_DIR = Path(__file__).resolve().parent
SAGEMAKER_CHECKPOINT_DIR = "/opt/ml/checkpoints"
# Training images shipped for int8 calibration: ~4.8 MB at 224 px, enough for stable activation ranges.
CALIBRATION_IMAGE_COUNT = 32
PROFILER_INTERVALS_MS = (100, 200, 500, 1000, 5000, 60000)
TRAINING_HISTORY_FILE = "training_history.json"


def _json_tolerant(cast: Callable[[Any], Any]) -> Callable[[str], Any]:
    """An argparse type that also accepts the JSON encoding SageMaker may give a value ("64", "\\"64\\"")."""

    def parse(text: str) -> Any:
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        if value is None or isinstance(value, (dict, list)):
            value = text
        return cast(value)

    parse.__name__ = getattr(cast, "__name__", "value")
    return parse


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def build_arg_parser(
    *,
    epochs: int,
    debug_dir_default: str,
    description: str,
    int8_check_default: bool = False,
    evaluation_default: bool = False,
) -> argparse.ArgumentParser:
    env = os.environ
    # SageMaker creates /opt/ml/checkpoints for a job with a CheckpointConfig (spot); the local executor names its
    # stand-in folder in SM_CHECKPOINT_DIR. Neither: no checkpoints.
    checkpoint_default = (
        SAGEMAKER_CHECKPOINT_DIR if os.path.isdir(SAGEMAKER_CHECKPOINT_DIR) else env.get("SM_CHECKPOINT_DIR", "")
    )
    output_data_dir = env.get("SM_OUTPUT_DATA_DIR", "output")
    integer, number, text, boolean = (_json_tolerant(c) for c in (int, float, str, _boolean))
    parser = argparse.ArgumentParser(description=description)
    hyper = parser.add_argument_group("hyperparameters")
    hyper.add_argument("--batch_size", type=integer, default=64)
    hyper.add_argument("--learning_rate", type=number, default=0.01)
    hyper.add_argument(
        "--learning_rate_scaling", type=text, default="linear", choices=["linear", "none"],
        help="with N ranks (torch_distributed) the global batch is N x batch_size: linear trains at N x "
        "learning_rate (distributed_training.py), none as given",
    )  # fmt: skip
    hyper.add_argument("--epochs", type=integer, default=epochs)
    hyper.add_argument("--optimizer", type=text, default="sgd", choices=["sgd", "adamw"])
    hyper.add_argument("--momentum", type=number, default=0.9)
    hyper.add_argument("--weight_decay", type=number, default=1e-4)
    hyper.add_argument(
        "--trainable", type=text, default="auto", choices=dog_model.TRAINABLE_CHOICES,
        help="what learns: auto (fc with ImageNet weights, all with random init), fc, layer4, all",
    )  # fmt: skip
    hyper.add_argument("--image_size", type=integer, default=224)
    hyper.add_argument(
        "--progressive_resize", type=boolean, default=False,
        help="train the first epochs at lower resolutions ramping up to image_size (dog_data.progressive_sizes); "
        "only where images are streamed (trainable layer4/all), not on cached features (fc). Off by default: the "
        "default job (ImageNet weights, trainable fc) cannot use it, and tuned settings keep their meaning; from "
        "random init it reached 80%% valid accuracy ~1.5x sooner in benchmarks/training_speed.py",
    )  # fmt: skip
    run = parser.add_argument_group("run")
    run.add_argument(
        "--weights", type=text, default=dog_model.PRETRAINED,
        help="pretrained (the pinned file of the pretrained channel; the job fails if it cannot load it), random "
        "(random init), stand-in (seeded random weights in ImageNet's place, built in the job), or a state_dict file",
    )  # fmt: skip
    run.add_argument(
        "--pretrained_dir", type=text, default=env.get(f"SM_CHANNEL_{dog_model.PRETRAINED_CHANNEL.upper()}", ""),
        help=f"the pretrained channel: a folder holding the staged {dog_model.IMAGENET_RESNET18_FILE}, or the file",
    )  # fmt: skip
    run.add_argument("--precision", type=text, default="auto", choices=["auto", "bf16", "fp32"])
    run.add_argument("--max_batches_per_epoch", type=integer, default=0, help="0: all (a cap for quick runs)")
    run.add_argument("--max_corrupt_fraction", type=number, default=0.01, help="share of corrupt images per split")
    run.add_argument(
        "--decoded_cache_budget_mb", type=number, default=0,
        help=f"MiB the decoded images may take in memory; a split beyond what is left goes to an on-disk cache "
        f"(dog_data.decode_splits). 0: {dog_data.DEFAULT_BUDGET_FRACTION * 100:.0f}%% of the container's memory",
    )  # fmt: skip
    run.add_argument(
        "--decoded_cache_dir", type=text, default=dog_data.default_cache_dir(),
        help="scratch folder for on-disk decoded caches (on the training volume under SageMaker)",
    )  # fmt: skip
    run.add_argument("--seed", type=integer, default=0)
    run.add_argument(
        "--num_threads", type=integer, default=0,
        help="torch CPU threads; 0: torch's default (all cores). 1 is far faster when other processes share the cores",
    )  # fmt: skip
    run.add_argument(
        "--int8_check", type=boolean, default=int8_check_default,
        help="quantise to int8 as the CPU endpoint would, record its test accuracy, ship calibration images",
    )  # fmt: skip
    run.add_argument(
        "--evaluation", type=boolean, default=evaluation_default,
        help=f"score the saved model (and the champion, if given) on the test split as the endpoint would serve "
        f"it, into {paired_evaluation.EVALUATION_FILE}",
    )  # fmt: skip
    run.add_argument(
        "--champion_dir", type=text, default=env.get("SM_CHANNEL_CHAMPION", ""),
        help="the serving model's artifact (its model.tar.gz, or an extracted folder) to score on the same images",
    )  # fmt: skip
    run.add_argument("--endpoint_instance_type", type=text, default="ml.m5.large", help="where the model will serve")
    run.add_argument(
        "--inference_precision", type=text, default="auto", help="the endpoint's INFERENCE_PRECISION setting"
    )
    run.add_argument(
        "--progress_interval_seconds", type=number, default=30.0,
        help="at most one progress line (decoding, feature pass, steps of an epoch) per this many seconds",
    )  # fmt: skip
    run.add_argument("--checkpoint_dir", type=text, default=checkpoint_default, help='"" for none')
    run.add_argument("--data_dir", type=text, default=env.get("SM_CHANNEL_TRAINING", "dogImages"))
    run.add_argument("--model_dir", type=text, default=env.get("SM_MODEL_DIR", "model"))
    run.add_argument("--output_data_dir", type=text, default=output_data_dir)
    debug = parser.add_argument_group("debugging")
    debug.add_argument("--debug_hook", type=boolean, default=True, help="false: no smdebug hook at all")
    debug.add_argument(
        "--debug_dir", type=text, default=debug_dir_default,
        help='local smdebug trial folder when the job has no Debugger config ("" for none)',
    )  # fmt: skip
    debug.add_argument("--debug_save_interval", type=integer, default=10, help="training steps between saves")
    debug.add_argument(
        "--debug_relu_input_steps", type=integer, default=10,
        help="first TRAIN steps whose ReLU inputs are saved (PoorWeightInitialization's window), local or job hook",
    )  # fmt: skip
    debug.add_argument(
        "--debug_rule_parameters", type=text, default="{}",
        help='JSON object of Debugger rule parameters, named as SageMaker does: {"LossNotDecreasing_num_steps": 20}',
    )  # fmt: skip
    profiling = parser.add_argument_group("profiling")
    profiling.add_argument("--profiler", type=boolean, default=True, help="false: no system or step profiling")
    profiling.add_argument(
        "--profiler_interval_ms", type=integer, default=500, choices=PROFILER_INTERVALS_MS,
        help="system-metric sampling interval (SageMaker's ProfilingIntervalInMilliseconds values)",
    )  # fmt: skip
    profiling.add_argument(
        "--profiler_rule_parameters", type=text, default="{}",
        help='JSON object of profiler rule parameters, named as SageMaker does: {"CPUBottleneck_threshold": 30}',
    )  # fmt: skip
    return parser


def rule_parameters(option: str, text: str, check: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """A ``--*_rule_parameters`` value, checked against the rules before any training starts.

    Given by hand it is a JSON object; from a job's hyperparameters the SageMaker training toolkit has already
    decoded the JSON and passes an object as ``name=value,name=value``, so both forms are read.
    """
    text = text.strip()
    try:
        if not text or text.startswith("{"):
            parameters = json.loads(text) if text else {}
        else:
            parameters = {}
            for item in text.split(","):
                name, sep, value = item.partition("=")
                if not sep:
                    raise ValueError(f"{item!r} is not name=value")
                parameters[name.strip()] = json.loads(value)
    except ValueError as error:
        raise ValueError(f"--{option} {text!r} is neither a JSON object nor name=value,... ({error})") from error
    if not isinstance(parameters, dict):
        raise ValueError(f"--{option} must be a JSON object, got {text!r}")
    check(parameters)
    return parameters


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def configure_logging() -> None:
    # A no-op where logging is already set up (a caller's, pytest's), so it never replaces their handlers.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # smdebug logs every tensor it registers at INFO.
    os.environ.setdefault("SMDEBUG_LOG_LEVEL", "warning")


def require_inference_code(code_source_dir: Path) -> None:
    if not (code_source_dir / "inference.py").is_file():
        raise FileNotFoundError(
            f"{code_source_dir / 'inference.py'} is missing: the model artifact's code/ folder needs it for the "
            "PyTorch inference container; it must sit beside the training code (the source_dir)"
        )


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Plain contiguous float32 CPU tensors (training used channels_last, maybe a GPU); integer buffers such as
    BN's num_batches_tracked keep their dtype."""
    return {
        name: tensor.detach().to("cpu", torch.float32 if tensor.is_floating_point() else tensor.dtype).contiguous()
        for name, tensor in model.state_dict().items()
    }


def save_model_artifact(
    model_dir: str | os.PathLike[str],
    model: nn.Module,
    classes: list[str],
    metrics: dict[str, Any],
    code_source_dir: Path | None = None,
    calibration_images: torch.Tensor | None = None,
) -> Path:
    """model.pth, classes.json, metrics.json, code/ (inference.py, dog_model.py, requirements.txt) and, when
    given, the int8 calibration images."""
    source = Path(code_source_dir or CODE_SOURCE_DIR)
    require_inference_code(source)
    directory = Path(model_dir)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(cpu_state_dict(model), directory / "model.pth")
    (directory / "classes.json").write_text(json.dumps(classes, indent=1))
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=1))
    if calibration_images is not None:
        torch.save(calibration_images, directory / inference.CALIBRATION_FILE)
    code = directory / "code"
    code.mkdir(exist_ok=True)
    shutil.copy2(source / "inference.py", code / "inference.py")
    shutil.copy2(source / "dog_model.py", code / "dog_model.py")
    requirements = source / "inference_requirements.txt"
    if requirements.is_file():
        shutil.copy2(requirements, code / "requirements.txt")
    return directory


def check_int8(
    model: nn.Module, classes: int, splits: dict[str, dog_data.DecodedSplit], seed: int
) -> tuple[dict[str, Any], torch.Tensor | None]:
    """The int8 network inference.py would serve on a CPU, built from a sample of training images and measured on
    the test split: (metrics.json's ``int8``, the calibration images to ship, or None when int8 is unavailable)."""
    started = time.perf_counter()
    if unavailable := inference.quantization_unavailable():
        return {"skipped": unavailable}, None
    train = splits["train"]
    sample = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:CALIBRATION_IMAGE_COUNT]
    calibration = train.rows(sample).permute(0, 3, 1, 2).contiguous()
    # A fresh copy from the weights: the trained module may carry smdebug hooks and live on a GPU.
    serving_model = dog_model.build_model(classes)
    serving_model.load_state_dict(cpu_state_dict(model))
    network = inference.quantize_network(serving_model, calibration)
    test, correct = splits["test"], 0
    with torch.inference_mode():
        for start in range(0, len(test), 64):
            pixels = test.rows(slice(start, start + 64)).permute(0, 3, 1, 2)
            predicted = network(inference.centre(pixels, torch.float32)).argmax(1)
            correct += int((predicted == test.labels[start : start + 64]).sum())
    accuracy = correct / max(1, len(test))
    return {
        "test_accuracy": accuracy,
        "calibration_images": len(calibration),
        "engine": inference.INT8_ENGINE,
        "seconds": time.perf_counter() - started,
    }, calibration


class _Phase:
    """What one run trains on: the whole network on images, or the head on cached backbone features."""

    def __init__(self, network: nn.Module, train_batches: Callable[[int], Any], eval_batches: Callable[[str], Any]):
        self.network = network
        self.train_batches = train_batches
        self.eval_batches = eval_batches


def _cache_features(
    folded: nn.Module,
    split: dog_data.DecodedSplit,
    compute: Compute,
    batch_size: int,
    with_mirror: bool,
    progress: ProgressLog,
    name: str,
) -> torch.Tensor:
    """(N, views, 512) features of ``folded`` (dog_model.folded_backbone); the mirrored view stands in for the random
    flip."""
    views = []
    flips = (False, True) if with_mirror else (False,)
    with torch.no_grad():
        for view, flip in enumerate(flips):
            chunks = []
            for start in range(0, len(split), batch_size):
                images = split.rows(slice(start, start + batch_size))
                batch = dog_data.normalise(images.flip(2) if flip else images, compute.device)
                with compute.autocast():
                    chunks.append(dog_model.backbone_features(folded, batch).float())
                progress.update(
                    f"feature pass {name}", view * len(split) + start + len(images), len(split) * len(flips)
                )
            views.append(torch.cat(chunks))
    return torch.stack(views, dim=1)


# A feature pass is timed in both precisions only when it has this many batches: the probe costs about four.
PRECISION_PROBE_MIN_BATCHES = 8


def feature_pass_compute(
    folded: nn.Module, split: dog_data.DecodedSplit, compute: Compute, batch_size: int, requested: str
) -> Compute:
    """The compute of the frozen backbone's feature pass: ``compute``, or float32 where it is measured faster.

    bf16 units do not make every convolution faster: on a CPU with AMX, ResNet18 at 16 px runs ~2.6x slower in bf16
    than in float32 (the reorders into bf16 blocks outweigh convolutions that small), while at 224 px bf16 wins. So
    with ``--precision auto`` on a bf16 CPU, and enough batches for the probe to pay, one batch of the split is timed
    in each (after a warm-up of each) and the faster one computes every feature. float32 features are the exact
    ones, so choosing them never costs accuracy. Pin ``--precision`` to skip the probe (and its timing dependence).
    """
    if requested != "auto" or compute.device.type != "cpu" or compute.autocast_dtype is None:
        return compute
    if len(split) < PRECISION_PROBE_MIN_BATCHES * batch_size:
        return compute
    full = Compute(compute.device, None)
    probe = dog_data.normalise(split.rows(slice(0, batch_size)), compute.device)
    seconds = {}
    with torch.no_grad():
        for candidate in (compute, full):
            with candidate.autocast():
                dog_model.backbone_features(folded, probe)  # warm-up: oneDNN builds its kernels on the first call
                started = time.perf_counter()
                dog_model.backbone_features(folded, probe)
                seconds[candidate.precision] = time.perf_counter() - started
    chosen = full if seconds["fp32"] < seconds[compute.precision] else compute
    logger.info(
        "feature pass in %s: a batch of %d took %.3f s in %s and %.3f s in fp32",
        chosen.precision, batch_size, seconds[compute.precision], compute.precision, seconds["fp32"],
    )  # fmt: skip
    return chosen


def _emit(line: str) -> None:
    print(line, flush=True)


def _silent(line: str) -> None:
    """A rank other than 0 prints no metrics: the job's MetricDefinitions read every host's log."""


def _shard_index(index: dog_data.DatasetIndex, ranks: Ranks) -> dog_data.DatasetIndex:
    """What this rank decodes: its shard of the training and validation images, and the test split on rank 0
    (distributed_training.py); the whole index for one process."""
    if not ranks.distributed:
        return index
    splits = {name: distributed_training.shard_refs(index.splits[name], ranks) for name in ("train", "valid")}
    if ranks.is_main:
        splits["test"] = index.splits["test"]
    for name, refs in splits.items():
        digest = hashlib.sha256("\n".join(ref.path for ref in refs).encode()).hexdigest()[:12]
        logger.info("shard rank=%d split=%s images=%d paths_sha256=%s", ranks.rank, name, len(refs), digest)
    return dataclasses.replace(index, splits=splits)


def _dataset_counts(
    splits: dict[str, dog_data.DecodedSplit], device: torch.device
) -> tuple[dict[str, int], dict[str, int]]:
    """Images and corrupt files per split, over every rank's shard (the test split is rank 0's alone)."""
    names = ("train", "valid", "test")
    local = [float(len(splits[name])) if name in splits else 0.0 for name in names]
    local += [float(len(splits[name].corrupt_files)) if name in splits else 0.0 for name in names]
    totals = [int(value) for value in sum_across_ranks(torch.tensor(local, device=device)).tolist()]
    return dict(zip(names, totals[:3], strict=True)), dict(zip(names, totals[3:], strict=True))


class ProgressLog:
    """A ``progress:`` line now and then while a long phase runs (decoding, a feature pass, an epoch of many steps),
    at most one per ``interval_seconds``, with the phase's rate and time left at that rate: the job's log (and the
    offline run's console) shows what it is doing between its epoch lines, and a watcher
    (CloudWatch, the offline executor's stall timeout) sees that it is alive. One clock read per update."""

    def __init__(self, interval_seconds: float) -> None:
        self.interval = interval_seconds
        self._last = time.monotonic()
        # Each phase's first update: the rate counts the work done after it, over the time since it.
        self._phase_started: dict[str, tuple[float, int]] = {}

    def update(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        started, done_at_start = self._phase_started.setdefault(phase, (now, done))
        if now - self._last < self.interval:
            return
        self._last = now
        if now == started:  # the phase's first update: no rate yet
            _emit(f"progress: {phase} {done}/{total}")
            return
        rate = (done - done_at_start) / (now - started)
        left = f", about {(total - done) / rate:.0f} s left" if rate > 0 and done < total else ""
        _emit(f"progress: {phase} {done}/{total} ({rate:.1f}/s{left})")


def run(args: argparse.Namespace, *, job: str, evaluate_debug_rules: bool) -> dict[str, Any]:
    """Train, print metrics, checkpoint, save the artifact, the rule report and the profiler report; returns
    metrics.json's content."""
    require_inference_code(CODE_SOURCE_DIR)
    dog_model.check_initial_weights(args.weights, args.pretrained_dir)  # before minutes of decoding, not after
    check_gpus_visible(int(os.environ.get("SM_NUM_GPUS", "0")))
    ranks = ranks_from_environment()
    profiler_parameters = rule_parameters(
        "profiler_rule_parameters", args.profiler_rule_parameters, profiler_rules.resolve_parameters
    )
    debug_parameters = rule_parameters("debug_rule_parameters", args.debug_rule_parameters, resolve_parameters)
    compute = choose_compute(args.precision, local_rank=ranks.local_rank)
    profiled = args.profiler and ranks.is_main
    profiler = (Profiler(args.output_data_dir, interval_seconds=args.profiler_interval_ms / 1000) if profiled
                else NoProfiler(args.output_data_dir)).start()  # fmt: skip
    distributed_training.start(ranks, compute.device)
    try:
        metrics = _train(
            args, profiler, debug_parameters, compute, ranks, job=job, evaluate_debug_rules=evaluate_debug_rules
        )
    finally:
        profiler.stop()  # a failed job keeps the samples it recorded, and no sampling thread outlives it
        distributed_training.stop()
    if ranks.is_main:
        profiler.finish(batch_size=args.batch_size, rule_parameters=profiler_parameters)
    return metrics


def _train(
    args: argparse.Namespace,
    profiler: Profiler | NoProfiler,
    debug_parameters: dict[str, Any],
    compute: Compute,
    ranks: Ranks,
    *,
    job: str,
    evaluate_debug_rules: bool,
) -> dict[str, Any]:
    started = time.perf_counter()
    seed_everything(args.seed)
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    emit = _emit if ranks.is_main else _silent
    logger.info("%s on %s, precision %s, %s", job, compute.device, compute.precision, ranks.describe())

    index = _shard_index(dog_data.index_dataset(args.data_dir), ranks)
    progress = ProgressLog(args.progress_interval_seconds if ranks.is_main else math.inf)
    decode_started = time.perf_counter()
    splits = dog_data.decode_splits(
        index,
        args.image_size,
        max_corrupt_fraction=args.max_corrupt_fraction,
        # The ranks of a host share its memory.
        budget_bytes=dog_data.memory_budget_bytes(args.decoded_cache_budget_mb) // ranks.local_world_size,
        cache_dir=args.decoded_cache_dir,
        splits=tuple(index.splits),
        progress=lambda split, done, total: progress.update(f"decoding {split}", done, total),
    )
    decode_seconds = time.perf_counter() - decode_started
    counts, corrupt = _dataset_counts(splits, compute.device)
    emit(
        f"dataset classes={len(index.classes)} train_images={counts['train']} "
        f"valid_images={counts['valid']} test_images={counts['test']} "
        f"corrupt_images={sum(corrupt.values())} decode_seconds={decode_seconds:.2f}"
    )

    model = dog_model.build_model(len(index.classes))
    initial_weights = dog_model.load_initial_weights(model, args.weights, pretrained_dir=args.pretrained_dir)
    trainable = dog_model.resolve_trainable(args.trainable, initial_weights)
    frozen = dog_model.freeze(model, trainable)
    model.to(compute.device, memory_format=torch.channels_last)
    loss_function = nn.CrossEntropyLoss()
    max_batches = args.max_batches_per_epoch or None
    batch_size = args.batch_size

    train_sizes = [args.image_size] * args.epochs
    if args.progressive_resize:
        if trainable == "fc":
            logger.info("progressive_resize ignored: trainable=fc trains on backbone features cached at image_size")
        else:
            train_sizes = dog_data.progressive_sizes(args.image_size, args.epochs)
            logger.info("progressive resizing: training sizes per epoch %s", train_sizes)

    def generator_for(epoch: int) -> torch.Generator:
        # Seeded per epoch (and rank), so a resumed run sees the same batches the uninterrupted one would have.
        return torch.Generator().manual_seed(args.seed * 100_003 + epoch + ranks.rank * 1_000_003)

    # Every rank takes as many steps as the smallest shard allows: each step is a collective.
    epoch_images = distributed_training.min_across_ranks(len(splits["train"]), compute.device)
    feature_seconds, feature_precision = 0.0, None
    if trainable == "fc":
        feature_started = time.perf_counter()
        model.eval()
        folded = dog_model.folded_backbone(model)  # BN folded into the convs: the same features, computed faster
        feature_batch = dog_model.feature_batch_size(args.image_size)
        feature_compute = feature_pass_compute(folded, splits["train"], compute, feature_batch, args.precision)
        feature_precision = feature_compute.precision
        features = {
            name: _cache_features(folded, split, feature_compute, feature_batch, name == "train", progress, name)
            for name, split in splits.items()
        }
        feature_seconds = time.perf_counter() - feature_started
        labels = {name: split.labels.to(compute.device) for name, split in splits.items()}
        phase = _Phase(
            model.fc,
            lambda epoch: dog_data.feature_batches(
                features["train"], labels["train"], batch_size, shuffle=True,
                generator=generator_for(epoch), max_batches=max_batches, images_per_epoch=epoch_images,
            ),
            lambda name: dog_data.feature_batches(features[name], labels[name], batch_size, shuffle=False),
        )  # fmt: skip
    else:
        phase = _Phase(
            model,
            lambda epoch: dog_data.image_batches(
                splits["train"], batch_size, compute.device, shuffle=True, flip=True,
                generator=generator_for(epoch), max_batches=max_batches, size=train_sizes[epoch - 1],
                images_per_epoch=epoch_images,
            ),
            lambda name: dog_data.image_batches(splits[name], batch_size, compute.device, shuffle=False, flip=False),
        )  # fmt: skip

    def train_mode() -> None:
        phase.network.train()
        for module in frozen:
            module.eval()  # frozen BN layers keep their running statistics

    steps_per_epoch = math.ceil(epoch_images / batch_size)
    if max_batches:
        steps_per_epoch = min(steps_per_epoch, max_batches)
    total_steps = max(1, steps_per_epoch * args.epochs)
    learning_rate = distributed_training.scaled_learning_rate(args.learning_rate, ranks, args.learning_rate_scaling)
    if ranks.distributed:
        logger.info(
            "data parallel over %d ranks (%s): global batch %d x %d = %d, learning rate %g (%s scaling of %g)",
            ranks.world_size, distributed_training.backend_for(compute.device), batch_size, ranks.world_size,
            batch_size * ranks.world_size, learning_rate, args.learning_rate_scaling, args.learning_rate,
        )  # fmt: skip
    trained = distributed_training.data_parallel(phase.network, ranks, compute.device)
    optimizer = make_optimizer(
        phase.network.named_parameters(),
        name=args.optimizer,
        learning_rate=learning_rate,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
    )
    warmup_steps = max(1, min(steps_per_epoch, total_steps // 10))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total_steps, warmup_steps))

    history: list[dict[str, float]] = []
    start_epoch = 1
    checkpoint = load_checkpoint(args.checkpoint_dir)
    if checkpoint is not None:
        if checkpoint["classes"] != index.classes or checkpoint["trainable"] != trainable:
            logger.warning("checkpoint in %s is for another dataset or setup: starting afresh", args.checkpoint_dir)
        else:
            phase.network.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
            history = checkpoint["history"]
            start_epoch = checkpoint["epochs_done"] + 1
            logger.info("resuming from %s after epoch %d", args.checkpoint_dir, checkpoint["epochs_done"])

    hook = (
        create_debug_hook(
            # The default names the output data folder: a run by hand with --output_data_dir keeps its trial there.
            args.debug_dir.format(output_data_dir=args.output_data_dir) or None,
            enabled=args.debug_hook,
            train_save_interval=args.debug_save_interval,
            relu_input_steps=args.debug_relu_input_steps,
        )
        if ranks.is_main
        else DebugHook(reason=f"{ranks.describe()}: the smdebug hook runs on rank 0 only")
    )
    if not hook.active:
        logger.info("no debug hook: %s", hook.reason)
    hook.register(phase.network, loss_function)
    eval_steps = math.ceil(len(splits["valid"]) / batch_size)
    steps = _StepRecorder(profiler, progress, {"train": steps_per_epoch, "eval": eval_steps})

    for epoch in range(start_epoch, args.epochs + 1):
        hook.set_mode("train")
        epoch_started = time.time()
        result = train_one_epoch(
            trained,
            phase.train_batches(epoch),
            loss_function,
            optimizer,
            scheduler,
            compute,
            before_train=train_mode,
            on_step=steps.recorder("train", epoch),
            sum_across_ranks=sum_across_ranks,
        )
        profiler.phase("train_epoch", epoch, epoch_started, time.time())
        hook.set_mode("eval")
        phase.network.eval()
        evaluation_started = time.time()
        valid_loss, valid_accuracy = evaluate(
            phase.network,
            phase.eval_batches("valid"),
            loss_function,
            compute,
            on_step=steps.recorder("eval", epoch),
            sum_across_ranks=sum_across_ranks,
        )
        profiler.phase("evaluation", epoch, evaluation_started, time.time())
        record = {
            "epoch": epoch,
            "train_loss": result.loss,
            "valid_loss": valid_loss,
            "valid_accuracy": valid_accuracy,
            "images_per_second": result.images_per_second,
            "data_seconds": result.data_seconds,
            "compute_seconds": result.compute_seconds,
            "train_image_size": train_sizes[epoch - 1],
        }
        history.append(record)
        emit(
            f"epoch={epoch} train_loss={result.loss:.4f} valid_loss={valid_loss:.4f} "
            f"valid_accuracy={valid_accuracy:.4f} images_per_second={result.images_per_second:.1f} "
            f"data_seconds={result.data_seconds:.2f} compute_seconds={result.compute_seconds:.2f} "
            f"train_image_size={train_sizes[epoch - 1]}"
        )
        if args.checkpoint_dir and ranks.is_main:
            save_checkpoint(
                args.checkpoint_dir,
                {
                    # What learns: on cached features only the head (kB, not the 45 MB network the initial
                    # weights give back on a restart); every checkpoint goes to S3 on spot capacity.
                    "model": phase.network.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "history": history,
                    "epochs_done": epoch,
                    "classes": index.classes,
                    "trainable": trainable,
                },
            )

    if not ranks.is_main:
        # The test split, the int8 check, the evaluation and every output are rank 0's.
        hook.close()
        return {"job": job, "rank": ranks.rank, "epochs": history}
    hook.set_mode("predict")
    phase.network.eval()
    test_loss, test_accuracy = evaluate(phase.network, phase.eval_batches("test"), loss_function, compute)
    _emit(f"test_loss={test_loss:.4f} test_accuracy={test_accuracy:.4f}")
    hook.close()
    int8, calibration = {"skipped": "--int8_check false"}, None
    if args.int8_check:
        int8, calibration = check_int8(model, len(index.classes), splits, args.seed)
        if calibration is not None:
            _emit(f"int8_test_accuracy={int8['test_accuracy']:.4f} int8_check_seconds={int8['seconds']:.2f}")

    data_seconds = sum(record["data_seconds"] for record in history)
    compute_seconds = sum(record["compute_seconds"] for record in history)
    timing = {
        "decode_seconds": decode_seconds,
        "feature_cache_seconds": feature_seconds,
        "train_data_seconds": data_seconds,
        "train_compute_seconds": compute_seconds,
        "train_data_fraction": data_seconds / (data_seconds + compute_seconds) if history else None,
        "total_seconds": time.perf_counter() - started,
    }
    metrics = {
        "job": job,
        "classes": len(index.classes),
        "image_size": args.image_size,
        "trainable": trainable,
        "initial_weights": initial_weights,
        "precision": compute.precision,
        "feature_precision": feature_precision,
        "device": compute.device.type,
        "distributed": {
            "world_size": ranks.world_size,
            "backend": distributed_training.backend_for(compute.device) if ranks.distributed else None,
            "global_batch_size": batch_size * ranks.world_size,
            "learning_rate": learning_rate,
        },
        "hyperparameters": {
            "batch_size": batch_size,
            "learning_rate": args.learning_rate,
            "epochs": args.epochs,
            "learning_rate_scaling": args.learning_rate_scaling,
            "optimizer": args.optimizer,
            "progressive_resize": args.progressive_resize,
        },
        "epochs": history,
        "valid_accuracy": history[-1]["valid_accuracy"] if history else None,
        "test_loss": test_loss,
        "test_accuracy": test_accuracy,
        "int8": int8,
        "corrupt_images": corrupt,
        "timing": timing,
    }
    save_model_artifact(args.model_dir, model, index.classes, metrics, calibration_images=calibration)
    write_training_history(args.output_data_dir, metrics)
    if args.evaluation:
        _evaluate_as_served(args, index, splits["test"])
    write_rule_report(args.output_data_dir, hook, timing, corrupt, evaluate_debug_rules, debug_parameters)
    return metrics


def write_training_history(output_data_dir: str, metrics: dict[str, Any]) -> Path:
    """The per-epoch curves and the timing, for the run report (the model artifact's metrics.json sits behind 45 MB
    of weights in model.tar.gz; the output data is small)."""
    path = Path(output_data_dir) / TRAINING_HISTORY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = ("job", "classes", "image_size", "trainable", "initial_weights", "precision", "device", "distributed",
            "hyperparameters", "epochs", "test_loss", "test_accuracy", "timing")  # fmt: skip
    path.write_text(json.dumps({key: metrics.get(key) for key in keys}, indent=1))
    return path


def _evaluate_as_served(args: argparse.Namespace, index: dog_data.DatasetIndex, test: dog_data.DecodedSplit) -> None:
    result = paired_evaluation.evaluation(
        challenger_dir=Path(args.model_dir),
        champion_dir=Path(args.champion_dir) if args.champion_dir else None,
        index=index,
        test=test,
        endpoint_instance_type=args.endpoint_instance_type,
        inference_precision=args.inference_precision,
        max_corrupt_fraction=args.max_corrupt_fraction,
    )
    paired_evaluation.write(args.output_data_dir, result)
    challenger, paired = result["challenger"], result["paired"]
    line = f"served_test_accuracy={challenger['accuracy']:.4f} served_as={challenger['served_as']}"
    if paired:
        low, high = paired["interval"]
        line += (
            f" champion_test_accuracy={paired['champion_accuracy']:.4f} paired_difference={paired['difference']:.4f}"
            f" paired_interval_low={low:.4f} paired_interval_high={high:.4f} paired_images={paired['images']}"
        )
    elif result["champion"]:
        line += " champion=unscored"
    _emit(line)


class _StepRecorder:
    """Numbers the steps of each phase across the job (as smdebug's mode steps) for the profiler, and reports
    progress through long epochs."""

    def __init__(self, profiler: Profiler | NoProfiler, progress: ProgressLog, steps_per_epoch: dict[str, int]):
        self.profiler = profiler if isinstance(profiler, Profiler) else None
        self.progress = progress
        self.steps_per_epoch = steps_per_epoch
        self.counts = {"train": 0, "eval": 0}

    def recorder(self, phase: str, epoch: int) -> Callable[[float, float, float], None]:
        """The loop's per-step callback."""
        profiler, progress, counts = self.profiler, self.progress, self.counts
        label, total = f"{phase} epoch {epoch} step", self.steps_per_epoch.get(phase, 0)
        first = counts[phase]

        def record(start_time: float, data_seconds: float, compute_seconds: float) -> None:
            if profiler is not None:
                profiler.step(phase, epoch, counts[phase], start_time, data_seconds, compute_seconds)
            counts[phase] += 1
            progress.update(label, counts[phase] - first, total)

        return record


def write_rule_report(
    output_data_dir: str,
    hook: DebugHook,
    timing: dict[str, Any],
    corrupt: dict[str, int],
    evaluate_debug_rules: bool,
    parameters: dict[str, Any] | None = None,
) -> Path:
    rules: dict[str, dict] = {}
    if evaluate_debug_rules:
        if hook.out_dir:
            rules = evaluate_rules(hook.out_dir, parameters=parameters)
        else:
            missing = {"status": ERROR, "details": f"no smdebug trial to evaluate: {hook.reason}"}
            rules = {name: dict(missing) for name in RULES}
    report = {
        "rules": rules,
        "issues_found": sorted(name for name, result in rules.items() if result["status"] == ISSUES),
        "trial_dir": hook.out_dir,
        "debug_hook": {"source": hook.source, "reason": hook.reason},
        "timing": timing,
        "corrupt_images": corrupt,
    }
    for name, result in rules.items():
        logger.info("rule %s: %s (%s)", name, result["status"], result["details"])
    directory = Path(output_data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "rule_report.json"
    path.write_text(json.dumps(report, indent=1))
    return path


def main(
    argv: Sequence[str] | None,
    *,
    job: str,
    epochs: int,
    debug_dir_default: str,
    evaluate_debug_rules: bool,
    int8_check_default: bool = False,
    evaluation_default: bool = False,
) -> dict[str, Any]:
    configure_logging()
    parser = build_arg_parser(
        epochs=epochs,
        debug_dir_default=debug_dir_default,
        description=f"{job} training job",
        int8_check_default=int8_check_default,
        evaluation_default=evaluation_default,
    )
    # SageMaker may add arguments of its own; unknown ones are logged rather than fatal.
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        logger.warning("ignoring unknown arguments: %s", unknown)
    try:
        return run(args, job=job, evaluate_debug_rules=evaluate_debug_rules)
    except (dog_model.PretrainedWeightsUnavailable, GpuUnavailable, DistributedLaunchError) as error:
        write_failure_reason(str(error))
        raise


def write_failure_reason(message: str) -> None:
    """SageMaker's FailureReason is the job's ``output/failure`` (the toolkit keeps one the script wrote)."""
    output_dir = os.environ.get("SM_OUTPUT_DIR")
    if output_dir:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "failure").write_text(message)
