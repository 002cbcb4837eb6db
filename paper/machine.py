"""Where the runs went: the CPU, its instruction set, the BLAS and the threads of this reproduction.

The numbers of a run are bitwise reproducible on one machine (same code, config, seed and library versions);
another CPU instruction set or BLAS changes the last bits of float32 sums, and so can flip a verdict that sits
on its threshold. The report prints this card so that two reports can be compared knowingly.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

__all__ = ["machine_card"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_card(workers: int | None = None, threads_per_worker: int | None = None) -> dict[str, str]:
    """``{name: value}``: CPU model, logical cores, the instruction set torch dispatches to, BLAS / LAPACK,
    library versions and the threads of the workers."""
    import numpy as np
    import torch

    cfg = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", cfg)
    lapack = re.search(r"LAPACK_INFO=(\w+)", cfg)
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # older torch
        capability = "unknown"
    card = {
        "CPU": _cpu_model(),
        "logical cores": str(os.cpu_count()),
        "instruction set used by torch": capability,
        "BLAS / LAPACK (torch)": f"{blas.group(1) if blas else 'unknown'} / {lapack.group(1) if lapack else 'unknown'}",
        "versions": f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}",
        "platform": platform.platform(),
    }
    if workers is not None:
        card["workers x threads"] = (
            f"{workers} x {threads_per_worker or 1} (torch.set_num_threads in each worker)"
        )
    return card
