"""Our ProfilerReport sub-rules on crafted samples: each fires on a clear case, passes a healthy one, says
NotEvaluated (and why) with too little data or when it does not apply, and holds its boundary.

Most tests shrink patience and window through the AWS-style parameters so a case needs tens of ticks, not
thousands; test_defaults_* use the defaults on 1,200 ticks (10 minutes at 0.5 s).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import profiler_rules
import pytest
from profiler_rules import ISSUES, NO_ISSUES, NOT_EVALUATED, ProfileContext, evaluate_profile

T0 = 1_764_350_000.0
INTERVAL = 0.5
NO_GPU_NOTE = "no GPU on this machine: GPU metrics not recorded"
GPU_JOB = ProfileContext(
    interval_seconds=INTERVAL, gpu_count=1, gpu_note="", cpu_count=2, batch_size=32, job_seconds=600.0
)
CPU_ONLY = dataclasses.replace(GPU_JOB, gpu_count=0, gpu_note=NO_GPU_NOTE)
GPU_RULES = ("LowGPUUtilization", "CPUBottleneck", "GPUMemoryIncrease", "LoadBalancing")
# Small patience and windows: a case then takes 30 ticks instead of 1,200.
SMALL = {"patience": 20, "window": 10}

PerDevice = Sequence[float] | Callable[[int], Sequence[float]]


def ticks(
    count: int,
    *,
    cpu: PerDevice = (50.0, 50.0),
    iowait: PerDevice = (0.0, 0.0),
    gpu: PerDevice = (),
    gpu_memory: PerDevice | None = None,
    node: str = "algo-1",
    first_tick: int = 0,
) -> list[dict[str, Any]]:
    """``count`` ticks of system samples 0.5 s apart in SageMaker's format. Each per-device argument is a value per
    core or GPU, or a function of the tick number giving them. Samples of a tick are a few ms apart, as from the
    sampler's threads. GPU memory defaults to 40% on every GPU."""

    def at(values: PerDevice, tick: int) -> Sequence[float]:
        return values(tick) if callable(values) else values

    def sample(kind: str, name: str, dimension: str, value: float, timestamp: float) -> dict[str, Any]:
        return {
            "Type": kind,
            "Name": name,
            "Dimension": dimension,
            "Value": value,
            "NodeId": node,
            "Timestamp": timestamp,
        }

    records = []
    for tick in range(first_tick, first_tick + count):
        timestamp = T0 + tick * INTERVAL
        for core, value in enumerate(at(cpu, tick)):
            records.append(sample("cpu", f"cpu{core}", "CPUUtilization", value, timestamp + 0.001))
        for core, value in enumerate(at(iowait, tick)):
            records.append(sample("cpu", f"cpu{core}", "I/OWaitPercentage", value, timestamp + 0.002))
        utilisation = at(gpu, tick)
        memory = at(gpu_memory, tick) if gpu_memory is not None else [40.0] * len(utilisation)
        for index, value in enumerate(utilisation):
            records.append(sample("gpu", f"gpu{index}", "GPUUtilization", value, timestamp + 0.004))
        for index, value in enumerate(memory):
            records.append(sample("gpu", f"gpu{index}", "GPUMemoryUtilization", value, timestamp + 0.004))
        records.append(sample("memory", "MemoryUsedPercent", "Host", 37.5, timestamp + 0.005))
        records.append({**records[-1], "Name": "ProcessResidentBytes", "Dimension": "Algorithm", "Value": 1.2e9})
    return records


def steps(seconds: Sequence[tuple[float, float]], phase: str = "train", node: str = "algo-1") -> list[dict[str, Any]]:
    """Step records from (DataSeconds, ComputeSeconds) pairs, numbered from 0 within the phase."""
    mode = "TRAIN" if phase == "train" else "EVAL"
    return [
        {
            "Type": "step",
            "Name": f"Step:ModeKeys.{mode}",
            "Phase": phase,
            "Epoch": 1,
            "Step": number,
            "StartTime": T0 + number,
            "DataSeconds": data,
            "ComputeSeconds": compute,
            "NodeId": node,
        }
        for number, (data, compute) in enumerate(seconds)
    ]


def initialization(seconds: float | None) -> dict[str, Any]:
    end = None if seconds is None else T0 + seconds
    return {"Type": "initialization", "StartTime": T0, "EndTime": end, "NodeId": "algo-1"}


def judge(
    rule: str,
    system: Sequence[dict[str, Any]] = (),
    framework: Sequence[dict[str, Any]] = (),
    context: ProfileContext = GPU_JOB,
    **parameters: Any,
) -> dict[str, Any]:
    """One rule's result; keyword parameters are that rule's (``patience=20`` becomes ``<rule>_patience``)."""
    overrides = {f"{rule}_{name}": value for name, value in parameters.items()}
    return evaluate_profile(system, framework, context, overrides)[rule]


