"""The Optuna objective: sample a config, train it (k folds), return the in-distribution validation loss.

* Objective: ``val/loss`` after the last epoch, on the held-out fold of the in-distribution data; with
  ``--cv k`` the mean over folds ``0..k-1`` (``--data.init_args.n_folds k --data.init_args.fold i``). Trials
  never see the shifted test sets (``run_training(..., test=False)``).
* Pruning: without CV, :class:`optuna_integration.PyTorchLightningPruningCallback` reports ``val/loss`` after
  every epoch (step = epoch). With CV the step axis is the fold: after fold ``i`` the running mean over folds
  ``0..i`` is reported at step ``i`` and the pruner may stop the trial before the next fold (no epoch-level
  pruning inside a fold, so that every step compares the same quantity across trials).
* A non-finite loss (``FloatingPointError`` from the module, or a NaN/inf validation loss) fails the trial with
  ``fail_reason``; a solver that converges on fewer than ``min_converged`` of the training samples in an
  epoch prunes it with ``prune_reason``. Ctrl-C fails the running trial with ``fail_reason = "interrupted"``
  and stops the sweep. Reasons are trial user attributes and tags of the trial's MLflow run.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

import lightning as L
import optuna
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback

from lightning_implicit.lifecycle import DeferredSignals
from lightning_implicit.run.spec import RunSpec, flag_args, parse_flags

from .default_trial import DEFAULT_ATTR
from .interrupt import InterruptAtBatchEnd
from .records import SweepRecorder
from .space import ModelSpace
from .storage import HOST

__all__ = ["TrialContext", "Objective", "ConvergenceGuard"]


@dataclass
class TrialContext:
    """Everything a worker needs to run trials of one model."""

    task: str
    model: str
    study_name: str
    space: ModelSpace
    spec: RunSpec  # the run before a trial's values: config files, data, sweep defaults, fixed settings
    pinned: list[str] = field(default_factory=list)  # command-line overrides, applied last
    cv: int = 1
    experiment: str | None = None
    recorder: SweepRecorder | None = None
    parent_run_id: str | None = None
    min_converged: float = 0.5
    search_hash: str = ""

    @property
    def base_args(self) -> list[str]:
        """``spec``'s LightningCLI arguments (config files first)."""
        return self.spec.to_args()

    @property
    def settings(self) -> str:
        """The fixed settings as one line (the model's name, seed and every override, then the pinned flags; the
        config files left out): what a study records when it is created and compares when it is resumed."""
        args = self.base_args
        return " ".join(args[args.index("--tracking.model_name") :] + self.pinned)

    def param_args(self, values: dict) -> list[str]:
        return flag_args(self.space.overrides(values))

    def fold_overrides(self, fold: int) -> dict[str, Any]:
        return {} if self.cv <= 1 else {"data.init_args.n_folds": self.cv, "data.init_args.fold": fold}

    def fold_args(self, fold: int) -> list[str]:
        return flag_args(self.fold_overrides(fold))

    def tracking_overrides(self, parent: str | None, run_name: str, tags: dict[str, str]) -> dict[str, Any]:
        if self.recorder is None:
            return {"tracking.enabled": False}
        out = {
            "tracking.uri": self.recorder.uri,
            "tracking.experiment": self.recorder.experiment,
            "tracking.run_name": run_name,
            "tracking.tags": tags,
        }
        return out | ({"tracking.parent_run_id": parent} if parent else {})

    def run_args(
        self, over: list[str], fold: int, parent: str | None, run_name: str, tags: dict
    ) -> list[str]:
        """The LightningCLI arguments of one fold of a trial (:class:`~lightning_implicit.run.spec.RunSpec`):
        the base run, the trial's values ``over`` (``--key value`` pairs), the fold and its MLflow run, then the
        user's pinned flags as given (they win)."""
        run = self.fold_overrides(fold) | self.tracking_overrides(parent, run_name, tags)
        spec = self.spec.with_layer("trial", parse_flags(over)).with_layer("run", run)
        return spec.to_args() + list(self.pinned)


class _Probe(L.Callback):
    """Remembers the training run's MLflow id and the signal (or Ctrl-C) that interrupted fit, if one did."""

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.interrupted: KeyboardInterrupt | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        lg = trainer.logger
        self.run_id = getattr(lg, "run_id", None) if lg is not None else None

    def on_exception(self, trainer, pl_module, exception) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self.interrupted = exception


class _Pruning(PyTorchLightningPruningCallback):
    """Optuna's Lightning pruning callback, remembering the last step it reported."""

    last_step: int | None = None

    def __init__(self, trial: optuna.trial.Trial, monitor: str) -> None:
        super().__init__(trial, monitor)
        self.trial = trial

    def on_validation_end(self, trainer, pl_module) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if not trainer.sanity_checking and value is not None:
            self.last_step = pl_module.current_epoch
        try:
            super().on_validation_end(trainer, pl_module)
        except optuna.TrialPruned:
            pruner = type(self.trial.study.pruner).__name__
            raise optuna.TrialPruned(
                f"{self.monitor} {float(value):.4g} at epoch {self.last_step} is worse than earlier trials at that "
                f"epoch ({pruner})"
            ) from None


