"""Tuning: every (task, model) of a :class:`TunePlan` by k-fold CV, written to ``conf/tuned/``.

The paper (section 3): "We optimize all models using grid search and 5-fold cross-validation on
in-distribution inputs". For each (task, model) of the plan this runs one Optuna study on the sweep
machinery (:func:`~lightning_implicit.sweep.driver.run_sweep`). The plan comes from the caller: the command
``lightning-implicit tune --profile NAME`` is the paper's (:mod:`lightning_implicit_paper.tune`: a reproduction
profile's pairs and overrides), registered as a plugin command, so the library never imports the paper.

* objective: ``val/loss``, the mean over ``--cv`` folds (default 5) of the in-distribution data; the
  trials never build a test loader, so the shifted test sets cannot enter it;
* space: ``conf/tune/<task>.yaml`` (the search-file format of :mod:`.space`): the training recipe (learning
  rate, schedule and its unit, batch size up to the full batch, optimiser steps, weight decay, gradient
  clipping) for every model, plus ``kappa`` and the solver tolerance for implicit models;
* first trial: the model's own recipe (:mod:`.default_trial`: the task, model and plan settings, epochs
  converted to optimiser steps), enqueued once in every study, so that a tuned config is never one the default
  beats at the same cross-validation; the provenance says whether the search beat it;
* budget: ``--trials N`` trials *in total* per (task, model), the same for every model family; running the
  command again resumes each study (same storage) and only runs what is missing, so Ctrl-C loses at most the
  running trial;
* output: ``conf/tuned/<task>/<model>.yaml`` (:mod:`lightning_implicit.tuned`): the best trial's overrides
  and their provenance (study, trials, CV score ± sd, budget, space edges hit, date, code commit), written
  after each (task, model) so finished work is kept.

Examples::

    make tune PROFILE=paper TASKS=spiky TRIALS=8 CV=5
    lightning-implicit tune --profile paper --task rolling_argmax --model implicit_rnn,lstm --trials 12 --workers 2
"""

from __future__ import annotations

import math
import shlex
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lightning_implicit.redact import redact

__all__ = [
    "TuneOptions",
    "TunePlan",
    "best_so_far",
    "trial_values",
    "run_tune",
    "space_bounds",
    "space_edges",
    "space_limits",
    "tune_space_path",
    "portable_storage",
]


@dataclass(frozen=True)
class TunePlan:
    """What to tune: named (task, model) pairs, each with the overrides of the recipe it trains with.

    ``recipes[task][model]`` maps LightningCLI keys (no leading ``--``) to values: settings of a searched key,
    or of one the space fixes, start the search (the first trial's recipe); the others are the ``profile``
    layer of every trial's run (:class:`~lightning_implicit.run.spec.RunSpec`). ``name`` names the studies (``tune-<name>-<task>-<model>``) and the provenance; ``command`` is the
    command line that makes this plan (recorded in each tuned config)."""

    name: str
    recipes: dict[str, dict[str, dict[str, Any]]]
    trainer: str = "cpu"
    command: str = "lightning-implicit tune"


@dataclass
class TuneOptions:
    tasks: list[str] | None = None
    models: list[str] | None = None
    trials: int = 8
    cv: int = 5
    workers: int = 1
    seed: int = 0
    storage: str | None = None
    tracking_uri: str | None = None
    tracking: bool = True
    out: str | None = None  # default conf/tuned
    space_dir: str | None = None  # default conf/tune
    timeout: float | None = None  # per (task, model)
    dry_run: bool = False
    verbose: bool = False
    extra: list[str] = field(default_factory=list)
    # start each new study also from the pair's tuned record in conf/tuned (its best values, one trial after the
    # recipe): a search with more folds or a widened space then says whether it picks the old recipe again
    from_record: bool = False


def tune_space_path(task: str, space_dir: str | None = None) -> Path:
    """``<space_dir>/<task>.yaml`` when the task has its own space, else ``<space_dir>/default.yaml``."""
    from lightning_implicit import confpath

    if space_dir:
        own = Path(space_dir) / f"{task}.yaml"
        return own if own.exists() else Path(space_dir) / "default.yaml"
    return confpath.find("tune", task, required=False) or confpath.find("tune", "default")


def _unread(name: str, params: dict, space) -> bool:
    """True for a drawn value the trial's recipe never reads: the exponential schedule's factor ``lr_gamma``
    under the ``none`` or ``cosine`` schedule (see :class:`lightning_implicit.modules.optim.OptimConfig`)."""
    if not (space.params[name].key or "").endswith("optim.lr_gamma"):
        return False
    keys = {n: s.key or "" for n, s in space.params.items()}
    schedule = next(
        (params[n] for n, k in keys.items() if k.endswith("optim.lr_schedule") and n in params), None
    )
    return schedule not in (None, "exponential")


