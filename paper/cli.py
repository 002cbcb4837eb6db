"""``make reproduce [PROFILE=quick|paper] [DATA=path]``: the paper's experiments end to end, and the report.

``lightning-implicit reproduce --profile quick [--data PATH] [--workers N] [--seeds 0,1,2] [--out reports]
[--dry-run] [--report-only] [--retrain]``

1. Load and validate the profile (``conf/reproduce/<profile>.yaml``; errors name the offending key).
2. Plan one run per (task, model, seed); find finished runs of the same config, seed and code version in
   MLflow and reuse them (an interrupted reproduction resumes; a second one only rebuilds the report).
3. Train the rest, heaviest first, in worker processes, one progress line per run (Ctrl-C stops cleanly).
4. Read every run back from MLflow and write ``<out>/<profile>/report.md`` with its figures, tables and
   verdicts; log the same files to a run of the ``reproduce`` experiment.

AMC volatility runs only on data the user has: ``--data`` (``DATA=``) or the market-data cache; this command
never downloads. Without data the report marks it skipped, with the reason.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lightning_implicit.redact import redact

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from .execute import Outcome
    from .plan import Job
    from .profile import Profile
    from .results import RunRecord

__all__ = ["main", "reproduce", "amc_availability"]


def amc_availability(data: str | None) -> str | None:
    """``None`` when the volatility task has data to run on, else the reason it is skipped."""
    from lightning_implicit.datamodules.market import (
        DataUnavailableError,
        DataValidationError,
        resolve_source,
    )

    try:
        resolve_source(data, cache_dir="data/market", allow_download=False, ticker="AMC", interval="1d")
    except DataUnavailableError as err:
        first = str(err).splitlines()[0]
        return (
            f"{first} `make reproduce` never downloads; give an AMC minute (or daily) file with "
            "`make reproduce DATA=path/to/amc.csv` (`DATA=synthetic` runs a labelled synthetic stand-in)."
        )
    except DataValidationError as err:
        return f"the DATA file was rejected: {str(err).splitlines()[0]}"
    return None


def reproduce(
    profile_name: str,
    *,
    data: str | None = None,
    workers: int | None = None,
    seeds: list[int] | None = None,
    out: str | Path = "reports",
    dry_run: bool = False,
    report_only: bool = False,
    retrain: bool = False,
    train=None,
    stream=None,
    tasks: list[str] | None = None,
    data_args: list[str] | None = None,
    compare: bool = True,
) -> int:
    """The whole pipeline (the CLI's body; ``train`` replaces ``run_training`` in tests): plan, execute, report.
    ``compare``: also train the runs of the profile's ``compare_with`` profile (the report's default-recipe column).

    Returns the exit code: 0, 1 (every run of a task failed), 2 (a bad profile or ``--tasks``), 130 (interrupted).
    """
    from .profile import ProfileError

    stream = stream or sys.stdout
    t0 = time.time()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        profile = _configured_profile(profile_name, workers=workers, seeds=seeds, tasks=tasks)
    except ProfileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    plan = _plan(
        profile, data=data, data_args=data_args or [], retrain=retrain, compare=compare, stream=stream
    )
    _print_plan(plan, stream)
    if dry_run:
        _print_dry_run(plan, stream)
        return 0
    out_dir = Path(out) / profile.name
    outcomes = _execute(plan, out_dir, report_only=report_only, train=train, stream=stream)
    if outcomes is None:
        return 130
    return _report(plan, outcomes, out_dir, t0=t0, train_wall=time.time() - t0, stream=stream)


@dataclass
class _Plan:
    """What ``reproduce`` will do: the profile's ``jobs`` (without the ``skipped`` AMC ones), the ``extra`` jobs of
    the compared profile, the finished runs ``reused`` from MLflow (by job key) and the ``todo`` runs to train,
    heaviest first."""

    profile: Profile
    commit: str
    data: str | None
    amc_skip: str | None
    uri: str
    client: MlflowClient
    jobs: list[Job]
    skipped: list[Job]
    extra: list[Job]
    reused: dict[str, Outcome]
    todo: list[Job]
    tuned_notes: list[str]


def _configured_profile(
    name: str, *, workers: int | None, seeds: list[int] | None, tasks: list[str] | None
) -> Profile:
    """The profile with the command line's ``--workers``, ``--seeds`` and ``--tasks``; raises ``ProfileError``
    for a bad profile or a task not in it."""
    from .profile import ProfileError, load_profile

    profile = load_profile(name)
    if workers is not None:
        profile.workers = workers
    if seeds is not None:
        profile.seeds = seeds
    if tasks:
        unknown = sorted(set(tasks) - set(profile.tasks))
        if unknown:
            raise ProfileError(
                f"--tasks {','.join(unknown)}: not in profile {profile.name!r} (its tasks: "
                f"{', '.join(profile.tasks)})"
            )
        profile.tasks = {t: plan for t, plan in profile.tasks.items() if t in tasks}
    return profile


def _plan(
    profile: Profile, *, data: str | None, data_args: list[str], retrain: bool, compare: bool, stream
) -> _Plan:
    """One job per (task, model, seed) of the profile and, with ``compare``, of its compared profile; the ones
    already in MLflow at this code version are reused (all trained again with ``retrain``). A bad market file
    stops here, before any run (the data error propagates)."""
    import mlflow

    from lightning_implicit.tracking import git_commit, resolve_tracking_uri

    from .execute import find_reusable
    from .plan import build_jobs, tuned_recipes

    commit = git_commit()
    amc_skip = amc_availability(data) if "volatility" in profile.tasks else None
    if "volatility" in profile.tasks and not amc_skip:
        _preflight_market(data, data_args, stream)  # a bad file stops here, before any run
    jobs = build_jobs(profile, commit=commit, data=data, data_args=data_args)
    tuned_notes = [why for task in profile.tasks if (why := tuned_recipes(profile, task)[1])]
    for why in tuned_notes:
        print(f"note: {why}", file=stream)
    skipped = [j for j in jobs if amc_skip and j.task == "volatility"]
    jobs = [j for j in jobs if j not in skipped]
    # the profile compared with (paper-default beside paper) is trained too, so that one command fills the
    # report; a run whose recipe is the same in both (no tuned config) has the same key and trains once
    extra = []
    if profile.compare_with and compare:
        keys = {j.key for j in jobs}
        extra = [
            j
            for j in build_jobs(_compared_profile(profile), commit=commit, data=data, data_args=data_args)
            if j.key not in keys and not (amc_skip and j.task == "volatility")
        ]
    uri = resolve_tracking_uri()
    client = mlflow.MlflowClient(uri)
    reused = {} if retrain else find_reusable(jobs + extra, commit, client)
    todo = [j for j in jobs + extra if j.key not in reused]
    todo.sort(key=lambda j: -j.cost)
    return _Plan(
        profile, commit, data, amc_skip, uri, client, jobs, skipped, extra, reused, todo, tuned_notes
    )


def _print_plan(plan: _Plan, stream) -> None:
    """The plan in a few lines: the profile, how many runs are reused and trained, the first time estimate."""
    from .execute import fmt_duration

    profile, todo = plan.profile, plan.todo
    est = sum(j.cost for j in todo) / max(1, min(profile.workers, len(todo) or 1))
    print(
        f"reproduce: profile {profile.name!r} ({profile.path}), {len(profile.tasks)} task(s), seeds {profile.seeds}, "
        f"code {plan.commit[:12]}",
        file=stream,
    )
    print(
        f"  {len(plan.jobs) + len(plan.extra)} runs: {len(plan.reused)} reused from MLflow ({redact(plan.uri)}), "
        f"{len(todo)} to train with {profile.workers} worker(s) (first estimate {fmt_duration(est)})",
        file=stream,
    )
    if plan.extra:
        print(
            f"  of them {len(plan.extra)} for profile {profile.compare_with!r} (the compared recipes; the others are "
            "shared or this profile's; --no-compare leaves them out)",
            file=stream,
        )
    if plan.amc_skip:
        print(f"  AMC volatility skipped: {plan.amc_skip}", file=stream)


def _print_dry_run(plan: _Plan, stream) -> None:
    """``--dry-run``: one line per run, reused or trained, with its estimate and the command that reruns it."""
    for j in plan.jobs + plan.extra:
        print(
            f"  {'reuse' if j.key in plan.reused else 'train'}  {j.name:<44} est {j.cost:6.1f}s  {j.rerun_command()}",
            file=stream,
        )


def _execute(plan: _Plan, out_dir: Path, *, report_only: bool, train, stream) -> dict[str, Outcome] | None:
    """Train the ``todo`` runs in worker processes (none with ``report_only``), one progress line per run.

    Returns the outcome of every run by job key (reused ones included), or None when interrupted (the finished
    runs are kept in MLflow; the same command resumes)."""
    from .execute import Interrupted, Progress, run_jobs

    profile = plan.profile
    outcomes = dict(plan.reused)
    if report_only or not plan.todo:
        return outcomes
    try:
        with Progress(plan.todo, profile.workers, stream=stream) as progress:
            for o in run_jobs(
                plan.todo,
                workers=profile.workers,
                threads=profile.threads_per_worker,
                log_dir=out_dir / "logs",
                on_done=progress.update,
                train=train,
            ):
                outcomes[o.key] = o
    except Interrupted as err:
        print(
            f"\ninterrupted: {err}. Finished runs are kept in MLflow; run the same command again to resume "
            "where it stopped.",
            file=stream,
        )
        return None
    return outcomes


def _run_records(plan: _Plan, outcomes: dict[str, Outcome]) -> list[RunRecord]:
    """One ``RunRecord`` per run of the profile: the skipped AMC runs first, then each job with its outcome
    (``missing`` when it has none)."""
    from .results import RunRecord

    records = [
        RunRecord(
            task=j.task,
            model=j.model,
            seed=j.seed,
            key=j.key,
            command=j.rerun_command(),
            outcome="skipped",
            error=plan.amc_skip,
        )
        for j in plan.skipped
    ]
    for j in plan.jobs:
        o = outcomes.get(j.key)
        records.append(
            RunRecord(
                task=j.task,
                model=j.model,
                seed=j.seed,
                key=j.key,
                command=j.rerun_command(),
                run_id=o.run_id if o else None,
                outcome=o.outcome if o else "missing",
                source=o.source if o else "",
                wall_s=o.wall_s if o else 0.0,
                error=o.error if o else None,
            )
        )
    return records


def _report(
    plan: _Plan, outcomes: dict[str, Outcome], out_dir: Path, *, t0: float, train_wall: float, stream
) -> int:
    """Read every run back, write the report and log it to its MLflow run, print the verdicts; the exit code."""
    from lightning_implicit.tuned import load_tuned

    from .report import build_report, log_report_run, start_report_run
    from .results import load_results, run_url
    from .structure import structural_reading

    profile, client = plan.profile, plan.client
    records = _run_records(plan, outcomes)
    results = load_results(records, client, profile.ui_url)
    report_run_id, exp_id = start_report_run(client, profile, plan.commit)
    trained = sum(o.source == "trained" for o in outcomes.values())
    header = {
        "command": " ".join(["lightning-implicit reproduce", *sys.argv[2:]])
        if sys.argv[1:2] == ["reproduce"]
        else f"make reproduce PROFILE={profile.name}",
        "commit": plan.commit,
        "tracking_uri": redact(plan.uri),
        "report_run_id": report_run_id,
        "report_run_url": run_url(profile.ui_url, exp_id, report_run_id),
        "trained": trained,
        "reused": len(plan.reused),
        "wall_s": train_wall,
        "workers": profile.workers,
    }
    tuned = {(j.task, j.model): load_tuned(Path(j.tuned)) for j in plan.jobs if j.tuned}
    companion = (
        _companion(profile, plan.commit, plan.data, plan.amc_skip, client) if profile.compare_with else None
    )
    readings = structural_reading(results, profile, uri=plan.uri)  # (the logged models of that store)
    path, verdicts = build_report(
        results,
        profile,
        out_dir,
        client=client,
        amc_skip=plan.amc_skip,
        header=header,
        tuned=tuned,
        tuned_notes=plan.tuned_notes,
        companion=companion,
        readings=readings,
    )
    stats = {
        "runs": len(records),
        "trained": trained,
        "reused": len(plan.reused),
        "wall_s": time.time() - t0,
        "failed": sum(r.outcome in ("failed", "missing") for r in records),
    }
    log_report_run(client, report_run_id, out_dir, verdicts, stats)
    _print_outcome(
        plan, records, verdicts, out_dir, path=path, run=(report_run_id, exp_id), t0=t0, stream=stream
    )
    return _exit_code(records, out_dir)


def _print_outcome(
    plan: _Plan, records: list, verdicts, out_dir: Path, *, path, run, t0: float, stream
) -> None:
    """The verdicts, the failed runs, where the report is, and its run in the MLflow UI (and whether that runs)."""
    from lightning_implicit.console import ui_running

    from . import verdicts as V
    from .execute import fmt_duration
    from .results import run_url

    profile, (report_run_id, exp_id) = plan.profile, run
    print("\nverdicts:", file=stream)
    for v in verdicts:
        mark = f" ({V.ON_MARGIN})" if v.on_margin else ""
        print(f"  {v.id:<5} {v.verdict + mark:<46} {v.claim}", file=stream)
    failed = [r for r in records if r.outcome in ("failed", "missing")]
    if failed:
        print(
            f"\n{len(failed)} run(s) failed; see the report's Runs section and {out_dir / 'logs'}",
            file=stream,
        )
    print(
        f"\nreport: {path} (figures in {out_dir / 'figures'}); MLflow run {report_run_id} in experiment "
        f"{profile.reproduce_experiment!r}; total {fmt_duration(time.time() - t0)}",
        file=stream,
    )
    ui = run_url(profile.ui_url, exp_id, report_run_id)
    print(f"report run in UI: {ui}", file=stream)
    if not ui_running(profile.ui_url.rstrip("/")):
        print("UI: not running; start it with `make ui` (the report's run links open there)", file=stream)


def _exit_code(records: list[RunRecord], out_dir: Path) -> int:
    """1 (with an ``error:`` line) when every run of some task that was not skipped failed, else 0."""
    dead = sorted(
        {r.task for r in records if r.outcome != "skipped"}
        - {r.task for r in records if r.outcome in ("ok", "diverged")}
    )
    if dead:
        print(
            f"error: every run of task(s) {', '.join(dead)} failed; see {out_dir / 'logs'}", file=sys.stderr
        )
        return 1
    return 0


def _preflight_market(data: str, data_args: list[str], stream) -> None:
    """Load and validate the market file once (raises the data error, which the CLI prints as one line)."""
    from lightning_implicit.runner import load_data, shorthand_args

    card = load_data(
        [
            *shorthand_args("volatility", "linear"),
            "--data.init_args.data",
            data,
            "--data.init_args.allow_download",
            "false",
            *data_args,
        ]
    ).data_card()
    print(f"  AMC volatility data: {card['n_windows']} windows; split {card['splits']['rule']}", file=stream)


def _compared_profile(profile):
    """``profile.compare_with`` with this profile's seeds and tasks (the same ``--seeds`` / ``--tasks``)."""
    from .profile import load_profile

    other = load_profile(profile.compare_with)
    other.seeds = profile.seeds
    other.tasks = {t: plan for t, plan in other.tasks.items() if t in profile.tasks}
    other.workers, other.threads_per_worker = profile.workers, profile.threads_per_worker
    return other


