"""The one job executor (lightning_implicit.jobs): results, errors, a dying worker, threads, Ctrl-C."""

from __future__ import annotations

import os
import signal
import time

import pytest

from lightning_implicit.jobs import JobResult, WorkersInterrupted, run_in_workers


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
    assert "worker died" in results[2].error
    # jobs not yet started when the worker died are run on a fresh pool: at most the job that ran beside it fails
    ok = [i for i, r in results.items() if r.error is None]
    assert len(ok) >= 4 and all(results[i].value == i for i in ok)


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
