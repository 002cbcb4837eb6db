"""Parallel sweeps: the same fixed sweep with 1 worker and with 2 workers, wall time and their ratio.

The sweep: ``lightning-implicit sweep --task addition`` (both models of ``conf/search/addition.yaml``, its quick
budget), ``--trials 8`` per model (16 trials), then each model's best config retrained with the shift sweep, on
fresh temporary Optuna and MLflow stores; the whole command is timed, from ``Popen`` to its exit (imports, store
creation, worker start-up, trials, retraining, summary). The two runs alternate ``--repeats`` times in this
process and the ratio of the medians is printed, with the load average before and after: on a machine that other
processes share, a figure measured under load says so. Target (issue 32): 2 workers <= 0.65x 1 worker.

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


def run_sweep(task: str, trials: int, workers: int) -> tuple[float, int, str]:
    """Wall seconds, exit code and output tail of one sweep on fresh stores."""
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
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for workers in (1, 2):
            took, code, tail = run_sweep(args.task, args.trials, workers)
            if code != 0:
                print(f"[sweep] {workers} worker(s): exit {code}\n{tail}", flush=True)
                return 1
            times[workers].append(took)
            print(f"[sweep] {workers} worker(s): {took:.1f} s (load {load()})", flush=True)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    after = load()
    busy = max(float(before.split("/")[0]), float(after.split("/")[0])) > 0.5 * cores
    print(
        f"[sweep] 2 workers / 1 worker = {two:.1f} s / {one:.1f} s = {two / one:.2f}x (target <= 0.65x); "
        f"load average before {before}, after {after}"
        + (f" -- the machine was busy (load > {cores // 2 or 1}): not a clean figure" if busy else ""),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