# --- at the defaults ----------------------------------------------------------------------------------------------


def test_defaults_find_a_starved_gpu_after_ten_minutes() -> None:
    # GIVEN 10 minutes at 0.5 s (1,200 ticks): one core saturated, the GPU at 5% with 20% of its memory used
    system = ticks(1200, cpu=(95.0, 30.0), gpu=(5.0,), gpu_memory=(20.0,))
    framework = [*steps([(0.01, 0.2)] * 150), initialization(30.0)]

    # WHEN every rule is evaluated with its defaults
    results = evaluate_profile(system, framework, GPU_JOB)

    # THEN the GPU-starvation rules fire, the healthy ones pass, and the report names what fired
    assert {name: result["status"] for name, result in results.items()} == {
        "CPUBottleneck": ISSUES,
        "IOBottleneck": NO_ISSUES,
        "LowGPUUtilization": ISSUES,
        "StepOutlier": NO_ISSUES,
        "GPUMemoryIncrease": NO_ISSUES,
        "BatchSize": ISSUES,
        "MaxInitializationTime": NO_ISSUES,
        "LoadBalancing": NOT_EVALUATED,
        "Dataloader": NO_ISSUES,
        "ProfilerReport": ISSUES,
    }
    assert results["CPUBottleneck"]["figures"]["bottleneck_percent"] == 100
    assert results["CPUBottleneck"]["figures"]["snapshots"] == 1200  # samples a few ms apart are one snapshot
    # checks every 120 samples (60 s) once past 1,000 samples, and at the end: at 1,080 and 1,200
    assert results["LowGPUUtilization"]["figures"]["gpu0_checks"] == 2
    assert results["BatchSize"]["figures"]["cpu_p95"] == 62.5  # the mean of the two cores
    assert results["ProfilerReport"]["details"] == (
        "issues found by CPUBottleneck, LowGPUUtilization, BatchSize; not evaluated: LoadBalancing"
    )
    assert results["LowGPUUtilization"]["parameters"] == {
        "threshold_p95": 70,
        "threshold_p5": 10,
        "window": 500,
        "patience": 1000,
    }


def test_defaults_need_more_than_a_thousand_samples() -> None:
    # GIVEN the same starved GPU for exactly 1,000 ticks, the default patience
    system = ticks(1000, cpu=(95.0, 30.0), gpu=(5.0,), gpu_memory=(20.0,))

    # WHEN the rules are evaluated
    results = evaluate_profile(system, [], GPU_JOB)

    # THEN the sample-counting rules cannot judge yet, and say how much they had
    assert results["LowGPUUtilization"] == {
        "status": NOT_EVALUATED,
        "details": "gpu0 has 1,000 samples, needs more than 1,000 (patience)",
        "recommendation": "",
        "figures": {"gpu0_samples": 1000, "checks": 0, "violations": 0},
        "parameters": profiler_rules.DEFAULT_PARAMETERS["LowGPUUtilization"],
    }
    assert results["CPUBottleneck"]["status"] == NOT_EVALUATED
    assert "1,000 snapshots of system samples, needs more than 1,000" in results["CPUBottleneck"]["details"]
    assert results["BatchSize"]["status"] == NOT_EVALUATED
    assert results["GPUMemoryIncrease"]["status"] == NOT_EVALUATED


def test_defaults_pass_flat_noisy_gpu_memory() -> None:
    # GIVEN GPU memory at 40% +- 2 points of noise for 1,200 ticks
    noise = random.Random(7)
    system = ticks(1200, gpu=(90.0,), gpu_memory=lambda _: (40.0 + noise.uniform(-2, 2),))

    # WHEN GPUMemoryIncrease is evaluated with its defaults
    result = judge("GPUMemoryIncrease", system)

    # THEN means of 10 samples never differ by 5 points
    assert result["status"] == NO_ISSUES
    assert result["figures"]["gpu0_largest_rise"] < 4
    assert "over 1,200 samples" in result["details"]


# --- LowGPUUtilization --------------------------------------------------------------------------------------------


def test_low_gpu_utilization_fires_on_an_underused_gpu() -> None:
    result = judge("LowGPUUtilization", ticks(30, gpu=(40.0,)), **SMALL)

    assert result["status"] == ISSUES
    assert result["figures"]["gpu0_p95"] == 40
    assert "p95 below 70% at 1 of 1 checks" in result["details"]
    assert result["recommendation"].startswith("GPU utilisation p95 40% at batch 32: try a larger batch size")


