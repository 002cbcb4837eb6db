"""What the machine is doing while a benchmark runs: the CPU that other processes use (shared by the benchmarks)."""

from __future__ import annotations

import os
import time
from pathlib import Path


class OtherCPU:
    """CPU used by *other* processes while this bench runs: the machine's busy time (``/proc/stat``) less this
    process's and its children's (``getrusage``), in cores on average over the wall time. The load average
    cannot tell them apart: a 2-worker sweep alone puts it near 2 on 2 cores. ``None`` where ``/proc/stat`` is
    missing (not Linux)."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            import resource  # (POSIX only)

            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (ImportError, OSError, ValueError):
            return None
        busy = (sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)) / os.sysconf("SC_CLK_TCK")
        own = sum(
            getattr(resource.getrusage(who), f)
            for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
            for f in ("ru_utime", "ru_stime")
        )
        return time.perf_counter(), busy, own

    def cores(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None or end[0] <= self.start[0]:
            return None
        wall, busy, own = (e - s for e, s in zip(end, self.start, strict=True))
        return max(0.0, (busy - own) / wall)
