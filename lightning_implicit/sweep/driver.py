"""Run a sweep: validate the search space, open (or resume) the study, run trials in one or K processes,
recover dead workers' trials, retrain the best config with the shift sweep, log the summary, print it.

``--trials N`` means *N more trials in this invocation* (per model), whatever the study already holds: running
the same command again resumes the study (same name and storage) and adds N trials.

``--workers K`` (K > 1) starts K worker processes once, for the whole sweep (:class:`~lightning_implicit.jobs.WorkerPool`,
forked from this process once its imports and data checks are done, before any store is opened): every model's
trials are handed out one at a time to whichever worker is free, and a model's best config is retrained by a worker as soon as its last
trial is back, while the next model's trials run. A worker that dies fails only its own trial (retried per
``--max-retry``); a fresh worker takes its place and the quota is made up, or the sweep exits 1 saying how many
trials are missing. SIGTERM or Ctrl-C: said with the signal's name, forwarded to the workers, whose trials end
FAIL 'interrupted' at their next batch end; the sweep exits 128 + the signal's number with nothing RUNNING.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import itertools
import logging
import os
import re
import shlex
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from lightning_implicit.confpath import name_of
from lightning_implicit.jobs import WorkerPool, worker_slot
from lightning_implicit.lifecycle import DeferredSignals, signal_name
from lightning_implicit.run.spec import QUIET_TRAINER, RunSpec, flag_args

from .default_trial import (
    DEFAULT_ATTR,
    PREVIOUS_ATTR,
    default_point,
    has_default,
    has_marked,
    in_space,
    record_brief,
)
from .interrupt import InterruptAtBatchEnd
from .objective import Objective, TrialContext, format_params
from .records import SweepRecorder
from .space import (
    SearchSpace,
    SearchSpaceError,
    check_cli_keys,
    load_search_space,
    parse_config,
    search_file_path,
)
from .storage import claim_retrain, mask_url, open_storage, recover_stale_trials, resolve_storage_url

__all__ = [
    "SweepOptions",
    "ModelOutcome",
    "run_sweep",
    "run_command",
    "study_name_for",
]


# imported once by the forkserver that starts replacements of dead workers (lightning_implicit.jobs): a replacement
# starts with them loaded instead of paying their seconds of import (the first workers are forks of the sweep)
WORKER_PRELOAD = ("torch", "lightning", "mlflow", "optuna", "lightning_implicit.runner", __name__)


class SweepAbort(RuntimeError):
    """The sweep cannot go on (e.g. every trial fails with the same configuration error)."""


@dataclass
class SweepOptions:
    """What ``lightning-implicit sweep`` was asked to do (see :mod:`lightning_implicit.sweep.cli`)."""

    task: str
    models: list[str] | None = None
    trials: int = 20
    workers: int = 1
    cv: int = 1
    study: str | None = None
    data: str | None = None
    interval: str | None = None
    epochs: int | None = None
    n_train: int | None = None
    n_test: int | None = None
    seed: int = 0
    full: bool = False
    trainer: str = "cpu"
    search_file: str | None = None
    storage: str | None = None
    tracking_uri: str | None = None
    experiment: str | None = None
    tracking: bool = True
    retrain: bool = True
    heartbeat: int = 10
    grace: int = 30
    max_retry: int = 1
    min_converged: float = 0.5
    timeout: float | None = None
    threads: int = 1
    verbose: bool = False
    overrides: list[str] = field(default_factory=list)  # the user's own flags: they win, and are not searched
    # the ``profile`` layer of every trial's run (:class:`~lightning_implicit.run.spec.RunSpec`): a reproduction
    # profile's settings of keys the space neither searches nor fixes (``tune`` hands them over)
    profile: dict[str, Any] = field(default_factory=dict)
    # start each new study from the configuration's own recipe (:mod:`.default_trial`); ``recipe``: the ``profile``
    # layer of that first trial's run, the profile's settings of keys the space searches or fixes (its learning
    # rate, say)
    start_from_default: bool = False
    recipe: dict[str, Any] = field(default_factory=dict)
    # ``tune --from-record``: a previous tuned record's best values (``params``) and its provenance in brief
    # (``record``), enqueued once per study after the recipe, so that a new search (more folds, a widened space)
    # measures the old choice on its own folds (the trial's user attribute .default_trial.PREVIOUS_ATTR)
    previous: dict[str, Any] | None = None
    worker_index: int | None = None  # internal: set in worker i of a parallel sweep (its sampler seed offset)


@dataclass
class ModelOutcome:
    model: str
    study_name: str
    counts: dict[str, int]
    ran: int
    best_number: int | None = None
    best_value: float | None = None
    best_params: dict = field(default_factory=dict)
    best_overrides: list[str] = field(default_factory=list)
    best_rows: list[dict] | None = None
    metric: str | None = None
    parent_run_id: str | None = None
    retrain_run_id: str | None = None
    reproduce: str | None = None
    notes: list[str] = field(default_factory=list)


def study_name_for(opts: SweepOptions, model: str, n_models: int) -> str:
    """``--study S``: ``S`` (one model) or ``S-<model>``; default ``<task>-<model>``."""
    if opts.study:
        return opts.study if n_models == 1 else f"{opts.study}-{model}"
    return f"{name_of(opts.task)}-{model}"


def _quiet(verbose: bool):
    """Quiet Lightning/Optuna/MLflow for the sweep's one-line-per-trial output; returns an undo function
    (for the logging levels; call inside ``warnings.catch_warnings()`` for the warning filters)."""
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    from lightning_implicit.implicit.stats import ConvergenceWarning

    names = ("lightning.pytorch", "lightning.fabric", "lightning", "mlflow", "alembic")
    levels = {n: logging.getLogger(n).level for n in names}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.ERROR)
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
    # the enqueued recipe may lie outside a searched range on purpose (said when it is enqueued, see .default_trial)
    warnings.filterwarnings("ignore", message="Fixed parameter .* is out of range")
    if not verbose:
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        warnings.filterwarnings("ignore", category=PossibleUserWarning)

    def undo() -> None:
        optuna.logging.set_verbosity(verbosity)
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)

    return undo


def _keys_of(overrides: list[str]) -> set[str]:
    return {a[2:].split("=", 1)[0] for a in overrides if a.startswith("--")}


def _pinned(opts: SweepOptions) -> list[str]:
    out = []
    if opts.epochs is not None:
        out += ["--trainer.max_epochs", str(opts.epochs)]
    if opts.n_train is not None:
        out += ["--data.init_args.n_train", str(opts.n_train)]
    if opts.n_test is not None:
        out += ["--data.init_args.n_test", str(opts.n_test)]
    return out + list(opts.overrides)


def _base_spec(opts: SweepOptions, model: str) -> RunSpec:
    """A trial's run before the search space: the config files, the quiet defaults, the data file."""
    run = {"data.init_args.data": opts.data, "data.init_args.interval": opts.interval}
    spec = RunSpec(opts.task, model, opts.seed, opts.trainer).with_layer("defaults", QUIET_TRAINER)
    return spec.with_layer("profile", opts.profile).with_layer("run", {k: v for k, v in run.items() if v})


