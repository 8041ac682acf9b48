"""How long the two commands on the README's first screen take: the offline run and the test suite.

Each command runs as a whole process (after set-up: the virtualenv exists), in this checkout and, with
``--baseline DIR``, in another checkout of the project (for example today's main:
``git worktree add ../baseline origin/main``), one after the other in the same run, so the ratios compare like with
like on this machine. The baseline uses this checkout's virtualenv; ``PYTHONPATH`` points each run at its own
checkout's ``functions/`` and root, ahead of the editable install.

    .venv/bin/python benchmarks/pipeline_speed.py                       # this checkout: demo and tests
    .venv/bin/python benchmarks/pipeline_speed.py --baseline ../baseline
    .venv/bin/python benchmarks/pipeline_speed.py --only demo --repeat 3
    .venv/bin/python benchmarks/pipeline_speed.py --only full-dataset  # 133 classes, 6,680/835/836 JPEGs
    .venv/bin/python benchmarks/pipeline_speed.py --isa avx2           # AVX-512 machine, kernels capped at AVX2

``--isa avx2`` caps the instruction set PyTorch's own kernels (``ATEN_CPU_CAPABILITY``) and oneDNN's
(``ONEDNN_MAX_CPU_ISA``) dispatch to, in every timed command: on a machine with AVX-512, bf16 and VNNI it takes the
code paths an AVX2-only machine takes (no bf16 or VNNI matmuls, 256-bit vectors). It is a stand-in, not that
machine: cores, clocks, caches and memory stay this machine's, so its figures bound an AVX2 machine's only as far as
those are alike (the CPU line says what they are).

What is timed:
- ``demo``: ``python -m offline.run`` with its defaults (``make demo`` after set-up), output in a temporary folder.
- ``tests``: ruff check, ruff format --check, mypy and ``pytest --cov`` as ``make test`` runs them (lint, types,
  every test with coverage), with the pytest options of the checkout's own Makefile (``-n logical`` where it runs
  in parallel); the passed/failed counts and the branch coverage are read from pytest's output.
- ``full-dataset`` (opt-in; minutes): ``python -m offline.run --dataset <zip>`` on a generated full-count dataset
  (133 classes, 6,680 / 835 / 836 photo-sized JPEGs, 300-800 px a side, tens of KB each), the README's
  ``make demo ARGS="--dataset ~/dogImages.zip"`` with its defaults.

The benchmark reports; it exits non-zero only when a timed command failed.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from machine import cpu_line

ROOT = Path(__file__).resolve().parents[1]
FULL_COUNTS = (6680, 835, 836)
FULL_CLASSES = 133


@dataclass
class Timing:
    checkout: str
    command: str
    seconds: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed: bool = False

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


# What ``--isa`` sets in the timed commands' environment.
ISA_CAPS = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}
ISA_ENVIRONMENT: dict[str, str] = {}


def _environment(checkout: Path) -> dict[str, str]:
    return os.environ | ISA_ENVIRONMENT | {"PYTHONPATH": f"{checkout / 'functions'}{os.pathsep}{checkout}"}


def torch_capability(python: str) -> str:
    """The instruction set torch dispatches to under the timed commands' environment, as torch reports it."""
    completed = subprocess.run(
        [python, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
        env=os.environ | ISA_ENVIRONMENT,
        capture_output=True,
        text=True,
        check=False,
    )
    return completed.stdout.strip() or f"unknown ({completed.stderr.strip()[-200:]})"


def _run(commands: list[list[str]], checkout: Path, log: Path) -> tuple[float, int, str]:
    started = time.monotonic()
    output = []
    code = 0
    with log.open("a") as sink:
        for command in commands:
            sink.write(f"$ {' '.join(command)}\n")
            sink.flush()
            completed = subprocess.run(
                command, cwd=checkout, env=_environment(checkout), capture_output=True, text=True, check=False
            )
            sink.write(completed.stdout + completed.stderr)
            output.append(completed.stdout + completed.stderr)
            code = code or completed.returncode
            if code:
                break
    return time.monotonic() - started, code, "".join(output)


def _test_notes(output: str) -> list[str]:
    notes = []
    summary = re.findall(r"=+ (.*(?:passed|failed).*) in [\d.]+s", output)
    if summary:
        notes.append(summary[-1])
    total = re.search(r"^TOTAL\s+(?:\d+\s+){4}(\d+%)", output, flags=re.MULTILINE)
    if total:
        notes.append(f"coverage {total.group(1)}")
    return notes


def commands_for(name: str, python: str, scratch: Path, dataset: Path | None, checkout: Path) -> list[list[str]]:
    bin_dir = Path(python).parent
    if name == "demo":
        return [[python, "-m", "offline.run", "--output", str(scratch / "demo")]]
    if name == "full-dataset":
        assert dataset is not None
        return [[python, "-m", "offline.run", "--dataset", str(dataset), "--output", str(scratch / "full")]]
    return [
        [str(bin_dir / "ruff"), "check", "."],
        [str(bin_dir / "ruff"), "format", "--check", "."],
        [str(bin_dir / "mypy")],
        [python, "-m", "pytest", *pytest_options(checkout), "--cov", "--cov-report=term", "-q", "--durations=30"],
    ]


def pytest_options(checkout: Path) -> list[str]:
    """The options the checkout's ``make test`` gives pytest before ``--cov`` (for example ``-n logical``)."""
    makefile = (checkout / "Makefile").read_text()
    match = re.search(r"^\t\$\(PY\) -m pytest (.*?)--cov", makefile, flags=re.MULTILINE)
    return match.group(1).split() if match else []


def full_dataset(scratch: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from offline.synthetic_dataset import write_dataset_zip

    target = scratch / "dogImages.zip"
    started = time.monotonic()
    write_dataset_zip(target, num_classes=FULL_CLASSES, counts=FULL_COUNTS, realistic=True)
    print(
        f"generated {target.name}: {FULL_CLASSES} classes, {FULL_COUNTS}, {target.stat().st_size / 2**20:.0f} MB "
        f"in {time.monotonic() - started:.0f} s"
    )
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="another checkout of the project, timed in the same run")
    parser.add_argument("--only", choices=["demo", "tests", "full-dataset"], action="append")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each command per checkout")
    parser.add_argument("--python", default=sys.executable, help="the virtualenv's python (default: this one)")
    parser.add_argument("--log", type=Path, default=None, help="where the commands' output goes")
    parser.add_argument("--isa", choices=sorted(ISA_CAPS), help="cap the kernels' instruction set (see above)")
    args = parser.parse_args()
    ISA_ENVIRONMENT.update(ISA_CAPS.get(args.isa or "", {}))
    selected = args.only or ["demo", "tests"]
    checkouts = [("this checkout", ROOT)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    print(cpu_line())
    capped = " ".join(f"{name}={value}" for name, value in ISA_ENVIRONMENT.items())
    print(f"torch kernels dispatch to {torch_capability(args.python)}" + (f" (capped: {capped})" if capped else ""))
    print(f"Python {sys.version.split()[0]}; checkouts: {', '.join(f'{n} {p}' for n, p in checkouts)}")
    timings: list[Timing] = []
    with tempfile.TemporaryDirectory(prefix="pipeline-speed-") as scratch_name:
        scratch = Path(scratch_name)
        log = args.log or scratch / "commands.log"
        dataset = full_dataset(scratch) if "full-dataset" in selected else None
        for command in selected:
            for label, checkout in checkouts:
                timing = Timing(label, command)
                for _ in range(args.repeat):
                    seconds, code, output = _run(
                        commands_for(command, args.python, scratch, dataset, checkout), checkout, log
                    )
                    timing.seconds.append(seconds)
                    timing.failed |= code != 0
                    timing.notes = _test_notes(output) if command == "tests" else []
                    print(f"  {command:<12} {label:<14} {seconds:7.1f} s{' FAILED' if code else ''}", flush=True)
                timings.append(timing)
        if any(t.failed for t in timings):
            print(f"A command failed; its output is in {log}")
            if not args.log:
                print(log.read_text()[-4000:])
    print()
    print(f"{'command':<12} {'checkout':<14} {'median s':>9} {'runs':>5} {'vs baseline':>12}  notes")
    for timing in timings:
        base = next((t for t in timings if t.command == timing.command and t.checkout == "baseline"), None)
        ratio = f"{base.median / timing.median:.2f}x faster" if base and base is not timing else ""
        notes = "; ".join(timing.notes + (["FAILED"] if timing.failed else []))
        print(
            f"{timing.command:<12} {timing.checkout:<14} {timing.median:9.1f} {len(timing.seconds):5d} "
            f"{ratio:>12}  {notes}"
        )
    return 1 if any(t.failed for t in timings) else 0


if __name__ == "__main__":
    sys.exit(main())
