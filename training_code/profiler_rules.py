"""Our equivalents of SageMaker ProfilerReport's sub-rules, judged after the training job on our profiler's samples.

AWS is retiring its profiler, so this replaces it: the in-process profiler writes SageMaker's system-metric
records (one per metric per tick) and one record per training/evaluation step, and ``evaluate_profile`` gives
each rule's verdict with the numbers behind it. Rule names, parameters and algorithms follow AWS's public rule
code (awslabs/sagemaker-debugger ccf5a36a, "S1") and its rules config (sagemaker-debugger-rulesconfig, "S2"); see
shared/research/profiler-and-debugger-rules.md. A rule that cannot judge says NotEvaluated and why, never
NoIssuesFound. Patience and windows count samples, as on AWS (at 0.5 s, patience 1000 is about 8.3 minutes).

Where AWS's docs (S3) and code disagree, the code's default is used, because it is what the rule container ran:
IOBottleneck gpu_threshold 10 (docs 70), BatchSize patience 1000 (docs 100), GPUMemoryIncrease increase 5 /
patience 1000 / window 10 (docs 10 / 100 / 500), StepOutlier stddev 3 (docs 5). LoadBalancing's threshold is 0.5
(S2 and the docs); S1's code said 0.2, but its loop never compared two GPUs, so 0.2 never decided anything.

Where we differ from AWS, on purpose:
- Judged once, after the job, on all samples. The window rules (LowGPUUtilization, BatchSize) are still checked
  every 60 s worth of samples and at the end, as AWS's accumulating RuleTriggered counter did, so an episode in
  the middle of the job counts even when the last window is healthy.
- Snapshots (samples within 20 ms, one tick of the sampler) are formed per node; AWS's reader merged nodes whose
  ticks happened to coincide, pairing one node's idle GPU with another node's busy core. The bottleneck share is
  then taken over all nodes' snapshots, as AWS's single counter did.
- GPUMemoryIncrease compares the mean of the last ``window`` samples with the mean of the ``window`` samples before
  them; AWS's slice ``v[-window-1:-2]`` compared with an overlapping 9-sample window by an off-by-one.
- LoadBalancing's histogram bins run 0..100 including 100 (AWS's ``np.arange(0, 100, 2)`` dropped every value above
  98, so a GPU pinned at 100% had an empty histogram), and every pair of GPUs on a node is compared (AWS's
  mis-indented loop compared only the last GPU with itself and could never fire).
- MaxInitializationTime is judged on the initialization record (process start to first training step). AWS's
  version measured time since the first sample and never advanced under ProfilerReport, so it could not fire.
- Dataloader: AWS's rule counted DataLoader worker processes from PyTorch < 2.0 framework traces. Our data path runs
  in the training process, so ours judges the share of training-step time the loop spent waiting for data;
  its patience is the least number of training steps it judges (at least, where the sample rules need more than).
- CPU-only jobs: CPUBottleneck is not evaluated (the CPU is the compute device, not a bottleneck in front of one);
  IOBottleneck drops the GPU condition (iowait is then time the compute device itself spent waiting on I/O
  instead of computing); BatchSize judges the cores (low CPU p95 means the cores idle: a larger batch, or more
  threads, would use them). The GPU-only rules are NotEvaluated with the reason the profiler recorded no GPU.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

NO_ISSUES, ISSUES, NOT_EVALUATED = "NoIssuesFound", "IssuesFound", "NotEvaluated"
PROFILER_REPORT = "ProfilerReport"

SNAPSHOT_SECONDS = 0.02  # AWS: the sampler's threads wake a few ms apart; samples this close are one tick
AWS_SCAN_SECONDS = 60.0  # AWS re-judged the accumulated samples once per 60 s of data
# Edges 0, 2, ..., 100; numpy closes the last bin, so 100% is counted.
UTILISATION_BIN_EDGES = np.arange(0, 102, 2)

DEFAULT_PARAMETERS: dict[str, dict[str, float]] = {
    "CPUBottleneck": {"threshold": 50, "gpu_threshold": 10, "cpu_threshold": 90, "patience": 1000},
    "IOBottleneck": {"threshold": 50, "gpu_threshold": 10, "io_threshold": 50, "patience": 1000},
    "LowGPUUtilization": {"threshold_p95": 70, "threshold_p5": 10, "window": 500, "patience": 1000},
    "StepOutlier": {"stddev": 3, "n_outliers": 10, "min_steps": 100},
    "GPUMemoryIncrease": {"increase": 5, "patience": 1000, "window": 10},
    "BatchSize": {
        "cpu_threshold_p95": 70,
        "gpu_threshold_p95": 70,
        "gpu_memory_threshold_p95": 70,
        "patience": 1000,
        "window": 500,
    },
    "MaxInitializationTime": {"threshold": 20},
    "LoadBalancing": {"threshold": 0.5, "patience": 1000},
    "Dataloader": {"threshold": 20, "patience": 10},
}
RULE_NAMES = tuple(DEFAULT_PARAMETERS)
_COUNT_PARAMETERS = frozenset({"patience", "window", "n_outliers", "min_steps"})

Parameters = dict[str, float]


@dataclass(frozen=True)
class ProfileContext:
    """What the records cannot tell: the sampling interval, the machine, the batch size, the profiled wall time."""

    interval_seconds: float
    gpu_count: int
    gpu_note: str
    cpu_count: int
    batch_size: int | None
    job_seconds: float
    node_count: int = 1


# --- parameters -------------------------------------------------------------------------------------------------


def resolve_parameters(overrides: Mapping[str, Any] | None = None) -> dict[str, Parameters]:
    """The defaults with AWS-style overrides ``{"<RuleName>_<param>": value}`` applied (rule name in any case).

    Raises ValueError for an unknown rule or parameter, or a value that is not a number, so a typo cannot pass
    unnoticed as a default.
    """
    resolved = {rule: dict(values) for rule, values in DEFAULT_PARAMETERS.items()}
    rules_by_lower_name = {rule.lower(): rule for rule in resolved}
    for key, value in (overrides or {}).items():
        rule_part, separator, name = str(key).partition("_")
        rule = rules_by_lower_name.get(rule_part.lower())
        if not separator or rule is None:
            raise ValueError(
                f"unknown profiler rule parameter {key!r}: expected <RuleName>_<parameter> with a rule in "
                f"{list(RULE_NAMES)}"
            )
        if name not in resolved[rule]:
            raise ValueError(f"unknown parameter {name!r} of {rule} in {key!r}; {rule} takes {sorted(resolved[rule])}")
        resolved[rule][name] = _parameter_value(str(key), name, value)
    return resolved


def _parameter_value(key: str, name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{key}: {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{key}: {value!r} is not a finite number")
    if name in _COUNT_PARAMETERS:
        smallest = 1 if name == "window" else 0
        if not number.is_integer() or number < smallest:
            raise ValueError(f"{key}: {value!r} is not a whole number >= {smallest} (it counts samples or steps)")
    return int(number) if number.is_integer() else number


# --- records ------------------------------------------------------------------------------------------------------


# The profiler's files in its folder (profiler.py writes them; this module reads them).
SYSTEM_FILE = "system-metrics.jsonl"
FRAMEWORK_FILE = "framework-metrics.jsonl"


def load_profile(directory: str | os.PathLike[str]) -> tuple[list[dict], list[dict]]:
    """The system samples and framework records of a profiler folder."""
    return load_records(os.path.join(directory, SYSTEM_FILE)), load_records(os.path.join(directory, FRAMEWORK_FILE))


def load_records(path: str | os.PathLike[str]) -> list[dict]:
    """The records of a JSON-lines file. A corrupt last line is skipped (a killed job can leave it half written,
    and smdebug's parser skips it too); a corrupt line anywhere else raises ValueError with its line number."""
    with open(path, encoding="utf-8") as file:
        lines = [(number, line) for number, line in enumerate(file, start=1) if line.strip()]
    records = []
    for index, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"a JSON {type(record).__name__}, not an object")
        except ValueError as error:
            if index == len(lines) - 1:
                logger.warning("%s: skipping the corrupt last line %d (%s)", path, number, error)
                break
            raise ValueError(f"{path}: line {number} is not a JSON object: {error}") from error
        records.append(record)
    return records