def _args(spec: RunSpec) -> list[str]:
    return spec.to_args()  # (an unknown task or model config: a ConfigError, one line and exit 2 at the CLI)


def _contexts(opts: SweepOptions, space: SearchSpace, models: list[str], say) -> dict[str, TrialContext]:
    """Validate every model's space against its CLI parser before anything runs."""
    pinned = _pinned(opts)
    out = {}
    for m in models:
        ms = copy.deepcopy(space.space(m))
        dropped = ms.without_keys(_keys_of(pinned))
        if dropped:
            say(f"[{m}] not searched (pinned on the command line): {', '.join(dropped)}")
        base = _base_spec(opts, m)
        check_cli_keys(ms, _args(base), path=space.path, task=opts.task, pinned=pinned)
        spec = base.with_layer("space", ms.fixed)
        out[m] = TrialContext(
            task=opts.task,
            model=m,
            study_name=study_name_for(opts, m, len(models)),
            space=ms,
            spec=spec,
            pinned=pinned,
            cv=opts.cv,
            min_converged=opts.min_converged,
            search_hash=space.sha256,
        )
    return out


def _check_space(study: optuna.Study, space: SearchSpace, ctx: TrialContext) -> None:
    """Refuse a resumed study whose earlier trials drew a parameter from a distribution the current space cannot
    share (categorical choices changed, float turned int): every new trial would fail in Optuna's storage."""
    from optuna.distributions import check_distribution_compatibility

    seen: dict = {}
    for t in study.get_trials(deepcopy=False):
        for name, dist in t.distributions.items():
            seen.setdefault(name, dist)
    bad = []
    for name, spec in ctx.space.params.items():
        if name in seen:
            try:
                check_distribution_compatibility(seen[name], spec.distribution())
            except ValueError:
                bad.append(f"{name}: study has {seen[name]}, the space now {spec.distribution()}")
    if bad:
        raise SearchSpaceError(
            f"study {ctx.study_name!r} was searched over a different space than {space.path} now gives "
            f"({'; '.join(bad)}); restore the space, or start a new study (--study NAME; make tune: delete the "
            "old study from the storage first)"
        )


def _enqueue_default(study: optuna.Study, opts: SweepOptions, ctx: TrialContext, say) -> None:
    """Enqueue the model's own recipe as the study's next trial, once per study (:mod:`.default_trial`)."""
    from lightning_implicit.runner import load_data

    if has_default(study.get_trials(deepcopy=False)):
        return
    spec = _base_spec(opts, ctx.model).with_layer("profile", opts.recipe)
    args = _args(spec.with_layer("run", ctx.fold_overrides(0))) + ctx.pinned
    point = default_point(ctx.space, parse_config(args), load_data(args).steps_per_epoch())
    study.enqueue_trial(point.params, user_attrs={DEFAULT_ATTR: point.label})
    say(f"[{ctx.model}] next trial: {point.label}: {format_params(point.params)}")
    for name, why in point.beyond.items():
        say(f"[{ctx.model}]   {name} enqueued outside the searched range: {why}")
    for name, why in point.outside.items():
        say(f"[{ctx.model}]   {name} left to the sampler: {why}")


def _enqueue_previous(study: optuna.Study, previous: dict[str, Any], ctx: TrialContext, say) -> None:
    """Enqueue a previous record's best values (``previous["params"]``) once per study, marked with its provenance
    (``previous["record"]``); a value the space no longer offers is left to the sampler, and said."""
    if has_marked(study.get_trials(deepcopy=False), PREVIOUS_ATTR):
        return
    specs = ctx.space.params
    params = {k: v for k, v in previous["params"].items() if k in specs and in_space(specs[k], v)}
    study.enqueue_trial(params, user_attrs={PREVIOUS_ATTR: previous["record"]})
    brief = record_brief(previous["record"])
    say(f"[{ctx.model}] next trial: the previous record's best ({brief}): {format_params(params)}")
    for name in sorted(set(previous["params"]) - set(params)):
        why = "not searched now" if name not in specs else "outside the space now"
        say(f"[{ctx.model}]   {name}={previous['params'][name]!r} left to the sampler: {why}")


