"""Evaluate rules in a process of its own, as SageMaker runs each rule job: the Debugger rules on a trial folder
(``--trial-dir``), or ProfilerReport's rules on the profiler's metric files (``--profiler-dir``).

Run by path (``python rule_runner.py ...``) so that it imports only the project's rule modules: the first folder of
``--code-dir`` that holds the module wins (the job's source folder, then training_code/).
Writes ``{rule name: {"status": ..., "details": ...}}`` as JSON to ``--output``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path


def load_module(name: str, code_dirs: list[Path]):  # type: ignore[no-untyped-def]
    for folder in code_dirs:
        candidate = folder / f"{name}.py"
        if candidate.is_file():
            sys.path.insert(0, str(folder))  # the module may import its neighbours
            spec = importlib.util.spec_from_file_location(name, candidate)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            return module
    raise FileNotFoundError(f"no {name}.py in any of {[str(f) for f in code_dirs]}")


def evaluate_profile(profiler_dir: Path, interval_seconds: float, batch_size: int | None, code_dirs: list[Path]):  # type: ignore[no-untyped-def]
    """ProfilerReport on the raw metric files, knowing only what SageMaker's rule job knows: the samples, the
    ProfilerConfig interval and the job's hyperparameters (not the training code's own report)."""
    profiler_rules = load_module("profiler_rules", code_dirs)
    system, framework = profiler_rules.load_profile(profiler_dir)
    gpus = {record["Name"] for record in system if record.get("Type") == "gpu"}
    cores = {record["Name"] for record in system if record.get("Type") == "cpu"}
    stamps = [record["Timestamp"] for record in system]
    context = profiler_rules.ProfileContext(
        interval_seconds=interval_seconds,
        gpu_count=len(gpus),
        gpu_note="" if gpus else "the job recorded no GPU samples (no GPU on the instance)",
        cpu_count=max(1, len(cores)),
        batch_size=batch_size,
        job_seconds=(max(stamps) - min(stamps)) if stamps else 0.0,
    )
    return profiler_rules.evaluate_profile(system, framework, context)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--trial-dir", type=Path)
    source.add_argument("--profiler-dir", type=Path)
    parser.add_argument("--rules", default="null", help="JSON list of Debugger rule names")
    parser.add_argument("--interval-seconds", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--code-dir", action="append", default=[], type=Path)
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args()
    if args.profiler_dir:
        results = evaluate_profile(args.profiler_dir, args.interval_seconds, args.batch_size, args.code_dir)
    else:
        results = load_module("debug_rules", args.code_dir).evaluate_rules(str(args.trial_dir), json.loads(args.rules))
    args.output.write_text(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
