"""One training run: fit on in-distribution data, then the shift sweep, tracked in MLflow.

Everything that trains (``make train``, the Optuna sweep, ``make reproduce``) goes through
:func:`run_training` with LightningCLI-style arguments, so a run is always described by its config files
plus overrides, and is repeatable from the command line.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from datetime import timedelta

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers.logger import DummyLogger
from lightning.pytorch.utilities import rank_zero_only

from lightning_implicit import confpath
from lightning_implicit.data import ShiftDataModule
from lightning_implicit.modules.base import ShiftModule
from lightning_implicit.run.spec import RunSpec, flag_args
from lightning_implicit.tracking import TrackingCallback, git_commit, make_logger
from lightning_implicit.validate import ConfigError

__all__ = [
    "ImplicitCLI",
    "TrackingConfig",
    "RunResult",
    "run_training",
    "load_data",
    "shorthand_args",
    "tuned_args",
]


@dataclass
class TrackingConfig:
    """Where and how a run is recorded.

    Attributes:
        enabled: log to MLflow (off: no logger, results only returned).
        uri: tracking URI; default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns/mlflow.db``.
        experiment: MLflow experiment; default the task's name.
        run_name: default ``<model>-seed<seed>``.
        model_name: the model's label in tags, tables and plots (the config file's name by default).
        parent_run_id: nest this run under another (sweeps, reproduction).
        tags: extra tags.
        log_model: log the trained weights after the shift sweep (``runs:/<id>/model/state_dict.pt``;
            ``lightning_implicit.evaluate.load_logged_model(<id>)`` loads them without unpickling anything;
            ``lightning-implicit test --run-id <id>`` re-runs its sweep).
    """

    enabled: bool = True
    uri: str | None = None
    experiment: str | None = None
    run_name: str | None = None
    model_name: str = "model"
    parent_run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    log_model: bool = True


def _check_solver_settings(cfg) -> None:
    """The model's ``solver`` and ``adjoint`` settings built once before anything else: a value they refuse (an
    unregistered backend, a tolerance <= 0) is one :class:`ConfigError` naming the option, not a traceback."""
    from lightning_implicit.implicit.config import AdjointConfig, SolverConfig

    init = cfg.get("model", {}).get("init_args") if hasattr(cfg, "get") else None
    for key, cls in (("solver", SolverConfig), ("adjoint", AdjointConfig)):
        ns = init.get(key) if hasattr(init, "get") else None
        if not hasattr(ns, "as_dict"):
            continue  # (a model without these settings)
        try:
            cls(**ns.as_dict())
        except TypeError:
            continue  # (another class's settings under the same name: the model checks its own)
        except ValueError as err:
            raise ConfigError(f"--model.init_args.{key}: {err}") from None


class ImplicitCLI(LightningCLI):
    """LightningCLI with the task spec linked from the datamodule to the model and MLflow tracking."""

    def __init__(self, args: list[str] | None = None, **kwargs) -> None:
        from argparse import ArgumentError

        from lightning_implicit.cliargs import explain_parse_error

        # a prefix of an option (--trainer.max_epoch) is an error, not that option; a bad value or key is one
        # named line (ConfigError: the CLI prints "error: ..." and exits 2), not a usage dump
        kwargs["parser_kwargs"] = {
            "allow_abbrev": False,
            "exit_on_error": False,
            **kwargs.get("parser_kwargs", {}),
        }
        try:
            super().__init__(
                ShiftModule,
                ShiftDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                run=False,
                save_config_callback=None,
                auto_configure_optimizers=False,
                seed_everything_default=0,
                args=args,
                **kwargs,
            )
        except ArgumentError as err:
            raise ConfigError(explain_parse_error(str(err), lambda section, cls: [])) from None
        except ValueError as err:  # a constructor refused a value: its own message, on one line
            cause = _constructor_error(err)
            if cause is None:
                raise
            raise ConfigError(str(cause)) from None

    def init_parser(self, **kwargs):
        kwargs.setdefault("exit_on_error", False)  # a parse error is raised, then said on one line (below)
        return super().init_parser(**kwargs)

    def parse_arguments(self, parser, args) -> None:
        """jsonargparse's error and usage dump -> one :class:`ConfigError` line naming the option, with "did you
        mean" for a mistyped key (:func:`lightning_implicit.cliargs.explain_parse_error`)."""
        from jsonargparse import ArgumentError

        from lightning_implicit.cliargs import explain_parse_error

        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            raise ConfigError(
                explain_parse_error(str(err), lambda s, c: _option_keys(parser, s, c))
            ) from None

    def before_instantiate_classes(self) -> None:
        from lightning_implicit.validate import check_config

        check_config(self.config)  # numeric options: one named error before any data or run exists
        _check_solver_settings(self.config)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_class_arguments(TrackingConfig, "tracking")
        parser.link_arguments("data", "model.init_args.task", apply_on="instantiate", compute_fn=_spec_of)

    def instantiate_trainer(self, **kwargs):
        tracking: TrackingConfig = self.config_init["tracking"]
        seed = self.config_init["seed_everything"]
        spec = self.datamodule.spec
        label = tracking.model_name
        from lightning_implicit.redact import redact

        callbacks = [TrackingCallback(config_yaml=redact(self.parser.dump(self.config)), label=label)]
        logger = False
        if tracking.enabled and rank_zero_only.rank != 0:
            # Only global rank 0 opens the store and logs. Under torchrun/SLURM every rank starts at once, and
            # concurrent first use of a fresh sqlite store races on its schema migration; the other ranks get
            # a no-op logger (checkpoint and log directories are broadcast from rank 0 anyway).
            logger = DummyLogger()
        elif tracking.enabled:
            tags = {
                "task": spec.name,
                "model": label,
                "model_family": type(self.model).__name__,
                "seed": str(seed),
                "git_commit": git_commit(),
                **{k: redact(str(v)) for k, v in tracking.tags.items()},
            }
            if tracking.parent_run_id:
                tags["mlflow.parentRunId"] = tracking.parent_run_id
            # the config directories `test --run-id` needs to import this run's task again (the summary says so)
            user_dirs = confpath.user_dirs()
            if user_dirs:
                tags["conf_path"] = os.pathsep.join(str(d) for d in user_dirs)

            def logger(trainer):
                name = tracking.run_name or f"{label}-seed{seed}{_launch_suffix(trainer)}"
                return make_logger(tracking.experiment or spec.name, name, tags, tracking.uri)

        trainer = self.config_init.get("trainer") or {}
        user_callbacks = trainer.get("callbacks") or []
        kwargs.setdefault("callbacks", [*user_callbacks, *callbacks])
        if not callable(logger) or "logger" in kwargs:
            kwargs.setdefault("logger", logger)
            return self._build_trainer(**kwargs)
        # The Trainer is built (and its options checked) before the MLflow run is opened: a Trainer that cannot
        # be built (no GPU for --trainer gpu, a bad option) leaves no run behind, let alone a RUNNING one.
        built = self._build_trainer(**kwargs, logger=False)
        if built.fast_dev_run:  # Lightning's debug run logs nothing: no MLflow run is opened for it either
            if rank_zero_only.rank == 0:
                print(
                    "fast_dev_run: nothing is logged to MLflow (one batch of each loop, no checkpoint); drop "
                    "--trainer.fast_dev_run for a tracked run",
                    file=sys.stderr,
                )
            return built
        # Likewise the data: a file that cannot be loaded stops here with its one error, before any run exists.
        self.datamodule.setup("fit")
        built.loggers = [logger(built)]
        return built

    def _build_trainer(self, **kwargs):
        """The Trainer; a GPU trainer on a machine without one is a :class:`ConfigError` naming the CPU ways."""
        from lightning.fabric.utilities.exceptions import MisconfigurationException

        try:
            return super().instantiate_trainer(**kwargs)
        except MisconfigurationException as err:
            text = str(err).strip()
            if not any(word in text.lower() for word in ("gpu", "cuda", "mps")):
                raise
            raise ConfigError(
                f"{text.rstrip('!.')}: this machine has no usable GPU; train on the CPU with TRAINER=cpu "
                "(--trainer cpu), or in several CPU processes with DDP over gloo: TRAINER=ddp DEVICES=2 "
                "(--trainer ddp --devices 2)"
            ) from None


