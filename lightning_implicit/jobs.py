"""The one job executor of sweeps, tuning and ``reproduce``: jobs in persistent, isolated worker processes.

:class:`WorkerPool` starts ``size`` worker processes and keeps them for as long as the pool lives, so that
imports, data and any per-worker state (``initializer``) are paid once per worker, not once per job. Workers
are started with the ``spawn`` start method (a fresh interpreter: no forked torch, MLflow or database state), or,
given ``preload`` modules, forked from a ``forkserver``: a fresh interpreter that imports those modules once
(torch, Lightning, MLflow: seconds of CPU) and forks every worker from that state, still without this
process's threads, connections or runs. With ``fork=True`` the first workers are forked from this process itself
(for a caller that has done its imports and opened no database yet: the sweep); replacements of dead workers
then come from the forkserver. Each worker has its own pipe and runs one job at a time; the parent watches every
worker's pipe and process sentinel, so that:

* results come back as jobs finish, in completion order;
* a worker that dies (killed, out of memory) fails the one job it was running, reported as
  ``"worker died (...)"``; the other workers go on, and a fresh worker takes the dead one's place;
* a stop (Ctrl-C, SIGTERM) forwards SIGTERM to the busy workers, whose jobs may end cleanly within a grace
  period (a sweep worker fails its trial 'interrupted' at the next batch end), then kills what is left.

:func:`run_in_workers` runs a fixed list of jobs on such a pool. ``fn``, the jobs, ``initializer`` and its
arguments must be picklable (module-level functions and plain data).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_ready
from pathlib import Path
from typing import Any

__all__ = [
    "JobResult",
    "WorkerPool",
    "WorkersInterrupted",
    "run_in_workers",
    "start_forkserver",
    "worker_slot",
]


@dataclass
class JobResult:
    """What became of job ``index``: ``fn``'s return value, or ``error`` (one line) if it raised or its worker
    died (then ``died`` is true)."""

    index: Hashable
    value: Any = None
    error: str | None = None
    died: bool = False


class WorkersInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped the workers; ``running``: indices of the jobs that were running, ``done``: the
    results that had come back."""

    def __init__(self, running: list, done: list[JobResult]) -> None:
        super().__init__(f"interrupted with {len(running)} job(s) running")
        self.running, self.done = running, done


# ---- in the worker process ------------------------------------------------------------------------------------
_slot: int | None = None  # this worker's number in its pool (0, 1, ...; a replacement gets the next one)


def worker_slot() -> int | None:
    """In a worker process: its number in the pool (replacements of dead workers get new numbers); else None."""
    return _slot


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _worker_main(conn, slot: int, threads, log_dir, env, initializer, initargs) -> None:
    """A worker's life: set up once, then run jobs until the parent sends ``None`` or goes away."""
    global _slot
    _slot = slot
    from lightning_implicit.lifecycle import ExitOnSignal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which forwards SIGTERM
    with ExitOnSignal((signal.SIGTERM,)):  # SIGTERM between jobs: leave; during one: the job's to handle
        try:
            os.environ.update(env)
            if log_dir is not None:
                fd = os.open(
                    str(Path(log_dir) / f"worker-{os.getpid()}.log"),
                    os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                    0o644,
                )
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
                sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
            if threads is not None:
                os.environ["OMP_NUM_THREADS"] = str(threads)
                import torch

                torch.set_num_threads(threads)
            state = initializer(*initargs) if initializer is not None else None
        except BaseException as err:  # said to the parent, which fails the jobs with it
            conn.send(("failed", _one_line(err)))
            return
        conn.send(("ready", os.getpid()))
        try:
            while True:
                msg = conn.recv()
                if msg is None:
                    return
                key, fn, arg = msg
                try:
                    out = ("done", key, fn(arg) if initializer is None else fn(state, arg), None)
                except BaseException as err:  # a job's error (a deferred signal too) is its result
                    out = ("done", key, None, _one_line(err))
                try:
                    conn.send(out)
                except Exception as err:  # e.g. a value that does not pickle
                    conn.send(
                        ("done", key, None, f"the job's result could not be sent back: {_one_line(err)}")
                    )
        except (EOFError, OSError, KeyboardInterrupt):  # the parent is gone, or SIGTERM between jobs
            return


# ---- in the parent --------------------------------------------------------------------------------------------
@dataclass
class _Worker:
    proc: Any
    conn: Any
    slot: int
    ready: bool = False
    job: Hashable | None = None  # the key of the job it runs
    busy: bool = False
    error: str | None = None  # why it could not start
    results: list = field(default_factory=list)