def test_low_gpu_utilization_passes_a_busy_gpu() -> None:
    result = judge("LowGPUUtilization", ticks(30, gpu=(91.0,)), **SMALL)

    assert result["status"] == NO_ISSUES
    assert result["details"].startswith("gpu0: p95 GPU utilisation 91% (p5 91%) over the last 10 of 30 samples")
    assert result["recommendation"] == ""


def test_low_gpu_utilization_fires_on_a_fluctuating_gpu() -> None:
    # GIVEN a GPU that alternates between 95% and idle: p95 above 70%, p5 below 10%
    system = ticks(30, gpu=lambda tick: (95.0 if tick % 2 else 0.0,))

    result = judge("LowGPUUtilization", system, **SMALL)

    assert result["status"] == ISSUES
    assert result["figures"]["gpu0_fluctuating_checks"] == 1
    assert result["figures"]["gpu0_underused_checks"] == 0
    assert "fluctuating (p95 above 70%, p5 below 10%)" in result["details"]
    assert "drops to p5 0%" in result["recommendation"]


@pytest.mark.parametrize(("utilisation", "status"), [(70.0, NO_ISSUES), (69.9, ISSUES)])
def test_low_gpu_utilization_boundary_is_strictly_below_the_threshold(utilisation: float, status: str) -> None:
    assert judge("LowGPUUtilization", ticks(30, gpu=(utilisation,)), **SMALL)["status"] == status


def test_low_gpu_utilization_counts_an_idle_stretch_in_the_middle_of_the_job() -> None:
    # GIVEN 100 s at 20% then 50 s at 90%: the last window is busy, the check at 60 s (120 samples) was not
    system = ticks(300, gpu=lambda tick: (20.0 if tick < 200 else 90.0,))

    result = judge("LowGPUUtilization", system, **SMALL)

    # THEN the rule fires on that check, as AWS's per-minute checks would have (checks at 120, 240, 300 samples)
    assert result["status"] == ISSUES
    assert "p95 below 70% at 1 of 3 checks" in result["details"]
    assert result["figures"]["gpu0_p95"] == 90


def test_low_gpu_utilization_needs_more_than_patience_samples() -> None:
    result = judge("LowGPUUtilization", ticks(20, gpu=(5.0,)), **SMALL)

    assert result["status"] == NOT_EVALUATED
    assert result["details"] == "gpu0 has 20 samples, needs more than 20 (patience)"


def test_low_gpu_utilization_names_the_node_on_multi_host_jobs() -> None:
    system = ticks(30, gpu=(90.0,)) + ticks(30, gpu=(30.0,), node="algo-2")

    result = judge("LowGPUUtilization", system, **SMALL)

    assert result["status"] == ISSUES
    assert result["details"].startswith("algo-2/gpu0: p95 below 70%")
    assert result["figures"]["algo-1/gpu0_p95"] == 90


def test_gpu_without_samples_is_not_evaluated_with_the_profilers_note() -> None:
    # GIVEN a GPU job whose profiler could not read the GPU
    context = dataclasses.replace(GPU_JOB, gpu_note="NVML unavailable: libnvidia-ml.so.1 not found")

    result = judge("LowGPUUtilization", ticks(30), context=context, **SMALL)

    assert result["status"] == NOT_EVALUATED
    assert result["details"] == (
        "no GPU samples recorded on a job with 1 GPU(s): NVML unavailable: libnvidia-ml.so.1 not found"
    )


def test_cpu_only_job_never_passes_a_gpu_rule() -> None:
    # GIVEN a CPU-only job with plenty of samples and steps, and the smallest patience
    system = ticks(60, cpu=(40.0, 40.0))
    parameters = {f"{rule}_patience": 1 for rule in GPU_RULES}

    # WHEN every rule is evaluated
    results = evaluate_profile(system, steps([(0.01, 0.2)] * 20), CPU_ONLY, parameters)

    # THEN each GPU rule says it was not evaluated, and why
    for rule in GPU_RULES:
        assert results[rule]["status"] == NOT_EVALUATED, rule
        assert results[rule]["recommendation"] == ""
    assert results["LowGPUUtilization"]["details"] == f"CPU-only job: no GPU utilisation to judge ({NO_GPU_NOTE})"
    assert results["CPUBottleneck"]["details"].startswith(
        "no GPU: the CPU is the compute device, not a bottleneck in front of one; the data path's share is judged "
        "by Dataloader"
    )
    assert results["GPUMemoryIncrease"]["details"] == f"CPU-only job: no GPU memory to watch ({NO_GPU_NOTE})"
    assert results["LoadBalancing"]["details"] == f"CPU-only job: no GPUs to balance ({NO_GPU_NOTE})"


