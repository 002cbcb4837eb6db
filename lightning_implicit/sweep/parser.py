"""The command line of ``lightning-implicit sweep`` (:mod:`.cli`), parsed into the fields of
:class:`~lightning_implicit.sweep.driver.SweepOptions` (below the command and the driver)."""

from __future__ import annotations

import argparse

__all__ = ["build_parser", "parse_options"]


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``lightning-implicit sweep`` (``description``: its ``--help`` text)."""
    from lightning_implicit.clihelp import OneLineParser  # (a bad option: one error: line, exit 2)

    p = OneLineParser(
        prog="lightning-implicit sweep",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", required=True, help="task config name (conf/tasks/<task>.yaml)")
    p.add_argument(
        "--model",
        default=None,
        help="model(s) to sweep, comma-separated; default: the search file's 'models' list",
    )
    p.add_argument(
        "--trials", type=int, default=20, help="trials to run in this invocation, per model (default 20)"
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the study (default 1)")
    p.add_argument(
        "--cv",
        type=int,
        default=1,
        help="k-fold cross-validation: objective = mean val/loss over folds 0..k-1 (default 1: one split)",
    )
    p.add_argument(
        "--study", default=None, help="study name (default <task>-<model>; several models: <study>-<model>)"
    )
    p.add_argument(
        "--data", default=None, help="data source for tasks that load data (file path or 'synthetic')"
    )
    p.add_argument("--interval", default=None, help="download interval for market data (1d or 1m)")
    p.add_argument("--epochs", type=int, default=None, help="fix trainer.max_epochs (not searched then)")
    p.add_argument("--n-train", dest="n_train", type=int, default=None, help="fix data.init_args.n_train")
    p.add_argument("--n-test", dest="n_test", type=int, default=None, help="fix data.init_args.n_test")
    p.add_argument("--seed", type=int, default=0, help="sampler and training seed (default 0)")
    p.add_argument(
        "--full",
        action="store_true",
        help="the paper's budget: ignore the search file's 'quick' block (sizes, epochs)",
    )
    p.add_argument("--trainer", default="cpu", help="trainer config (conf/trainer/<name>.yaml)")
    p.add_argument("--search-file", dest="search_file", default=None, help="default conf/search/<task>.yaml")
    p.add_argument(
        "--storage",
        default=None,
        help="Optuna storage URL (default $OPTUNA_STORAGE or sqlite:///mlruns/optuna.db; journal:<file>)",
    )
    p.add_argument(
        "--tracking-uri",
        dest="tracking_uri",
        default=None,
        help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)",
    )
    p.add_argument("--experiment", default=None, help="MLflow experiment (default: the task name)")
    p.add_argument("--no-tracking", dest="tracking", action="store_false", help="no MLflow runs")
    p.add_argument(
        "--no-retrain",
        dest="retrain",
        action="store_false",
        help="do not retrain the best config with the shift sweep at the end",
    )
    p.add_argument("--heartbeat", type=int, default=10, help="heartbeat interval in s (RDB storages; 0: off)")
    p.add_argument(
        "--grace", type=int, default=30, help="a RUNNING trial without heartbeat for this long is failed"
    )
    p.add_argument(
        "--max-retry", dest="max_retry", type=int, default=1, help="re-runs of a dead worker's trial"
    )
    p.add_argument(
        "--min-converged",
        dest="min_converged",
        type=float,
        default=0.5,
        help="prune implicit trials whose solver converges on fewer training samples per epoch (0: off)",
    )
    p.add_argument("--timeout", type=float, default=None, help="stop starting trials after this many seconds")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per trial process (default 1; 0: torch's default, one per core)",
    )
    p.add_argument("--verbose", action="store_true", help="show Lightning/Optuna logs and solver warnings")
    return p


def parse_options(argv: list[str], description: str | None = None) -> dict:
    """The command line as the keyword arguments of :class:`~lightning_implicit.sweep.driver.SweepOptions`
    (LightningCLI overrides, after ``--`` or as ``--a.b value``, in ``overrides``; ``description``: the
    ``--help`` text)."""
    from lightning_implicit.cliargs import comma_list, split_passthrough

    argv, passthrough = split_passthrough(argv)
    parser = build_parser(description)
    ns, unknown = parser.parse_known_args(argv)
    for a in unknown:
        if a.startswith("--") and "." not in a.split("=", 1)[0]:
            parser.error(
                f"unrecognized argument {a!r} (LightningCLI overrides look like --trainer.max_epochs 5)"
            )
    if unknown and not unknown[0].startswith("--"):
        parser.error(f"unrecognized argument {unknown[0]!r}")
    models = comma_list(ns.model)
    kw = {k: v for k, v in vars(ns).items() if k != "model"}
    return {"models": models, "overrides": [*unknown, *passthrough], **kw}