def best_so_far(values: list[float | None]) -> list[float | None]:
    """The running minimum of a study's trial values in trial-number order: a ``None`` or NaN value (a trial that
    did not complete) leaves it as it was, and it is ``None`` until the first value. The tuned record's
    ``provenance.best_so_far`` and the reproduction report's tuning table both read it."""
    out, best = [], None
    for v in values:
        if v is not None and not math.isnan(v) and (best is None or v < best):
            best = float(v)
        out.append(best)
    return out


def trial_values(trials) -> list[float | None]:
    """Each trial's value in trial-number order, ``None`` for one that did not complete."""
    return [t.value if t.state.name == "COMPLETE" else None for t in sorted(trials, key=lambda t: t.number)]


def _bound_hits(params: dict, space) -> list[tuple[str, bool]]:
    """The best trial's numeric parameters within 5% (of the range, on its scale) of a bound or beyond it, each
    as (what, whether that bound is marked ``limit`` in the space); a value the trial's recipe does not read
    (``lr_gamma`` without the exponential schedule) is no hit."""
    out = []
    for name, value in params.items():
        spec = space.params.get(name)
        if (
            spec is None
            or spec.type == "categorical"
            or spec.low == spec.high
            or _unread(name, params, space)
        ):
            continue
        lo, hi, v = float(spec.low), float(spec.high), float(value)
        pos = (
            (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo)) if spec.log else (v - lo) / (hi - lo)
        )
        if pos < 0 or pos > 1:  # the enqueued recipe trial may lie outside (see .default_trial)
            side = "below its lower" if pos < 0 else "above its upper"
            out.append(
                (
                    f"{name}={value:g} {side} bound {spec.low if pos < 0 else spec.high:g} (the recipe's value)",
                    False,
                )
            )
        elif pos <= 0.05:
            out.append((f"{name}={value:g} at its lower bound {spec.low:g}", spec.limit == "low"))
        elif pos >= 0.95:
            out.append((f"{name}={value:g} at its upper bound {spec.high:g}", spec.limit == "high"))
    return out


def space_bounds(params: dict, space) -> tuple[list[str], list[str]]:
    """The best trial's values at a bound, split into edges a wider search could pass (:func:`space_edges`) and
    values at a bound the space marks ``limit`` (:func:`space_limits`); one pass over the parameters."""
    hits = _bound_hits(params, space)
    return (
        [what for what, limit in hits if not limit],
        [f"{what} (the model's limit)" for what, limit in hits if limit],
    )


def space_edges(params: dict, space) -> list[str]:
    """Numeric parameters of the best trial within 5% (of the range, on its scale) of a bound that a wider search
    could pass; a value the trial's recipe does not read (``lr_gamma`` without the exponential schedule) is no
    edge, and a bound marked ``limit`` is :func:`space_limits`'."""
    return space_bounds(params, space)[0]


def space_limits(params: dict, space) -> list[str]:
    """Numeric parameters of the best trial at a bound the space marks ``limit`` (``kappa`` at 0.99: kappa < 1
    is the model's well-posedness condition), where no wider search exists."""
    return space_bounds(params, space)[1]


