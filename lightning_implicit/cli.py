"""Command-line entry points: ``lightning-implicit {train,fit,test,sweep,tune,budget,reproduce,params,list} ...``.

* ``train --task T --model M [--seed S] [--trainer cpu|gpu|ddp|multinode] [LightningCLI overrides]``:
  stacks ``conf/trainer/<trainer>.yaml``, ``conf/tasks/<T>.yaml`` and ``conf/models/<M>.yaml``, fits, runs the
  shift sweep and logs everything to MLflow.
* ``fit --config a.yaml --config b.yaml ...``: the same with explicit LightningCLI arguments.
* ``sweep``: Optuna hyper-parameter search (see ``lightning_implicit.sweep``).
* ``reproduce``: the paper's experiments and report (see ``lightning_implicit_paper``).
* ``budget --task T --model a,b --epochs 4,8,16``: how a comparison moves with the training epochs.
* ``tune``: tune every (task, model) of a reproduction profile by k-fold CV, write ``conf/tuned/`` (see
  ``lightning_implicit.sweep.tune``).
* ``params --task T``: parameter counts of every configured model for a task.
* ``list``: the tasks and models in ``conf/`` and their parameter counts at the Table 4 sizes.
* ``test --run-id ID`` (or ``--ckpt_path PATH``): the shift sweep of a trained model again (see
  ``lightning_implicit.evaluate``).

``lightning-implicit --help`` prints :func:`lightning_implicit.clihelp.top_help` (no torch import).
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["main"]


def _train(argv: list[str]) -> int:
    from lightning_implicit.clihelp import train_parser

    known, rest = train_parser().parse_known_args(argv)  # (--help answers before torch and Lightning load)
    from lightning_implicit.runner import run_training, shorthand_args, tuned_args

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
    from lightning_implicit.clihelp import list_parser

    list_parser().parse_args(argv)  # --help, and a clear error for an unknown option
    from lightning_implicit import confpath, params

    print("tasks: ", ", ".join(confpath.names("tasks")))
    print("models:", ", ".join(confpath.names("models")))
    print("config directories:", ", ".join(str(d) for d in confpath.search_path()))
    print(
        "\nparameter counts at each task's Table 4 sizes (lightning-implicit params --task T for one task):"
    )
    return params.main(argv)


def _fit(argv: list[str]) -> int:
    from lightning_implicit.runner import run_training

    if "-h" in argv or "--help" in argv:
        from lightning_implicit.clihelp import fit_parser_kwargs
        from lightning_implicit.runner import ImplicitCLI

        ImplicitCLI(args=argv, parser_kwargs=fit_parser_kwargs())  # prints the help and exits 0

    _report(run_training(argv))
    return 0


def _module_help(name: str, module: str, argv: list[str]) -> int:
    """A module command's own ``--help``, then the examples and override pointer of :mod:`.clihelp` it lacks."""
    from lightning_implicit.clihelp import footer

    try:
        code = importlib.import_module(module).main(argv)
    except SystemExit as exc:  # argparse's --help
        code = exc.code
    extra = footer(name)
    if extra and not code:
        print("\n" + extra)
    return int(code or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {
        "train": _train,
        "fit": _fit,
        "list": _list,
        "sweep": "lightning_implicit.sweep.cli",
        "reproduce": "lightning_implicit_paper.cli",
        "params": "lightning_implicit.params",
        "tune": "lightning_implicit.sweep.tune",
        "budget": "lightning_implicit_paper.budget",
    }
    commands["test"] = "lightning_implicit.evaluate"
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        from lightning_implicit.clihelp import top_help

        print(top_help())
        if argv and argv[0] not in ("-h", "--help"):
            print(
                f"\nerror: unknown command {argv[0]!r}; choose one of {', '.join(commands)}", file=sys.stderr
            )
            return 2
        return 0
    if isinstance(commands[argv[0]], str) and any(a in ("-h", "--help") for a in argv[1:]):
        return _module_help(argv[0], commands[argv[0]], argv[1:])
    command = commands[argv[0]]
    from lightning_implicit.console import quiet_third_party

    quiet_third_party()  # the CLI boundary: known third-party warnings and tips, never in library code
    from lightning_implicit import confpath

    confpath.add_user_modules()  # modules of the user's config directories (LIGHTNING_IMPLICIT_CONF_PATH)
    if isinstance(command, str):  # imported only when it runs (optuna, the report stack)
        command = importlib.import_module(command).main
    from lightning_implicit.lifecycle import ExitOnSignal, Terminated

    with (
        ExitOnSignal() as signals
    ):  # SIGTERM/SIGINT: runs closed, exit 128 + signal (lightning_implicit.lifecycle)
        try:
            return signals.exit_code(command(argv[1:]) or 0)
        except Terminated as err:
            print(f"\nstopped: {err} (exit {err.exit_code})", file=sys.stderr)
            return err.exit_code
        except Exception as err:  # data problems are the user's to fix: say what and how, without a traceback
            if type(err).__name__ in (
                "DataUnavailableError",
                "DataValidationError",
                "ConfigError",
                "StoreError",
                "MisconfigurationException",
            ):
                print(f"error: {err}", file=sys.stderr)
                return 2
            raise


def run() -> None:
    """The ``lightning-implicit`` console script: :func:`main`, then a prompt exit after a signal
    (:func:`lightning_implicit.lifecycle.exit_process`)."""
    from lightning_implicit.lifecycle import exit_process

    exit_process(main())


if __name__ == "__main__":
    run()