# --- CPUBottleneck ------------------------------------------------------------------------------------------------


def test_cpu_bottleneck_fires_when_a_busy_core_starves_the_gpu() -> None:
    result = judge("CPUBottleneck", ticks(30, cpu=(95.0, 20.0), gpu=(5.0,)), patience=20)

    assert result["status"] == ISSUES
    assert result["figures"] == {
        "snapshots": 30,
        "bottleneck_snapshots": 30,
        "low_gpu_snapshots": 30,
        "bottleneck_percent": 100,
    }
    assert "the CPU-side data path starves the GPU" in result["recommendation"]


def test_cpu_bottleneck_passes_a_busy_core_beside_a_busy_gpu() -> None:
    result = judge("CPUBottleneck", ticks(30, cpu=(95.0, 95.0), gpu=(90.0,)), patience=20)

    assert result["status"] == NO_ISSUES
    assert result["details"] == (
        "in 0 of 30 snapshots (0%, threshold 50%) a GPU was below 10% while a core was above 90%"
    )


@pytest.mark.parametrize(("bottlenecked", "status"), [(20, NO_ISSUES), (21, ISSUES)])
def test_cpu_bottleneck_boundary_is_strictly_above_the_threshold(bottlenecked: int, status: str) -> None:
    # GIVEN 40 snapshots, 20 (exactly 50%) or 21 of them bottlenecked
    system = ticks(bottlenecked, cpu=(95.0, 20.0), gpu=(5.0,))
    system += ticks(40 - bottlenecked, cpu=(95.0, 20.0), gpu=(80.0,), first_tick=bottlenecked)

    assert judge("CPUBottleneck", system, patience=20)["status"] == status


def test_cpu_bottleneck_needs_more_than_patience_snapshots() -> None:
    result = judge("CPUBottleneck", ticks(20, cpu=(95.0, 20.0), gpu=(5.0,)), patience=20)

    assert result["status"] == NOT_EVALUATED
    assert result["details"] == "20 snapshots of system samples, needs more than 20 (patience)"


# --- IOBottleneck -------------------------------------------------------------------------------------------------


def test_io_bottleneck_fires_when_a_core_waits_on_io_while_the_gpu_idles() -> None:
    result = judge("IOBottleneck", ticks(30, iowait=(60.0, 0.0), gpu=(5.0,)), patience=20)

    assert result["status"] == ISSUES
    assert result["figures"]["bottleneck_percent"] == 100
    assert "the GPU waited on I/O in 100% of snapshots" in result["recommendation"]


def test_io_bottleneck_passes_io_wait_while_the_gpu_is_busy() -> None:
    result = judge("IOBottleneck", ticks(30, iowait=(60.0, 0.0), gpu=(90.0,)), patience=20)

    assert result["status"] == NO_ISSUES
    assert result["figures"]["bottleneck_percent"] == 0


@pytest.mark.parametrize(("iowait", "status"), [(50.0, NO_ISSUES), (50.5, ISSUES)])
def test_io_bottleneck_on_a_cpu_only_job_judges_io_wait_alone(iowait: float, status: str) -> None:
    # GIVEN a CPU-only job whose first core waits on I/O exactly 50% (the threshold), or just above it
    result = judge("IOBottleneck", ticks(30, iowait=(iowait, 0.0)), context=CPU_ONLY, patience=20)

    assert result["status"] == status
    assert "CPU-only job: the CPU is the compute device" in result["details"]
    assert "low_gpu_snapshots" not in result["figures"]


def test_io_bottleneck_needs_more_than_patience_snapshots() -> None:
    result = judge("IOBottleneck", ticks(20, iowait=(60.0, 0.0)), context=CPU_ONLY, patience=20)

    assert result["status"] == NOT_EVALUATED
    assert result["details"] == "20 snapshots of system samples, needs more than 20 (patience)"


def test_io_bottleneck_is_not_evaluated_when_the_gpu_was_not_recorded() -> None:
    context = dataclasses.replace(GPU_JOB, gpu_note="NVML unavailable: driver mismatch")

    result = judge("IOBottleneck", ticks(30, iowait=(60.0, 0.0)), context=context, patience=20)

    assert result["status"] == NOT_EVALUATED
    assert result["details"].endswith("NVML unavailable: driver mismatch")


# --- BatchSize ----------------------------------------------------------------------------------------------------