def _all_failed(study: optuna.Study) -> str | None:
    """The first failure reason when the study has failed trials and none that completed or was pruned."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials):
        return None
    failed = [t for t in trials if t.state == TrialState.FAIL]
    return (failed[0].user_attrs.get("fail_reason") or "failed") if failed else None


def _sampler(space: SearchSpace, opts: SweepOptions, n_existing: int) -> optuna.samplers.TPESampler:
    kw = dict(space.sampler)
    if opts.workers > 1 or opts.worker_index is not None:
        kw.setdefault("constant_liar", True)
    # offset by the trials already in the study (a resumed sweep does not replay the first random draws)
    # and by the worker index (parallel workers do not draw the same startup configs)
    seed = opts.seed + n_existing + 7919 * (opts.worker_index or 0)
    return optuna.samplers.TPESampler(seed=seed, **kw)


def _pruner(space: SearchSpace) -> optuna.pruners.BasePruner:
    kw = dict(space.pruner)
    kind = kw.pop("type", "median")
    if kind == "nop":
        return optuna.pruners.NopPruner()
    if kind == "percentile":
        return optuna.pruners.PercentilePruner(**kw)
    return optuna.pruners.MedianPruner(**kw)


class _TrialPrinter:
    """One line per finished trial (also from worker processes), and an error-streak guard."""

    def __init__(self, label: str, quota: int, streak: int = 3) -> None:
        self.label, self.quota, self.done, self.streak = label, quota, 0, streak
        self.errors: list[str] = []
        self.last: optuna.trial.FrozenTrial | None = None

    def __call__(self, study: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
        self.done += 1
        self.last = t
        dur = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else 0.0
        )
        head = f"[{self.label}] {self.done}/{self.quota} trial #{t.number:<3d} {t.state.name:<8s}"
        if t.state == TrialState.COMPLETE:
            msg = f"val/loss={t.value:.5g}"
            try:
                if study.best_trial.number == t.number:
                    msg += " (best so far)"
            except ValueError:
                pass
        elif t.state == TrialState.PRUNED:
            step = t.user_attrs.get("pruned_step")
            msg = (
                f"at step {step}: {t.user_attrs.get('prune_reason', '')}"
                if step is not None
                else t.user_attrs.get("prune_reason", "")
            )
        else:
            msg = t.user_attrs.get("fail_reason", "failed")
        params = format_params(t.params)
        print(f"{head} {msg}  ({dur:.1f}s)  {params}", flush=True)
        self.count(t.user_attrs.get("fail_reason", "") if t.state == TrialState.FAIL else "")

    def count(self, reason: str) -> None:
        """The error streak: :class:`SweepAbort` after ``streak`` trials in a row failed with the same error."""
        self.errors = (
            [*self.errors, reason][-self.streak :] if reason and not reason.startswith("non-finite") else []
        )
        if len(self.errors) == self.streak and len(set(self.errors)) == 1:
            raise SweepAbort(f"{self.streak} trials in a row failed with the same error: {reason}")


def _open_study(
    opts: SweepOptions, space: SearchSpace, ctx: TrialContext, storage, *, create: bool
) -> optuna.Study:
    if not create:
        study = optuna.load_study(
            study_name=ctx.study_name,
            storage=storage,
            pruner=_pruner(space),
            sampler=optuna.samplers.RandomSampler(),
        )
    else:
        study = optuna.create_study(
            storage=storage,
            study_name=ctx.study_name,
            direction="minimize",
            load_if_exists=True,
            pruner=_pruner(space),
        )
    n = len(study.get_trials(deepcopy=False))
    study.sampler = _sampler(space, opts, n)
    return study


def _check_signature(
    study: optuna.Study, opts: SweepOptions, space: SearchSpace, ctx: TrialContext, say
) -> None:
    """The objective's definition may not change under a resumed study (values would not be comparable)."""
    sig = {"task": opts.task, "model": ctx.model, "cv": opts.cv, "budget": space.budget}
    old = {k: study.user_attrs.get(f"sweep.{k}") for k in sig}
    if all(v is None for v in old.values()):
        for k, v in sig.items():
            study.set_user_attr(f"sweep.{k}", v)
        study.set_user_attr(
            "sweep.objective", "val/loss" + (f" (mean over {opts.cv} folds)" if opts.cv > 1 else "")
        )
        study.set_user_attr("sweep.settings", ctx.settings)
        return
    bad = {k: (old[k], v) for k, v in sig.items() if old[k] is not None and old[k] != v}
    if bad:
        what = ", ".join(f"{k}: study has {a!r}, now {b!r}" for k, (a, b) in bad.items())
        raise SearchSpaceError(
            f"study {ctx.study_name!r} was created with a different objective ({what}); resume it with the same "
            "settings or start a new study with --study NAME"
        )
    settings = ctx.settings
    old_settings = study.user_attrs.get("sweep.settings")
    if old_settings is not None and _setting_pairs(old_settings) != _setting_pairs(settings):
        say(
            f"[{ctx.model}] note: the fixed settings differ from when study {ctx.study_name!r} was created; "
            "its earlier values may not be comparable"
        )


def _setting_pairs(settings: str) -> dict[str, str]:
    """A study's recorded settings (``--key value`` flags joined by spaces) as ``{key: value}``: two records that
    differ only in the order of their flags (a layer of the run moved, e.g. a profile's settings) compare
    equal."""
    out: dict[str, str] = {}
    for part in re.split(r"(?:^| )--(?=[A-Za-z_])", settings):
        if part:
            key, _, value = part.partition(" ")
            out.pop(key, None)
            out[key] = value
    return out


def _run_quota(
    study: optuna.Study,
    storage,
    ctx: TrialContext,
    opts: SweepOptions,
    quota: int,
    label: str,
    on_failed,
    *,
    printer: _TrialPrinter | None = None,
    signals: DeferredSignals | None = None,
) -> int:
    """Run ``quota`` trials in this process; returns how many ran. SIGTERM and Ctrl-C are taken at the next batch
    end or between trials (``signals``, or a :class:`~lightning_implicit.lifecycle.DeferredSignals` of its own),
    never inside a database write."""
    printer = printer or _TrialPrinter(label, quota)
    t0 = time.monotonic()
    ran = 0
    with contextlib.nullcontext(signals) if signals is not None else DeferredSignals() as interrupt:
        objective = Objective(ctx, interrupt, say=functools.partial(print, flush=True), label=label)
        while ran < quota:
            interrupt.check()
            if opts.timeout is not None and time.monotonic() - t0 >= opts.timeout:
                print(f"[{label}] --timeout {opts.timeout:g}s reached after {ran} trials", flush=True)
                break
            recover_stale_trials(study, storage, max_retry=opts.max_retry, on_failed=on_failed)
            study.optimize(
                objective, n_trials=1, catch=(Exception,), callbacks=[printer], gc_after_trial=False
            )
            ran += 1
        interrupt.check()
    return ran


