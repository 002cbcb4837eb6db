"""Command-line entry points: ``lightning-implicit {train,fit,sweep,reproduce,params} ...``.

* ``train --task T --model M [--seed S] [--trainer cpu|gpu|ddp|multinode] [LightningCLI overrides]``:
  stacks ``conf/trainer/<trainer>.yaml``, ``conf/tasks/<T>.yaml`` and ``conf/models/<M>.yaml``, fits, runs the
  shift sweep and logs everything to MLflow.
* ``fit --config a.yaml --config b.yaml ...``: the same with explicit LightningCLI arguments.
* ``sweep``: Optuna hyper-parameter search (see ``lightning_implicit.sweep``).
* ``reproduce``: the paper's experiments and report (see ``lightning_implicit.reproduce``).
* ``budget --task T --model a,b --epochs 4,8,16``: how a comparison moves with the training epochs.
* ``tune``: tune every (task, model) of a reproduction profile by k-fold CV, write ``conf/tuned/`` (see
  ``lightning_implicit.sweep.tune``).
* ``params --task T``: parameter counts of every configured model for a task.
* ``list``: the tasks and models in ``conf/`` and their parameter counts at the Table 4 sizes.
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main"]


def _train(argv: list[str]) -> int:
    from lightning_implicit.runner import run_training, shorthand_args, tuned_args

    p = argparse.ArgumentParser(prog="lightning-implicit train", add_help=True)
    p.add_argument("--task", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--trainer", default="cpu")
    p.add_argument("--devices", default=None,
                   help="devices per node: a count (4) or a GPU list (0,2); make DEVICES=")
    p.add_argument("--nodes", type=int, default=None)
    p.add_argument("--data", default=None, help="data source for tasks that load data (file path or 'synthetic')")
    p.add_argument("--interval", default=None, help="download interval for market data (1d or 1m)")
    p.add_argument("--no-tuned", dest="tuned", action="store_false",
                   help="ignore conf/tuned/<task>/<model>.yaml (the recipe `make tune` found); make TUNED=0")
    known, rest = p.parse_known_args(argv)
    args = shorthand_args(known.task, known.model, known.trainer, known.seed, known.devices, known.nodes)
    args += tuned_args(known.task, known.model, known.tuned)
    if known.data:
        args += ["--data.init_args.data", known.data]
    if known.interval:
        args += ["--data.init_args.interval", known.interval]
    _report(run_training(args + rest))
    return 0


def _report(result) -> None:
    from lightning_implicit.console import print_run_summary
    from lightning_implicit.runner import print_sweep

    print_sweep(result)
    if result.run_id:
        val = ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.val.items()))
        logger = getattr(getattr(result.module, "trainer", None), "logger", None)
        uri = getattr(logger, "_tracking_uri", None)  # the run's own store (--tracking.uri), not the default
        try:
            print_run_summary(result.run_id, uri=uri, headline=val or None)
        except Exception as err:  # noqa: BLE001 - the run is trained and logged; the summary is a courtesy
            print(f"MLflow run: {result.run_id} (no summary: {type(err).__name__}: {err})")


def _list(argv: list[str]) -> int:
    """Tasks and models available in ``conf/``, then each task's models with their parameter counts."""
    from lightning_implicit import params
    from lightning_implicit.runner import conf_dir

    root = conf_dir()
    print("tasks: ", ", ".join(sorted(f.stem for f in (root / "tasks").glob("*.yaml"))))
    print("models:", ", ".join(sorted(f.stem for f in (root / "models").glob("*.yaml"))))
    print("\nparameter counts at each task's Table 4 sizes (lightning-implicit params --task T for one task):")
    return params.main(argv)


def _fit(argv: list[str]) -> int:
    from lightning_implicit.runner import run_training

    _report(run_training(argv))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": _train, "fit": _fit, "list": _list, "sweep": "lightning_implicit.sweep.cli",
                "reproduce": "lightning_implicit.reproduce.cli", "params": "lightning_implicit.params",
                "tune": "lightning_implicit.sweep.tune", "budget": "lightning_implicit.reproduce.budget"}  # fmt: skip
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print(__doc__.strip())
        print(f"\ncommands: {', '.join(commands)}")
        return 0 if (not argv or argv[0] in ("-h", "--help")) else 2
    command = commands[argv[0]]
    from lightning_implicit.console import quiet_third_party

    quiet_third_party()  # the CLI boundary: known third-party warnings and tips, never in library code
    if isinstance(command, str):  # imported only when it runs (optuna, the report stack)
        command = importlib.import_module(command).main
    from lightning_implicit.lifecycle import ExitOnSignal, Terminated

    with ExitOnSignal() as signals:  # SIGTERM/SIGINT: runs closed, exit 128 + signal (lightning_implicit.lifecycle)
        try:
            return signals.exit_code(command(argv[1:]) or 0)
        except Terminated as err:
            print(f"\nstopped: {err} (exit {err.exit_code})", file=sys.stderr)
            return err.exit_code
        except Exception as err:  # data problems are the user's to fix: say what and how, without a traceback
            if type(err).__name__ in ("DataUnavailableError", "DataValidationError", "ConfigError", "StoreError",
                                       "MisconfigurationException"):
                print(f"error: {err}", file=sys.stderr)
                return 2
            raise


if __name__ == "__main__":
    sys.exit(main())
