"""Our profiler: system metrics from a background thread and step timings from the training loop.

SageMaker Profiler (and Debugger) are closed to new AWS accounts and Profiler support ends on 2027-06-30, so the
training job profiles itself, on by default, in the container and on a CPU box alike:

- System metrics every ``interval_seconds`` (0.5 s, SageMaker's default, so the rules' sample-counted patience and
  windows mean what they mean on AWS), in SageMaker's system-metric format (Type, Name, Dimension, Value, NodeId,
  Timestamp): per-core CPU utilisation and I/O wait (psutil), host memory and the process's resident memory, and
  per GPU utilisation and memory occupancy (NVML through nvidia-ml-py). A machine without a GPU records no GPU
  samples and says why in the report.
- Framework records from the loop: per step the time spent waiting for the batch and the time computing (on a GPU
  the compute time is the CPU-side time of the step: the loop does not synchronise per step, so queued kernels are
  paid for when the queue is full and at the epoch's end), the epoch and evaluation phases, and the initialisation
  time (process start to the first training step).

Both go to ``<output_data_dir>/profiler/`` as JSON lines, written as they are produced so that a killed job still
leaves its samples; ``finish()`` evaluates profiler_rules.py on them and writes ``profiler_report.json``.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import profiler_rules

logger = logging.getLogger(__name__)

PROFILER_DIR = "profiler"
REPORT_FILE = "profiler_report.json"
DEFAULT_INTERVAL_SECONDS = 0.5


def node_id() -> str:
    """SageMaker's host name for this node (algo-1, algo-2, ...)."""
    return os.environ.get("SM_CURRENT_HOST", "algo-1")


def process_start_time() -> float:
    import psutil

    return float(psutil.Process().create_time())


class _GpuReader:
    """Per-GPU utilisation and memory occupancy through NVML, or nothing, with the reason."""

    def __init__(self) -> None:
        self.handles: list[Any] = []
        self.note = ""
        self._nvml: Any = None
        try:
            import torch

            visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        except Exception:  # torch without CUDA support, or a broken driver: judged as a machine without a GPU
            visible = 0
        if visible == 0:
            self.note = "no GPU on this machine: GPU metrics not recorded"
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(index) for index in range(pynvml.nvmlDeviceGetCount())]
            self._nvml = pynvml
            self.note = f"{len(self.handles)} GPU(s) sampled through NVML"
        except Exception as error:
            self.note = (
                f"{visible} GPU(s) visible but NVML is unavailable ({type(error).__name__}: {error}): GPU utilisation "
                "not recorded; install nvidia-ml-py"
            )

    def sample(self) -> list[tuple[str, str, float]]:
        readings = []
        for index, handle in enumerate(self.handles):
            utilisation = self._nvml.nvmlDeviceGetUtilizationRates(handle)
            memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
            readings.append((f"gpu{index}", "GPUUtilization", float(utilisation.gpu)))
            # Occupancy (used / total): the "GPU memory footprint" SageMaker's report describes. NVML's own
            # memory utilisation is the memory controller's busy time, which says nothing about growth.
            readings.append((f"gpu{index}", "GPUMemoryUtilization", 100.0 * memory.used / max(1, memory.total)))
        return readings

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                logger.debug("nvmlShutdown failed", exc_info=True)