def _launch_suffix(trainer) -> str:
    """How a run ran, for its default name: ``""`` in one process, ``-ddp2`` for two processes started by
    Lightning, ``-torchrun4`` under torchrun, ``-slurm8`` under SLURM."""
    world = int(getattr(trainer, "world_size", 1) or 1)
    if world <= 1:
        return ""
    if os.environ.get("TORCHELASTIC_RUN_ID"):
        return f"-torchrun{world}"
    if os.environ.get("SLURM_JOB_ID") and os.environ.get("SLURM_NTASKS"):
        return f"-slurm{world}"
    return f"-ddp{world}"


def _option_keys(parser, section: str | None, class_path: str | None) -> list[str]:
    """The ``--a.b`` options of ``parser``, or of the class configured under ``section`` (subclass mode:
    ``--model.init_args.*``); ``[]`` when they cannot be listed (no suggestion rather than a second error)."""
    import importlib

    from jsonargparse import ArgumentParser

    try:
        if section is None or class_path is None:
            return [f"--{k}" for k in parser.get_defaults().keys()]
        module, _, name = class_path.rpartition(".")
        sub = ArgumentParser(exit_on_error=False)
        sub.add_class_arguments(getattr(importlib.import_module(module), name), fail_untyped=False)
        return [f"--{section}.init_args.{k}" for k in sub.get_defaults().keys()]
    except Exception:
        return []


