"""The console at the CLI boundary: known third-party noise filtered, and a short end-of-run summary.

Only the command-line entry points call :func:`quiet_third_party`; library code never changes warning
filters or logging globally (issue 20).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

__all__ = ["quiet_third_party", "print_run_summary", "ui_urls"]

# Messages that are not about the user's run (Lightning 2.6 / torch 2.13 / MLflow 3).
_WARNINGS = [
    r".*LightningCLI's args parameter is intended.*",
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*smaller than the logging interval Trainer\(log_every_n_steps.*",
]
_LOG_SNIPPETS = ("litlogger", "litmodels", "Total FLOPs", "Creating initial MLflow database tables",
                 "Updating database tables")  # fmt: skip


class _DropSnippets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(s in msg for s in _LOG_SNIPPETS)


def quiet_third_party() -> None:
    """Filter the known warnings and tips (call once, from a CLI entry point). Progress bars stay."""
    for pattern in _WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    flt = _DropSnippets()
    for name in ("lightning.pytorch", "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.trainer.connectors.logger_connector.logger_connector",
                 "mlflow", "mlflow.store.db.utils", "alembic"):  # fmt: skip
        logger = logging.getLogger(name)
        logger.addFilter(flt)
        for h in logger.handlers:
            h.addFilter(flt)


def ui_urls(uri: str, experiment_id: str, run_ids: list[str]) -> tuple[str, str | None, bool]:
    """``(base URL, run or compare URL, server answering)`` for a tracking URI; ``make ui`` serves port 5000
    (``PORT=``) for a local sqlite store."""
    import urllib.request

    base = uri.rstrip("/") if uri.startswith("http") else f"http://127.0.0.1:{os.environ.get('PORT', '5000')}"
    if len(run_ids) == 1:
        url = f"{base}/#/experiments/{experiment_id}/runs/{run_ids[0]}"
    else:
        ids = ",".join(f'"{r}"' for r in run_ids)
        url = f"{base}/#/compare-runs?runs=[{ids}]&experiments=[\"{experiment_id}\"]"
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=0.5) as r:
            up = r.status == 200
    except Exception:  # noqa: BLE001 - nothing listening
        up = False
    return base, url, up


def print_run_summary(run_id: str | None, uri: str | None = None, headline: str | None = None,
                      stream=None) -> None:  # fmt: skip
    """Where the run is: experiment, run, UI URLs (or the ``make ui`` hint), artifacts."""
    stream = stream or sys.stdout
    if not run_id:
        return
    import mlflow

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
    print(f"store:       {uri}", file=stream)
    print(f"run in UI:   {url}", file=stream)
    print(f"compare:     {base}/#/experiments/{exp.experiment_id} (tick runs, then Compare)", file=stream)
    if not up:
        print("UI:          not running; start it with `make ui` (PORT=5001 for another port)", file=stream)
    print(f"artifacts:   {run.info.artifact_uri}", file=stream)