class Profiler:
    """Start it before the data is read; call ``step``/``phase`` from the loop; ``finish`` at the end."""

    def __init__(self, output_data_dir: str | os.PathLike[str], *, interval_seconds: float = DEFAULT_INTERVAL_SECONDS):
        import psutil

        self.directory = Path(output_data_dir) / PROFILER_DIR
        self.interval_seconds = float(interval_seconds)
        self.node = node_id()
        self.started = process_start_time()
        self.first_training_step: float | None = None
        self.samples = 0
        self.sampling_seconds = 0.0
        self._psutil = psutil
        self._process = psutil.Process()
        self._gpus = _GpuReader()
        # The training thread only appends a tuple per step (thread-safe, ~0.1 us); the sampling thread turns them
        # into JSON lines at its next tick, so the step loop never pays for formatting or writing.
        self._steps: collections.deque[tuple[str, int, int, float, float, float]] = collections.deque()
        self._phases: collections.deque[dict[str, Any]] = collections.deque()
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._system_file: TextIO | None = None
        self._framework_file: TextIO | None = None

    @property
    def gpu_count(self) -> int:
        return len(self._gpus.handles)

    def start(self) -> Profiler:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._system_file = (self.directory / profiler_rules.SYSTEM_FILE).open("w", encoding="utf-8")
        self._framework_file = (self.directory / profiler_rules.FRAMEWORK_FILE).open("w", encoding="utf-8")
        self._psutil.cpu_times_percent(percpu=True)  # the first call only sets the baseline of the next one
        self._thread = threading.Thread(target=self._sample_forever, name="profiler", daemon=True)
        self._thread.start()
        logger.info("profiler: every %.1f s into %s (%s)", self.interval_seconds, self.directory, self._gpus.note)
        return self

    # --- system metrics ---------------------------------------------------------------------------------------

    def _sample_forever(self) -> None:
        next_tick = time.monotonic() + self.interval_seconds
        while not self._stop.wait(max(0.0, next_tick - time.monotonic())):
            next_tick += self.interval_seconds
            try:
                self._sample_once()
                self._flush_framework()
            except Exception:  # a sampling failure must never take the training down
                logger.exception("profiler sample failed")

    def _sample_once(self) -> None:
        started = time.perf_counter()
        timestamp = time.time()
        rows: list[tuple[str, str, str, float]] = []
        for core, times in enumerate(self._psutil.cpu_times_percent(percpu=True)):
            iowait = float(getattr(times, "iowait", 0.0))
            rows.append(("cpu", f"cpu{core}", "CPUUtilization", max(0.0, 100.0 - times.idle - iowait)))
            rows.append(("cpu", f"cpu{core}", "I/OWaitPercentage", iowait))
        rows.append(("memory", "MemoryUsedPercent", "Host", float(self._psutil.virtual_memory().percent)))
        rows.append(("memory", "ProcessResidentBytes", "Algorithm", float(self._process.memory_info().rss)))
        rows += [("gpu", name, dimension, value) for name, dimension, value in self._gpus.sample()]
        lines = "".join(
            json.dumps(
                {"Type": kind, "Name": name, "Dimension": dimension, "Value": round(value, 3), "NodeId": self.node,
                 "Timestamp": round(timestamp, 3)}
            ) + "\n"
            for kind, name, dimension, value in rows
        )  # fmt: skip
        assert self._system_file is not None
        self._system_file.write(lines)
        self._system_file.flush()
        self.samples += 1
        self.sampling_seconds += time.perf_counter() - started

    # --- framework records ------------------------------------------------------------------------------------

    def step(self, phase: str, epoch: int, step: int, start_time: float, data_seconds: float, compute_seconds: float):
        """One finished step (called from the training loop: keep it cheap)."""
        if self.first_training_step is None and phase == "train":
            self.first_training_step = start_time
        self._steps.append((phase, epoch, step, start_time, data_seconds, compute_seconds))

    def phase(self, name: str, epoch: int, start_time: float, end_time: float) -> None:
        self._phases.append(
            {"Type": "phase", "Name": name, "Epoch": epoch, "StartTime": start_time, "EndTime": end_time,
             "NodeId": self.node}
        )  # fmt: skip

    def _step_lines(self) -> list[str]:
        # Formatted by hand, not json.dumps: a job of sub-millisecond steps records thousands a second, and this
        # runs on the sampling thread holding the GIL the training loop needs (~5x cheaper per record).
        node = json.dumps(self.node)
        lines = []
        while self._steps:
            phase, epoch, step, start_time, data_seconds, compute_seconds = self._steps.popleft()
            if step == 0 and phase == "train":
                lines.append(
                    f'{{"Type": "initialization", "StartTime": {self.started}, "EndTime": {start_time:.6f}, '
                    f'"NodeId": {node}}}\n'
                )
            lines.append(
                f'{{"Type": "step", "Name": "Step:ModeKeys.{"TRAIN" if phase == "train" else "EVAL"}", '
                f'"Phase": "{phase}", "Epoch": {epoch}, "Step": {step}, "StartTime": {start_time:.6f}, '
                f'"DataSeconds": {data_seconds:.6f}, "ComputeSeconds": {compute_seconds:.6f}, "NodeId": {node}}}\n'
            )
        return lines

    def _flush_framework(self) -> None:
        """Write what the loop recorded since the last flush (the sampling thread, and stop() at the end)."""
        with self._flush_lock:
            if self._framework_file is None:
                return
            lines = self._step_lines()
            while self._phases:
                lines.append(json.dumps(self._phases.popleft()) + "\n")
            if lines:
                self._framework_file.write("".join(lines))
                self._framework_file.flush()

    # --- the end ----------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop sampling and close the files (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * self.interval_seconds + 1)
        if self.first_training_step is None and self._framework_file is not None:
            self._phases.append(
                {"Type": "initialization", "StartTime": self.started, "EndTime": None, "NodeId": self.node}
            )
        self._flush_framework()
        for handle in (self._system_file, self._framework_file):
            if handle is not None:
                handle.close()
        self._system_file = self._framework_file = None
        self._gpus.close()

    def finish(self, *, batch_size: int | None, rule_parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Stop, evaluate the profiler rules on what was recorded, write ``profiler_report.json`` beside the
        ``profiler/`` folder; return it."""
        self.stop()
        system, framework = profiler_rules.load_profile(self.directory)
        context = profiler_rules.ProfileContext(
            interval_seconds=self.interval_seconds,
            gpu_count=self.gpu_count,
            gpu_note=self._gpus.note,
            cpu_count=self._psutil.cpu_count() or 1,
            batch_size=batch_size,
            job_seconds=time.time() - self.started,
        )
        rules = profiler_rules.evaluate_profile(system, framework, context, rule_parameters)
        report = {
            "rules": rules,
            "issues_found": sorted(name for name, result in rules.items() if result["status"] == profiler_rules.ISSUES),
            "context": asdict(context),
            "system": profiler_rules.summarise_system(system),
            "samples": self.samples,
            "sampling_seconds": round(self.sampling_seconds, 4),
            "files": [f"{PROFILER_DIR}/{name}" for name in (profiler_rules.SYSTEM_FILE, profiler_rules.FRAMEWORK_FILE)],
        }
        for name, result in rules.items():
            logger.info("profiler rule %s: %s (%s)", name, result["status"], result["details"])
        (self.directory.parent / REPORT_FILE).write_text(json.dumps(report, indent=1))
        return report


class NoProfiler:
    """Profiling switched off (``--profiler false``): records nothing, and the report says so."""

    def __init__(self, output_data_dir: str | os.PathLike[str]) -> None:
        self.output_data_dir = Path(output_data_dir)

    def start(self) -> NoProfiler:
        return self

    def phase(self, *args: Any) -> None:
        pass

    def stop(self) -> None:
        pass

    def finish(self, **_: Any) -> dict[str, Any]:
        reason = "the profiler was switched off for this job (--profiler false)"
        rules = {
            name: {"status": profiler_rules.NOT_EVALUATED, "details": reason, "recommendation": "", "figures": {},
                   "parameters": {}}
            for name in (*profiler_rules.RULE_NAMES, profiler_rules.PROFILER_REPORT)
        }  # fmt: skip
        report = {"rules": rules, "issues_found": [], "disabled": reason}
        self.output_data_dir.mkdir(parents=True, exist_ok=True)
        (self.output_data_dir / REPORT_FILE).write_text(json.dumps(report, indent=1))
        return report
