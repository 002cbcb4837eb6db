"""``lightning-implicit sweep``: Optuna hyper-parameter search over ``conf/search/<task>.yaml``.

Examples::

    make sweep TASK=addition TRIALS=6                   # implicit, then mlp (the file's 'models'), quick budget
    make sweep TASK=addition MODEL=implicit TRIALS=20 WORKERS=2 CV=5 STUDY=add-cv5
    lightning-implicit sweep --task addition --model mlp --trials 10 --full -- --trainer.max_epochs 30 --model.init_args.optim.grad_clip 1.0

``--trials N`` runs N more trials per model in this invocation; the same command again resumes the study
(name ``<task>-<model>`` or ``--study``) in the same storage (``--storage``, ``$OPTUNA_STORAGE``, default
``sqlite:///mlruns/optuna.db``) and adds N more. Everything after ``--`` (and any other ``--a.b value``
option) is a LightningCLI override applied to every trial; a searched parameter with the same key is then
not searched. Ctrl-C or SIGTERM stops cleanly at the end of the current batch, workers' trials included (finished
trials are kept, running ones are FAIL "interrupted"; exit 130 or 143); a second one stops at once. ``--workers K``
runs K processes that live for the whole sweep; one that dies fails only its own trial, which is retried.
"""

from __future__ import annotations

import argparse
import shlex
import sys

__all__ = ["main", "build_parser", "options_from_args"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lightning-implicit sweep",
        description=__doc__,
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
    p.add_argument("--worker-index", dest="worker_index", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--parent-run-id", dest="parent_run_id", default=None, help=argparse.SUPPRESS)
    return p


def options_from_args(argv: list[str]):
    """Parse the command line into :class:`~lightning_implicit.sweep.driver.SweepOptions`."""
    from lightning_implicit.cliargs import comma_list, split_passthrough

    from .driver import SweepOptions

    argv, passthrough = split_passthrough(argv)
    parser = build_parser()
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
    return SweepOptions(models=models, overrides=[*unknown, *passthrough], **kw)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = options_from_args(argv)
    from .driver import run_sweep
    from .space import SearchSpaceError

    try:
        from .storage import mask_url

        return run_sweep(opts, command=mask_url("lightning-implicit sweep " + shlex.join(argv)))
    except SearchSpaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # shorthand_args: unknown task/model config
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