class ConvergenceGuard(L.Callback):
    """Prunes a trial whose implicit solver converges on fewer than ``min_frac`` of the training samples of an
    epoch (mean of the per-batch converged fractions; modules without solver statistics are ignored)."""

    def __init__(self, min_frac: float) -> None:
        self.min_frac = min_frac
        self._fracs: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._fracs = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        st = getattr(getattr(pl_module, "net", None), "last_stats", None)
        frac = getattr(st, "converged_fraction", None)
        if frac is not None:
            self._fracs.append(float(frac))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._fracs and fmean(self._fracs) < self.min_frac:
            raise optuna.TrialPruned(
                f"solver did not converge: {fmean(self._fracs):.0%} of training samples converged in epoch "
                f"{pl_module.current_epoch} (< {self.min_frac:.0%}, --min-converged)"
            )


def format_params(values: dict) -> str:
    """``k=v`` pairs of a trial's sampled values for a console line (floats to 4 significant digits)."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


@dataclass
class _TrialRun:
    """A running trial's bookkeeping: its MLflow run, the folds' losses so far, the current fold's probe and
    pruning callback, the other validation metrics, and when it started."""

    run_id: str | None = None
    fold_values: list[float] = field(default_factory=list)
    probe: _Probe = field(default_factory=_Probe)
    pruning: _Pruning | None = None
    extra: dict[str, float] = field(default_factory=dict)
    t_trial: float = field(default_factory=time.monotonic)


class Objective:
    """``study.optimize(Objective(ctx), ...)``: one trial = ``ctx.cv`` training runs.

    ``say``: called with one line when a cross-validated trial starts (its sampled values) and one after each
    fold (its loss, how long it took and the trial's elapsed time), so that a search whose trials take many
    minutes shows progress between them."""

    def __init__(
        self,
        ctx: TrialContext,
        interrupt: DeferredSignals | None = None,
        say: Callable[[str], None] | None = None,
        label: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.interrupt = interrupt  # a deferred Ctrl-C is raised at batch ends (see .interrupt)
        self.say = say
        self.label = label or ctx.model

    def __call__(self, trial: optuna.Trial) -> float:
        ctx = self.ctx
        values = ctx.space.sample(trial)
        over = ctx.param_args(values)
        trial.set_user_attr("worker_host", HOST)
        trial.set_user_attr("worker_pid", os.getpid())
        trial.set_user_attr("cli_overrides", over)
        trial.set_user_attr("search_hash", ctx.search_hash)
        run = _TrialRun()
        if self.say is not None and ctx.cv > 1:
            origin = trial.user_attrs.get(DEFAULT_ATTR)
            self.say(
                f"[{self.label}] trial #{trial.number} started ({ctx.cv} folds"
                f"{f'; {origin}' if origin else ''}): {format_params(values)}"
            )
        try:  # (from the trial's run on, a signal anywhere below ends it as an interrupted trial, never RUNNING)
            if ctx.recorder is not None and ctx.parent_run_id:
                run.run_id = ctx.recorder.start_trial(
                    ctx.parent_run_id, ctx.study_name, ctx.model, trial, values, over
                )
                trial.set_user_attr("mlflow_run_id", run.run_id)
            for fold in range(max(ctx.cv, 1)):
                self._fold(trial, over, fold, run)
            value = fmean(run.fold_values)
            trial.set_user_attr("fold_values", run.fold_values)
            self._finish(
                run.run_id, TrialState.COMPLETE, value=value, fold_values=run.fold_values, extra=run.extra
            )
            return value
        except optuna.TrialPruned as exc:
            self._pruned(trial, run, exc)
            raise
        except KeyboardInterrupt:
            self._fail(trial, run.run_id, run.probe, "interrupted", run.fold_values)
            raise
        except FloatingPointError as exc:
            msg = str(exc)
            reason = msg if msg.startswith("non-finite") else f"non-finite loss: {msg}"
            self._fail(trial, run.run_id, run.probe, reason, run.fold_values)
            raise
        except Exception as exc:
            self._fail(trial, run.run_id, run.probe, f"{type(exc).__name__}: {exc}", run.fold_values)
            raise

    # ---- the folds -----------------------------------------------------------------------------------
    def _fold(self, trial: optuna.Trial, over: list[str], fold: int, run: _TrialRun) -> None:
        """Train fold ``fold`` of the trial; its validation loss joins ``run.fold_values`` (with CV, the running
        mean is reported to the pruner, which may stop the trial before the next fold)."""
        ctx = self.ctx
        run.probe = _Probe()
        callbacks: list = [run.probe]
        if self.interrupt is not None:
            callbacks.append(InterruptAtBatchEnd(self.interrupt))
        run.pruning = _Pruning(trial, monitor="val/loss") if ctx.cv <= 1 else None
        if run.pruning is not None:
            callbacks.append(run.pruning)
        if ctx.min_converged > 0:
            callbacks.append(ConvergenceGuard(ctx.min_converged))
        tags = {
            "sweep.role": "fold",
            "optuna.study": ctx.study_name,
            "optuna.trial": str(trial.number),
            "fold": str(fold),
        }
        name = f"{ctx.model}-t{trial.number:03d}" + (f"-f{fold}" if ctx.cv > 1 else "-fit")
        args = ctx.run_args(over, fold, run.run_id, name, tags)
        if self.interrupt is not None:  # a safe point: no write in flight (a fold starts in seconds)
            self.interrupt.check()
        t_fold = time.monotonic()
        result = self._train(args, callbacks, run.probe)
        loss = result.val.get("val/loss")
        if loss is None:
            raise RuntimeError("no 'val/loss' was logged: the objective needs a validation loop")
        if not math.isfinite(loss):
            raise FloatingPointError(f"non-finite validation loss ({loss}) in fold {fold}")
        run.fold_values.append(float(loss))
        run.extra.update({k.replace("/", "_"): v for k, v in result.val.items() if k != "val/loss"})
        if ctx.cv > 1:
            self._report_fold(trial, fold, loss, run, t_fold)

    @staticmethod
    def _train(args: list[str], callbacks: list, probe: _Probe):
        """One training run (no test); Ctrl-C or a signal during fit is raised as itself."""
        from lightning_implicit.runner import run_training

        handler = signal.getsignal(signal.SIGINT)  # (the sweep's deferring handler, or Python's)
        try:
            return run_training(args, extra_callbacks=callbacks, test=False)
        except SystemExit:
            # Lightning turns Ctrl-C into sys.exit(1) after ignoring SIGINT: restore both
            if probe.interrupted:
                signal.signal(signal.SIGINT, handler if callable(handler) else signal.default_int_handler)
                raise probe.interrupted from None  # (a Terminated keeps its signal: exit 128 + n)
            raise

    def _report_fold(
        self, trial: optuna.Trial, fold: int, loss: float, run: _TrialRun, t_fold: float
    ) -> None:
        """A cross-validated trial's progress line and its running mean at step ``fold`` (pruned if worse)."""
        ctx = self.ctx
        mean = fmean(run.fold_values)
        if self.say is not None:
            now = time.monotonic()
            self.say(
                f"[{self.label}] trial #{trial.number} fold {fold + 1}/{ctx.cv}: val/loss={loss:.5g} "
                f"(running mean {mean:.5g})  fold {now - t_fold:.1f}s, trial {now - run.t_trial:.1f}s"
            )
        trial.report(mean, step=fold)
        if fold < ctx.cv - 1 and trial.should_prune():
            raise optuna.TrialPruned(
                f"running mean val/loss {mean:.4g} after fold {fold} is worse than the median of earlier trials"
            )

    # ---- bookkeeping ---------------------------------------------------------------------------------
    def _pruned(self, trial: optuna.Trial, run: _TrialRun, exc: optuna.TrialPruned) -> None:
        if self.ctx.cv > 1:
            step = len(run.fold_values) - 1
        else:
            step = run.pruning.last_step if run.pruning else None
        reason = str(exc) or "pruned"
        trial.set_user_attr("prune_reason", reason)
        if step is not None:
            trial.set_user_attr("pruned_step", step)
        self._mark_fold(run.probe, "KILLED", {"prune_reason": reason})
        self._finish(
            run.run_id, TrialState.PRUNED, fold_values=run.fold_values, reason=reason, pruned_step=step
        )

    def _fail(self, trial, run_id, probe, reason: str, fold_values) -> None:
        try:
            trial.set_user_attr("fail_reason", reason[:2000])
        except Exception:  # the storage may be gone on Ctrl-C
            pass
        self._mark_fold(probe, "KILLED" if reason == "interrupted" else "FAILED", {"fail_reason": reason})
        self._finish(run_id, TrialState.FAIL, fold_values=fold_values, reason=reason)

    def _mark_fold(self, probe: _Probe, status: str, tags: dict[str, str]) -> None:
        if self.ctx.recorder is not None and probe.run_id:
            try:
                self.ctx.recorder.mark_run(probe.run_id, status, tags)
            except Exception:  # bookkeeping never masks the trial's own outcome
                pass

    def _finish(self, run_id, state, **kw) -> None:
        if self.ctx.recorder is not None and run_id:
            try:
                self.ctx.recorder.finish_trial(run_id, state, **kw)
            except Exception:
                pass