def _on_failed(recorder: SweepRecorder | None):
    def cb(trial: optuna.trial.FrozenTrial, reason: str) -> None:
        run_id = trial.user_attrs.get("mlflow_run_id")
        if recorder is not None and run_id:
            recorder.fail_tree(run_id, reason)

    return cb


def run_command(opts: SweepOptions, command: str) -> int:
    """:func:`run_sweep` as a command: its exit code, 2 after a configuration error (said on one line)."""
    try:
        return run_sweep(opts, command=mask_url(command))
    except SearchSpaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _retrain(ctx: TrialContext, study: optuna.Study, out: ModelOutcome, say, callbacks=None) -> None:
    from lightning_implicit.runner import run_training

    best = study.best_trial
    over = best.user_attrs.get("cli_overrides")
    if over is None:
        over = ctx.param_args(best.params)
    holder = claim_retrain(study, best.number)  # one retraining per best trial, whichever sweep gets there
    if holder is not None:
        say(f"[{ctx.model}] the best config (trial #{best.number}) is retrained by another sweep ({holder})")
        out.notes.append(
            f"best config (trial #{best.number}) retrained by another sweep of the study ({holder})"
        )
        return
    tags = {"sweep.role": "best_retrain", "optuna.study": ctx.study_name, "optuna.trial": str(best.number)}
    args = ctx.run_args(over, 0, ctx.parent_run_id, f"best-{ctx.model}-t{best.number:03d}", tags)
    say(f"[{ctx.model}] retraining the best config (trial #{best.number}) with the shift sweep ...")
    result = run_training(args, test=True, extra_callbacks=callbacks)
    out.best_rows = result.sweep
    metrics = list(getattr(result.module.task, "metrics", ()))
    row = result.sweep[0] if result.sweep else {}
    out.metric = next(
        (m for m in ["mape", *metrics] if m in row), next((k for k in row if k not in ("shift", "n")), None)
    )
    out.retrain_run_id = result.run_id
    if ctx.recorder is not None and ctx.parent_run_id and result.run_id:
        ctx.recorder.client.set_tag(ctx.parent_run_id, "best_retrain_run_id", result.run_id)


def _reproduce(opts: SweepOptions, ctx: TrialContext, overrides: list[str]) -> str:
    """The ``lightning-implicit train`` command that trains the best config (with the shift sweep)."""
    fixed = flag_args(opts.profile | ctx.space.fixed)
    cmd = ["lightning-implicit", "train", "--task", opts.task, "--model", ctx.model, "--seed", str(opts.seed)]
    cmd += ["--trainer", opts.trainer] if opts.trainer != "cpu" else []
    cmd += ["--data", opts.data] if opts.data else []
    cmd += ["--interval", opts.interval] if opts.interval else []
    return shlex.join([*cmd, *fixed, *overrides, *ctx.fold_args(0), *ctx.pinned])


def _outcome(study: optuna.Study, model: str, ran: int, parent: str | None) -> ModelOutcome:
    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    out = ModelOutcome(model=model, study_name=study.study_name, counts=counts, ran=ran, parent_run_id=parent)
    try:
        b = study.best_trial
        out.best_number, out.best_value, out.best_params = b.number, b.value, dict(b.params)
        out.best_overrides = list(b.user_attrs.get("cli_overrides") or [])
    except ValueError:
        pass
    return out


def _signum(err: BaseException) -> int:
    """The signal behind a ``KeyboardInterrupt`` (:class:`~lightning_implicit.lifecycle.Terminated` carries it;
    a plain one is Ctrl-C)."""
    return getattr(err, "signum", signal.SIGINT)


@dataclass
class _ModelRun:
    """One model's study in this sweep, and (in parallel sweeps) its trials handed out and come back."""

    model: str
    ctx: TrialContext
    study: optuna.Study
    parent: str | None
    n_before: int
    todo: int = 0  # trials still to hand out
    running: int = 0
    ran: int = 0  # trials that came back (any state)
    lost: int = 0  # trials that could not run (a job error, a worker that died past the respawn limit)
    retrain: str = "no"  # "wait" (after the trials), "running", "done", "no"
    retrained: dict | None = None
    printer: _TrialPrinter | None = None  # (its error streak)
    notes: list[str] = field(default_factory=list)


def _open_model(
    opts: SweepOptions,
    space: SearchSpace,
    storage,
    recorder: SweepRecorder | None,
    url: str,
    experiment: str,
    command: str | None,
    studies: dict,
    ctx: TrialContext,
    *,
    say,
) -> _ModelRun:
    """Open (or resume) ``ctx.model``'s study, check it, enqueue its recipe, open its MLflow parent run."""
    m = ctx.model
    study = _open_study(opts, space, ctx, storage, create=True)
    studies[m] = study
    _check_signature(study, opts, space, ctx, say)
    _check_space(study, space, ctx)
    if opts.start_from_default:
        _enqueue_default(study, opts, ctx, say)
    if opts.previous is not None:
        _enqueue_previous(study, opts.previous, ctx, say)
    n_before = len([t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING])
    parent = None
    if recorder is not None:
        parent = recorder.parent_run(
            study,
            {
                "optuna.study": ctx.study_name,
                "optuna.storage": mask_url(url),
                "task": opts.task,
                "model": m,
                "sampler": f"TPESampler(seed={opts.seed}, {', '.join(f'{k}={v}' for k, v in space.sampler.items())})",
                "pruner": f"{type(study.pruner).__name__}({', '.join(f'{k}={v}' for k, v in space.pruner.items() if k != 'type')})",
                "search_file": str(space.path),
                "search_file_hash": space.sha256,
                "budget": space.budget,
                "cv": str(opts.cv),
                "workers": str(opts.workers),
                "command": command or f"lightning-implicit sweep --task {opts.task} --model {m}",
            },
        )
    ctx.recorder, ctx.parent_run_id = recorder, parent
    say(
        f"[{m}] study {ctx.study_name!r}: {n_before} trial(s) so far"
        + (f"; MLflow parent run {parent} (experiment {experiment!r})" if parent else "")
    )
    return _ModelRun(m, ctx, study, parent, n_before)