def _logger_uri(logger) -> str:
    """The tracking URI of a run's MLflow logger (its client's), ``""`` when there is none or it cannot say."""
    try:
        return logger.experiment.tracking_uri or ""
    except Exception:  # (a store that failed may fail again here: the caller names it)
        return ""


def _constructor_error(err: ValueError) -> BaseException | None:
    """The error a model's or data module's constructor raised, behind jsonargparse's "Does not validate against
    any of the Union subtypes" (its ``__cause__`` chain); ``None`` for any other error."""
    seen, cause = set(), err.__cause__
    while cause is not None and cause.__cause__ is not None and id(cause) not in seen:
        seen.add(id(cause))
        cause = cause.__cause__
    return cause if isinstance(cause, (ValueError, TypeError)) else None


def load_data(args: list[str]) -> ShiftDataModule:
    """The datamodule of a run's arguments, loaded and validated (``setup("fit")``), with nothing trained or
    tracked: sweeps and reproductions call it once so that a bad data file stops them before any trial or run.
    Raises the datamodule's own error (e.g. ``DataValidationError``)."""
    # only the data matters: a training budget left to the trials (max_epochs -1 + max_steps) is set to one epoch
    budget = ["--trainer.max_epochs", "1", "--trainer.max_steps", "-1", "--tracking.enabled", "false"]
    confpath.add_user_modules()  # a user task's class_path module
    dm = ImplicitCLI(args=[*args, *budget]).datamodule
    dm.setup("fit")
    return dm


def _spec_of(dm):
    return dm.spec


@dataclass
class RunResult:
    """What a run returns: its MLflow run id (``None`` without tracking), the sweep rows, the final
    validation metrics and the trained module."""

    run_id: str | None
    sweep: list[dict]
    val: dict[str, float]
    module: ShiftModule
    datamodule: ShiftDataModule


def run_training(args: list[str], *, extra_callbacks: list | None = None, test: bool = True) -> RunResult:
    """Fit + shift sweep from LightningCLI arguments (``--config`` files and ``--key value`` overrides)."""
    from lightning_implicit.console import console_callbacks
    from lightning_implicit.lifecycle import end_failed_run, terminated_cause
    from lightning_implicit.modules.dispatch import cheap_default_profiler
    from lightning_implicit.tracking.store import store_failure

    confpath.add_user_modules()  # a user task's class_path module
    cli = ImplicitCLI(args=args)
    trainer, model, dm = cli.trainer, cli.model, cli.datamodule
    # the model summary without FLOPs (0 for every implicit model), a progress bar that counts step budgets
    trainer.callbacks = console_callbacks(trainer.callbacks)
    cheap_default_profiler(trainer)  # Lightning's no-op profiler, without a generator per hook call
    if extra_callbacks:
        trainer.callbacks.extend(extra_callbacks)
    try:
        trainer.fit(model, datamodule=dm)
        val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if test:
            trainer.test(model, datamodule=dm, verbose=False)
    except (
        BaseException
    ) as err:  # the run ends FAILED (KILLED after a signal) with the error as a tag, never RUNNING
        if trainer.is_global_zero:
            end_failed_run(trainer.logger, err)
        signalled = terminated_cause(err)
        if signalled is not None and signalled is not err:
            raise signalled from None  # Lightning's sys.exit(1) after a signal: keep the signal (exit 128 + n)
        named = store_failure(err, _logger_uri(trainer.logger), "MLflow")
        if named is not None:  # the store failed mid-run (its disk filled up, its server went away)
            raise named from err
        raise
    run_id = trainer.logger.run_id if trainer.logger is not None and trainer.is_global_zero else None
    if run_id and test and cli.config_init["tracking"].log_model:
        _log_model(trainer.logger, model, dm)
    if trainer.logger is not None and trainer.is_global_zero:
        trainer.logger.finalize("success")
    _end_process_group()
    return RunResult(run_id=run_id, sweep=model.sweep_results, val=val, module=model, datamodule=dm)


def _log_model(logger, model, dm) -> None:
    """The trained model into the run (:func:`lightning_implicit.tracking.logged_model.log_trained_model`); a
    failure is said and tagged, never fails the trained run."""
    from lightning_implicit.tracking.logged_model import log_trained_model

    try:
        log_trained_model(logger, model, dm)
    except Exception as err:
        print(
            f"warning: the model was not logged to MLflow ({type(err).__name__}: {err}); its checkpoint is "
            "still tested by lightning-implicit test --ckpt_path",
            file=sys.stderr,
        )
        try:
            logger.experiment.set_tag(
                logger.run_id, "logged_model_error", f"{type(err).__name__}: {err}"[:5000]
            )
        except Exception as tag_err:  # the store itself failed: the run still ends as trained
            print(
                f"warning: the run's store did not take the tag either ({type(tag_err).__name__})",
                file=sys.stderr,
            )


