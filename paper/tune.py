"""``lightning-implicit tune --profile NAME``: the library's tuning (:mod:`lightning_implicit.sweep.tune`) over
the (task, model) pairs of a reproduction profile, each starting from the profile's overrides.

The command is registered as a plugin command (``[project.entry-points."lightning_implicit.commands"]`` in
pyproject.toml): the library never imports this package.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from lightning_implicit.sweep import tune as library_tune
from lightning_implicit.sweep.tune import TuneOptions, TunePlan, run_tune

from .profile import Profile, load_profile

__all__ = ["tune_plan", "tune_profile", "build_parser", "main"]


def tune_plan(profile: Profile, source: str | Path | None = None) -> TunePlan:
    """The profile's (task, model) pairs with the overrides each trains with (``source``: the ``--profile``
    given on the command line, recorded in the tuned configs' provenance; default the profile's name)."""
    return TunePlan(
        name=profile.name,
        recipes={t: {m: plan.overrides_for(m) for m in plan.models} for t, plan in profile.tasks.items()},
        trainer=profile.trainer,
        command="lightning-implicit tune " + shlex.join(["--profile", str(source or profile.name)]),
    )


def tune_profile(profile: str | Path, opts: TuneOptions, *, say=print) -> int:
    """Tune the pairs of ``profile`` (a name under ``conf/reproduce/`` or a path); returns the exit code of
    :func:`~lightning_implicit.sweep.tune.run_tune`."""
    return run_tune(opts, tune_plan(load_profile(profile), profile), say=say)


def build_parser() -> argparse.ArgumentParser:
    from lightning_implicit.clihelp import OneLineParser  # (a bad option: one error: line, exit 2)

    p = OneLineParser(
        prog="lightning-implicit tune",
        description=library_tune.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--profile",
        default="paper",
        help="reproduction profile whose (task, model) pairs are tuned "
        "(conf/reproduce/<name>.yaml; its data sizes are used); default paper",
    )
    p.add_argument("--task", "--tasks", default=None, help="only these tasks, comma-separated (make TASKS=)")
    p.add_argument("--model", default=None, help="only these models, comma-separated")
    p.add_argument("--trials", type=int, default=8, help="trials in total per (task, model) (default 8)")
    p.add_argument(
        "--cv", type=int, default=5, help="k-fold cross-validation on in-distribution data (default 5)"
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes per study (default 1)")
    p.add_argument("--seed", type=int, default=0, help="sampler and training seed (default 0)")
    p.add_argument(
        "--storage",
        default=None,
        help="Optuna storage (default $OPTUNA_STORAGE or "
        "sqlite:///mlruns/optuna.db; PostgreSQL for several machines)",
    )
    p.add_argument("--tracking-uri", dest="tracking_uri", default=None, help="MLflow tracking URI")
    p.add_argument(
        "--no-tracking", dest="tracking", action="store_false", help="no MLflow runs for the trials"
    )
    p.add_argument("--out", default=None, help="where tuned configs go (default conf/tuned)")
    p.add_argument("--space-dir", dest="space_dir", default=None, help="search spaces (default conf/tune)")
    p.add_argument(
        "--timeout", type=float, default=None, help="stop starting trials of a pair after this many s"
    )
    p.add_argument(
        "--from-record",
        dest="from_record",
        action="store_true",
        help="start each new study also from the pair's tuned record in conf/tuned (one trial at its best "
        "values, after the recipe): with more folds or a widened space, the new record says whether the "
        "search picked the old recipe again (provenance previous_record)",
    )
    p.add_argument(
        "--dry-run", dest="dry_run", action="store_true", help="list the pairs and what is left to run"
    )
    p.add_argument("--verbose", action="store_true", help="Lightning/Optuna logs")
    return p


def main(argv: list[str] | None = None) -> int:
    from lightning_implicit.cliargs import comma_list, split_passthrough
    from lightning_implicit.sweep.space import SearchSpaceError

    argv, extra = split_passthrough(sys.argv[1:] if argv is None else argv)
    ns = build_parser().parse_args(argv)
    kw = {k: v for k, v in vars(ns).items() if k not in ("task", "model", "profile")}
    opts = TuneOptions(**kw, tasks=comma_list(ns.task), models=comma_list(ns.model), extra=extra)
    try:
        return tune_profile(ns.profile, opts)
    except (SearchSpaceError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