def _model_outcome(opts: SweepOptions, run: _ModelRun, signum: int | None, say) -> tuple[ModelOutcome, int]:
    """The model's outcome after its trials (and, in parallel sweeps, its retraining); and 1 if it failed."""
    m, study, failed = run.model, run.study, 0
    n_after = len([t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING])
    out = _outcome(study, m, n_after - run.n_before, run.parent)
    out.notes += run.notes
    reason = _all_failed(study) if n_after > run.n_before else None
    if reason is not None and signum is None:
        out.notes.append(f"every trial failed; the first: {reason}")
        say(f"[{m}] error: every trial failed (first reason: {reason})")
        failed = 1
    if run.lost and signum is None:
        msg = (
            f"{run.lost} of {opts.trials} trial(s) missing: they could not run (see the worker errors above)"
        )
        out.notes.append(msg)
        say(f"[{m}] error: {msg}; run the command again to make them up")
        failed = 1
    if out.best_number is not None:
        out.reproduce = _reproduce(opts, run.ctx, out.best_overrides)
    if run.retrained is not None:
        out.best_rows, out.metric = run.retrained["best_rows"], run.retrained["metric"]
        out.retrain_run_id = run.retrained["retrain_run_id"]
    if signum is not None:
        out.notes.append(
            f"interrupted ({signal_name(signum)}): finished trials are kept; a running one is FAIL 'interrupted'"
        )
    return out, failed


# ---- parallel sweeps: persistent workers ----------------------------------------------------------------------
class _SweepWorker:
    """A worker process's sweep state, built once per worker (:class:`~lightning_implicit.jobs.WorkerPool`'s
    initializer): the imports, the search space, the trial contexts and the data are paid here, before the first
    trial; the stores and studies are opened by the first job that needs them (never while the parent creates
    a fresh store's schema)."""

    def __init__(
        self, opts: SweepOptions, space: SearchSpace | None = None, ctxs: dict | None = None
    ) -> None:
        import torch

        from lightning_implicit import confpath
        from lightning_implicit.console import quiet_third_party
        from lightning_implicit.runner import load_data

        quiet_third_party()
        confpath.add_user_modules()
        if opts.threads > 0:
            torch.set_num_threads(opts.threads)
        _quiet(opts.verbose)
        # the worker's number offsets its sampler seed: workers do not draw the same startup configs
        self.opts = dataclasses.replace(opts, worker_index=worker_slot() or 0)
        if (
            space is None or ctxs is None
        ):  # a fresh interpreter (a replacement): its own imports, checks, data
            path = Path(opts.search_file) if opts.search_file else search_file_path(opts.task)
            space = load_search_space(path, task=opts.task, full=opts.full)
            models = opts.models or space.models
            ctxs = _contexts(opts, space, models, lambda msg: None)
            first = ctxs[models[0]]
            load_data(
                [*first.base_args, *first.pinned]
            )  # the model and data modules, and the data, paid once
        self.space, self.ctxs = space, copy.deepcopy(ctxs)
        self.storage = None
        self.recorder: SweepRecorder | None = None
        self.on_failed = None
        self.studies: dict[str, optuna.Study] = {}

    def _open(self, model: str, parent: str | None) -> tuple[TrialContext, optuna.Study]:
        o = self.opts
        if self.storage is None:
            self.recorder = (
                SweepRecorder(o.tracking_uri, o.experiment or name_of(o.task)) if o.tracking else None
            )
            self.on_failed = _on_failed(self.recorder)
            self.storage = open_storage(
                resolve_storage_url(o.storage),
                heartbeat=o.heartbeat,
                grace=o.grace,
                max_retry=o.max_retry,
                on_failed=self.on_failed,
            )
        ctx = self.ctxs[model]
        ctx.recorder, ctx.parent_run_id = self.recorder, parent
        if model not in self.studies:
            self.studies[model] = _open_study(o, self.space, ctx, self.storage, create=False)
        return ctx, self.studies[model]

    def trial(self, signals: DeferredSignals, model: str, parent: str | None, k: int) -> dict:
        """One trial of ``model``'s study (the k-th of the sweep's quota); its number, state and fail reason."""
        ctx, study = self._open(model, parent)
        label = f"{self.opts.task}/{model} w{self.opts.worker_index}"
        printer = _TrialPrinter(label, self.opts.trials, streak=10**9)
        printer.done = k - 1
        try:
            _run_quota(
                study,
                self.storage,
                ctx,
                self.opts,
                1,
                label,
                self.on_failed,
                printer=printer,
                signals=signals,
            )
        except KeyboardInterrupt:
            recover_stale_trials(
                study,
                self.storage,
                only_pid=os.getpid(),
                reason_dead="interrupted",
                retry=False,
                on_failed=self.on_failed,
            )
            raise
        t = printer.last
        if t is None:
            return {}
        reason = t.user_attrs.get("fail_reason", "") if t.state == TrialState.FAIL else ""
        return {"number": t.number, "state": t.state.name, "reason": reason}

    def retrain(self, signals: DeferredSignals, model: str, parent: str | None) -> dict:
        """The best config of ``model``'s study retrained with the shift sweep."""
        ctx, study = self._open(model, parent)
        out = ModelOutcome(model=model, study_name=ctx.study_name, counts={}, ran=0)
        signals.check()
        _retrain(ctx, study, out, functools.partial(print, flush=True), [InterruptAtBatchEnd(signals)])
        rows = [
            {k: v.item() if hasattr(v, "item") else v for k, v in row.items()} for row in out.best_rows or []
        ]
        return {"best_rows": rows or None, "metric": out.metric, "retrain_run_id": out.retrain_run_id}