def _end_process_group() -> None:
    """Under DDP: wait for every rank (rank 0 writes the sweep's artifacts after the last collective), then tear
    the process group down. A rank that exits with its gloo group alive while another still works can die in a
    C++ destructor at exit ("terminate called without an active exception", SIGABRT: measured about once in 25
    two-rank torchrun runs before this)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:  # (gloo: a rank that never arrives is reported after the timeout instead of hanging the others)
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=timedelta(minutes=10))
            else:
                dist.barrier()
        finally:
            dist.destroy_process_group()


def shorthand_args(
    task: str,
    model: str,
    trainer: str = "cpu",
    seed: int | None = None,
    devices: int | str | None = None,
    nodes: int | None = None,
) -> list[str]:
    """``make train TASK=... MODEL=...`` as LightningCLI arguments (config files stacked in order: see
    :meth:`lightning_implicit.run.spec.RunSpec.config_args`)."""
    try:
        return RunSpec(task, model, seed, trainer, devices, nodes).config_args()
    except ConfigError as err:
        raise ConfigError(f"{err} (make TASK= MODEL= TRAINER=)") from None


def tuned_args(task: str, model: str, use: bool = True, stream=None) -> list[str]:
    """The overrides of ``conf/tuned/<task>/<model>.yaml`` as LightningCLI arguments (see :func:`tuned_recipe`)."""
    return flag_args(tuned_recipe(task, model, use, stream))


def tuned_recipe(task: str, model: str, use: bool = True, stream=None) -> dict:
    """The overrides of ``conf/tuned/<task>/<model>.yaml`` (a run's ``tuned`` layer, :mod:`lightning_implicit.run
    .spec`), saying which recipe a run uses on ``stream`` (stderr: ``--print_config``'s stdout stays YAML), by
    global rank 0 only; ``{}`` when none was tuned or ``use`` is false."""
    from lightning_implicit.tuned import find_tuned, tuned_path

    stream = stream or sys.stderr
    cfg = find_tuned(task, model)
    if cfg is None:
        return {}
    if rank_zero_only.rank != 0:  # the notice once per run, not once per DDP rank
        return dict(cfg.overrides) if use else {}
    if not use:
        print(
            f"not using the tuned config {tuned_path(task, model)} (--no-tuned / TUNED=0): the task's default "
            "recipe",
            file=stream,
        )
        return {}
    print(
        f"using the tuned config {cfg.path} ({cfg.summary()}); --no-tuned / TUNED=0 for the task's default "
        "recipe",
        file=stream,
    )
    return dict(cfg.overrides)


def _values(args: list[str]) -> dict[str, str]:
    """``--key value`` / ``--key=value`` pairs of ``args`` (the last of a repeated key)."""
    out, i = {}, 0
    while i < len(args):
        a = args[i]
        if a.startswith("--") and "=" in a:
            key, value = a[2:].split("=", 1)
            out[key] = value
        elif a.startswith("--") and i + 1 < len(args):
            out[a[2:]] = args[i + 1]
            i += 1
        i += 1
    return out


def tuned_override_note(tuned: list[str], user: list[str]) -> str | None:
    """What a tuned recipe (``tuned``: its overrides) does to the user's own ``--trainer.max_epochs``: its step
    budget (``--trainer.max_steps``) ends training first. ``None`` when it does not."""
    mine, recipe = _values(user), _values(tuned)
    steps = recipe.get("trainer.max_steps")
    if "trainer.max_epochs" not in mine or "trainer.max_steps" in mine or steps in (None, "-1"):
        return None
    return (
        f"note: the tuned recipe stops training after --trainer.max_steps {steps} optimiser steps, whatever "
        f"--trainer.max_epochs {mine['trainer.max_epochs']} asks; add --trainer.max_steps -1 (or --no-tuned, "
        "TUNED=0) to train for those epochs"
    )


def print_sweep(result: RunResult, stream=sys.stdout) -> None:
    """A short terminal table of the shift sweep (printed by global rank 0 only)."""
    if not result.sweep or rank_zero_only.rank != 0:
        return
    keys = [k for k in result.sweep[0] if k != "n"]
    print("  ".join(f"{k:>14}" for k in keys), file=stream)
    for r in result.sweep:
        print(
            "  ".join(f"{r[k]:>14.4g}" if isinstance(r[k], float) else f"{r[k]:>14}" for k in keys),
            file=stream,
        )
    from lightning_implicit.console import metric_notes

    for note in metric_notes(keys):  # (MAPE's definition and units beside the volatility numbers)
        print(f"  {note}", file=stream)
    if result.run_id:
        print(f"MLflow run: {result.run_id}", file=stream)
