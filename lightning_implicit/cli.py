"""Command-line entry points: ``lightning-implicit {train,fit,test,sweep,tune,budget,reproduce,params,list} ...``.

* ``train --task T --model M [--seed S] [--trainer cpu|gpu|ddp|multinode] [LightningCLI overrides]``:
  stacks ``conf/trainer/<trainer>.yaml``, ``conf/tasks/<T>.yaml`` and ``conf/models/<M>.yaml``, fits, runs the
  shift sweep and logs everything to MLflow.
* ``fit --config a.yaml --config b.yaml ...``: the same with explicit LightningCLI arguments.
* ``sweep``: Optuna hyper-parameter search (see ``lightning_implicit.sweep``).
* ``reproduce``, ``budget``, ``tune``: the paper's commands (the paper's experiments and report; how a
  comparison moves with the training epochs; tuning every (task, model) of a reproduction profile by k-fold CV
  into ``conf/tuned/``). The library does not import the paper's package: an installed package adds commands
  through the entry-point group ``lightning_implicit.commands`` (``name = "module:main"`` in its
  ``pyproject.toml``), which is how ``lightning_implicit_paper`` adds these three.
* ``params --task T``: parameter counts of every configured model for a task.
* ``list``: the tasks and models in ``conf/`` and their parameter counts at the Table 4 sizes.
* ``test --run-id ID`` (or ``--ckpt_path PATH``): the shift sweep of a trained model again (see
  ``lightning_implicit.evaluate``).

``lightning-implicit --help`` prints :func:`lightning_implicit.clihelp.top_help` (no torch import).
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import EntryPoint, entry_points

__all__ = ["main", "COMMAND_GROUP"]

COMMAND_GROUP = "lightning_implicit.commands"  # entry points: name = "package.module:main"


def _train(argv: list[str]) -> int:
    from lightning_implicit.clihelp import train_parser

    known, rest = train_parser().parse_known_args(argv)  # (--help answers before torch and Lightning load)
    from lightning_implicit.run.spec import RunSpec
    from lightning_implicit.runner import run_training, tuned_recipe

    spec = RunSpec(known.task, known.model, known.seed, known.trainer, known.devices, known.nodes)
    spec = spec.with_layer("tuned", tuned_recipe(known.task, known.model, known.tuned))
    run = {"data.init_args.data": known.data, "data.init_args.interval": known.interval}
    spec = spec.with_layer("run", {k: v for k, v in run.items() if v})  # (--data, --interval when given)
    _report(run_training(spec.to_args() + rest))  # (the user's LightningCLI flags last, as given: they win)
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


def _plugin_commands() -> dict[str, EntryPoint]:
    """The commands that installed packages register (entry-point group :data:`COMMAND_GROUP`), by name."""
    return {ep.name: ep for ep in entry_points(group=COMMAND_GROUP)}


def _load(command: str | EntryPoint):
    """The ``main(argv) -> int`` of a command given as a library module's name or a registered entry point
    (imported only when it runs: optuna, the report stack)."""
    if isinstance(command, str):
        return importlib.import_module(command).main
    return command.load()


def _module_help(name: str, command: str | EntryPoint, argv: list[str]) -> int:
    """A module command's own ``--help``, then the examples and override pointer of :mod:`.clihelp` it lacks."""
    from lightning_implicit.clihelp import footer

    try:
        code = _load(command)(argv)
    except SystemExit as exc:  # argparse's --help
        code = exc.code
    extra = footer(name)
    if extra and not code:
        print("\n" + extra)
    return int(code or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    builtin = {
        "train": _train,
        "fit": _fit,
        "list": _list,
        "sweep": "lightning_implicit.sweep.cli",
        "params": "lightning_implicit.params",
        "test": "lightning_implicit.evaluate",
    }
    plugins = {k: v for k, v in _plugin_commands().items() if k not in builtin}  # (cannot replace a built-in)
    commands = {**builtin, **plugins}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        from lightning_implicit.clihelp import top_help

        print(top_help())
        if argv and argv[0] not in ("-h", "--help"):
            print(
                f"\nerror: unknown command {argv[0]!r}; choose one of {', '.join(commands)}", file=sys.stderr
            )
            return 2
        return 0
    if not callable(commands[argv[0]]) and any(a in ("-h", "--help") for a in argv[1:]):
        return _module_help(argv[0], commands[argv[0]], argv[1:])
    command = commands[argv[0]]
    from lightning_implicit.console import quiet_third_party

    quiet_third_party()  # the CLI boundary: known third-party warnings and tips, never in library code
    from lightning_implicit import confpath

    confpath.add_user_modules()  # modules of the user's config directories (LIGHTNING_IMPLICIT_CONF_PATH)
    if not callable(command):  # imported only when it runs (optuna, the report stack)
        command = _load(command)
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


if __name__ == "__main__":
    sys.exit(main())