def _sweep_job(worker: _SweepWorker, job: tuple) -> dict:
    """A job of a parallel sweep, in a worker: ``("trial", model, parent run, k)`` or ``("retrain", model, parent
    run)``."""
    kind, *args = job
    # the parent forwards SIGTERM to stop the sweep: taken at the next batch end, never inside a database write
    with DeferredSignals(announce=False) as signals:
        return worker.trial(signals, *args) if kind == "trial" else worker.retrain(signals, *args)


def _run_parallel(
    opts: SweepOptions,
    runs: list[_ModelRun],
    pool: WorkerPool,
    storage,
    on_failed,
    signals: DeferredSignals,
    say,
) -> tuple[int | None, int]:
    """Hand every model's trials, then its retraining, to the pool's workers as they come free (the next model's
    trials start while the last ones of the previous model run: no idle gap between phases). A worker that dies
    fails its own trial (retried per ``--max-retry``); a fresh worker takes its place and the quota is made up.
    Returns the signal that stopped the sweep (``None``) and the status (1: a model stopped on an error streak)."""
    return _Scheduler(opts, runs, pool, storage, on_failed, signals, say).run()


class _Scheduler:
    """A parallel sweep's jobs: handed out to the pool's free workers, their results booked on the models' runs,
    dead workers' trials recovered, and the workers stopped on SIGTERM / Ctrl-C."""

    def __init__(
        self,
        opts: SweepOptions,
        runs: list[_ModelRun],
        pool: WorkerPool,
        storage,
        on_failed,
        signals: DeferredSignals,
        say,
    ) -> None:
        self.opts, self.runs, self.pool, self.storage = opts, runs, pool, storage
        self.on_failed, self.signals, self.say = on_failed, signals, say
        self.status = 0
        self.t0 = time.monotonic()
        self.jobs: dict[int, tuple[str, _ModelRun]] = {}
        self.keys = itertools.count()
        for r in runs:
            r.todo = opts.trials
            r.retrain = "wait" if opts.retrain else "no"
            r.printer = _TrialPrinter(r.model, opts.trials)

    def run(self) -> tuple[int | None, int]:
        """Until every job is back: the signal that stopped the sweep (``None``) and the status."""
        try:
            while True:
                self.signals.check()
                self._check_timeout()
                self._hand_out()
                if not self.jobs:
                    break
                for res in self.pool.wait(0.25):
                    self._came_back(res)
                if not self.pool.alive:  # every worker died past the respawn limit, or none could start
                    self._no_worker_left()
        except KeyboardInterrupt as err:
            signum = _signum(err)
            self._stop(signum)
            return signum, self.status
        return None, self.status

    # ---- handing out ------------------------------------------------------------------------------------------
    def _check_timeout(self) -> None:
        opts = self.opts
        if (
            opts.timeout is not None
            and time.monotonic() - self.t0 >= opts.timeout
            and any(r.todo for r in self.runs)
        ):
            self.say(f"--timeout {opts.timeout:g}s reached: no more trials are started")
            for r in self.runs:
                r.todo = 0

    def _hand_out(self) -> None:
        """A job to every idle worker while there are jobs to start."""
        while self.pool.idle:
            job = self._next_job()
            if job is None:
                break
            kind, r = job
            key = next(self.keys)
            self.jobs[key] = job
            k = r.ran + r.running
            self.pool.submit(
                key,
                _sweep_job,
                (kind, r.model, r.parent, k) if kind == "trial" else (kind, r.model, r.parent),
            )

    def _next_job(self) -> tuple[str, _ModelRun] | None:
        for r in self.runs:  # a model whose trials are all back: its retraining first
            if r.retrain == "wait" and r.todo == 0 and r.running == 0:
                if _outcome(r.study, r.model, 0, None).best_number is None:
                    r.retrain = "no"
                    continue
                r.retrain = "running"
                return "retrain", r
        for r in self.runs:
            if r.todo > 0:
                r.todo -= 1
                r.running += 1
                return "trial", r
        return None

    # ---- results ------------------------------------------------------------------------------------------------
    def _came_back(self, res) -> None:
        kind, r = self.jobs.pop(res.index)
        if kind == "retrain":
            self._retrain_back(r, res)
            return
        r.running -= 1
        if res.died:
            self._worker_died(r, res)
        elif res.error is not None:
            if self.signals.pending is None:
                self.say(f"[{r.model}] a trial could not run: {res.error}")
                r.lost += 1
        else:
            self._trial_back(r, res)

    @staticmethod
    def _retrain_back(r: _ModelRun, res) -> None:
        r.retrain = "done"
        if res.error is not None:
            r.notes.append(f"retraining the best config failed: {res.error}")
        else:
            r.retrained = res.value

    def _worker_died(self, r: _ModelRun, res) -> None:
        # its trial is FAIL 'worker died' (pid gone) and re-enqueued; a fresh worker makes up the quota
        recover_stale_trials(r.study, self.storage, max_retry=self.opts.max_retry, on_failed=self.on_failed)
        if self.pool.alive and self.signals.pending is None:
            self.say(f"[{r.model}] {res.error}: its trial is failed and retried; the other workers go on")
            r.todo += 1
        else:
            r.lost += 1

    def _trial_back(self, r: _ModelRun, res) -> None:
        r.ran += 1
        try:
            r.printer.count(res.value.get("reason", ""))
        except SweepAbort as exc:
            self.say(f"[{r.model}] sweep stopped: {exc}")
            r.todo, self.status = 0, 1

    def _no_worker_left(self) -> None:
        why = self.pool.start_error or "the workers kept dying"
        self.say(f"error: no worker left to run the sweep's trials ({why})")
        for r in self.runs:
            r.lost, r.todo = r.lost + r.todo, 0
        self.status = 1

    # ---- stopping -----------------------------------------------------------------------------------------------
    def _stop(self, signum: int) -> None:
        """Stop the workers after ``signum``: what comes back is booked; nothing is left RUNNING."""
        self.say(f"stopping the workers ({len(self.pool.running)} running job(s)) ...")
        for res in self.pool.stop(grace=6.0):
            self._came_back(res)
        self.pool.close(timeout=1.0)
        # the trials of workers that did not stop in time: FAIL 'interrupted', not retried
        for r in self.runs:
            recover_stale_trials(
                r.study, self.storage, reason_dead="interrupted", retry=False, on_failed=self.on_failed
            )
            if r.retrain == "running" and r.ctx.recorder is not None and r.parent:
                r.ctx.recorder.end_running_children(r.parent, f"interrupted ({signal_name(signum)})")


