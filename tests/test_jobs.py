"""The one job executor (lightning_implicit.jobs): results, errors, a dying worker, persistent workers, threads,
Ctrl-C and SIGTERM."""

from __future__ import annotations

import os
import signal
import time

import pytest

from lightning_implicit.jobs import JobResult, WorkerPool, WorkersInterrupted, run_in_workers, worker_slot


def square(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    return x


def die_on_two(x: int) -> int:
    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # a worker killed mid-job (e.g. by the out-of-memory killer)
    time.sleep(0.2)
    return x


def torch_threads(_: int) -> tuple[int, str]:
    import torch

    return torch.get_num_threads(), os.environ.get("LI_TEST_VAR", "")


def sleep_long(x: int) -> int:
    time.sleep(60)
    return x


class Counter:
    """A worker's state: made once per worker process (the pool's initializer), kept across its jobs."""

    def __init__(self, start: int) -> None:
        self.made_in, self.slot, self.jobs = os.getpid(), worker_slot(), start


def count(state: Counter, x: int) -> tuple[int, int, int | None, int]:
    state.jobs += 1
    time.sleep(0.05)
    return state.made_in, state.jobs, state.slot, os.getpid()


def wait_for_sigterm(_: int) -> str:
    """A job that stops cleanly at its next safe point when the pool is stopped (as a sweep trial does)."""
    from lightning_implicit.lifecycle import DeferredSignals

    with DeferredSignals(announce=False) as signals:
        for _ in range(600):
            signals.check()
            time.sleep(0.1)
    return "not stopped"


def test_every_job_runs_in_a_worker_process_and_comes_back():
    seen: list[JobResult] = []
    results = run_in_workers(square, list(range(6)), workers=2, on_done=seen.append)
    assert sorted(r.index for r in results) == list(range(6)) and seen == results
    assert {r.index: r.value[0] for r in results} == {i: i * i for i in range(6)}
    pids = {r.value[1] for r in results}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_a_failing_job_is_reported_and_the_others_finish():
    results = {r.index: r for r in run_in_workers(fail_on_three, [1, 2, 3, 4], workers=2)}
    assert results[2].error == "ValueError: three is not allowed" and results[2].value is None
    assert [results[i].value for i in (0, 1, 3)] == [1, 2, 4]


def test_a_dead_worker_fails_its_job_only():
    results = {r.index: r for r in run_in_workers(die_on_two, list(range(6)), workers=2)}
    assert sorted(results) == list(range(6))
    assert "worker died (killed by SIGKILL" in results[2].error and results[2].died
    # the job running beside it and the jobs after it run on: the healthy worker and a fresh one
    assert {i: r.value for i, r in results.items() if i != 2} == {i: i for i in (0, 1, 3, 4, 5)}


def test_workers_live_for_the_whole_pool_and_set_up_once():
    with WorkerPool(2, initializer=Counter, initargs=(100,)) as pool:
        pids = set(pool.pids)
        results = []
        for i in range(8):
            while not pool.idle:
                results += pool.wait(1.0)
            pool.submit(i, count, i)
        while pool.running:
            results += pool.wait(1.0)
    assert sorted(r.index for r in results) == list(range(8)) and all(r.error is None for r in results)
    made_in = {r.value[0] for r in results}
    assert made_in == {r.value[3] for r in results} == pids  # state made in the worker that runs the jobs
    # one state per worker: its job counter runs 101, 102, ... across that worker's jobs
    for pid in pids:
        counts = sorted(r.value[1] for r in results if r.value[0] == pid)
        assert counts == list(range(101, 101 + len(counts)))
    assert {r.value[2] for r in results} == {0, 1}


def test_stop_forwards_sigterm_and_a_job_ends_at_its_safe_point():
    with WorkerPool(2) as pool:
        for i in range(2):
            pool.submit(i, wait_for_sigterm, i)
        time.sleep(3.0)  # (both workers started and inside their jobs)
        t0 = time.monotonic()
        results = pool.stop(grace=10.0)
        took = time.monotonic() - t0
        assert not pool.running
    assert sorted(r.index for r in results) == [0, 1]
    assert all(r.error == "Terminated: received SIGTERM" for r in results), results
    assert took < 5.0


def test_workers_get_their_threads_and_environment():
    (r,) = run_in_workers(torch_threads, [0], workers=1, threads=1, env={"LI_TEST_VAR": "set"})
    assert r.value == (1, "set")


@pytest.fixture
def python_sigint():
    """Python's Ctrl-C handler for the test, as in a terminal: a shell starts a background job (``make test &``,
    some CI runners) with SIGINT ignored, and a SIGINT the test sends itself would never arrive."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_stops_the_workers_and_names_the_running_jobs(python_sigint):
    started: list[tuple[int, int]] = []

    def on_start(index: int, pid: int) -> None:
        started.append((index, pid))
        if len(started) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C while both workers are busy

    t0 = time.monotonic()
    with pytest.raises(WorkersInterrupted) as info:
        run_in_workers(sleep_long, [0, 1, 2, 3], workers=2, on_start=on_start)
    assert time.monotonic() - t0 < 30  # not the 60 s of the jobs
    assert sorted(info.value.running) == sorted(i for i, _ in started) and info.value.done == []
    time.sleep(0.5)
    for _, pid in started:  # the workers are gone
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