def portable_storage(url: str, root: str | Path | None = None) -> str:
    """A storage URL as a committed file records it: a sqlite file below ``root`` (default: the current
    directory, the repo's root for ``make tune``) relative to it, one elsewhere by its file name alone; so no
    tuned config holds a path of the machine it was made on. Other URLs as they are (passwords masked before)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix + "/"):
        return url
    path = Path(url[len(prefix) :]).resolve()
    try:
        return prefix + path.relative_to(Path(root or Path.cwd()).resolve()).as_posix()
    except ValueError:
        return f"{prefix}<elsewhere>/{path.name}"


def _spent(study) -> int:
    """Trials that used budget: finished, pruned, or failed for a reason other than an interruption."""
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            n += 1
        elif t.state == TrialState.FAIL and t.user_attrs.get("fail_reason") != "interrupted":
            n += 1
    return n


def _load_study(name: str, storage_url: str):
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage_url)
    except KeyError:
        return None


def _default_record(trials, best) -> dict | None:
    """The enqueued trial of the configuration's own recipe: its number, how much of the recipe it carried, its
    state and CV score, and whether the search beat it (``None`` for a study without one)."""
    from .default_trial import DEFAULT_ATTR, default_trial

    t = default_trial(trials)
    if t is None:
        return None
    return {
        "trial": t.number,
        "what": t.user_attrs[DEFAULT_ATTR],
        "state": t.state.name.lower(),
        "cv_score": float(t.value) if t.value is not None else None,
        "beaten": best.number != t.number,
    }


def _previous(task: str, model: str) -> dict[str, Any] | None:
    """``tune --from-record``: the installed tuned record of ``(task, model)`` as the driver's ``previous`` (its
    best values and its provenance in brief), or ``None`` when there is none or it kept no best values."""
    from lightning_implicit.tuned import find_tuned

    cfg = find_tuned(task, model)
    prov = cfg.provenance if cfg is not None else {}
    if not prov.get("best_params"):
        return None
    record = {
        "study": prov.get("study"),
        "cv_folds": prov.get("cv_folds"),
        "cv_score": (prov.get("cv_score") or {}).get("mean"),
        "trials": sum((prov.get("trials") or {}).values()),
        "date": prov.get("date"),
        "git_commit": prov.get("git_commit"),
    }
    return {"params": dict(prov["best_params"]), "record": record}


def _previous_record(trials, best) -> dict | None:
    """The trial at the previous record's best values (``tune --from-record``): that record in brief, the trial's
    state and CV score on this study's folds, and whether this search picked another recipe."""
    from .default_trial import PREVIOUS_ATTR, marked_trial

    t = marked_trial(trials, PREVIOUS_ATTR)
    if t is None:
        return None
    old = t.user_attrs[PREVIOUS_ATTR]
    return {
        "trial": t.number,
        # (the studies of 2026-12-08 also stored the console's label, "what": derivable, so not kept)
        "record": {k: v for k, v in old.items() if k != "what"},
        "state": t.state.name.lower(),
        "cv_score": float(t.value) if t.value is not None else None,
        "beaten": best.number != t.number,
    }


