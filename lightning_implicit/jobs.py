"""The one job executor of sweeps, tuning and ``reproduce``: jobs in isolated worker processes.

A thin layer over :class:`concurrent.futures.ProcessPoolExecutor` with the ``spawn`` start method (every worker
is a fresh interpreter: no forked torch, MLflow or database state), adding what long experiments need:

* a worker's thread count, environment and (optionally) log file, set once when it starts;
* results handed to ``on_done`` as jobs finish, in completion order;
* a worker that dies (killed, out of memory) fails the job it was running, reported as
  ``"worker died (exit code ...)"``, instead of breaking every other job: jobs not yet started are
  resubmitted to a fresh pool;
* Ctrl-C: queued jobs are cancelled, running ones get ``grace`` seconds to finish (a sweep worker fails its
  trial cleanly), then the workers are killed and :class:`WorkersInterrupted` names the jobs that were running.

``fn`` and the jobs must be picklable (a module-level function and plain data).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, CancelledError, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["JobResult", "WorkersInterrupted", "run_in_workers"]


@dataclass
class JobResult:
    """What became of ``jobs[index]``: ``fn``'s return value, or ``error`` (one line) if it raised or its worker
    died."""

    index: int
    value: Any = None
    error: str | None = None


class WorkersInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the workers; ``running``: indices of the jobs that were running, ``done``: the results
    that had come back."""

    def __init__(self, running: list[int], done: list[JobResult]) -> None:
        super().__init__(f"interrupted with {len(running)} job(s) running")
        self.running, self.done = running, done


# ---- in the worker process ------------------------------------------------------------------------------------
_events = None  # the worker's end of the parent's event queue (set once per worker process by _start_worker)


def _start_worker(
    events, threads: int | None, log_dir: str | None, env: dict[str, str], sigint: bool
) -> None:
    global _events
    _events = events
    if not sigint:  # the parent handles Ctrl-C and stops the worker
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update(env)
    if log_dir is not None:
        fd = os.open(
            str(Path(log_dir) / f"worker-{os.getpid()}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
        )
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(threads)
    events.put(("ready", None, os.getpid()))


def _run_one(fn: Callable, index: int, job: Any) -> Any:
    _events.put(("start", index, os.getpid()))
    return fn(job)


# ---- in the parent --------------------------------------------------------------------------------------------
def run_in_workers(
    fn: Callable[[Any], Any],
    jobs: Sequence[Any],
    *,
    workers: int,
    threads: int | None = None,
    log_dir: Path | str | None = None,
    env: dict[str, str] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_done: Callable[[JobResult], None] | None = None,
    grace: float = 0.0,
    worker_sigint: bool = False,
) -> list[JobResult]:
    """Run ``fn(job)`` for every job on ``workers`` processes; the results in completion order.

    Args:
        threads: torch threads (and ``OMP_NUM_THREADS``) per worker; ``None``: inherited.
        log_dir: a folder for one ``worker-<pid>.log`` per worker (stdout and stderr); ``None``: the parent's.
        env: variables set in each worker (e.g. a storage URL with a password, never put on a command line).
        on_start: called with ``(index, worker pid)`` when a job starts.
        on_done: called with each :class:`JobResult` as it comes back.
        grace: after Ctrl-C, seconds the running jobs get to finish before their workers are killed.
        worker_sigint: let workers receive Ctrl-C themselves (to stop cleanly within ``grace``); by default
            they ignore it and only the parent handles it.
    """
    on_done = on_done or (lambda r: None)
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
    setup = (threads, None if log_dir is None else str(log_dir), dict(env or {}), worker_sigint)
    todo, results = list(range(len(jobs))), []
    while todo:
        pool = _Pool(min(workers, len(todo)), setup, on_start)
        try:
            todo = pool.run(fn, jobs, todo, results, on_done, grace)
        finally:
            pool.close()
        if todo and not pool.started:  # the pool broke before any job started: workers cannot start at all
            for i in todo:
                res = JobResult(i, error="no worker process could start (see the error above)")
                results.append(res)
                on_done(res)
            todo = []
    return results


class _Pool:
    """One ProcessPoolExecutor and the events its workers send (ready, job started)."""

    def __init__(self, workers: int, setup: tuple, on_start) -> None:
        ctx = mp.get_context("spawn")
        # a SimpleQueue's put is written at once: a worker killed right after a job started has still told us
        self.events = ctx.SimpleQueue()
        self.executor = ProcessPoolExecutor(
            max_workers=max(1, workers),
            mp_context=ctx,
            initializer=_start_worker,
            initargs=(self.events, *setup),
        )
        self.on_start = on_start
        self.running: dict[int, int] = {}  # job index -> worker pid
        self.pids: set[int] = set()
        self.started = False

    def drain(self) -> None:
        while not self.events.empty():
            kind, index, pid = self.events.get()
            self.pids.add(pid)
            if kind == "start":
                self.started = True
                self.running[index] = pid
                if self.on_start is not None:
                    self.on_start(index, pid)

    def run(self, fn, jobs, todo: list[int], results: list[JobResult], on_done, grace: float) -> list[int]:
        """Run ``todo``; returns the jobs to resubmit (not started when a worker died)."""
        futures = {self.executor.submit(_run_one, fn, i, jobs[i]): i for i in todo}
        resubmit: list[int] = []
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                self.drain()
                for f in done:
                    i = futures[f]
                    try:
                        res = JobResult(i, value=f.result())
                    except BrokenProcessPool:
                        if i not in self.running:  # never started: run it on a fresh pool
                            resubmit.append(i)
                            continue
                        res = JobResult(i, error="worker died (killed or out of memory); the pool stopped")
                    except CancelledError:
                        continue
                    except Exception as err:  # noqa: BLE001 - fn's own error, reported for this job
                        res = JobResult(i, error=f"{type(err).__name__}: {err}")
                    self.running.pop(i, None)
                    results.append(res)
                    on_done(res)
        except KeyboardInterrupt as err:
            self.executor.shutdown(wait=False, cancel_futures=True)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(not f.done() for f in futures):
                time.sleep(0.2)
            self.drain()
            for f, i in futures.items():  # finished within the grace period
                if i in self.running and f.done() and not f.cancelled() and f.exception() is None:
                    self.running.pop(i)
                    results.append(JobResult(i, value=f.result()))
            _kill(self.pids)
            raise WorkersInterrupted(sorted(self.running), results) from err
        return resubmit

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.events.close()


def _kill(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
