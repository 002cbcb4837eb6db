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
    check_shorthand(known.data, known.devices)
    from lightning_implicit.run.spec import RunSpec, flag_args
    from lightning_implicit.runner import run_training, tuned_override_note, tuned_recipe

    spec = RunSpec(known.task, known.model, known.seed, known.trainer, known.devices, known.nodes)
    recipe = tuned_recipe(known.task, known.model, known.tuned)
    note = tuned_override_note(
        flag_args(recipe), rest
    )  # the user's max_epochs that the recipe's steps override
    if note:
        print(note, file=sys.stderr)
    spec = spec.with_layer("tuned", recipe)
    run = {"data.init_args.data": known.data, "data.init_args.interval": known.interval}
    spec = spec.with_layer("run", {k: v for k, v in run.items() if v})  # (--data, --interval when given)
    _report(run_training(spec.to_args() + rest))  # (the user's LightningCLI flags last, as given: they win)
    return 0


def check_shorthand(data: str | None = None, devices: str | None = None) -> None:
    """``train``'s own mistakes decidable before torch and Lightning load (the config names are checked by
    :func:`check_named_configs`): a data file that does not exist, a malformed device list. Raises
    :class:`ConfigError` naming the make variable and the flag that fix it."""
    import os

    from lightning_implicit.validate import ConfigError

    # (a link whose target is missing or loops is the loader's to name: it says which, and why)
    if data and data != "synthetic" and not os.path.lexists(os.path.expanduser(data)):
        raise ConfigError(
            f"--data {data}: no such file; give an existing CSV/parquet file (make DATA=path) or DATA=synthetic"
        )
    ok = str(devices) in ("auto", "-1") or all(part.strip().isdigit() for part in str(devices).split(","))
    if devices is not None and not ok:
        raise ConfigError(
            f"--devices {devices}: give a count (DEVICES=4), a list of GPU indices (DEVICES=0,2), auto or -1"
        )


# the make variable of a command's --task/--model/--trainer (make tune TASKS=, make budget MODELS=)
_MAKE_VARIABLE = {"--task": "TASK", "--model": "MODEL", "--trainer": "TRAINER"}
_MAKE_VARIABLE_OF = {("tune", "--task"): "TASKS", ("budget", "--model"): "MODELS"}


def check_named_configs(command: str, argv: list[str]) -> None:
    """Every config named by ``--task``, ``--model`` or ``--trainer`` in a command's own options (before ``--``;
    comma-separated lists too) exists on the config search path; else :class:`ConfigError` naming the choices,
    the make variable and the flag."""
    from lightning_implicit import confpath
    from lightning_implicit.validate import ConfigError

    kinds = {"--task": "tasks", "--model": "models", "--trainer": "trainer"}
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        flag, eq, value = arg.partition("=")
        if flag not in kinds:
            continue
        if not eq:
            if i + 1 >= len(argv):
                continue  # (the command's own parser says that the value is missing)
            value = argv[i + 1]
        for name in (part.strip() for part in value.split(",")):
            try:
                if name:
                    confpath.find(kinds[flag], name)
            except ConfigError as err:
                var = _MAKE_VARIABLE_OF.get((command, flag), _MAKE_VARIABLE[flag])
                raise ConfigError(f"{err} (make {var}=, {flag})") from None


def _report(result) -> None:
    from lightning_implicit.console import print_run_summary
    from lightning_implicit.runner import print_sweep

    print_sweep(result)
    if result.run_id:
        val = ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.val.items()))
        trainer = getattr(result.module, "trainer", None)
        logger = getattr(trainer, "logger", None)
        # the run's own store (--tracking.uri), not the default: its MlflowClient's
        uri = getattr(getattr(logger, "experiment", None), "tracking_uri", None)
        ckpt = getattr(getattr(trainer, "checkpoint_callback", None), "best_model_path", None) or None
        try:
            print_run_summary(result.run_id, uri=uri, headline=val or None, checkpoint=ckpt)
        except Exception as err:  # the run is trained and logged; the summary is a courtesy
            print(f"MLflow run: {result.run_id} (no summary: {type(err).__name__}: {err})")


def _list(argv: list[str]) -> int:
    """Tasks, models and trainers on the config search path (no torch import: about a second); with ``--task``
    that task's parameter table too."""
    from lightning_implicit.clihelp import list_parser

    ns = list_parser().parse_args(argv)  # --help, and a clear error for an unknown option
    from lightning_implicit import confpath

    print("tasks:   ", ", ".join(confpath.names("tasks")))
    print("models:  ", ", ".join(confpath.names("models")))
    print("trainers:", ", ".join(confpath.names("trainer")))
    print("config directories:", ", ".join(str(d) for d in confpath.search_path()))
    if not ns.task:
        print(
            "\nparameter counts at a task's Table 4 sizes: lightning-implicit list --task T "
            "(or lightning-implicit params for every task)"
        )
        return 0
    from lightning_implicit import params

    print("\nparameter counts at the task's Table 4 sizes:")
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


def _one_line(err: Exception) -> str:
    """A user error's message for the ``error:`` line: the market data's "no data" block (what failed, the
    accepted file layouts, how to pass a file) shortened to what failed and what to do."""
    text = str(err).strip()
    lines = text.splitlines()
    if len(lines) > 2 and any(line.startswith("Accepted minute-bar file layouts") for line in lines):
        return f"{lines[0]} {lines[-1]} (accepted file layouts: docs/market-data.md)"
    return text


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
    if argv and argv[0] not in ("-h", "--help") and argv[0] not in commands:
        from lightning_implicit.cliargs import did_you_mean

        hint = did_you_mean(argv[0], commands) or f"; choose one of {', '.join(commands)}"
        print(f"error: unknown command {argv[0]!r}{hint} (lightning-implicit --help)", file=sys.stderr)
        return 2
    if not argv or argv[0] in ("-h", "--help"):
        from lightning_implicit.clihelp import top_help

        print(top_help())
        return 0
    if not callable(commands[argv[0]]) and any(a in ("-h", "--help") for a in argv[1:]):
        return _module_help(argv[0], commands[argv[0]], argv[1:])
    command = commands[argv[0]]
    from lightning_implicit.console import quiet_third_party

    quiet_third_party()  # the CLI boundary: known third-party warnings and tips, never in library code
    from lightning_implicit.redact import redact_process_output

    redact_process_output()  # no password of a store URL in a log line or a traceback
    from lightning_implicit.store_waits import bound_store_waits

    bound_store_waits()  # a store that does not answer fails in seconds (retries and timeouts bounded)
    from lightning_implicit import confpath
    from lightning_implicit.validate import ConfigError

    try:  # decided before the command's heavy imports (torch, Lightning, optuna): an answer in about a second
        confpath.add_user_modules()  # modules of the user's config directories (LIGHTNING_IMPLICIT_CONF_PATH)
        if argv[0] not in ("fit", "reproduce", "list"):
            check_named_configs(argv[0], argv[1:])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
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
            names = {
                c.__name__ for c in type(err).__mro__
            }  # (a subclass of ConfigError too: TunedConfigError, ...)
            if names & {
                "DataUnavailableError",
                "DataValidationError",
                "ConfigError",
                "StoreError",
                "MisconfigurationException",
            }:
                print(f"error: {_one_line(err)}", file=sys.stderr)
                return 2
            raise


def run() -> None:
    """The ``lightning-implicit`` console script: :func:`main`, then a prompt exit after a signal
    (:func:`lightning_implicit.lifecycle.exit_process`)."""
    from lightning_implicit.lifecycle import exit_process

    exit_process(main())


if __name__ == "__main__":
    run()
