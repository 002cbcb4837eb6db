"""How fast the command line answers a user's mistake (issue 31): the mistakes decidable before torch and
Lightning load (unknown task, model or trainer, a data file that does not exist, a malformed device list) within
2 s, ``lightning-implicit list`` within 3 s, each measured as a fresh process (the median of ``--repeat`` runs);
a typo'd override, found by the LightningCLI parser after the heavy imports, beside them for scale.

``python -m benchmarks.bench_cli`` (``make bench`` runs it). Exit status 1 when a mistake does not exit 2; the
times are printed with the load average (a shared machine is noisy), not asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CLI = [sys.executable, "-m", "lightning_implicit.cli"]
TRAIN = ["train", "--task", "addition", "--model", "implicit"]

# (label, argv, expected exit status, target seconds or None)
CASES = [
    ("unknown task", ["train", "--task", "additon", "--model", "implicit"], 2, 2.0),
    ("unknown model", ["train", "--task", "addition", "--model", "implicitt"], 2, 2.0),
    ("unknown trainer", [*TRAIN, "--trainer", "gpux"], 2, 2.0),
    (
        "missing data file",
        ["train", "--task", "volatility", "--model", "implicit", "--data", "/no/such.csv"],
        2,
        2.0,
    ),
    ("bad DEVICES", [*TRAIN, "--devices", "two"], 2, 2.0),
    ("list", ["list"], 0, 3.0),
    ("typo'd override (after imports)", [*TRAIN, "--no-tuned", "--model.init_args.kapa", "0.9"], 2, None),
]


def _time(argv: list[str], repeat: int) -> tuple[float, int]:
    times, code = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        code = subprocess.run([*CLI, *argv], capture_output=True, timeout=600).returncode
        times.append(time.perf_counter() - t0)
    return statistics.median(times), code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_cli", description=__doc__)
    p.add_argument("--repeat", type=int, default=3, help="runs per case (the median is printed)")
    ns = p.parse_args(argv)
    print(f"[bench_cli] time to answer (median of {ns.repeat}); load average {os.getloadavg()}")
    wrong = []
    for label, args, expected, target in CASES:
        seconds, code = _time(args, ns.repeat)
        verdict = (
            ""
            if target is None
            else (f"  target <= {target:g} s: " + ("met" if seconds <= target else "MISSED"))
        )
        print(f"  {label:<34} {seconds:6.2f} s  exit {code}{verdict}")
        if code != expected:
            wrong.append(f"{label}: exit {code}, expected {expected}")
    for line in wrong:
        print(f"[bench_cli] wrong exit status: {line}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
