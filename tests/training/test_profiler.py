"""The profiler's sampling on a GPU machine, with NVML stood in for: what it records and how the GPU rules judge it.

No GPU is lent to these tests, so torch is told two GPUs are visible and ``pynvml`` is a fake whose readings the test
scripts: utilisation stuck at 30 % on both GPUs, memory of gpu0 growing by 2 points a sample.
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path
from typing import Any

import profiler_rules
import pytest
import torch
from profiler import PROFILER_DIR, Profiler
from profiler_rules import FRAMEWORK_FILE, SYSTEM_FILE

TOTAL_MEMORY = 80 * 2**30


def _fake_nvml(samples: list[int]) -> types.ModuleType:
    """Two GPUs at 30 % utilisation; gpu0's memory occupancy grows 2 points with every reading, gpu1's stays."""
    nvml = types.ModuleType("pynvml")

    def memory_info(handle: int) -> Any:
        if handle == 0:
            samples[0] += 1
        used = (0.10 + 0.02 * samples[0]) * TOTAL_MEMORY if handle == 0 else 0.10 * TOTAL_MEMORY
        return types.SimpleNamespace(used=used, total=TOTAL_MEMORY)

    nvml.nvmlInit = lambda: None  # type: ignore[attr-defined]
    nvml.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetCount = lambda: 2  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetHandleByIndex = lambda index: index  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetUtilizationRates = lambda handle: types.SimpleNamespace(gpu=30, memory=5)  # type: ignore[attr-defined]
    nvml.nvmlDeviceGetMemoryInfo = memory_info  # type: ignore[attr-defined]
    return nvml


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml([0]))


def _profile(output: Path, seconds: float) -> dict[str, Any]:
    profiler = Profiler(output, interval_seconds=0.02).start()
    started = time.time()
    step = 0
    while time.time() - started < seconds:
        profiler.step("train", 1, step, time.time(), 0.0001, 0.004)
        step += 1
        time.sleep(0.004)
    parameters = {
        "LowGPUUtilization_patience": 20,
        "LowGPUUtilization_window": 20,
        "GPUMemoryIncrease_patience": 20,
        "GPUMemoryIncrease_window": 3,
        "LoadBalancing_patience": 20,
    }
    return profiler.finish(batch_size=32, rule_parameters=parameters)


@pytest.mark.usefixtures("two_gpus")
def test_gpu_samples_are_recorded_and_judged_by_the_gpu_rules(tmp_path: Path) -> None:
    # WHEN a job is profiled on two (stood-in) GPUs for a second
    report = _profile(tmp_path, 1.0)

    # THEN each sample holds both GPUs' utilisation and memory occupancy in SageMaker's format
    system = profiler_rules.load_records(tmp_path / PROFILER_DIR / SYSTEM_FILE)
    gpu = [record for record in system if record["Type"] == "gpu"]
    assert {(r["Name"], r["Dimension"]) for r in gpu} == {
        (f"gpu{index}", dimension) for index in (0, 1) for dimension in ("GPUUtilization", "GPUMemoryUtilization")
    }
    assert {r["Value"] for r in gpu if r["Dimension"] == "GPUUtilization"} == {30.0}
    assert report["context"]["gpu_count"] == 2 and report["context"]["gpu_note"] == "2 GPU(s) sampled through NVML"
    # AND the GPU rules judged those samples: both GPUs under-used, gpu0's memory growing, the two balanced
    rules = report["rules"]
    assert rules["LowGPUUtilization"]["status"] == "IssuesFound", rules["LowGPUUtilization"]
    assert "batch" in rules["LowGPUUtilization"]["recommendation"]
    assert rules["GPUMemoryIncrease"]["status"] == "IssuesFound", rules["GPUMemoryIncrease"]
    assert "gpu0" in rules["GPUMemoryIncrease"]["details"] and "gpu1" not in rules["GPUMemoryIncrease"]["details"]
    assert rules["LoadBalancing"]["status"] == "NoIssuesFound", rules["LoadBalancing"]
    assert rules["ProfilerReport"]["status"] == "IssuesFound"
    # AND the loop's steps and the initialisation were written by the sampling thread
    framework = profiler_rules.load_records(tmp_path / PROFILER_DIR / FRAMEWORK_FILE)
    steps = [record for record in framework if record["Type"] == "step"]
    assert [record["Step"] for record in steps] == list(range(len(steps))) and len(steps) > 50
    assert [record["Type"] for record in framework].count("initialization") == 1


def test_a_gpu_without_nvml_records_no_gpu_samples_and_the_gpu_rules_say_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a GPU visible to torch, but no nvidia-ml-py
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError

    report = _profile(tmp_path, 0.3)

    note = report["context"]["gpu_note"]
    assert note.startswith("1 GPU(s) visible but NVML is unavailable") and "install nvidia-ml-py" in note
    for rule in ("LowGPUUtilization", "GPUMemoryIncrease", "CPUBottleneck"):
        assert report["rules"][rule]["status"] == "NotEvaluated", report["rules"][rule]
        assert "NVML is unavailable" in report["rules"][rule]["details"]
