"""The console at the CLI boundary: known third-party noise filtered, and a short end-of-run summary.

Only the command-line entry points call :func:`quiet_third_party`; library code never changes warning
filters or logging globally (issue 20).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings

__all__ = [
    "quiet_third_party",
    "print_run_summary",
    "print_sweep_summary",
    "ui_urls",
    "ui_running",
    "ui_hint",
    "pasteable_path",
    "venv_command",
    "load_command",
    "console_callbacks",
    "train_description",
    "metric_notes",
]

# Messages that are not about the user's run (Lightning 2.6 / torch 2.13 / MLflow 3).
_WARNINGS = [
    r".*LightningCLI's args parameter is intended.*",
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*smaller than the logging interval Trainer\(log_every_n_steps.*",
    # DDP: the modules reduce their epoch metrics over the ranks themselves (strategy.reduce), and the shift
    # sweep gathers every rank's predictions and counts each test sample once; torch's own deprecation inside
    # Lightning's all_gather is not the user's either
    r".*when logging on epoch level in distributed setting to accumulate the metric across devices.*",
    r".*Using `DistributedSampler` with the dataloaders. During `trainer.test\(\)`.*",
    r".*torch.distributed.nn.functional.all_gather is deprecated.*",
]
_LOG_SNIPPETS = (
    "litlogger",
    "litmodels",
    "Creating initial MLflow database tables",
    "Updating database tables",
)
# Lines cut out of a message that is otherwise the user's (the model summary table keeps its parameter counts;
# its "Total FLOPs: 0" is Lightning's FLOP counter, which cannot see through the implicit layers' solver).
_LINE_SNIPPETS = ("Total FLOPs",)


class _DropSnippets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if any(s in msg for s in _LOG_SNIPPETS):
            return False
        if any(s in msg for s in _LINE_SNIPPETS):
            kept = [line for line in msg.split("\n") if not any(s in line for s in _LINE_SNIPPETS)]
            record.msg, record.args = "\n".join(kept), ()
            return bool("".join(kept).strip())
        return True


# What a column of the shift-sweep table means, printed under the table when the column is there.
METRIC_NOTES = {
    "mape": "mape = mean(|pred - y| / y) over the truths y > 0: a fraction without units (0.25 = 25 %)",
    "qlike": "qlike = mean(y/pred - log(y/pred) - 1) over y > 0: 0 for a perfect forecast, without units",
}


def metric_notes(columns) -> list[str]:
    """The definitions (:data:`METRIC_NOTES`) of the sweep table's ``columns`` that have one."""
    return [METRIC_NOTES[c] for c in columns if c in METRIC_NOTES]


def _drop_all(record: logging.LogRecord) -> bool:
    return False


def quiet_third_party() -> None:
    """Filter the known warnings and tips (call once, from a CLI entry point). Progress bars of the run stay;
    MLflow's artifact-download bars (a few files, instant) go."""
    for pattern in _WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    flt = _DropSnippets()
    # yfinance logs its own download failures (DNS, cookie/crumb); the market data layer turns them into one
    # DataUnavailableError that says what to do, so none of its records reach the screen
    logging.getLogger("yfinance").addFilter(_drop_all)
    for name in (
        "lightning.pytorch",
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
        "lightning.pytorch.trainer.connectors.logger_connector.logger_connector",
        "lightning.pytorch.callbacks.model_summary",
        "pytorch_lightning",
        "mlflow",
        "mlflow.store.db.utils",
        "alembic",
    ):
        logger = logging.getLogger(name)
        logger.addFilter(flt)
        for h in logger.handlers:
            h.addFilter(flt)


def _ui_base(uri: str) -> str:
    """The UI of a tracking URI: the server itself, or ``make ui`` on port 5000 (``PORT=``) for a local store."""
    from lightning_implicit.redact import redact

    local = f"http://127.0.0.1:{os.environ.get('PORT', '5000')}"
    return redact(uri.rstrip("/")) if uri.startswith("http") else local


