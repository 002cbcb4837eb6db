"""Parallel sweeps: the same fixed sweep with 1 worker and with 2 workers, wall time and their ratio.

The sweep: ``lightning-implicit sweep --task addition`` (both models of ``conf/search/addition.yaml``, its quick
budget), ``--trials 8`` per model (16 trials), then each model's best config retrained with the shift sweep, on
fresh temporary Optuna and MLflow stores; the whole command is timed, from ``Popen`` to its exit (imports, store
creation, worker start-up, trials, retraining, summary). The two runs alternate ``--repeats`` times in this
process and the ratio of the medians is printed, with the load average before and after: on a machine that other
processes share, a figure measured under load says so. Two sweeps: the quick search space, whose trials now take
~0.3 s each on an idle 2-core machine, so that the ~4 s of imports and ~2 s of worker start-up bound its ratio
(about 0.84x measured; printed without a target), and the full space (``--full``), whose trials take 1.5-2.5 s,
the length issue 32 measured (1-4.5 s a trial): target (issue 32) 2 workers <= 0.65x 1 worker on that one.

Run alone: ``python -m benchmarks.bench_sweep [--trials 8] [--repeats 1] [--task addition]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_sweep(task: str, trials: int, workers: int, full: bool = False) -> tuple[float, int, str]:
    """Wall seconds, exit code and output tail of one sweep on fresh stores (``full``: the full search space)."""
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "lightning_implicit.cli",
            "sweep",
            "--task",
            task,
            "--trials",
            str(trials),
            "--workers",
            str(workers),
            "--storage",
            f"sqlite:///{Path(tmp) / 'optuna.db'}",
            "--tracking-uri",
            f"sqlite:///{Path(tmp) / 'mlflow.db'}",
            *(["--full"] if full else []),
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        took = time.perf_counter() - t0
    return took, proc.returncode, (proc.stdout + proc.stderr)[-3000:]


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_sweep", description=__doc__.splitlines()[0])
    p.add_argument("--task", default="addition")
    p.add_argument("--trials", type=int, default=8, help="trials per model (default 8: 16 in all)")
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv or [])
    cores = os.cpu_count() or 1
    before = load()
    print(
        f"[sweep] {args.task}, {args.trials} trials per model, retraining included; {cores} cores; "
        f"load average before {before}",
        flush=True,
    )
    for full in (False, True):
        if not _measure(args, full, before, cores):
            return 1
    return 0


def _measure(args, full: bool, before: str, cores: int) -> bool:
    """One space's sweep on 1 and 2 workers, alternated ``--repeats`` times; prints the ratio of the medians."""
    space = "full" if full else "quick"
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for workers in (1, 2):
            took, code, tail = run_sweep(args.task, args.trials, workers, full)
            if code != 0:
                print(f"[sweep] {space} space, {workers} worker(s): exit {code}\n{tail}", flush=True)
                return False
            times[workers].append(took)
            print(f"[sweep] {space} space, {workers} worker(s): {took:.1f} s (load {load()})", flush=True)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    after = load()
    busy = max(float(before.split("/")[0]), float(after.split("/")[0])) > 0.5 * cores
    target = " (target <= 0.65x)" if full else " (start-up bound: no target)"
    print(
        f"[sweep] {space} space: 2 workers / 1 worker = {two:.1f} s / {one:.1f} s = {two / one:.2f}x{target}; "
        f"load average before {before}, after {after}"
        + (f" -- the machine was busy (load > {cores // 2 or 1}): not a clean figure" if busy else ""),
        flush=True,
    )
    return True
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
