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
from pathlib import Path

from lightning_implicit.redact import redact

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
    """The whole pipeline (the CLI's body; ``train`` replaces ``run_training`` in tests). ``compare``: also train
    the runs of the profile's ``compare_with`` profile (the report's default-recipe column)."""
    import mlflow

    from lightning_implicit.tracking import git_commit, resolve_tracking_uri
    from lightning_implicit.tuned import load_tuned

    from . import verdicts as V
    from .execute import Interrupted, Outcome, Progress, find_reusable, fmt_duration, run_jobs
    from .plan import build_jobs, tuned_recipes
    from .profile import ProfileError, load_profile
    from .report import build_report, log_report_run, start_report_run
    from .results import RunRecord, load_results, run_url

    stream = stream or sys.stdout
    t0 = time.time()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        profile = load_profile(profile_name)
    except ProfileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if workers is not None:
        profile.workers = workers
    if seeds is not None:
        profile.seeds = seeds
    if tasks:
        unknown = sorted(set(tasks) - set(profile.tasks))
        if unknown:
            print(
                f"error: --tasks {','.join(unknown)}: not in profile {profile.name!r} (its tasks: "
                f"{', '.join(profile.tasks)})",
                file=sys.stderr,
            )
            return 2
        profile.tasks = {t: plan for t, plan in profile.tasks.items() if t in tasks}
    commit = git_commit()
    amc_skip = amc_availability(data) if "volatility" in profile.tasks else None
    if "volatility" in profile.tasks and not amc_skip:
        _preflight_market(data, data_args or [], stream)  # a bad file stops here, before any run
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
    est = sum(j.cost for j in todo) / max(1, min(profile.workers, len(todo) or 1))
    print(
        f"reproduce: profile {profile.name!r} ({profile.path}), {len(profile.tasks)} task(s), seeds {profile.seeds}, "
        f"code {commit[:12]}",
        file=stream,
    )
    print(
        f"  {len(jobs) + len(extra)} runs: {len(reused)} reused from MLflow ({redact(uri)}), {len(todo)} to train with "
        f"{profile.workers} worker(s) (first estimate {fmt_duration(est)})",
        file=stream,
    )
    if extra:
        print(
            f"  of them {len(extra)} for profile {profile.compare_with!r} (the compared recipes; the others are "
            "shared or this profile's; --no-compare leaves them out)",
            file=stream,
        )
    if amc_skip:
        print(f"  AMC volatility skipped: {amc_skip}", file=stream)
    if dry_run:
        for j in jobs + extra:
            print(
                f"  {'reuse' if j.key in reused else 'train'}  {j.name:<44} est {j.cost:6.1f}s  {j.rerun_command()}",
                file=stream,
            )
        return 0
    out_dir = Path(out) / profile.name
    outcomes: dict[str, Outcome] = dict(reused)
    if not report_only and todo:
        try:
            with Progress(todo, profile.workers, stream=stream) as progress:
                for o in run_jobs(
                    todo,
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
            return 130
    train_wall = time.time() - t0
    records = [
        RunRecord(
            task=j.task,
            model=j.model,
            seed=j.seed,
            key=j.key,
            command=j.rerun_command(),
            outcome="skipped",
            error=amc_skip,
        )
        for j in skipped
    ]
    for j in jobs:
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
    results = load_results(records, client, profile.ui_url)
    report_run_id, exp_id = start_report_run(client, profile, commit)
    trained = sum(o.source == "trained" for o in outcomes.values())
    header = {
        "command": " ".join(["lightning-implicit reproduce", *sys.argv[2:]])
        if sys.argv[1:2] == ["reproduce"]
        else f"make reproduce PROFILE={profile.name}",
        "commit": commit,
        "tracking_uri": redact(uri),
        "report_run_id": report_run_id,
        "report_run_url": run_url(profile.ui_url, exp_id, report_run_id),
        "trained": trained,
        "reused": len(reused),
        "wall_s": train_wall,
        "workers": profile.workers,
    }
    tuned = {(j.task, j.model): load_tuned(Path(j.tuned)) for j in jobs if j.tuned}
    companion = _companion(profile, commit, data, amc_skip, client) if profile.compare_with else None
    from .structure import structural_reading

    readings = structural_reading(results, profile, uri=uri)  # (the logged models of that store)
    path, verdicts = build_report(
        results,
        profile,
        out_dir,
        client=client,
        amc_skip=amc_skip,
        header=header,
        tuned=tuned,
        tuned_notes=tuned_notes,
        companion=companion,
        readings=readings,
    )
    stats = {
        "runs": len(records),
        "trained": trained,
        "reused": len(reused),
        "wall_s": time.time() - t0,
        "failed": sum(r.outcome in ("failed", "missing") for r in records),
    }
    log_report_run(client, report_run_id, out_dir, verdicts, stats)
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
    from lightning_implicit.console import ui_running

    ui = run_url(profile.ui_url, exp_id, report_run_id)
    print(f"report run in UI: {ui}", file=stream)
    if not ui_running(profile.ui_url.rstrip("/")):
        print("UI: not running; start it with `make ui` (the report's run links open there)", file=stream)
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