def ui_running(base: str) -> bool:
    """Whether an MLflow UI (or tracking server) answers at ``base`` (its ``/health``, within half a second)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{base}/health", timeout=0.5) as r:
            return r.status == 200
    except Exception:  # nothing listening
        return False


def ui_hint(base: str, uri: str | None = None) -> str:
    """The ``UI:`` line when nothing answers at ``base``: the ``make ui`` command for that port, and for a
    sqlite store other than ``./mlruns/mlflow.db`` the store it must serve."""
    import shlex
    from pathlib import Path

    port = base.rsplit(":", 1)[-1].split("/")[0]
    make = "make ui" if port == "5000" else f"make ui PORT={port}"
    default = f"sqlite:///{(Path.cwd() / 'mlruns' / 'mlflow.db').resolve()}"
    if uri and uri.startswith("sqlite:") and uri != default:
        make += f" MLFLOW_TRACKING_URI={shlex.quote(uri)}"
    return f"UI:          not running at {base}; start it with `{make}` (PORT= for another port)"


def ui_urls(uri: str, experiment_id: str, run_ids: list[str]) -> tuple[str, str | None, bool]:
    """``(base URL, run or compare URL, server answering)`` for a tracking URI; ``make ui`` serves port 5000
    (``PORT=``) for a local sqlite store."""
    base = _ui_base(uri)
    if len(run_ids) == 1:
        url = f"{base}/#/experiments/{experiment_id}/runs/{run_ids[0]}"
    else:
        ids = ",".join(f'"{r}"' for r in run_ids)
        url = f'{base}/#/compare-runs?runs=[{ids}]&experiments=["{experiment_id}"]'
    return base, url, ui_running(base)


def pasteable_path(path: str | os.PathLike) -> str:
    """``path`` as a command line can use it from the working directory: relative below it, else absolute."""
    from pathlib import Path

    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def venv_command(name: str = "lightning-implicit") -> str:
    """The console script ``name`` of the running interpreter's environment (``.venv/bin/lightning-implicit``),
    which works without an activated virtualenv; ``python -m lightning_implicit.cli`` when it is not installed."""
    import shlex
    from pathlib import Path

    script = Path(sys.executable).parent / name
    if script.is_file():
        return shlex.quote(pasteable_path(script))
    return f"{shlex.quote(pasteable_path(sys.executable))} -m lightning_implicit.cli"


def _env_prefix(uri: str, conf_path: str | None) -> str:
    """``MLFLOW_TRACKING_URI=... [LIGHTNING_IMPLICIT_CONF_PATH=...] `` for a command pasted into a fresh shell."""
    import shlex

    from lightning_implicit.redact import redact

    # a URL with a password is not printed: the line then reads it from the user's exported variable
    out = f"MLFLOW_TRACKING_URI={shlex.quote(uri)} " if redact(uri) == uri else ""
    if conf_path:
        out += f"LIGHTNING_IMPLICIT_CONF_PATH={shlex.quote(conf_path)} "
    return out


def load_command(run_id: str, uri: str, conf_path: str | None = None) -> str:
    """A shell line that loads run ``run_id``'s trained model with the project's own loader and prints it."""
    import shlex

    # the state-dict format, loaded without unpickling (lightning_implicit.evaluate.load_logged_model)
    code = f'from lightning_implicit.evaluate import load_logged_model; print(load_logged_model("{run_id}"))'
    # the run's task module lives in a user directory: on sys.path before the run's config is loaded
    if conf_path:
        code = f"from lightning_implicit import confpath; confpath.add_user_modules(); {code}"
    python = shlex.quote(pasteable_path(sys.executable))
    return f"{_env_prefix(uri, conf_path)}{python} -c {shlex.quote(code)}"


def print_run_summary(
    run_id: str | None,
    uri: str | None = None,
    headline: str | None = None,
    stream=None,
    checkpoint: str | os.PathLike | None = None,
) -> None:
    """Where the run is: experiment, run, UI URLs (or the ``make ui`` hint), artifacts, checkpoint, and the
    commands that load and re-test its model; each command works pasted as it is into a fresh shell (the
    tracking URI and the run's config directories on it, the CLI by its path in the virtualenv)."""
    import shlex

    stream = stream or sys.stdout
    if not run_id:
        return
    import mlflow

    from lightning_implicit.redact import redact
    from lightning_implicit.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    run = client.get_run(run_id)
    exp = client.get_experiment(run.info.experiment_id)
    base, url, up = ui_urls(uri, exp.experiment_id, [run_id])
    conf_path = run.data.tags.get("conf_path") or None
    cli = venv_command()
    print("\n== run summary ==", file=stream)
    if headline:
        print(f"result:      {headline}", file=stream)
    print(f"experiment:  {exp.name} (id {exp.experiment_id})", file=stream)
    print(f"run:         {run.info.run_name} ({run_id})", file=stream)
    if redact(uri) == uri:
        print(f"store:       {uri} (export MLFLOW_TRACKING_URI={shlex.quote(uri)} to use it)", file=stream)
    else:  # a password in the URL: never on screen; the pasted lines read it from the environment
        print(
            f"store:       {redact(uri)} (export MLFLOW_TRACKING_URI=<this URL with its password>)",
            file=stream,
        )
    print(f"run in UI:   {url}", file=stream)
    print(f"compare:     {base}/#/experiments/{exp.experiment_id} (tick runs, then Compare)", file=stream)
    if not up:
        print(ui_hint(base, uri), file=stream)
    print(f"artifacts:   {redact(run.info.artifact_uri)}", file=stream)
    if checkpoint:
        ckpt = shlex.quote(pasteable_path(checkpoint))
        print(f"checkpoint:  {ckpt}", file=stream)
    if run.data.tags.get("logged_model"):
        print(f"model:       {load_command(run_id, uri, conf_path)}", file=stream)
        print(f"re-test:     {_env_prefix(uri, conf_path)}{cli} test --run-id {run_id}", file=stream)
    elif checkpoint:
        print(f"re-test:     {_env_prefix(uri, conf_path)}{cli} test --ckpt_path {ckpt}", file=stream)


def print_sweep_summary(
    outcomes,
    *,
    experiment: str | None,
    uri: str | None = None,
    storage: str | None = None,
    objective: str = "val/loss",
    stream=None,
) -> None:
    """The end of ``lightning-implicit sweep``: per model the best value, trial and study; the MLflow experiment,
    the parent and best-retrain runs with their UI URLs (or the ``make ui`` hint). ``outcomes`` are the sweep's
    per-model results (``model, study_name, best_value, best_number, parent_run_id, retrain_run_id``)."""
    from lightning_implicit.redact import redact

    stream = stream or sys.stdout
    if not outcomes:
        return
    print("\n== sweep summary ==", file=stream)
    for o in outcomes:
        best = (
            f"{objective} {o.best_value:.4g} (trial #{o.best_number})"
            if o.best_value is not None
            else "no finished trial"
        )
        print(f"{o.model + ':':<12} best {best}; study {o.study_name!r}", file=stream)
    if storage:
        print(f"studies:     {redact(storage)}", file=stream)
    if not experiment:
        print("tracking:    off (--no-tracking): no runs logged", file=stream)
        return
    import mlflow

    from lightning_implicit.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(uri)
    exp = mlflow.MlflowClient(uri).get_experiment_by_name(experiment)
    if exp is None:
        print(f"experiment:  {experiment} (not created: no run was logged)", file=stream)
        return
    base = _ui_base(uri)
    up = ui_running(base)
    print(f"experiment:  {exp.name} (id {exp.experiment_id}) in {redact(uri)}", file=stream)
    for o in outcomes:
        if o.parent_run_id:
            print(
                f"{o.model + ':':<12} parent run {base}/#/experiments/{exp.experiment_id}/runs/{o.parent_run_id}",
                file=stream,
            )
        if o.retrain_run_id:
            print(
                f"{'':<12} best retrained {base}/#/experiments/{exp.experiment_id}/runs/{o.retrain_run_id}",
                file=stream,
            )
    retrained = [o.retrain_run_id for o in outcomes if o.retrain_run_id]
    if len(retrained) > 1:
        ids = ",".join(f'"{r}"' for r in retrained)
        print(
            f'compare:     {base}/#/compare-runs?runs=[{ids}]&experiments=["{exp.experiment_id}"]',
            file=stream,
        )
    else:
        print(f"compare:     {base}/#/experiments/{exp.experiment_id} (tick runs, then Compare)", file=stream)
    if not up:
        print(ui_hint(base, uri), file=stream)


def summary_without_flops(callbacks: list) -> list:
    """``callbacks`` with Lightning's default model summary (``ModelSummary``/``RichModelSummary``, exact types)
    replaced by the same table without FLOPs: Lightning's FLOP counter cannot see into an implicit layer's
    fixed-point solve (it reports "Total FLOPs: 0" for every implicit model). Other callbacks are kept as they
    are, in order."""
    from lightning.pytorch.callbacks import ModelSummary, RichModelSummary

    plain, rich = _summary_classes()
    out = []
    for cb in callbacks:
        # the same object (its depth and options), with the subclass's ``summarize`` (no private state read)
        if type(cb) is RichModelSummary:
            cb.__class__ = rich
        elif type(cb) is ModelSummary:
            cb.__class__ = plain
        out.append(cb)
    return out


# Lightning's RichProgressBar redraws up to ``refresh_rate`` times a second (default 100) in a thread of its own,
# and reads the logged metrics at every batch: at an implicit model's ~1 ms step that was ~15 % of an epoch. Ten
# redraws a second (rich's own default) still show live progress.
LIGHTNING_REFRESH_RATE = 100  # RichProgressBar's default
REFRESH_RATE = 10


def console_callbacks(callbacks: list) -> list:
    """``callbacks`` with Lightning's default console callbacks replaced by this project's: the model summary
    without FLOPs (:func:`summary_without_flops`) and a rich progress bar that counts steps under a step-budget
    recipe (``max_epochs -1`` with ``max_steps``: ``Epoch 15 (step 320/3000)``, not Lightning's ``Epoch 15/-2``)
    and redraws :data:`REFRESH_RATE` times a second where Lightning's default asked for 100 (a
    ``RichProgressBar`` given another ``refresh_rate`` keeps it)."""
    from lightning.pytorch.callbacks import RichProgressBar

    out = []
    for cb in summary_without_flops(callbacks):
        if type(cb) is RichProgressBar:
            rate = REFRESH_RATE if cb.refresh_rate == LIGHTNING_REFRESH_RATE else cb.refresh_rate
            cb = _steps_progress_bar_class()(refresh_rate=rate, theme=cb.theme)
        out.append(cb)
    return out


def train_description(epoch: int, max_epochs: int | None, step: int, max_steps: int) -> str:
    """The progress bar's label: ``Epoch 3/19`` for an epoch budget, ``Epoch 15 (step 320/3000)`` for a step
    budget (``max_epochs`` -1 or ``None`` with ``max_steps`` >= 1)."""
    if max_steps >= 1 and (max_epochs is None or max_epochs < 0):
        return f"Epoch {epoch} (step {step}/{max_steps})"
    return f"Epoch {epoch}" + (f"/{max_epochs - 1}" if max_epochs is not None else "")


def _steps_progress_bar_class():
    from lightning.pytorch.callbacks import RichProgressBar

    class StepsProgressBar(RichProgressBar):
        """Lightning's rich bar, labelled by :func:`train_description`, that takes a training batch's count and
        metrics at most ``refresh_rate`` times a second (what it can draw) instead of at every batch; the last
        batch skipped is drawn at the epoch's end."""

        _drawn_at = -math.inf  # time.monotonic() of the last batch passed on
        _skipped: tuple | None = None  # (outputs, batch, batch_idx) of a batch not passed on since

        def _get_train_description(self, current_epoch: int) -> str:
            t = self.trainer
            text = train_description(current_epoch, t.max_epochs, t.global_step, t.max_steps)
            return f"{text:{len(self.validation_description)}}"

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            now = time.monotonic()
            if self.refresh_rate > 0 and now - self._drawn_at < 1.0 / self.refresh_rate:
                self._skipped = (outputs, batch, batch_idx)
                return
            self._drawn_at, self._skipped = now, None
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            if self._skipped is not None:
                skipped, self._skipped = self._skipped, None
                super().on_train_batch_end(trainer, pl_module, *skipped)
            super().on_train_epoch_end(trainer, pl_module)

    return StepsProgressBar


def _summary_classes():
    from lightning.pytorch.callbacks import ModelSummary, RichModelSummary
    from lightning.pytorch.utilities.model_summary.model_summary import (
        get_formatted_model_size,
        get_human_readable_count,
    )

    class ParamsSummary(ModelSummary):
        @staticmethod
        def summarize(
            summary_data,
            total_parameters,
            trainable_parameters,
            model_size,
            total_training_modes,
            total_flops: int = 0,  # (Lightning >= 2.6 passes it; 2.5 does not)
            **summarize_kwargs,
        ) -> None:
            data = [col for col in summary_data if col[0] != "FLOPs"]
            widths = [max([len(name), *(len(str(v)) for v in values)]) for name, values in data]
            rule = "-" * (sum(widths) + 3 * (len(data) + 1))
            lines = [" | ".join(f"{name:<{w}}" for (name, _), w in zip(data, widths, strict=True)), rule]
            for row in zip(*(values for _, values in data), strict=True):
                lines.append(" | ".join(f"{str(v):<{w}}" for v, w in zip(row, widths, strict=True)))
            trainable, total = int(trainable_parameters), int(total_parameters)
            lines += [
                rule,
                f"{get_human_readable_count(trainable):<10}Trainable params",
                f"{get_human_readable_count(total - trainable):<10}Non-trainable params",
                f"{get_human_readable_count(total):<10}Total params",
                f"{get_formatted_model_size(model_size):<10}Total estimated model params size (MB)",
                f"{total_training_modes['train']:<10}Modules in train mode",
                f"{total_training_modes['eval']:<10}Modules in eval mode",
            ]
            logging.getLogger("lightning.pytorch.callbacks.model_summary").info("\n" + "\n".join(lines))

    class RichParamsSummary(RichModelSummary):
        @staticmethod
        def summarize(
            summary_data,
            total_parameters,
            trainable_parameters,
            model_size,
            total_training_modes,
            total_flops: int = 0,  # (Lightning >= 2.6 passes it; 2.5 does not)
            **summarize_kwargs,
        ) -> None:
            from rich import get_console
            from rich.table import Table

            data = [col for col in summary_data if col[0] != "FLOPs"]
            table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
            table.add_column(" ", style="dim")
            for name, _ in data[1:]:
                table.add_column(
                    name,
                    justify="left" if name in ("Name", "Type", "Mode") else "right",
                    no_wrap=name == "Name",
                )
            for row in zip(*(values for _, values in data), strict=True):
                table.add_row(*row)
            console = get_console()
            console.print(table)
            grid = Table.grid(expand=True)
            grid.add_column()
            trainable, total = int(trainable_parameters), int(total_parameters)
            grid.add_row(f"[bold]Trainable params[/]: {get_human_readable_count(trainable)}")
            grid.add_row(f"[bold]Non-trainable params[/]: {get_human_readable_count(total - trainable)}")
            grid.add_row(f"[bold]Total params[/]: {get_human_readable_count(total)}")
            grid.add_row(
                f"[bold]Total estimated model params size (MB)[/]: {get_formatted_model_size(model_size)}"
            )
            grid.add_row(f"[bold]Modules in train mode[/]: {total_training_modes['train']}")
            grid.add_row(f"[bold]Modules in eval mode[/]: {total_training_modes['eval']}")
            console.print(grid)

    return ParamsSummary, RichParamsSummary
