"""The console at the CLI boundary: known third-party noise filtered, and a short end-of-run summary.

Only the command-line entry points call :func:`quiet_third_party`; library code never changes warning
filters or logging globally (issue 20).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

__all__ = ["quiet_third_party", "print_run_summary", "print_sweep_summary", "ui_urls"]

# Messages that are not about the user's run (Lightning 2.6 / torch 2.13 / MLflow 3).
_WARNINGS = [
    r".*LightningCLI's args parameter is intended.*",
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*smaller than the logging interval Trainer\(log_every_n_steps.*",
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


def quiet_third_party() -> None:
    """Filter the known warnings and tips (call once, from a CLI entry point). Progress bars of the run stay;
    MLflow's artifact-download bars (a few files, instant) go."""
    for pattern in _WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    flt = _DropSnippets()
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
    import urllib.request

    try:
        with urllib.request.urlopen(f"{base}/health", timeout=0.5) as r:
            return r.status == 200
    except Exception:  # noqa: BLE001 - nothing listening
        return False


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


def print_run_summary(
    run_id: str | None, uri: str | None = None, headline: str | None = None, stream=None
) -> None:
    """Where the run is: experiment, run, UI URLs (or the ``make ui`` hint), artifacts."""
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
    print("\n== run summary ==", file=stream)
    if headline:
        print(f"result:      {headline}", file=stream)
    print(f"experiment:  {exp.name} (id {exp.experiment_id})", file=stream)
    print(f"run:         {run.info.run_name} ({run_id})", file=stream)
    print(f"store:       {redact(uri)}", file=stream)
    print(f"run in UI:   {url}", file=stream)
    print(f"compare:     {base}/#/experiments/{exp.experiment_id} (tick runs, then Compare)", file=stream)
    if not up:
        print("UI:          not running; start it with `make ui` (PORT=5001 for another port)", file=stream)
    print(f"artifacts:   {redact(run.info.artifact_uri)}", file=stream)
    model_uri = run.data.tags.get("logged_model")
    if model_uri:
        print(
            f"model:       {model_uri}/state_dict.pt (lightning_implicit.evaluate.load_logged_model({run_id!r}))",
            file=stream,
        )
        print(f"re-test:     lightning-implicit test --run-id {run_id}", file=stream)


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
        print("UI:          not running; start it with `make ui` (PORT=5001 for another port)", file=stream)


def summary_without_flops(callbacks: list) -> list:
    """``callbacks`` with Lightning's default model summary (``ModelSummary``/``RichModelSummary``, exact types)
    replaced by the same table without FLOPs: Lightning's FLOP counter cannot see into an implicit layer's
    fixed-point solve (it reports "Total FLOPs: 0" for every implicit model). Other callbacks are kept as they
    are, in order."""
    from lightning.pytorch.callbacks import ModelSummary, RichModelSummary

    plain, rich = _summary_classes()
    out = []
    for cb in callbacks:
        if type(cb) is RichModelSummary:
            cb = rich(max_depth=cb._max_depth, **cb._summarize_kwargs)
        elif type(cb) is ModelSummary:
            cb = plain(max_depth=cb._max_depth, **cb._summarize_kwargs)
        out.append(cb)
    return out


def _summary_classes():
    from lightning.pytorch.callbacks import ModelSummary, RichModelSummary
    from lightning.pytorch.utilities.model_summary.model_summary import (
        _format_summary_table,
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
            total_flops,
            **summarize_kwargs,
        ) -> None:
            data = [col for col in summary_data if col[0] != "FLOPs"]
            table = _format_summary_table(
                total_parameters, trainable_parameters, model_size, total_training_modes, total_flops, *data
            )
            lines = [line for line in table.splitlines() if "Total FLOPs" not in line]
            logging.getLogger("lightning.pytorch.callbacks.model_summary").info("\n" + "\n".join(lines))

    class RichParamsSummary(RichModelSummary):
        @staticmethod
        def summarize(
            summary_data,
            total_parameters,
            trainable_parameters,
            model_size,
            total_training_modes,
            total_flops,
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
