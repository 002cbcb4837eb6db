"""Running the plan: reuse finished runs from MLflow, train the rest in worker processes, report progress.

* **Resume.** Before training, every experiment of the plan is searched for runs of the same code version
  (tag ``git_commit``); a run whose ``repro_key`` matches a job and that finished (status ``FINISHED`` and
  tag ``repro_outcome = ok``; or a training that diverged, ``repro_outcome = diverged``, which would diverge
  again) is reused. The ``repro_outcome`` tag is written last, so a run interrupted at any point is retrained.
* **Workers.** ``workers > 1``: that many spawned processes of the framework's one job executor
  (:func:`lightning_implicit.jobs.run_in_workers`, ``torch.set_num_threads(threads_per_worker)``), each importing
  the framework once and taking jobs heaviest first; their console output goes to
  ``<report dir>/logs/worker-<pid>.log``. A worker that dies fails its run only. ``workers = 1``: in this process.
* **Progress.** One line per finished run: position, outcome, wall time, elapsed and ETA (rich's progress over
  the runs' estimated costs: remaining cost at the measured pace), a live bar below them on a terminal.
* **Ctrl-C.** Workers ignore SIGINT; the parent kills them, marks their unfinished MLflow runs ``KILLED`` and
  raises :class:`Interrupted`. Finished runs stay in MLflow, so the next invocation resumes.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .plan import Job

__all__ = ["Outcome", "Interrupted", "find_reusable", "run_jobs", "run_job", "fmt_duration", "Progress"]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during the reproduction (after the workers were stopped and their runs marked KILLED)."""


@dataclass
class Outcome:
    key: str
    run_id: str | None
    outcome: str  # ok | diverged | failed | interrupted
    source: str  # trained | reused
    wall_s: float = 0.0
    error: str | None = None


_YEAR_S = 365 * 24 * 3600.0


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# ---- resume ---------------------------------------------------------------------------------------------
def _client():
    import mlflow

    from lightning_implicit.tracking import resolve_tracking_uri

    return mlflow.MlflowClient(resolve_tracking_uri())


def find_reusable(jobs: list[Job], commit: str, client=None) -> dict[str, Outcome]:
    """``{repro_key: Outcome(source="reused")}`` for jobs with a finished run of the same code version."""
    client = client or _client()
    wanted = {j.key for j in jobs}
    found: dict[str, tuple[int, Outcome]] = {}
    for exp_name in sorted({j.experiment for j in jobs}):
        exp = client.get_experiment_by_name(exp_name)
        if exp is None:
            continue
        token = None
        while True:
            page = client.search_runs(
                [exp.experiment_id],
                filter_string=f"tags.git_commit = '{commit}'",
                max_results=1000,
                page_token=token,
            )
            for run in page:
                tags = run.data.tags
                key, outcome = tags.get("repro_key"), tags.get("repro_outcome")
                if key not in wanted:
                    continue
                ok = run.info.status == "FINISHED" and outcome == "ok"
                diverged = outcome == "diverged"
                if not (ok or diverged):
                    continue
                start = run.info.start_time or 0
                if key not in found or start > found[key][0]:
                    wall = run.data.metrics.get("repro/wall_s", 0.0)
                    found[key] = (
                        start,
                        Outcome(key, run.info.run_id, outcome, "reused", wall, tags.get("repro_error")),
                    )
            token = page.token
            if not token:
                break
    return {k: v for k, (_, v) in found.items()}


def mark_killed(keys: list[str], experiments: list[str], client=None) -> list[str]:
    """Set RUNNING runs with these ``repro_key`` tags to KILLED (after an interrupt); returns their ids."""
    if not keys:
        return []
    client = client or _client()
    killed = []
    for exp_name in sorted(set(experiments)):
        exp = client.get_experiment_by_name(exp_name)
        if exp is None:
            continue
        for key in keys:
            for run in client.search_runs([exp.experiment_id], filter_string=f"tags.repro_key = '{key}'"):
                if run.info.status == "RUNNING":
                    client.set_terminated(run.info.run_id, "KILLED")
                    client.set_tag(run.info.run_id, "repro_outcome", "interrupted")
                    killed.append(run.info.run_id)
    return killed


# ---- one job (in a worker or in this process) ---------------------------------------------------------------
class _RunIdProbe:
    """Remembers the MLflow run id at fit start (so that a failed run can still be tagged)."""

    def __new__(cls):
        import lightning as L

        class Probe(L.Callback):
            run_id: str | None = None

            def on_fit_start(self, trainer, pl_module) -> None:
                lg = trainer.logger
                self.run_id = getattr(lg, "run_id", None) if lg is not None else None

        return Probe()


def run_job(job: dict, train: Callable | None = None) -> dict:
    """Train one job (a :meth:`Job.to_dict`) and tag its MLflow run; returns an :class:`Outcome` dict."""
    from lightning_implicit.runner import run_training

    train = train or run_training
    client = _client()
    probe = _RunIdProbe()
    t0, c0 = time.time(), time.process_time()
    outcome, error, run_id = "ok", None, None
    for attempt in range(2):
        try:
            res = train(job["args"], extra_callbacks=[probe])
            run_id = res.run_id
            outcome, error = "ok", None
            break
        except FloatingPointError as err:  # non-finite training loss: the model diverged (deterministic)
            outcome, error = "diverged", str(err)
            break
        except Exception as err:
            outcome, error = "failed", f"{type(err).__name__}: {err}"
            traceback.print_exc()
            if "database is locked" not in str(err) or attempt:
                break
            time.sleep(2.0)  # sqlite contention between workers: retry once
    run_id = run_id or probe.run_id
    wall = time.time() - t0
    if run_id:
        try:
            client.log_metric(run_id, "repro/wall_s", wall)
            client.log_metric(run_id, "repro/cpu_s", time.process_time() - c0)
            if error:
                client.set_tag(run_id, "repro_error", error[:4000])
            client.set_tag(run_id, "repro_outcome", outcome)
        except Exception:  # tagging is best effort; the outcome is still reported
            traceback.print_exc()
    return {
        "key": job["key"],
        "run_id": run_id,
        "outcome": outcome,
        "source": "trained",
        "wall_s": wall,
        "error": error,
    }