@dataclass
class _Snapshot:
    """One tick of the sampler on one node: metric -> {device (cpu0, gpu1, ...): value}."""

    timestamp: float
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)


def _metric_and_device(record: Mapping[str, Any]) -> tuple[str, str]:
    # cpu/gpu records name the device in Name and the metric in Dimension; memory records name the metric in Name.
    if record.get("Type") in ("cpu", "gpu"):
        return str(record["Dimension"]), str(record["Name"])
    metric = str(record.get("Name") or record.get("Dimension"))
    return metric, metric


def _snapshots_by_node(system: Sequence[Mapping[str, Any]]) -> dict[str, list[_Snapshot]]:
    by_node: dict[str, list[tuple[float, str, str, float]]] = {}
    for index, record in enumerate(system):
        try:
            metric, device = _metric_and_device(record)
            sample = (float(record["Timestamp"]), metric, device, float(record["Value"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"system record {index} lacks a numeric Timestamp or Value, or its names: {record!r}"
            ) from error
        by_node.setdefault(str(record.get("NodeId", "algo-1")), []).append(sample)
    snapshots_by_node = {}
    for node in sorted(by_node, key=_natural_key):
        snapshots: list[_Snapshot] = []
        for timestamp, metric, device, value in sorted(by_node[node], key=lambda sample: sample[0]):
            if not snapshots or abs(timestamp - snapshots[-1].timestamp) > SNAPSHOT_SECONDS:
                snapshots.append(_Snapshot(timestamp))
            snapshots[-1].metrics.setdefault(metric, {})[device] = value
        snapshots_by_node[node] = snapshots
    return snapshots_by_node


def _natural_key(name: str) -> tuple[Any, ...]:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _device_series(snapshots: list[_Snapshot], metric: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """device -> (timestamps, values) of one metric on one node."""
    samples: dict[str, list[tuple[float, float]]] = {}
    for snapshot in snapshots:
        for device, value in snapshot.metrics.get(metric, {}).items():
            samples.setdefault(device, []).append((snapshot.timestamp, value))
    return {
        device: (np.array([t for t, _ in samples[device]]), np.array([v for _, v in samples[device]]))
        for device in sorted(samples, key=_natural_key)
    }


def _mean_series(snapshots: list[_Snapshot], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps, mean over the devices) of one metric per snapshot, as AWS's OverallSystemUsage averages cores."""
    points = [
        (s.timestamp, sum(s.metrics[metric].values()) / len(s.metrics[metric]))
        for s in snapshots
        if s.metrics.get(metric)
    ]
    return np.array([t for t, _ in points]), np.array([v for _, v in points])


def _phase(step: Mapping[str, Any]) -> str:
    if step.get("Phase"):
        return str(step["Phase"])
    return "train" if str(step.get("Name", "")).endswith("TRAIN") else "eval"


def _step_seconds(step: Mapping[str, Any]) -> tuple[float, float]:
    try:
        return float(step["DataSeconds"]), float(step["ComputeSeconds"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"step record lacks numeric DataSeconds/ComputeSeconds: {dict(step)!r}") from error


@dataclass
class _Profile:
    context: ProfileContext
    snapshots: dict[str, list[_Snapshot]]
    steps: list[Mapping[str, Any]]
    initializations: list[Mapping[str, Any]]

    @property
    def multi_node(self) -> bool:
        nodes = set(self.snapshots) | {str(step.get("NodeId", "algo-1")) for step in self.steps}
        return self.context.node_count > 1 or len(nodes) > 1

    @property
    def scan_samples(self) -> int:
        return max(1, round(AWS_SCAN_SECONDS / self.context.interval_seconds))

    def label(self, node: str, name: str) -> str:
        return f"{node}/{name}" if self.multi_node else name

    def gpu_series(self, metric: str) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
        return {
            (node, device): series
            for node, snapshots in self.snapshots.items()
            for device, series in _device_series(snapshots, metric).items()
        }

    @cached_property
    def has_gpu_samples(self) -> bool:
        return any(s.metrics.get("GPUUtilization") for snapshots in self.snapshots.values() for s in snapshots)

    @property
    def cpu_only(self) -> bool:
        return self.context.gpu_count == 0 and not self.has_gpu_samples

    def no_gpu_reason(self, what: str) -> str:
        if self.cpu_only:
            return f"CPU-only job: {what}{self.note_text()}"
        return f"no GPU samples recorded on a job with {self.context.gpu_count} GPU(s): {self.context.gpu_note or '?'}"

    def note_text(self) -> str:
        return f" ({self.context.gpu_note})" if self.context.gpu_note else ""

    def batch_text(self) -> str:
        return f" at batch {self.context.batch_size}" if self.context.batch_size else ""


# --- results and formatting ---------------------------------------------------------------------------------------


def _result(status: str, details: str, recommendation: str = "", figures: Mapping[str, float] | None = None) -> dict:
    return {
        "status": status,
        "details": details,
        "recommendation": recommendation if status == ISSUES else "",
        "figures": {name: _figure(value) for name, value in (figures or {}).items()},
    }


def _verdict(
    findings: list[str], healthy: list[str], short: list[str], recommendation: str, figures: Mapping[str, float]
) -> dict:
    """IssuesFound with the findings, else NoIssuesFound with what was judged, each followed by what could not be
    judged and why; NotEvaluated when nothing could be."""
    if not findings and not healthy:
        return _not_evaluated("; ".join(short), figures)
    not_judged = f"; not judged: {'; '.join(short)}" if short else ""
    if findings:
        return _result(ISSUES, "; ".join(findings) + not_judged, recommendation, figures)
    return _result(NO_ISSUES, "; ".join(healthy) + not_judged, figures=figures)


def _figure(value: float) -> float:
    number = float(value)
    return int(number) if number.is_integer() and abs(number) < 2**53 else round(number, 4)


def _not_evaluated(details: str, figures: Mapping[str, float] | None = None) -> dict:
    return _result(NOT_EVALUATED, details, figures=figures)


def _pct(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") + "%"


def _num(value: float) -> str:
    return f"{value:g}"


def _quantile(values: np.ndarray, q: float) -> float:
    return float(np.quantile(values, q))  # linear interpolation, as AWS's np.quantile


def _checkpoints(count: int, minimum: int, every: int) -> list[int]:
    """Sample counts at which AWS would have judged: every ``every`` samples once past ``minimum``, and the end."""
    points = [n for n in range(every, count + 1, every) if n > minimum]
    if count > minimum and (not points or points[-1] != count):
        points.append(count)
    return points


# --- the rules ----------------------------------------------------------------------------------------------------


def _low_gpu_utilization(profile: _Profile, p: Parameters) -> dict:
    series = profile.gpu_series("GPUUtilization")
    if not series:
        return _not_evaluated(profile.no_gpu_reason("no GPU utilisation to judge"))
    patience, window, high, low = int(p["patience"]), int(p["window"]), p["threshold_p95"], p["threshold_p5"]
    figures: dict[str, float] = {}
    short, findings, healthy = [], [], []
    underused_p95s, fluctuating_p5s = [], []
    checks = violations = 0
    for (node, device), (_, values) in series.items():
        label = profile.label(node, device)
        figures[f"{label}_samples"] = len(values)
        if len(values) <= patience:
            short.append(f"{label} has {len(values):,} samples, needs more than {patience:,} (patience)")
            continue
        underused = fluctuating = device_checks = 0
        for n in _checkpoints(len(values), patience, profile.scan_samples):
            recent = values[max(0, n - window) : n]
            p95, p5 = _quantile(recent, 0.95), _quantile(recent, 0.05)
            device_checks += 1
            if p95 < high:
                underused += 1
                underused_p95s.append(p95)
            elif p95 > high and p5 < low:
                fluctuating += 1
                fluctuating_p5s.append(p5)
        recent = values[-window:]
        last_p95, last_p5 = _quantile(recent, 0.95), _quantile(recent, 0.05)
        figures.update({f"{label}_p95": last_p95, f"{label}_p5": last_p5, f"{label}_checks": device_checks})
        figures.update({f"{label}_underused_checks": underused, f"{label}_fluctuating_checks": fluctuating})
        checks, violations = checks + device_checks, violations + underused + fluctuating
        summary = f"last {len(recent):,} of {len(values):,} samples p95 {_pct(last_p95)}, p5 {_pct(last_p5)}"
        if underused or fluctuating:
            problems = []
            if underused:
                problems.append(f"p95 below {_pct(high)} at {underused} of {device_checks} checks")
            if fluctuating:
                problems.append(
                    f"fluctuating (p95 above {_pct(high)}, p5 below {_pct(low)}) at {fluctuating} of {device_checks} "
                    "checks"
                )
            findings.append(f"{label}: {'; '.join(problems)} ({summary})")
        else:
            healthy.append(
                f"{label}: p95 GPU utilisation {_pct(last_p95)} (p5 {_pct(last_p5)}) over the last "
                f"{len(recent):,} of {len(values):,} samples, no violation at {device_checks} checks"
            )
    figures.update({"checks": checks, "violations": violations})
    if not checks:
        return _not_evaluated("; ".join(short), figures)
    not_judged = f"; not judged: {'; '.join(short)}" if short else ""
    if findings:
        advice = []
        if underused_p95s:
            advice.append(
                f"GPU utilisation p95 {_pct(min(underused_p95s))}{profile.batch_text()}: try a larger batch size, "
                "faster data loading (see Dataloader), or a smaller, cheaper GPU instance"
            )
        if fluctuating_p5s:
            advice.append(
                f"GPU utilisation drops to p5 {_pct(min(fluctuating_p5s))} between bursts: the GPU waits for work; "
                "check the data path (Dataloader, CPUBottleneck, IOBottleneck) and per-step host synchronisation"
            )
        return _result(ISSUES, "; ".join(findings + healthy) + not_judged, "; ".join(advice), figures)
    return _result(NO_ISSUES, "; ".join(healthy) + not_judged, figures=figures)


def _count_bottlenecks(
    profile: _Profile, metric: str, metric_threshold: float, gpu_threshold: float | None
) -> tuple[int, int, int, int]:
    """(snapshots, snapshots with the metric, bottleneck snapshots, snapshots with a GPU below gpu_threshold)."""
    snapshots = with_metric = bottlenecks = low_gpu = 0
    for node_snapshots in profile.snapshots.values():
        for snapshot in node_snapshots:
            snapshots += 1
            values = snapshot.metrics.get(metric, {})
            with_metric += bool(values)
            busy = any(value > metric_threshold for value in values.values())
            idle_gpu = gpu_threshold is None or any(
                value < gpu_threshold for value in snapshot.metrics.get("GPUUtilization", {}).values()
            )
            low_gpu += gpu_threshold is not None and idle_gpu
            bottlenecks += busy and idle_gpu
    return snapshots, with_metric, bottlenecks, low_gpu


def _judge_bottleneck(
    profile: _Profile, p: Parameters, metric: str, metric_threshold: float, gpu_threshold: float | None
) -> tuple[dict[str, float], str | None]:
    """The figures and, when there is too little data, why the rule cannot judge."""
    patience = int(p["patience"])
    snapshots, with_metric, bottlenecks, low_gpu = _count_bottlenecks(profile, metric, metric_threshold, gpu_threshold)
    figures: dict[str, float] = {"snapshots": snapshots, "bottleneck_snapshots": bottlenecks}
    if gpu_threshold is not None:
        figures["low_gpu_snapshots"] = low_gpu
    if not with_metric:
        return figures, f"no {metric} samples among {snapshots:,} snapshots of system samples"
    if snapshots <= patience:
        return figures, f"{snapshots:,} snapshots of system samples, needs more than {patience:,} (patience)"
    figures["bottleneck_percent"] = 100 * bottlenecks / snapshots
    return figures, None


def _cpu_bottleneck(profile: _Profile, p: Parameters) -> dict:
    if not profile.has_gpu_samples:
        if profile.cpu_only:
            return _not_evaluated(
                "no GPU: the CPU is the compute device, not a bottleneck in front of one; the data path's share is "
                f"judged by Dataloader{profile.note_text()}"
            )
        return _not_evaluated(profile.no_gpu_reason("no GPU utilisation to judge"))
    figures, too_little = _judge_bottleneck(profile, p, "CPUUtilization", p["cpu_threshold"], p["gpu_threshold"])
    if too_little:
        return _not_evaluated(too_little, figures)
    share, snapshots = figures["bottleneck_percent"], int(figures["snapshots"])
    finding = (
        f"in {int(figures['bottleneck_snapshots']):,} of {snapshots:,} snapshots ({_pct(share)}, threshold "
        f"{_pct(p['threshold'])}) a GPU was below {_pct(p['gpu_threshold'])} while a core was above "
        f"{_pct(p['cpu_threshold'])}"
    )
    if share > p["threshold"]:
        return _result(
            ISSUES,
            finding,
            f"the GPU idled while a CPU core was saturated in {_pct(share)} of snapshots: the CPU-side data path "
            "starves the GPU; decode once into a cache, prefetch batches in worker processes, or move augmentation "
            "to the GPU",
            figures,
        )
    return _result(NO_ISSUES, finding, figures=figures)


def _io_bottleneck(profile: _Profile, p: Parameters) -> dict:
    if not profile.has_gpu_samples and not profile.cpu_only:
        return _not_evaluated(profile.no_gpu_reason("no GPU utilisation to pair with I/O wait"))
    gpu_threshold = None if profile.cpu_only else p["gpu_threshold"]
    figures, too_little = _judge_bottleneck(profile, p, "I/OWaitPercentage", p["io_threshold"], gpu_threshold)
    if too_little:
        return _not_evaluated(too_little, figures)
    share, snapshots = figures["bottleneck_percent"], int(figures["snapshots"])
    waiting = f"a core waited on I/O more than {_pct(p['io_threshold'])} of its time"
    condition = waiting if gpu_threshold is None else f"a GPU was below {_pct(gpu_threshold)} while {waiting}"
    finding = (
        f"in {int(figures['bottleneck_snapshots']):,} of {snapshots:,} snapshots ({_pct(share)}, threshold "
        f"{_pct(p['threshold'])}) {condition}"
        + (
            " (CPU-only job: the CPU is the compute device, so iowait is time it did not compute)"
            if gpu_threshold is None
            else ""
        )
    )
    if share > p["threshold"]:
        device = "the CPU" if gpu_threshold is None else "the GPU"
        return _result(
            ISSUES,
            finding,
            f"{device} waited on I/O in {_pct(share)} of snapshots: read the dataset from local disk once "
            "(File mode, or copy it to local storage) and cache decoded images in memory instead of re-reading them",
            figures,
        )
    return _result(NO_ISSUES, finding, figures=figures)


def _batch_size(profile: _Profile, p: Parameters) -> dict:
    gpu_mode = profile.has_gpu_samples
    if not gpu_mode and not profile.cpu_only:
        return _not_evaluated(profile.no_gpu_reason("no GPU utilisation to judge the batch size by"))
    window, needed = int(p["window"]), max(int(p["window"]), int(p["patience"]))
    cpu_threshold, gpu_threshold, memory_threshold = (
        p["cpu_threshold_p95"],
        p["gpu_threshold_p95"],
        p["gpu_memory_threshold_p95"],
    )
    figures: dict[str, float] = {}
    short, findings, healthy, advice = [], [], [], []
    checks = violations = 0
    for node, snapshots in profile.snapshots.items():
        timestamps, cpu = _mean_series(snapshots, "CPUUtilization")
        cpu_label = profile.label(node, "cpu")
        figures[f"{cpu_label}_samples"] = len(cpu)
        if len(cpu) <= needed:
            short.append(f"{cpu_label} has {len(cpu):,} samples, needs more than {needed:,} (patience and window)")
            continue
        utilisation = _device_series(snapshots, "GPUUtilization")
        memory = _device_series(snapshots, "GPUMemoryUtilization")
        node_violations: dict[str, tuple[int, float, float, float]] = {}  # label -> (count, cpu p95, gpu p95, mem p95)
        busy_checks = node_checks = 0
        for n in _checkpoints(len(cpu), needed, profile.scan_samples):
            cpu_p95 = _quantile(cpu[n - window : n], 0.95)
            if cpu_p95 >= cpu_threshold:
                busy_checks += 1
                node_checks += 1
                continue
            if not gpu_mode:
                node_checks += 1
                count = node_violations.get(cpu_label, (0,))[0]
                node_violations[cpu_label] = (count + 1, cpu_p95, math.nan, math.nan)
                continue
            until = timestamps[n - 1] + SNAPSHOT_SECONDS
            judged = False
            for device, (util_times, util_values) in utilisation.items():
                memory_times, memory_values = memory.get(device, (np.array([]), np.array([])))
                m, k = np.searchsorted(util_times, until, "right"), np.searchsorted(memory_times, until, "right")
                if m <= window or k <= window:
                    continue
                judged = True
                gpu_p95 = _quantile(util_values[m - window : m], 0.95)
                memory_p95 = _quantile(memory_values[k - window : k], 0.95)
                if gpu_p95 < gpu_threshold and memory_p95 < memory_threshold:
                    label = profile.label(node, device)
                    count = node_violations.get(label, (0,))[0]
                    node_violations[label] = (count + 1, cpu_p95, gpu_p95, memory_p95)
            node_checks += judged
        last_cpu_p95 = _quantile(cpu[-window:], 0.95)
        figures[f"{cpu_label}_p95"] = last_cpu_p95
        for device, (_, values) in utilisation.items():
            figures[f"{profile.label(node, device)}_p95"] = _quantile(values[-window:], 0.95)
        for device, (_, values) in memory.items():
            figures[f"{profile.label(node, device)}_memory_p95"] = _quantile(values[-window:], 0.95)
        checks += node_checks
        for label, (count, cpu_p95, gpu_p95, memory_p95) in node_violations.items():
            violations += count
            if gpu_mode:
                findings.append(
                    f"{label}: p95 utilisation {_pct(gpu_p95)} < {_pct(gpu_threshold)} and memory p95 "
                    f"{_pct(memory_p95)} < {_pct(memory_threshold)} while CPU p95 was {_pct(cpu_p95)} < "
                    f"{_pct(cpu_threshold)}, at {count} of {node_checks} checks"
                )
                advice.append(
                    f"{label} ran at p95 {_pct(gpu_p95)} utilisation with {_pct(memory_p95)} of its memory "
                    f"occupied{profile.batch_text()}: a larger batch size would use the GPU (scale the learning rate "
                    "with it), or choose a smaller instance type"
                )
            else:
                cores = f" (mean over {profile.context.cpu_count} cores)" if profile.context.cpu_count else ""
                findings.append(
                    f"{label}: CPU p95 {_pct(cpu_p95)}{cores} < {_pct(cpu_threshold)} over {window:,}-sample windows "
                    f"at {count} of {node_checks} checks (CPU-only job: judged on the cores)"
                )
                advice.append(
                    f"CPU p95 {_pct(cpu_p95)}{profile.batch_text()}: the cores idle during training: a larger batch "
                    "size (or more threads) would use them"
                )
        if node_checks and not node_violations:
            healthy.append(
                f"{cpu_label}: CPU p95 at or above {_pct(cpu_threshold)} at {busy_checks} of {node_checks} checks"
                + (", GPUs busy or their memory full at the others" if gpu_mode else "")
                + f"; last {window:,} samples: CPU p95 {_pct(last_cpu_p95)}"
            )
        elif not node_checks:
            short.append(
                f"{cpu_label}: CPU p95 below {_pct(cpu_threshold)} but no GPU had more than {window:,} samples"
            )
    figures.update({"checks": checks, "violations": violations})
    if not checks:
        return _not_evaluated("; ".join(short), figures)
    not_judged = f"; not judged: {'; '.join(short)}" if short else ""
    if findings:
        return _result(ISSUES, "; ".join(findings) + not_judged, "; ".join(advice), figures)
    return _result(NO_ISSUES, "; ".join(healthy) + not_judged, figures=figures)


def _gpu_memory_increase(profile: _Profile, p: Parameters) -> dict:
    series = profile.gpu_series("GPUMemoryUtilization")
    if not series:
        return _not_evaluated(profile.no_gpu_reason("no GPU memory to watch"))
    patience, window, increase = int(p["patience"]), int(p["window"]), p["increase"]
    first_end = max(patience + 1, 2 * window)
    figures: dict[str, float] = {}
    short, findings, healthy = [], [], []
    for (node, device), (_, values) in series.items():
        label = profile.label(node, device)
        figures[f"{label}_samples"] = len(values)
        if len(values) < first_end:
            short.append(
                f"{label} has {len(values):,} samples, needs {first_end:,} (more than patience {patience:,}, "
                f"and two windows of {window:,})"
            )
            continue
        # Windows ending at every sample from first_end on: mean of the last `window` minus mean of the one before,
        # from running sums (one pass, not a mean per sample); rounded so summation error cannot tip a boundary.
        totals = np.concatenate(([0.0], np.cumsum(values)))
        ends = np.arange(first_end, len(values) + 1)
        rises = np.round((totals[ends] - 2 * totals[ends - window] + totals[ends - 2 * window]) / window, 6)
        violating = ends[rises > increase]
        largest = float(rises.max())
        figures.update({f"{label}_largest_rise": largest, f"{label}_violations": len(violating)})
        figures[f"{label}_max_percent"] = float(values.max())
        if len(violating):
            findings.append(
                f"{label}: the mean memory occupancy of {window:,} samples rose more than {_num(increase)} points "
                f"above the {window:,} before at {len(violating):,} samples, first at sample {int(violating[0]):,}, "
                f"by up to {largest:.2f} points; now {_pct(values[-1])} occupied (max {_pct(values.max())})"
            )
        else:
            healthy.append(
                f"{label}: largest rise {largest:.2f} points between consecutive {window:,}-sample windows over "
                f"{len(values):,} samples (threshold {_num(increase)})"
            )
    return _verdict(
        findings,
        healthy,
        short,
        "GPU memory keeps growing during training: look for tensors kept across steps (losses or outputs "
        "accumulated without .item() or .detach()) or a growing cache; a larger GPU only delays an out-of-memory "
        "error",
        figures,
    )


def _step_outlier(profile: _Profile, p: Parameters) -> dict:
    if not profile.steps:
        return _not_evaluated("no step records: the training loop recorded no steps")
    stddev, n_outliers, min_steps = p["stddev"], int(p["n_outliers"]), int(p["min_steps"])
    groups: dict[tuple[str, str], list[tuple[Any, float]]] = {}
    for step in profile.steps:
        data_seconds, compute_seconds = _step_seconds(step)
        key = (str(step.get("NodeId", "algo-1")), _phase(step))
        groups.setdefault(key, []).append((step.get("Step"), data_seconds + compute_seconds))
    figures: dict[str, float] = {}
    short, findings, healthy = [], [], []
    for (node, phase), steps in sorted(groups.items(), key=lambda item: (_natural_key(item[0][0]), item[0][1])):
        label = profile.label(node, phase)
        figures[f"{label}_steps"] = len(steps)
        if len(steps) <= min_steps:
            short.append(f"{label} has {len(steps):,} steps, needs more than {min_steps:,}")
            continue
        durations = np.array([seconds for _, seconds in steps])
        mean, spread = float(durations.mean()), float(durations.std())  # population std, as AWS
        threshold = mean + stddev * spread
        outliers = [(seconds, number) for number, seconds in steps if seconds > threshold]
        figures.update({f"{label}_outliers": len(outliers), f"{label}_threshold_seconds": threshold})
        figures.update({f"{label}_mean_seconds": mean, f"{label}_max_seconds": float(durations.max())})
        judged = (
            f"{label}: {len(outliers):,} of {len(steps):,} steps took longer than {threshold:.3f} s (mean {mean:.3f} s "
            f"+ {_num(stddev)} x std {spread:.3f} s)"
        )
        if len(outliers) > n_outliers:
            slowest = ", ".join(
                f"step {number} ({seconds:.3f} s)"
                for seconds, number in sorted(outliers, key=lambda outlier: -outlier[0])[:5]
            )
            findings.append(f"{judged}, more than {n_outliers}; slowest: {slowest}")
        else:
            healthy.append(f"{judged}, allowed {n_outliers}")
    return _verdict(
        findings,
        healthy,
        short,
        "some steps take far longer than the rest: check what ran during the slowest steps (checkpointing, "
        "evaluation, garbage collection, data that missed a cache, another process on the machine)",
        figures,
    )


def _max_initialization_time(profile: _Profile, p: Parameters) -> dict:
    if not profile.initializations:
        return _not_evaluated("no initialization record: the profiler did not record when the process started")
    threshold_seconds = p["threshold"] * 60
    durations: dict[str, float] = {}
    for record in profile.initializations:
        node = str(record.get("NodeId", "algo-1"))
        if record.get("EndTime") is not None:
            durations[node] = float(record["EndTime"]) - float(record["StartTime"])
    pending = [str(r.get("NodeId", "algo-1")) for r in profile.initializations if r.get("EndTime") is None]
    threshold_text = f"{_num(p['threshold'])} min"
    figures: dict[str, float] = {f"{profile.label(node, 'initialization_seconds')}": s for node, s in durations.items()}
    slow = {node: seconds for node, seconds in durations.items() if seconds > threshold_seconds}
    advice = (
        "look at what runs before the first step: dataset download, unzip and decoding, pretrained-weight download, "
        "feature caching; ship them in the input channel or a prepared cache"
    )
    if slow:
        worst = max(slow.values())
        nodes = ", ".join(f"{node} {seconds / 60:.1f} min" for node, seconds in slow.items())
        return _result(
            ISSUES,
            f"the first training step started {worst / 60:.1f} min after the process (threshold "
            f"{threshold_text}): {nodes}",
            f"initialisation took {worst / 60:.1f} min: {advice}",
            figures,
        )
    if pending:
        figures["job_seconds"] = profile.context.job_seconds
        if profile.context.job_seconds > threshold_seconds:
            return _result(
                ISSUES,
                f"no training step started on {', '.join(pending)} in the {profile.context.job_seconds / 60:.1f} min "
                f"profiled (threshold {threshold_text})",
                f"training never started within {profile.context.job_seconds / 60:.1f} min: {advice}",
                figures,
            )
        return _not_evaluated(
            f"no training step started on {', '.join(pending)}, and the job was profiled for only "
            f"{profile.context.job_seconds / 60:.1f} min, under the {threshold_text} threshold",
            figures,
        )
    longest = max(durations.values())
    return _result(
        NO_ISSUES,
        f"the first training step started {longest:.0f} s after the process (threshold {threshold_text})",
        figures=figures,
    )


def _dataloader(profile: _Profile, p: Parameters) -> dict:
    train = [_step_seconds(step) for step in profile.steps if _phase(step) == "train"]
    patience = int(p["patience"])
    if len(train) < patience:
        return _not_evaluated(f"{len(train):,} training steps, needs at least {patience:,} (patience)")
    data = np.array([data_seconds for data_seconds, _ in train])
    total = float(data.sum() + sum(compute for _, compute in train))
    if total <= 0:
        return _not_evaluated(f"{len(train):,} training steps took no measurable time")
    # Rounded so that float sums of step times cannot tip a share that is exactly on the threshold.
    share = round(100 * float(data.sum()) / total, 6)
    figures = {
        "data_wait_percent": share,
        "train_steps": len(train),
        "data_wait_seconds": float(data.sum()),
        "step_seconds": total,
        "data_wait_p50_seconds": _quantile(data, 0.5),
        "data_wait_p95_seconds": _quantile(data, 0.95),
    }
    finding = (
        f"the training loop waited for data {_pct(share)} of step time (threshold {_pct(p['threshold'])}): "
        f"{float(data.sum()):.1f} s of {total:.1f} s over {len(train):,} training steps; per step p50 "
        f"{figures['data_wait_p50_seconds']:.3f} s, p95 {figures['data_wait_p95_seconds']:.3f} s"
    )
    if share > p["threshold"]:
        return _result(
            ISSUES,
            finding,
            f"the training loop waited for data {_pct(share)} of step time: decode once into a cache, prefetch "
            "batches in worker processes, or move augmentation to the GPU",
            figures,
        )
    return _result(NO_ISSUES, finding, figures=figures)


def jensen_shannon_distance(p: Sequence[float] | np.ndarray, q: Sequence[float] | np.ndarray) -> float:
    """sqrt of the Jensen-Shannon divergence (natural log) of two histograms: 0 when equal, sqrt(ln 2) when disjoint.

    Written with numpy rather than scipy.spatial.distance.jensenshannon: scipy is in neither the training container's
    requirements nor the CPU box's, and would be a large download for a four-line formula.
    """
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.shape != q.shape or (p < 0).any() or (q < 0).any() or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("two non-negative histograms of the same shape, each with a positive total, are needed")
    p, q = p / p.sum(), q / q.sum()
    middle = (p + q) / 2
    divergence = (_kullback_leibler(p, middle) + _kullback_leibler(q, middle)) / 2
    return math.sqrt(max(divergence, 0.0))


def _kullback_leibler(p: np.ndarray, q: np.ndarray) -> float:
    present = p > 0  # 0 * log(0 / q) is 0; q > 0 wherever p > 0 because q is the mixture of p and another
    return float(np.sum(p[present] * np.log(p[present] / q[present])))


def _load_balancing(profile: _Profile, p: Parameters) -> dict:
    series = profile.gpu_series("GPUUtilization")
    if not series:
        return _not_evaluated(profile.no_gpu_reason("no GPUs to balance"))
    by_node: dict[str, dict[str, np.ndarray]] = {}
    for (node, device), (_, values) in series.items():
        by_node.setdefault(node, {})[device] = values
    if all(len(devices) < 2 for devices in by_node.values()):
        return _not_evaluated(
            "one GPU per node: nothing to balance" if len(by_node) > 1 else "one GPU: nothing to balance"
        )
    patience, threshold = int(p["patience"]), p["threshold"]
    figures: dict[str, float] = {}
    short, findings, judged = [], [], []
    for node, devices in by_node.items():
        ready = {device: values for device, values in devices.items() if len(values) > patience}
        short.extend(
            f"{profile.label(node, device)} has {len(values):,} samples, needs more than {patience:,} (patience)"
            for device, values in devices.items()
            if device not in ready
        )
        histograms = {device: np.histogram(np.clip(v, 0, 100), UTILISATION_BIN_EDGES)[0] for device, v in ready.items()}
        names = list(histograms)
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                distance = jensen_shannon_distance(histograms[first], histograms[second])
                pair = f"{profile.label(node, first)}~{second}"
                figures[f"{pair}_js_distance"] = distance
                text = f"{pair} JS distance {distance:.3f}"
                (findings if distance > threshold else judged).append(text)
    if not findings and not judged:
        return _not_evaluated("; ".join(short), figures)
    figures["max_js_distance"] = max(figures.values())
    not_judged = f"; not judged: {'; '.join(short)}" if short else ""
    if findings:
        return _result(
            ISSUES,
            f"utilisation distributions differ above the threshold {_num(threshold)}: {'; '.join(findings)}"
            + not_judged,
            "the GPUs do not share the work evenly: check that each process drives its own GPU with an equal shard "
            "(DistributedSampler), and that no GPU does extra work such as evaluation or logging alone",
            figures,
        )
    return _result(
        NO_ISSUES,
        f"utilisation distributions within {_num(threshold)}: {'; '.join(judged)}" + not_judged,
        figures=figures,
    )


_RULES: dict[str, Callable[[_Profile, Parameters], dict]] = {
    "CPUBottleneck": _cpu_bottleneck,
    "IOBottleneck": _io_bottleneck,
    "LowGPUUtilization": _low_gpu_utilization,
    "StepOutlier": _step_outlier,
    "GPUMemoryIncrease": _gpu_memory_increase,
    "BatchSize": _batch_size,
    "MaxInitializationTime": _max_initialization_time,
    "LoadBalancing": _load_balancing,
    "Dataloader": _dataloader,
}


# --- entry points -------------------------------------------------------------------------------------------------


def evaluate_profile(
    system: Sequence[Mapping[str, Any]],
    framework: Sequence[Mapping[str, Any]],
    context: ProfileContext,
    parameters: Mapping[str, Any] | None = None,
) -> dict[str, dict]:
    """Every rule's verdict and ProfilerReport's: {rule: {"status", "details", "recommendation", "figures",
    "parameters"}}; ProfilerReport's parameters are the overrides in effect. Raises ValueError for an unknown or
    malformed parameter, or a non-positive sampling interval."""
    resolved = resolve_parameters(parameters)
    if not context.interval_seconds > 0:
        raise ValueError(f"interval_seconds must be positive, got {context.interval_seconds!r}")
    profile = _Profile(
        context,
        _snapshots_by_node(system),
        [record for record in framework if record.get("Type") == "step"],
        [record for record in framework if record.get("Type") == "initialization"],
    )
    results: dict[str, dict] = {}
    for name, evaluate in _RULES.items():
        try:
            result = evaluate(profile, resolved[name])
        except Exception as error:  # one rule's failure must show in the report, not lose the other verdicts
            logger.exception("profiler rule %s failed", name)
            result = _not_evaluated(f"the rule failed: {type(error).__name__}: {error}")
        result["parameters"] = dict(resolved[name])
        results[name] = result
    overrides = {
        f"{rule}_{name}": value
        for rule, values in resolved.items()
        for name, value in values.items()
        if value != DEFAULT_PARAMETERS[rule][name]
    }
    results[PROFILER_REPORT] = {**_profiler_report(results), "parameters": overrides}
    return results


def _profiler_report(results: Mapping[str, Mapping[str, Any]]) -> dict:
    fired = [name for name, result in results.items() if result["status"] == ISSUES]
    not_evaluated = [name for name, result in results.items() if result["status"] == NOT_EVALUATED]
    figures = {
        "rules_with_issues": len(fired),
        "rules_evaluated": len(results) - len(not_evaluated),
        "rules_not_evaluated": len(not_evaluated),
    }
    not_evaluated_text = f"; not evaluated: {', '.join(not_evaluated)}" if not_evaluated else ""
    if fired:
        return _result(
            ISSUES,
            f"issues found by {', '.join(fired)}{not_evaluated_text}",
            "; ".join(f"{name}: {results[name]['recommendation']}" for name in fired),
            figures,
        )
    if len(not_evaluated) == len(results):
        return _not_evaluated(
            f"no rule could be evaluated: {', '.join(not_evaluated)} (see each rule's details)", figures
        )
    evaluated = [name for name in results if name not in not_evaluated]
    return _result(NO_ISSUES, f"no issues found by {', '.join(evaluated)}{not_evaluated_text}", figures=figures)


def summarise_system(system: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """{node: {metric: {"p50", "p95", "max", "samples"}}}; per-core and per-GPU metrics are averaged over the devices
    of each snapshot first, as AWS's OverallSystemUsage does. Memory metrics are keyed by their Name."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for node, snapshots in _snapshots_by_node(system).items():
        metrics = sorted({metric for snapshot in snapshots for metric in snapshot.metrics})
        summary[node] = {}
        for metric in metrics:
            _, values = _mean_series(snapshots, metric)
            summary[node][metric] = {
                "p50": _figure(_quantile(values, 0.5)),
                "p95": _figure(_quantile(values, 0.95)),
                "max": _figure(values.max()),
                "samples": len(values),
            }
    return summary