def _write_tuned(
    opts: TuneOptions, plan: TunePlan, task: str, model: str, study, space, storage_url: str, commit: str
) -> Path | None:
    """Write the best trial of ``study`` (``space``: the task's :class:`~.space.SearchSpace`) as a tuned config."""
    from optuna.trial import TrialState

    from lightning_implicit.confpath import builtin_root
    from lightning_implicit.tuned import TunedConfig, tuned_path

    from .storage import mask_url

    try:
        best = study.best_trial
    except ValueError:
        return None
    ms = space.space(model)
    edges, limits = space_bounds(best.params, ms)
    overrides = {
        **ms.fixed,
        **ms.overrides(best.params),
    }  # the space's fixed settings (max_epochs -1), the best trial's
    folds = list(best.user_attrs.get("fold_values") or [best.value])
    trials = study.get_trials(deepcopy=False)
    counts = {
        s.name.lower(): sum(t.state == s for t in trials)
        for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    provenance = {
        "study": study.study_name,
        "storage": portable_storage(mask_url(storage_url)),
        "objective": f"val/loss, mean over {opts.cv} folds of the in-distribution data (the shift sweep never "
        "enters it)"
        if opts.cv > 1
        else "val/loss on one held-out fold of the in-distribution data",
        "trials": counts,
        "best_trial": best.number,
        "cv_folds": opts.cv,
        "cv_score": {
            "mean": float(statistics.fmean(folds)),
            "sd": float(statistics.stdev(folds)) if len(folds) > 1 else 0.0,
            "folds": [float(v) for v in folds],
        },
        "budget": f"{opts.trials} trials per (task, model) of this command (the report checks that the families "
        f"compared match); {plan.name}'s data sizes; space {space.path.name} (sha256 {space.sha256})",
        "space_edges": edges,
        **({"space_limits": limits} if limits else {}),
        # the running minimum of the CV loss in trial order (None before the first completed trial): whether the
        # search had stopped improving, readable without the study's storage (the reproduction report plots it)
        "best_so_far": best_so_far(trial_values(trials)),
        "default_recipe": _default_record(trials, best),
        **({"previous_record": prev} if (prev := _previous_record(trials, best)) else {}),
        "best_params": {k: (float(v) if isinstance(v, float) else v) for k, v in best.params.items()},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": commit,
        "command": f"{plan.command} "
        + shlex.join(
            [
                "--task",
                task,
                "--model",
                model,
                "--trials",
                str(opts.trials),
                "--cv",
                str(opts.cv),
                *(["--from-record"] if opts.from_record else []),
            ]
        ),
    }
    root = Path(opts.out) if opts.out else None
    path = tuned_path(task, model, root)
    checkout = builtin_root().parent / "pyproject.toml"
    if not path.parent.exists() and path.is_relative_to(builtin_root()) and checkout.exists():
        # (a source checkout: conf/'s folders ship as packages listed by name; tests/test_layout.py checks it)
        print(
            f"note: new folder {path.parent}: add 'lightning_implicit.conf.tuned.{task}' to the packages in "
            "pyproject.toml so that it is installed",
            flush=True,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = TunedConfig(task=task, model=model, overrides=overrides, provenance=provenance)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(cfg.to_yaml())
    tmp.replace(path)  # never a half-written file
    return path


def run_tune(opts: TuneOptions, plan: TunePlan, *, say=print) -> int:
    """Tune the plan's (task, model) pairs; returns the exit code (0; 1 if a study ended with no complete
    trial; 130 after Ctrl-C)."""
    from lightning_implicit.tracking import git_commit

    from .driver import SweepOptions, run_sweep
    from .space import SearchSpaceError, load_search_space
    from .storage import resolve_storage_url

    if opts.trials < 1 or opts.cv < 1 or opts.workers < 1:
        raise SearchSpaceError("--trials, --cv and --workers must be >= 1")
    tasks = opts.tasks or list(plan.recipes)
    unknown = [t for t in tasks if t not in plan.recipes]
    if unknown:
        raise SearchSpaceError(f"task(s) {unknown} are not in {plan.name!r} ({sorted(plan.recipes)})")
    storage_url = resolve_storage_url(opts.storage)
    commit = git_commit()
    pairs = [(t, m) for t in tasks for m in plan.recipes[t] if not opts.models or m in opts.models]
    if not pairs:
        raise SearchSpaceError(f"no (task, model) of {plan.name!r} matches --model {opts.models}")
    spaces = {t: load_search_space(tune_space_path(t, opts.space_dir), task=t, full=True) for t in tasks}
    say(
        f"tune {plan.name}: {len(pairs)} (task, model) pairs, {opts.trials} trials each, {opts.cv}-fold CV on "
        f"in-distribution data; storage {redact(storage_url)}"
    )
    status = 0
    for task, model in pairs:
        space = spaces[task]
        study_name = f"tune-{plan.name}-{task}-{model}"
        study = _load_study(study_name, storage_url)
        done = _spent(study) if study is not None else 0
        missing = max(0, opts.trials - done)
        say(f"[{task}/{model}] study {study_name}: {done} trial(s) done, {missing} to run")
        if opts.dry_run:
            continue
        previous = None
        if opts.from_record and missing:
            previous = _previous(task, model)
            if previous is None:
                say(
                    f"[{task}/{model}] --from-record: no tuned record with best values; the study starts from the recipe"
                )
        if missing:
            searched = {s.key for s in space.space(model).params.values() if s.key}
            # the plan's settings of a searched key, or of one the space fixes (its max_epochs -1: training
            # length is counted in steps), are the first trial's recipe; the others are the profile layer of
            # every trial's run (RunSpec layers, below the space's and the trial's values and the user's flags)
            ruled = searched | set(space.space(model).fixed)
            own = plan.recipes[task][model]
            sweep = SweepOptions(
                task=task,
                models=[model],
                trials=missing,
                workers=opts.workers,
                cv=opts.cv,
                study=study_name,
                seed=opts.seed,
                full=True,
                trainer=plan.trainer,
                search_file=str(space.path),
                storage=opts.storage,
                tracking_uri=opts.tracking_uri,
                experiment=f"tune-{task}",
                tracking=opts.tracking,
                retrain=False,
                timeout=opts.timeout,
                verbose=opts.verbose,
                overrides=list(opts.extra),
                profile={k: v for k, v in own.items() if k not in ruled},
                start_from_default=True,
                recipe={k: v for k, v in own.items() if k in ruled},
                previous=previous,
            )
            code = run_sweep(
                sweep, command=f"{plan.command} " + shlex.join(["--task", task, "--model", model])
            )
            if code > 128:  # a signal stopped it (128 + its number: 130 Ctrl-C, 143 SIGTERM)
                say(f"[{task}/{model}] interrupted: run the same command again to resume")
                return code
            status = status or code
            study = _load_study(study_name, storage_url)
        path = (
            _write_tuned(opts, plan, task, model, study, space, storage_url, commit)
            if study is not None
            else None
        )
        if path is None:
            say(f"[{task}/{model}] no complete trial: no tuned config written")
            status = 1
        else:
            say(f"[{task}/{model}] wrote {path}")
    return status