# ---- workers ------------------------------------------------------------------------------------------------
def _quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _pool_job(job: dict) -> dict:
    """One job in a worker process (:func:`run_job`, third-party chatter off, a header in the worker's log)."""
    _quiet()
    print(f"=== {job['task']}/{job['model']} seed={job['seed']}", flush=True)
    return run_job(job)


class Progress:
    """One line per finished run: position, outcome, wall time, elapsed and ETA, through rich's progress.

    Its total is the runs' estimated cost (:attr:`Job.cost`), so the ETA is the remaining cost over the measured
    pace (cost done per second since the start). On a terminal a live bar sits below the lines; elsewhere (a
    log, a pipe) only the lines are written. Use as a context manager (the bar stops on exit)."""

    def __init__(
        self, jobs: list[Job], workers: int, stream=None, clock: Callable[[], float] | None = None
    ) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        self.total = len(jobs)
        self.cost = {j.key: j.cost for j in jobs}
        self.names = {j.key: j.name for j in jobs}
        self.done = 0
        console = Console(file=stream or sys.stdout, highlight=False)
        columns = (BarColumn(), TimeElapsedColumn(), TimeRemainingColumn())
        # the pace over the whole reproduction (rich's default: the last 30 s, too short for runs of minutes)
        self.bar = Bar(
            *columns,
            console=console,
            transient=True,
            speed_estimate_period=_YEAR_S,
            get_time=clock or time.monotonic,
        )
        self.task = self.bar.add_task("runs", total=sum(self.cost.values()) or 1.0)
        self.bar.advance(self.task, 0.0)  # a first sample at the start: the pace counts from here
        self.workers = max(1, workers)

    def __enter__(self) -> Progress:
        if self.bar.console.is_terminal:  # the live bar; a log or a pipe gets the lines only
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar.live.is_started:
            self.bar.stop()

    def eta(self) -> float:
        """Seconds left: remaining cost over the measured pace (before the first run ends: over the workers)."""
        task = self.bar.tasks[0]
        left = task.time_remaining
        return float(left) if left is not None else float(task.remaining or 0.0) / self.workers

    def update(self, out: Outcome) -> None:
        self.done += 1
        self.bar.advance(self.task, self.cost.get(out.key, 0.0))
        elapsed = self.bar.tasks[0].elapsed or 0.0
        tag = {"ok": "trained", "diverged": "DIVERGED", "failed": "FAILED"}.get(out.outcome, out.outcome)
        line = (
            f"[{self.done:>{len(str(self.total))}}/{self.total}] {tag:<8} {self.names.get(out.key, out.key):<44} "
            f"{out.wall_s:6.1f}s | elapsed {fmt_duration(elapsed)} | ETA {fmt_duration(self.eta())}"
        )
        if out.error and out.outcome != "ok":
            line += f"\n      {out.error.splitlines()[0][:200]}"
        self.bar.console.out(line, highlight=False)


def run_jobs(
    jobs: list[Job],
    *,
    workers: int = 1,
    threads: int = 1,
    log_dir: Path | None = None,
    on_done: Callable[[Outcome], None] | None = None,
    train: Callable | None = None,
) -> list[Outcome]:
    """Train ``jobs`` (heaviest first) and return their outcomes; raises :class:`Interrupted` on Ctrl-C."""
    on_done = on_done or (lambda o: None)
    if not jobs:
        return []
    if workers <= 1 or len(jobs) == 1:
        return _run_in_process(jobs, on_done, train)
    return _run_pool(jobs, workers, threads, Path(log_dir or "."), on_done)


def _run_in_process(jobs, on_done, train) -> list[Outcome]:
    outs = []
    for job in jobs:
        try:
            out = Outcome(**run_job(job.to_dict(), train=train))
        except (KeyboardInterrupt, SystemExit) as err:  # Lightning turns Ctrl-C into sys.exit(1)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            killed = mark_killed([job.key], [job.experiment])
            raise Interrupted(f"interrupted during {job.name}; marked {len(killed)} run(s) KILLED") from err
        outs.append(out)
        on_done(out)
    return outs


def _run_pool(jobs, workers, threads, log_dir, on_done) -> list[Outcome]:
    from lightning_implicit.jobs import WorkersInterrupted, run_in_workers

    outs: list[Outcome] = []

    def done(res) -> None:
        if res.error is None:
            out = Outcome(**res.value)
        else:  # the worker died (run_job itself reports a failed training as an outcome)
            out = Outcome(jobs[res.index].key, None, "failed", "trained", 0.0, res.error)
        outs.append(out)
        on_done(out)

    try:
        run_in_workers(
            _pool_job,
            [j.to_dict() for j in jobs],
            workers=workers,
            threads=threads,
            log_dir=log_dir,
            on_done=done,
        )
    except WorkersInterrupted as err:
        running = [jobs[i] for i in err.running]
        killed = mark_killed([j.key for j in running], [j.experiment for j in running])
        raise Interrupted(
            f"stopped {min(workers, len(jobs))} worker(s); marked {len(killed)} unfinished run(s) KILLED"
        ) from err
    return outs
