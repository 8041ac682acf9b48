"""Evaluate Debugger rules on a trial folder in a process of its own, as SageMaker runs each rule job.

Run by path (``python rule_runner.py ...``) so that it imports only the project's ``debug_rules`` module: the
first folder of ``--code-dir`` that holds ``debug_rules.py`` wins (the job's source folder, then training_code/).
Writes ``{rule name: {"status": ..., "details": ...}}`` as JSON to ``--output``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path


def load_debug_rules(code_dirs: list[Path]):  # type: ignore[no-untyped-def]
    for folder in code_dirs:
        candidate = folder / "debug_rules.py"
        if candidate.is_file():
            sys.path.insert(0, str(folder))  # debug_rules may import its neighbours
            spec = importlib.util.spec_from_file_location("debug_rules", candidate)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules["debug_rules"] = module
            spec.loader.exec_module(module)
            return module
    raise FileNotFoundError(f"no debug_rules.py in any of {[str(f) for f in code_dirs]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trial-dir", required=True, type=Path)
    parser.add_argument("--rules", required=True, help="JSON list of rule names")
    parser.add_argument("--code-dir", action="append", default=[], type=Path)
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args()
    debug_rules = load_debug_rules(args.code_dir)
    results = debug_rules.evaluate_rules(str(args.trial_dir), json.loads(args.rules))
    args.output.write_text(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