def test_batch_size_fires_when_cpu_gpu_and_gpu_memory_are_all_underused() -> None:
    system = ticks(30, cpu=(30.0, 30.0), gpu=(40.0,), gpu_memory=(30.0,))

    result = judge("BatchSize", system, **SMALL)

    assert result["status"] == ISSUES
    assert result["details"] == (
        "gpu0: p95 utilisation 40% < 70% and memory p95 30% < 70% while CPU p95 was 30% < 70%, at 1 of 1 checks"
    )
    assert result["recommendation"].startswith(
        "gpu0 ran at p95 40% utilisation with 30% of its memory occupied at batch 32: a larger batch size would use "
        "the GPU"
    )


@pytest.mark.parametrize(
    ("cpu", "gpu_memory"), [((90.0, 90.0), 30.0), ((30.0, 30.0), 90.0)], ids=["cpu busy", "gpu memory full"]
)
def test_batch_size_passes_when_the_cpu_is_busy_or_the_gpu_memory_full(
    cpu: tuple[float, float], gpu_memory: float
) -> None:
    result = judge("BatchSize", ticks(30, cpu=cpu, gpu=(40.0,), gpu_memory=(gpu_memory,)), **SMALL)

    assert result["status"] == NO_ISSUES
    assert result["figures"]["violations"] == 0


@pytest.mark.parametrize(("cpu", "status"), [(70.0, NO_ISSUES), (69.0, ISSUES)])
def test_batch_size_on_a_cpu_only_job_judges_the_cores(cpu: float, status: str) -> None:
    # GIVEN a CPU-only job whose cores run at exactly the 70% threshold, or just below it
    result = judge("BatchSize", ticks(30, cpu=(cpu, cpu)), context=CPU_ONLY, **SMALL)

    assert result["status"] == status
    if status == ISSUES:
        assert result["recommendation"] == (
            "CPU p95 69% at batch 32: the cores idle during training: a larger batch size (or more threads) would use "
            "them"
        )


def test_batch_size_needs_more_than_patience_and_window_samples() -> None:
    result = judge("BatchSize", ticks(20, cpu=(30.0, 30.0)), context=CPU_ONLY, **SMALL)

    assert result["status"] == NOT_EVALUATED
    assert result["details"] == "cpu has 20 samples, needs more than 20 (patience and window)"


# --- GPUMemoryIncrease --------------------------------------------------------------------------------------------


def test_gpu_memory_increase_fires_on_steadily_growing_memory() -> None:
    # GIVEN GPU memory growing 1.5 points a sample: windows of 5 samples are 7.5 points apart
    system = ticks(50, gpu=(90.0,), gpu_memory=lambda tick: (10.0 + 1.5 * tick,))

    result = judge("GPUMemoryIncrease", system, patience=20, window=5)

    assert result["status"] == ISSUES
    assert result["figures"]["gpu0_largest_rise"] == 7.5
    assert result["figures"]["gpu0_violations"] == 30  # every sample from the 21st on
    assert "first at sample 21" in result["details"]


@pytest.mark.parametrize(("after", "status"), [(45.0, NO_ISSUES), (46.0, ISSUES)])
def test_gpu_memory_increase_boundary_is_strictly_above_the_increase(after: float, status: str) -> None:
    # GIVEN memory that steps from 40% to 45% (exactly the 5-point increase) or 46% after 30 samples
    system = ticks(50, gpu=(90.0,), gpu_memory=lambda tick: (40.0 if tick < 30 else after,))

    result = judge("GPUMemoryIncrease", system, patience=20, window=5)

    assert result["status"] == status
    assert result["figures"]["gpu0_largest_rise"] == after - 40


def test_gpu_memory_increase_needs_more_than_patience_samples() -> None:
    system = ticks(20, gpu=(90.0,), gpu_memory=lambda tick: (10.0 + 3 * tick,))

    result = judge("GPUMemoryIncrease", system, patience=20, window=5)

    assert result["status"] == NOT_EVALUATED
    assert result["details"] == "gpu0 has 20 samples, needs 21 (more than patience 20, and two windows of 5)"


# --- StepOutlier --------------------------------------------------------------------------------------------------


def _steps_with_outliers(outliers: int) -> list[dict[str, Any]]:
    """200 steps of 0.1 s, then ``outliers`` steps of 1 s (well above mean + 3 std in both cases below)."""
    return steps([(0.02, 0.08)] * 200 + [(0.5, 0.5)] * outliers)


@pytest.mark.parametrize(("outliers", "status"), [(10, NO_ISSUES), (11, ISSUES)])
def test_step_outlier_fires_on_more_than_n_outliers(outliers: int, status: str) -> None:
    result = judge("StepOutlier", framework=_steps_with_outliers(outliers))

    assert result["status"] == status
    assert result["figures"]["train_outliers"] == outliers
    assert 0.7 < result["figures"]["train_threshold_seconds"] < 1.0


