"""Parallel sweeps: the same fixed trials with 1 worker and with 2 workers, wall time and their ratio.

The sweep: ``lightning-implicit sweep --task addition`` (both models of ``conf/search/addition.yaml``, its quick
budget), ``--trials 8`` per model (16 trials), then each model's best config retrained with the shift sweep, on
fresh temporary Optuna and MLflow stores; the whole command is timed, from ``Popen`` to its exit (imports, store
creation, worker start-up, trials, retraining, summary).

**The same trials both times.** The 1-worker sweep runs first (its seeded TPE draws are the same at every
repeat); its trials' parameters are then enqueued, in order, into the fresh store of the 2-worker sweep, which
runs exactly those (TPE with two workers would otherwise draw other trials, of other lengths). Nothing is pruned
(a copy of the search file with ``pruner: {type: nop}``): which trial a median pruner stops, and at which epoch,
depends on what has finished beside it, so two workers would otherwise do other work than one. Afterwards the
bench compares both stores (parameter sets, states and values) and prints "the same N trials" or what differs.

The two runs alternate ``--repeats`` times in this process and the ratio of the medians is printed with the CPU
that *other* processes used meanwhile (:class:`OtherCPU`; the load average cannot tell them from the bench's own
workers): on a machine that other processes share, a figure measured under load says so. Two sweeps: the quick
search space, whose trials take ~0.3 s each on an idle 2-core machine, so that the ~4 s of imports and ~2 s of
worker start-up bound its ratio (about 0.84x measured; printed without a target), and the full space
(``--full``), whose trials take 1.5-5 s: target (issue 32) 2 workers <= 0.65x 1 worker on that one.

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

import yaml

from benchmarks.machine import OtherCPU

ROOT = Path(__file__).resolve().parents[1]


def run_sweep(
    task: str, trials: int, workers: int, full: bool = False, enqueue: dict[str, list[dict]] | None = None
) -> tuple[float, int, str, dict[str, list[dict]]]:
    """Wall seconds, exit code, output tail and ``{study: [trial, in trial order]}`` (see :func:`_trials`) of one
    sweep on fresh stores (``full``: the full search space; ``enqueue``: those trials put into the fresh store
    first)."""
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        storage = f"sqlite:///{Path(tmp) / 'optuna.db'}"
        search = yaml.safe_load((ROOT / "conf" / "search" / f"{task}.yaml").read_text())
        search["pruner"] = {"type": "nop"}
        (Path(tmp) / "search.yaml").write_text(yaml.safe_dump(search, sort_keys=False))
        if enqueue:
            _enqueue(storage, enqueue)
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
            storage,
            "--tracking-uri",
            f"sqlite:///{Path(tmp) / 'mlflow.db'}",
            "--search-file",
            str(Path(tmp) / "search.yaml"),
            *(["--full"] if full else []),
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        took = time.perf_counter() - t0
        trials_run = _trials(storage) if proc.returncode == 0 else {}
    return took, proc.returncode, (proc.stdout + proc.stderr)[-3000:], trials_run


def _trials(storage: str) -> dict[str, list[dict]]:
    """Every study's trials in the store, in trial-number order: parameters, user attributes (the recipe trial's
    mark), state and value."""
    import optuna

    out = {}
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
        out[summary.study_name] = [
            {"params": t.params, "user_attrs": dict(t.user_attrs), "state": t.state.name, "value": t.value}
            for t in trials
        ]
    return out


def _enqueue(storage: str, trials: dict[str, list[dict]]) -> None:
    """Create each study and enqueue its trials' parameters in their order (the recipe trial keeps its mark, so
    the sweep does not enqueue its recipe a second time)."""
    import optuna

    from lightning_implicit.sweep.default_trial import DEFAULT_ATTR

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    for name, rows in trials.items():
        study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
        for row in rows:
            mark = {k: v for k, v in row["user_attrs"].items() if k == DEFAULT_ATTR}
            study.enqueue_trial(row["params"], user_attrs=mark)


def _same_trials(a: dict[str, list[dict]], b: dict[str, list[dict]]) -> str:
    """Whether two sweeps ran the same parameter sets (in any order) with the same outcomes: a short verdict."""

    def key(row: dict) -> str:
        return repr(sorted(row["params"].items()))

    diffs = []
    for name in sorted(set(a) | set(b)):
        ra = sorted((key(r), r["state"], repr(r["value"])) for r in a.get(name, []))
        rb = sorted((key(r), r["state"], repr(r["value"])) for r in b.get(name, []))
        if [r[0] for r in ra] != [r[0] for r in rb]:
            diffs.append(f"{name}: different parameter sets")
        elif ra != rb:
            diffs.append(f"{name}: same parameters, different outcomes")
    n = sum(len(v) for v in a.values())
    return f"the same {n} trials" if not diffs else "; ".join(diffs)


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_sweep", description=__doc__.splitlines()[0])
    p.add_argument("--task", default="addition")
    p.add_argument("--trials", type=int, default=8, help="trials per model (default 8: 16 in all)")
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv or [])
    cores = os.cpu_count() or 1
    print(
        f"[sweep] {args.task}, {args.trials} trials per model, retraining included; {cores} cores; "
        f"load average before {load()}",
        flush=True,
    )
    for full in (False, True):
        if not _measure(args, full, cores):
            return 1
    return 0


def _measure(args, full: bool, cores: int) -> bool:
    """One space's sweep on 1 and 2 workers, alternated ``--repeats`` times; prints the ratio of the medians."""
    space = "full" if full else "quick"
    times: dict[int, list[float]] = {1: [], 2: []}
    others = OtherCPU()
    for _ in range(args.repeats):
        ran: dict[int, dict] = {}
        for workers in (1, 2):
            took, code, tail, ran[workers] = run_sweep(
                args.task, args.trials, workers, full, enqueue=ran.get(1) if workers == 2 else None
            )
            if code != 0:
                print(f"[sweep] {space} space, {workers} worker(s): exit {code}\n{tail}", flush=True)
                return False
            times[workers].append(took)
            same = f"; {_same_trials(ran[1], ran[2])} as 1 worker" if workers == 2 else ""
            print(
                f"[sweep] {space} space, {workers} worker(s): {took:.1f} s (load {load()}){same}", flush=True
            )
    one, two = statistics.median(times[1]), statistics.median(times[2])
    other = others.cores()
    busy = other is not None and other > 0.1 * cores
    target = " (target <= 0.65x)" if full else " (start-up bound: no target)"
    print(
        f"[sweep] {space} space: 2 workers / 1 worker = {two:.1f} s / {one:.1f} s = {two / one:.2f}x{target}; "
        + (
            "other processes: unknown (no /proc/stat)"
            if other is None
            else f"other processes used {other:.2f} of {cores} cores meanwhile"
        )
        + (
            f" -- the machine was busy (others > {0.1 * cores:.1f} cores): not a clean figure" if busy else ""
        ),
        flush=True,
    )
    return True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
