"""The machine a benchmark ran on, in one line: CPU model, cores and the instruction-set flags speed depends on."""

from __future__ import annotations

import os
import re
from pathlib import Path

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile")


def cpu_line() -> str:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"CPU: unknown (no /proc/cpuinfo), {os.cpu_count()} cores"
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, flags=re.MULTILINE)
    flags_line = re.search(r"^flags\s*:(.*)$", cpuinfo, flags=re.MULTILINE)
    flags = set(flags_line.group(1).split()) if flags_line else set()
    shown = " ".join(f"{flag}={'yes' if flag in flags else 'no'}" for flag in CPU_FLAGS)
    return f"CPU: {model.group(1).strip() if model else 'unknown'}, {os.cpu_count()} cores; {shown}"