def test_step_outlier_details_name_the_slowest_steps() -> None:
    framework = _steps_with_outliers(11)
    framework[205]["ComputeSeconds"] = 2.0  # the slowest of all

    result = judge("StepOutlier", framework=framework)

    assert "11 of 211 steps took longer than" in result["details"]
    assert "slowest: step 205 (2.500 s), step 200 (1.000 s)" in result["details"]


def test_step_outlier_passes_steady_steps() -> None:
    durations = [(0.02, 0.08 + 0.001 * (number % 7)) for number in range(150)]

    result = judge("StepOutlier", framework=steps(durations))

    assert result["status"] == NO_ISSUES
    assert result["figures"]["train_outliers"] == 0


def test_step_outlier_judges_phases_separately_and_needs_more_than_min_steps() -> None:
    # GIVEN 100 training steps (not more than min_steps) and 101 evaluation steps
    framework = steps([(0.02, 0.08)] * 100) + steps([(0.01, 0.05)] * 101, phase="eval")

    result = judge("StepOutlier", framework=framework)

    # THEN only the evaluation phase is judged, and the details say why training was not
    assert result["status"] == NO_ISSUES
    assert result["details"].endswith("not judged: train has 100 steps, needs more than 100")
    assert judge("StepOutlier", framework=framework[:100])["status"] == NOT_EVALUATED


# --- MaxInitializationTime ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "status"), [(30.0, NO_ISSUES), (1200.0, NO_ISSUES), (1201.0, ISSUES)])
def test_max_initialization_time_fires_above_twenty_minutes(seconds: float, status: str) -> None:
    result = judge("MaxInitializationTime", framework=[initialization(seconds)])

    assert result["status"] == status
    assert result["figures"]["initialization_seconds"] == seconds


def test_max_initialization_time_reports_a_slow_start() -> None:
    result = judge("MaxInitializationTime", framework=[initialization(25 * 60.0)])

    assert (
        result["details"]
        == "the first training step started 25.0 min after the process (threshold 20 min): algo-1 25.0 min"
    )
    assert result["recommendation"].startswith("initialisation took 25.0 min: look at what runs before the first step")


def test_max_initialization_time_without_a_training_step() -> None:
    # GIVEN no training step ever started: a 25-minute job is judged, a 10-minute one cannot be yet
    long_job, short_job = (dataclasses.replace(GPU_JOB, job_seconds=s) for s in (1500.0, 600.0))

    fired = judge("MaxInitializationTime", framework=[initialization(None)], context=long_job)
    undecided = judge("MaxInitializationTime", framework=[initialization(None)], context=short_job)

    assert fired["status"] == ISSUES
    assert fired["details"] == "no training step started on algo-1 in the 25.0 min profiled (threshold 20 min)"
    assert undecided["status"] == NOT_EVALUATED
    assert "profiled for only 10.0 min, under the 20 min threshold" in undecided["details"]


def test_max_initialization_time_without_a_record_is_not_evaluated() -> None:
    result = judge("MaxInitializationTime", framework=steps([(0.01, 0.2)] * 5))

    assert result["status"] == NOT_EVALUATED
    assert result["details"].startswith("no initialization record")


# --- Dataloader ---------------------------------------------------------------------------------------------------


def test_dataloader_fires_when_the_loop_waits_for_data() -> None:
    # GIVEN training steps that wait 0.1 s for data and compute for 0.2 s, and fast evaluation steps
    framework = steps([(0.1, 0.2)] * 10) + steps([(0.0, 0.1)] * 10, phase="eval")

    result = judge("Dataloader", framework=framework)

    # THEN a third of the training step time is data wait; evaluation steps do not count
    assert result["status"] == ISSUES
    assert result["figures"]["data_wait_percent"] == pytest.approx(33.3333)
    assert result["figures"]["train_steps"] == 10
    assert result["figures"]["data_wait_p50_seconds"] == 0.1
    assert result["recommendation"] == (
        "the training loop waited for data 33.33% of step time: decode once into a cache, prefetch batches in worker "
        "processes, or move augmentation to the GPU"
    )


@pytest.mark.parametrize(("data", "status"), [(0.05, NO_ISSUES), (0.051, ISSUES), (0.01, NO_ISSUES)])
def test_dataloader_boundary_is_strictly_above_the_threshold(data: float, status: str) -> None:
    # GIVEN 150 steps computing 0.2 s and waiting 0.05 s (exactly 20%), a little more, or much less
    result = judge("Dataloader", framework=steps([(data, 0.2)] * 150))

    assert result["status"] == status


def test_dataloader_needs_patience_training_steps() -> None:
    framework = steps([(0.2, 0.2)] * 9) + steps([(0.2, 0.2)] * 20, phase="eval")

    result = judge("Dataloader", framework=framework)

    assert result["status"] == NOT_EVALUATED
    assert result["details"] == "9 training steps, needs at least 10 (patience)"
    assert judge("Dataloader", framework=steps([(0.2, 0.2)] * 10))["status"] == ISSUES