class WorkerPool:
    """``size`` persistent worker processes (see the module doc); ``with WorkerPool(...) as pool:`` closes it.

    Args:
        threads: torch threads (and ``OMP_NUM_THREADS``) per worker; ``None``: inherited.
        log_dir: a folder for one ``worker-<pid>.log`` per worker (stdout and stderr); ``None``: the parent's.
        env: variables set in each worker (e.g. a storage URL with a password, never put on a command line).
        initializer: called once in each worker with ``initargs``; its return value is the worker's state, and
            jobs are then called as ``fn(state, job)`` instead of ``fn(job)``.
        preload: modules imported once in a forkserver that forks the workers (see the module doc); empty:
            ``spawn``. (One forkserver per process: the first pool that starts it sets what it imports.)
        max_respawns: how many dead workers are replaced (``None``: no limit). A worker that fails to start is
            never replaced: when none is left, :attr:`start_error` says why.
    """

    def __init__(
        self,
        size: int,
        *,
        threads: int | None = None,
        log_dir: Path | str | None = None,
        env: dict[str, str] | None = None,
        initializer: Callable | None = None,
        initargs: tuple = (),
        max_respawns: int | None = None,
        preload: Sequence[str] = (),
        fork: bool = False,
        fork_initargs: tuple | None = None,
    ) -> None:
        if log_dir is not None:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
        self._preload = tuple(preload)
        self._ctx = None if fork else start_forkserver(preload)  # (fork: started at the first replacement)
        self._setup = (
            threads,
            None if log_dir is None else str(log_dir),
            dict(env or {}),
            initializer,
            initargs,
        )
        first_ctx, first = None, self._setup
        if fork and "fork" in mp.get_all_start_methods():
            # the first workers are forked from this process as it is now (its imports and state, e.g.
            # ``fork_initargs`` handed to ``initializer`` without pickling); replacements of dead workers, started
            # when this process may hold database connections and threads, use the safe method above
            first_ctx = mp.get_context("fork")
            first = (*self._setup[:4], fork_initargs if fork_initargs is not None else initargs)
        self._workers: list[_Worker] = []
        self._next_slot = 0
        self.max_respawns = max_respawns
        self.deaths = 0  # workers that died (after starting)
        self.start_error: str | None = None
        for _ in range(max(1, size)):
            self._spawn(first_ctx, first)

    # ---- workers ---------------------------------------------------------------------------------------------
    def _spawn(self, ctx=None, setup: tuple | None = None) -> None:
        if ctx is None and self._ctx is None:
            self._ctx = start_forkserver(self._preload)
        ctx, setup = ctx or self._ctx, setup or self._setup
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(
            target=_worker_main,
            args=(child_end, self._next_slot, *setup),
            name=f"worker-{self._next_slot}",
        )
        proc.start()
        child_end.close()
        self._workers.append(_Worker(proc, parent_end, self._next_slot))
        self._next_slot += 1

    @property
    def alive(self) -> int:
        """Workers that are running or starting."""
        return len(self._workers)

    @property
    def idle(self) -> int:
        return sum(not w.busy for w in self._workers)

    @property
    def running(self) -> dict[Hashable, int]:
        """The keys of the jobs now running, and their workers' process ids."""
        return {w.job: w.proc.pid for w in self._workers if w.busy}

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers]

    # ---- jobs ------------------------------------------------------------------------------------------------
    def submit(self, key: Hashable, fn: Callable, arg: Any) -> int:
        """Hand ``fn(arg)`` to an idle worker (one still starting takes it when ready); returns its process id."""
        w = next(w for w in self._workers if not w.busy)
        w.conn.send((key, fn, arg))
        w.busy, w.job = True, key
        return w.proc.pid

    def wait(self, timeout: float | None) -> list[JobResult]:
        """The jobs that finished (or whose worker died) within ``timeout`` seconds; replaces dead workers."""
        if not self._workers:
            return []
        handles = [w.conn for w in self._workers] + [w.proc.sentinel for w in self._workers]
        ready = set(wait_ready(handles, timeout))
        out: list[JobResult] = []
        for w in list(self._workers):
            if w.conn in ready or w.proc.sentinel in ready:
                self._read(w, out)
            if w.proc.sentinel in ready or not w.proc.is_alive():
                self._read(w, out)  # (what it sent before it died)
                self._buried(w, out)
        return out

    def _read(self, w: _Worker, out: list[JobResult]) -> None:
        try:
            while w.conn.poll():
                msg = w.conn.recv()
                if msg[0] == "ready":
                    w.ready = True
                elif msg[0] == "failed":
                    w.error = msg[1]
                else:
                    _, key, value, error = msg
                    w.busy, w.job = False, None
                    out.append(JobResult(key, value=value, error=error))
        except Exception:  # a worker killed while writing: its job is failed by _buried
            pass

    def _buried(self, w: _Worker, out: list[JobResult]) -> None:
        w.proc.join(timeout=5)
        if w.proc.is_alive():
            return
        self._workers.remove(w)
        w.conn.close()
        code = w.proc.exitcode
        how = f"killed by {signal.Signals(-code).name}" if code and code < 0 else f"exit code {code}"
        if w.busy:
            error = (
                f"the worker could not start: {w.error}"
                if w.error
                else f"worker died ({how}; killed or out of memory)"
            )
            out.append(JobResult(w.job, error=error, died=True))
        if not w.ready:  # it never started: a replacement would fail the same way
            self.start_error = w.error or f"the worker process ended while starting ({how})"
            return
        self.deaths += 1
        if self.max_respawns is None or self.deaths <= self.max_respawns:
            self._spawn()

    # ---- the end ---------------------------------------------------------------------------------------------
    def stop(self, grace: float) -> list[JobResult]:
        """SIGTERM to the busy workers; the results that come back within ``grace`` seconds. Then call
        :meth:`close` (which kills what is still running)."""
        self.max_respawns = 0
        for w in self._workers:
            if w.busy:
                _signal(w.proc.pid, signal.SIGTERM)
        out: list[JobResult] = []
        deadline = time.monotonic() + grace
        while self.running and time.monotonic() < deadline:
            out += [r for r in self.wait(min(0.2, max(0.0, deadline - time.monotonic()))) if not r.died]
        return out

    def close(self, timeout: float = 5.0) -> None:
        """Idle workers leave; busy ones, ones still starting (nothing of theirs to lose) and any that do not
        leave within ``timeout`` s are killed."""
        self.max_respawns = 0
        for w in self._workers:
            if not w.ready:
                self._read(w, [])  # (it may have become ready meanwhile)
            if w.busy or not w.ready:
                _signal(w.proc.pid, signal.SIGKILL)
            else:
                try:
                    w.conn.send(None)
                except (OSError, ValueError):
                    pass
        deadline = time.monotonic() + timeout
        for w in self._workers:
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                _signal(w.proc.pid, signal.SIGKILL)
                w.proc.join(timeout=5)
            w.conn.close()
        self._workers.clear()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_forkserver(preload: Sequence[str]):
    """The multiprocessing context of a pool with ``preload`` modules: the forkserver's, started now if it is not
    running (it imports ``preload`` in the background: call this early, e.g. before validating a command, and the
    imports overlap that work); without ``preload`` (or without forkserver on this platform): ``spawn``'s."""
    if not preload or "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(list(preload))
    from multiprocessing import forkserver

    forkserver.ensure_running()  # (spawns the server and returns; its imports run while this process goes on)
    return ctx


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


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
) -> list[JobResult]:
    """Run ``fn(job)`` for every job on ``workers`` persistent processes; the results in completion order.

    A worker that dies fails only the job it was running (the others run on, a fresh worker replaces it).

    Args:
        threads, log_dir, env: as for :class:`WorkerPool`.
        on_start: called with ``(index, worker pid)`` when a job is handed to a worker.
        on_done: called with each :class:`JobResult` as it comes back.
        grace: after Ctrl-C (or SIGTERM), seconds the running jobs get (they are sent SIGTERM) to end before
            their workers are killed; then :class:`WorkersInterrupted` names the jobs that were running.
    """
    on_done = on_done or (lambda r: None)
    results: list[JobResult] = []
    if not jobs:
        return results
    todo = deque(range(len(jobs)))
    pool = WorkerPool(
        min(workers, len(jobs)), threads=threads, log_dir=log_dir, env=env, max_respawns=len(jobs)
    )
    try:
        while todo or pool.running:
            while todo and pool.idle:
                i = todo.popleft()
                pid = pool.submit(i, fn, jobs[i])
                if on_start is not None:
                    on_start(i, pid)
            for res in pool.wait(0.5):
                results.append(res)
                on_done(res)
            if not pool.alive:  # no worker could start (or every one died past the respawn limit)
                why = pool.start_error or "every worker process died"
                for i in todo:
                    res = JobResult(i, error=f"no worker process could run it: {why}")
                    results.append(res)
                    on_done(res)
                todo.clear()
    except KeyboardInterrupt as err:
        results += pool.stop(grace) if grace > 0 else []
        running = sorted(pool.running)
        pool.close(timeout=1.0)
        raise WorkersInterrupted(running, results) from err
    finally:
        pool.close()
    return results