def _companion(profile, commit: str, data: str | None, amc_skip: str | None, client) -> dict:
    """The verdicts of ``profile.compare_with`` (e.g. the default recipes beside the tuned ones), from the runs
    of that profile already in MLflow at this code version; nothing is trained."""
    from . import verdicts as V
    from .execute import find_reusable
    from .plan import build_jobs
    from .results import RunRecord, load_results

    other = _compared_profile(profile)
    jobs = [
        j for j in build_jobs(other, commit=commit, data=data) if not (amc_skip and j.task == "volatility")
    ]
    found = find_reusable(jobs, commit, client)
    records = [
        RunRecord(
            task=j.task,
            model=j.model,
            seed=j.seed,
            key=j.key,
            command=j.rerun_command(),
            run_id=found[j.key].run_id if j.key in found else None,
            outcome=found[j.key].outcome if j.key in found else "missing",
        )
        for j in jobs
    ]
    results = load_results(records, client, profile.ui_url)
    return {
        "name": other.name,
        "verdicts": V.evaluate_claims(results, amc_skip=amc_skip),
        "found": len(found),
        "total": len(jobs),
    }


def main(argv: list[str] | None = None) -> int:
    from lightning_implicit.clihelp import OneLineParser  # (a bad option: one error: line, exit 2)

    p = OneLineParser(prog="lightning-implicit reproduce", description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="quick", help="conf/reproduce/<name>.yaml or a path (default: quick)")
    p.add_argument(
        "--data",
        default=None,
        help="AMC price file for the volatility task ('synthetic': labelled "
        "synthetic data); without it the task is skipped",
    )
    p.add_argument(
        "--workers", type=int, default=None, help="parallel worker processes (default: the profile's)"
    )
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the profile's)")
    p.add_argument(
        "--tasks",
        default=None,
        help="comma-separated tasks of the profile to run and report (default: all; make TASKS=)",
    )
    p.add_argument("--out", default="reports", help="report folder root (default: reports)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (reuse/train per run) and stop")
    p.add_argument(
        "--report-only", action="store_true", help="train nothing; report the runs found in MLflow"
    )
    p.add_argument(
        "--retrain", action="store_true", help="ignore finished runs in MLflow and train everything"
    )
    p.add_argument(
        "--no-compare",
        action="store_true",
        help="do not train the runs of the profile's compare_with profile (the report reads those found)",
    )
    from lightning_implicit.cliargs import comma_list, split_passthrough

    argv, data_args = split_passthrough(sys.argv[1:] if argv is None else argv)
    bad = [a for a in data_args if a.startswith("--") and not a.startswith("--data.init_args.")]
    if bad:
        p.error(f"after '--' only --data.init_args.* options of the volatility task are taken, got {bad[0]}")
    a = p.parse_args(argv)
    seeds = None
    if a.seeds:
        try:
            seeds = comma_list(a.seeds, int)
        except ValueError:
            p.error(f"--seeds: expected comma-separated integers, got {a.seeds!r}")
    if a.workers is not None and a.workers < 1:
        p.error("--workers must be >= 1")
    tasks = comma_list(a.tasks)
    return reproduce(
        a.profile,
        data=a.data,
        workers=a.workers,
        seeds=seeds,
        out=a.out,
        dry_run=a.dry_run,
        report_only=a.report_only,
        retrain=a.retrain,
        tasks=tasks,
        data_args=data_args,
        compare=not a.no_compare,
    )


if __name__ == "__main__":
    sys.exit(main())