# --- LoadBalancing ------------------------------------------------------------------------------------------------


def test_load_balancing_fires_on_two_gpus_with_different_workloads() -> None:
    system = ticks(30, gpu=lambda tick: (90.0 + tick % 5, 20.0 + tick % 5))

    result = judge("LoadBalancing", system, patience=20)

    assert result["status"] == ISSUES
    assert result["figures"]["gpu0~gpu1_js_distance"] == pytest.approx(math.sqrt(math.log(2)), abs=1e-4)
    assert "DistributedSampler" in result["recommendation"]


def test_load_balancing_passes_two_gpus_with_similar_workloads() -> None:
    system = ticks(30, gpu=lambda tick: (80.0 + tick % 10, 80.0 + (tick + 3) % 10))

    result = judge("LoadBalancing", system, patience=20)

    assert result["status"] == NO_ISSUES
    assert result["figures"]["gpu0~gpu1_js_distance"] < 0.1


def test_load_balancing_counts_a_gpu_pinned_at_100_percent() -> None:
    # GIVEN one GPU at 100% (outside AWS's bins, which ended at 98) and one at 50%
    system = ticks(30, gpu=(100.0, 50.0))

    # WHEN judged at exactly the disjoint distance sqrt(ln 2), and just below it
    at_distance = judge("LoadBalancing", system, patience=20, threshold=math.sqrt(math.log(2)))
    below = judge("LoadBalancing", system, patience=20, threshold=0.83)

    # THEN the distance is that of disjoint histograms, and only a threshold below it fires
    assert at_distance["status"] == NO_ISSUES
    assert below["status"] == ISSUES


def test_load_balancing_needs_two_gpus_with_more_than_patience_samples() -> None:
    one_gpu = judge("LoadBalancing", ticks(30, gpu=(90.0,)), patience=20)
    too_few = judge("LoadBalancing", ticks(20, gpu=(90.0, 10.0)), patience=20)

    assert (one_gpu["status"], one_gpu["details"]) == (NOT_EVALUATED, "one GPU: nothing to balance")
    assert too_few["status"] == NOT_EVALUATED
    assert too_few["details"] == (
        "gpu0 has 20 samples, needs more than 20 (patience); gpu1 has 20 samples, needs more than 20 (patience)"
    )


def test_jensen_shannon_distance_matches_a_hand_computed_value() -> None:
    # p = (1, 0), q = (1/2, 1/2), m = (3/4, 1/4): KL(p||m) = ln(4/3), KL(q||m) = (ln(2/3) + ln 2) / 2
    expected = math.sqrt((math.log(4 / 3) + (math.log(2 / 3) + math.log(2)) / 2) / 2)

    assert profiler_rules.jensen_shannon_distance([4, 0], [3, 3]) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.464501, abs=1e-6)
    assert profiler_rules.jensen_shannon_distance([1, 2, 3], [2, 4, 6]) == 0
    assert profiler_rules.jensen_shannon_distance([1, 0], [0, 1]) == pytest.approx(math.sqrt(math.log(2)))
    with pytest.raises(ValueError, match="same shape"):
        profiler_rules.jensen_shannon_distance([1, 0], [1, 0, 0])


# --- parameters ---------------------------------------------------------------------------------------------------