def run_sweep(opts: SweepOptions, *, console=None, command: str | None = None) -> int:
    """Run the sweep described by ``opts``; returns the process exit code (0; 1 when trials are missing; 128 + n after signal n: 130 Ctrl-C, 143 SIGTERM).

    ``command``: the command line, recorded as a tag of the parent run. Trials train with ``opts.threads``
    torch threads per process (default 1: the searched models are small, intra-op parallelism costs more than
    it gains and collapses when the cores are shared; use WORKERS for parallel trials instead).
    """
    import torch

    threads = torch.get_num_threads()
    if opts.threads > 0:
        torch.set_num_threads(opts.threads)
    with warnings.catch_warnings():  # the process's warning filters, log levels and threads are restored
        undo = _quiet(opts.verbose)
        try:
            return _run_sweep(opts, console=console, command=command)
        finally:
            undo()
            torch.set_num_threads(threads)


def _run_sweep(opts: SweepOptions, *, console=None, command: str | None = None) -> int:
    from .report import make_console

    console = console or make_console()

    def say(msg: str) -> None:
        print(msg, flush=True)

    path = Path(opts.search_file) if opts.search_file else search_file_path(opts.task)
    space = load_search_space(path, task=opts.task, full=opts.full)
    models = opts.models or space.models
    if opts.trials < 1:
        raise SearchSpaceError(
            f"--trials {opts.trials} (TRIALS= of make sweep): must be >= 1, the trials to run now per model "
            "(a finished study's summary: lightning-implicit sweep ... --trials 1, or the MLflow UI)"
        )
    if opts.cv < 1 or opts.workers < 1:
        raise SearchSpaceError("--cv and --workers must be >= 1")
    ctxs = _contexts(opts, space, models, say)
    if opts.worker_index is None:  # the data once, before any study or MLflow run: a bad file fails here
        from lightning_implicit.runner import load_data

        first = ctxs[models[0]]
        load_data([*first.base_args, *first.pinned])
    pool = None
    if opts.workers > 1 and opts.worker_index is None:
        size = min(opts.workers, max(opts.trials * len(models), 1))
        sys.stdout.flush()
        sys.stderr.flush()
        pool = WorkerPool(
            size,
            initializer=_SweepWorker,
            initargs=(opts,),
            fork_initargs=(opts, space, ctxs),
            max_respawns=2 * size,
            fork=True,
            preload=WORKER_PRELOAD,
        )
    try:
        what = "batch" if pool is None else "batch (the workers' trials too)"
        with DeferredSignals(what=what) as signals:  # taken at safe points, never inside a database write
            return _sweep(opts, space, models, ctxs, pool, signals, console, command, say)
    finally:
        if pool is not None:
            pool.close()


@dataclass
class _Store:
    """Where the sweep records: the Optuna storage and the MLflow recorder (``None`` without tracking)."""

    url: str
    experiment: str
    recorder: SweepRecorder | None
    on_failed: object
    storage: object


def _open_store(opts: SweepOptions) -> _Store:
    url = resolve_storage_url(opts.storage)
    experiment = opts.experiment or name_of(opts.task)
    recorder = SweepRecorder(opts.tracking_uri, experiment) if opts.tracking else None
    on_failed = _on_failed(recorder)
    storage = open_storage(
        url, heartbeat=opts.heartbeat, grace=opts.grace, max_retry=opts.max_retry, on_failed=on_failed
    )
    return _Store(url, experiment, recorder, on_failed, storage)


def _sweep(opts, space, models, ctxs, pool, signals, console, command, say) -> int:
    """Open the stores, run every model's trials (and retraining), log and print the summary; the exit code."""
    store = _open_store(opts)
    _announce(opts, space, models, store.url, say)
    studies: dict[str, optuna.Study] = {}
    setup = functools.partial(
        _open_model,
        opts,
        space,
        store.storage,
        store.recorder,
        store.url,
        store.experiment,
        command,
        studies,
        say=say,
    )
    if pool is not None:  # every model's trials, then its retraining, on the workers started above
        outcomes, signum, status = _sweep_parallel(opts, models, ctxs, pool, store, setup, signals, say)
    else:
        outcomes, signum, status = _sweep_serial(opts, models, ctxs, store, setup, signals, say)
    _log_summaries(opts, space, store, studies, outcomes, interrupted=signum is not None)
    _print_summaries(console, opts, store, outcomes, say)
    if signum is None and signals.pending is not None:  # a signal during the summary: it was finished first
        signum = signals.pending
    if signum is not None:
        print(f"stopped: received {signal_name(signum)} (exit {128 + signum})", flush=True)
        return 128 + signum
    return status


def _announce(opts: SweepOptions, space: SearchSpace, models: list[str], url: str, say) -> None:
    kind = (
        "JournalStorage (no heartbeats: dead workers found by process id)"
        if "://" not in url
        else "RDBStorage"
    )
    say(
        f"sweep {opts.task}: models {', '.join(models)}; {opts.trials} more trial(s) each"
        f"{f' on {opts.workers} workers' if opts.workers > 1 else ''}; objective val/loss"
        f"{f' (mean of {opts.cv} folds)' if opts.cv > 1 else ''}; budget {space.budget}; space {space.path}; "
        f"storage {mask_url(url)} [{kind}]"
    )


# ---- the sweep's trials: on the workers, or in this process -------------------------------------------------
def _sweep_parallel(
    opts: SweepOptions, models, ctxs, pool: WorkerPool, store: _Store, setup, signals: DeferredSignals, say
) -> tuple[list[ModelOutcome], int | None, int]:
    """Open every model's study, then run all their trials and retrainings on the pool; the outcomes, the signal
    that stopped the sweep and the status."""
    runs: list[_ModelRun] = []
    signum: int | None = None
    status = 0
    try:
        for m in models:
            signals.check()
            runs.append(setup(ctxs[m]))
    except KeyboardInterrupt as err:
        signum = _signum(err)
    if signum is None:
        signum, status = _run_parallel(opts, runs, pool, store.storage, store.on_failed, signals, say)
    outcomes = []
    for r in runs:
        out, failed = _model_outcome(opts, r, signum, say)
        status = status or failed
        outcomes.append(out)
    return outcomes, signum, status


def _sweep_serial(
    opts: SweepOptions, models, ctxs, store: _Store, setup, signals: DeferredSignals, say
) -> tuple[list[ModelOutcome], int | None, int]:
    """One model after the other in this process: its trials, then its retraining; the outcomes, the signal that
    stopped the sweep and the status."""
    outcomes: list[ModelOutcome] = []
    signum: int | None = None
    status = 0
    for m in models:
        try:
            signals.check()
            run = setup(ctxs[m])
        except KeyboardInterrupt as err:
            signum = _signum(err)
            break
        signum, aborted = _serial_trials(opts, run, store, signals, say)
        out, failed = _model_outcome(opts, run, signum, say)
        status = status or aborted or failed
        outcomes.append(out)
        if signum is not None:
            break
        if opts.retrain and out.best_number is not None:
            signum = _serial_retrain(run, out, signals, say)
            if signum is not None:
                break
    return outcomes, signum, status


def _serial_trials(
    opts: SweepOptions, run: _ModelRun, store: _Store, signals: DeferredSignals, say
) -> tuple[int | None, int]:
    """``run``'s quota of trials in this process; the signal that stopped them, and 1 after an error streak."""
    try:
        _run_quota(
            run.study,
            store.storage,
            run.ctx,
            opts,
            opts.trials,
            f"{opts.task}/{run.model}",
            store.on_failed,
            signals=signals,
        )
    except KeyboardInterrupt as err:
        signum = _signum(err)
        recover_stale_trials(
            run.study,
            store.storage,
            only_pid=os.getpid(),
            reason_dead="interrupted",
            retry=False,
            on_failed=store.on_failed,
        )
        return signum, 0
    except SweepAbort as exc:
        say(f"[{run.model}] sweep stopped: {exc}")
        return None, 1
    return None, 0


def _serial_retrain(run: _ModelRun, out: ModelOutcome, signals: DeferredSignals, say) -> int | None:
    """The best config retrained in this process; the signal that stopped it (a failure is a note)."""
    try:
        signals.check()
        _retrain(run.ctx, run.study, out, say, callbacks=[InterruptAtBatchEnd(signals)])
    except KeyboardInterrupt as err:
        signum = _signum(err)
        out.notes.append(f"interrupted ({signal_name(signum)}) during the retraining of the best config")
        return signum
    except Exception as exc:  # the sweep itself succeeded
        out.notes.append(f"retraining the best config failed: {type(exc).__name__}: {exc}")
    return None


# ---- summary: MLflow artifacts, terminal ----------------------------------------------------------------------
def _log_summaries(
    opts: SweepOptions,
    space: SearchSpace,
    store: _Store,
    studies: dict[str, optuna.Study],
    outcomes: list[ModelOutcome],
    *,
    interrupted: bool,
) -> None:
    """Each model's summary artifacts on its MLflow parent run, which is closed (KILLED after a signal)."""
    recorder = store.recorder
    comparison = {o.model: o.best_rows for o in outcomes if o.best_rows}
    metric = next((o.metric for o in outcomes if o.metric), None)
    for o in outcomes:
        if recorder is None or o.parent_run_id is None:
            continue
        try:
            recorder.log_summary(
                o.parent_run_id,
                studies[o.model],
                best_rows=o.best_rows,
                comparison=comparison if len(comparison) > 1 else None,
                metric=metric,
                info={
                    "task": opts.task,
                    "model": o.model,
                    "budget": space.budget,
                    "cv": opts.cv,
                    "metric": o.metric,
                    "retrain_run_id": o.retrain_run_id,
                },
            )
            recorder.close_parent(o.parent_run_id, "KILLED" if interrupted else "FINISHED")
        except Exception as exc:
            o.notes.append(f"could not log the summary to MLflow: {exc}")


def _print_summaries(console, opts: SweepOptions, store: _Store, outcomes: list[ModelOutcome], say) -> None:
    from lightning_implicit.console import print_sweep_summary

    from .report import print_summary

    experiment = store.experiment if store.recorder else None
    print_summary(console, opts, outcomes, experiment=experiment)
    try:  # where the results are: best values, studies, experiment, UI links (or the make ui hint)
        print_sweep_summary(
            outcomes,
            experiment=experiment,
            uri=store.recorder.uri if store.recorder else None,
            storage=mask_url(store.url),
        )
    except Exception as exc:  # the sweep is done and recorded; the summary is a courtesy
        say(f"(no sweep summary: {type(exc).__name__}: {exc})")