def test_parameter_overrides_are_case_insensitive_on_the_rule_name_and_change_the_verdict() -> None:
    # GIVEN a GPU at 60%: below the default 70% p95 threshold
    system = ticks(30, gpu=(60.0,))
    small = {"LowGPUUtilization_patience": 20, "LowGPUUtilization_window": 10}

    default = evaluate_profile(system, [], GPU_JOB, small)
    lowered = evaluate_profile(system, [], GPU_JOB, {**small, "lowgpuutilization_threshold_p95": "50"})

    assert default["LowGPUUtilization"]["status"] == ISSUES
    assert lowered["LowGPUUtilization"]["status"] == NO_ISSUES
    assert lowered["LowGPUUtilization"]["parameters"]["threshold_p95"] == 50
    assert lowered["ProfilerReport"]["parameters"] == {
        "LowGPUUtilization_threshold_p95": 50,
        "LowGPUUtilization_window": 10,
        "LowGPUUtilization_patience": 20,
    }


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"CPUBottleneck_treshold": 30}, "unknown parameter 'treshold' of CPUBottleneck"),
        ({"GPUBottleneck_threshold": 30}, "unknown profiler rule parameter 'GPUBottleneck_threshold'"),
        ({"patience": 30}, "expected <RuleName>_<parameter>"),
        ({"CPUBottleneck_threshold": "high"}, "CPUBottleneck_threshold: 'high' is not a number"),
        ({"LowGPUUtilization_window": 0}, "not a whole number >= 1"),
        ({"StepOutlier_n_outliers": 2.5}, "not a whole number >= 0"),
    ],
)
def test_bad_parameters_raise(parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate_profile([], [], GPU_JOB, parameters)


# --- ProfilerReport -----------------------------------------------------------------------------------------------


def test_profiler_report_passes_when_evaluated_rules_pass_and_lists_the_others() -> None:
    # GIVEN a healthy CPU-only job
    system = ticks(30, cpu=(90.0, 90.0))
    framework = [*steps([(0.01, 0.2)] * 150), initialization(40.0)]
    parameters = {"IOBottleneck_patience": 20, "BatchSize_patience": 20, "BatchSize_window": 10}

    report = evaluate_profile(system, framework, CPU_ONLY, parameters)["ProfilerReport"]

    assert report["status"] == NO_ISSUES
    assert report["details"] == (
        "no issues found by IOBottleneck, StepOutlier, BatchSize, MaxInitializationTime, Dataloader; "
        "not evaluated: CPUBottleneck, LowGPUUtilization, GPUMemoryIncrease, LoadBalancing"
    )
    assert report["figures"] == {"rules_with_issues": 0, "rules_evaluated": 5, "rules_not_evaluated": 4}


def test_profiler_report_finds_issues_when_any_rule_does() -> None:
    framework = [*steps([(0.2, 0.2)] * 10), initialization(40.0)]

    report = evaluate_profile([], framework, CPU_ONLY)["ProfilerReport"]

    assert report["status"] == ISSUES
    assert report["details"].startswith("issues found by Dataloader; not evaluated: CPUBottleneck")
    assert report["recommendation"].startswith("Dataloader: the training loop waited for data 50% of step time")


def test_profiler_report_is_not_evaluated_when_no_rule_could_be() -> None:
    results = evaluate_profile([], [], CPU_ONLY)

    assert {result["status"] for result in results.values()} == {NOT_EVALUATED}
    assert results["ProfilerReport"]["details"].startswith("no rule could be evaluated: CPUBottleneck, IOBottleneck")


def test_a_failing_rule_is_not_evaluated_and_the_others_still_judge() -> None:
    # GIVEN a step record without ComputeSeconds
    framework = [*steps([(0.01, 0.2)] * 10), initialization(40.0)]
    del framework[3]["ComputeSeconds"]

    results = evaluate_profile([], framework, CPU_ONLY)

    assert results["Dataloader"]["status"] == NOT_EVALUATED
    assert results["Dataloader"]["details"].startswith("the rule failed: ValueError: step record lacks numeric")
    assert results["MaxInitializationTime"]["status"] == NO_ISSUES


# --- records and the system summary -------------------------------------------------------------------------------


def test_load_records_skips_a_corrupt_last_line(tmp_path: Path) -> None:
    # GIVEN a file whose last line a killed job left half written
    path = tmp_path / "system.jsonl"
    records = ticks(2, gpu=(50.0,))
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"Type": "cpu", "Na')

    assert profiler_rules.load_records(path) == records


def test_load_records_raises_on_a_corrupt_middle_line(tmp_path: Path) -> None:
    path = tmp_path / "system.jsonl"
    path.write_text('{"Type": "cpu"}\n\n{"Type": \n{"Type": "gpu"}\n')

    with pytest.raises(ValueError, match=r"system.jsonl: line 3 is not a JSON object"):
        profiler_rules.load_records(path)


def test_summarise_system_averages_cores_per_node() -> None:
    system = ticks(4, cpu=(20.0, 60.0), gpu=(80.0, 100.0)) + ticks(
        4, cpu=lambda tick: (10.0 * tick, 0.0), node="algo-2"
    )

    summary = profiler_rules.summarise_system(system)

    assert summary["algo-1"]["CPUUtilization"] == {"p50": 40, "p95": 40, "max": 40, "samples": 4}
    assert summary["algo-1"]["GPUUtilization"]["p50"] == 90
    assert summary["algo-1"]["MemoryUsedPercent"]["max"] == 37.5
    assert summary["algo-1"]["ProcessResidentBytes"]["p50"] == 1.2e9
    # algo-2's core means are 0, 5, 10, 15: linear interpolation as numpy's quantile
    assert summary["algo-2"]["CPUUtilization"] == {"p50": 7.5, "p95": 14.25, "max": 15, "samples": 4}
    assert "GPUUtilization" not in summary["algo-2"]
