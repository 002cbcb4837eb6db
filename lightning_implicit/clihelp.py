"""Help texts of ``lightning-implicit`` and its subcommands: one line per option, the tasks and models found on
the config search path, examples, and where LightningCLI's ``--a.b value`` overrides go.

Light on purpose (argparse and :mod:`lightning_implicit.confpath` only): ``lightning-implicit --help`` and
``lightning-implicit train --help`` answer without importing torch or Lightning.
"""

from __future__ import annotations

import argparse
import textwrap

__all__ = [
    "COMMANDS",
    "OVERRIDES",
    "EXAMPLES",
    "top_help",
    "train_parser",
    "list_parser",
    "fit_parser_kwargs",
    "OneLineParser",
    "footer",
]

# one line per subcommand, in the order of `lightning-implicit --help`
COMMANDS = {
    "train": "fit one model on one task, run the shift sweep, log both to MLflow (make train)",
    "fit": "the same from explicit LightningCLI config files (--config a.yaml --config b.yaml)",
    "test": "re-run the shift sweep of a trained model: a logged MLflow run (--run-id) or a checkpoint (--ckpt_path)",
    "sweep": "Optuna hyper-parameter search over conf/search/<task>.yaml (make sweep)",
    "tune": "tune every (task, model) of a reproduction profile by k-fold CV, write conf/tuned/ (make tune)",
    "budget": "how a comparison of models moves with the training epochs (make budget)",
    "reproduce": "the paper's experiments end to end, and the report (make reproduce)",
    "params": "parameter counts of every configured model of a task",
    "list": "the tasks, models and trainers available (--task T: its models' parameter counts)",
}

OVERRIDES = """\
LightningCLI overrides: any option of the resolved config is set with --a.b value after the command's own
options, e.g. --trainer.max_epochs 5, --model.init_args.kappa 0.9, --data.init_args.n_train 2000,
--data.init_args.shifts "[10, 100, 1000]", --tracking.experiment my-exp (see every key with
`lightning-implicit train --task T --model M --print_config`; with make: ARGS="--trainer.max_epochs 5")."""

EXAMPLES = {
    "train": """\
  lightning-implicit train --task addition --model implicit
  lightning-implicit train --task rolling_argmax --model implicit_rnn --seed 1 --trainer.max_epochs 5
  lightning-implicit train --task spiky --model lstm --trainer gpu --devices 0,2
  make train TASK=addition MODEL=mlp ARGS="--trainer.max_epochs 5\"""",
    "fit": """\
  lightning-implicit fit --config conf/trainer/cpu.yaml --config conf/models/implicit.yaml \\
      --config conf/tasks/addition.yaml --tracking.model_name implicit
  lightning-implicit fit --config my_run.yaml --trainer.max_epochs 5
  lightning-implicit fit --config conf/trainer/cpu.yaml --config conf/models/mlp.yaml \\
      --config conf/tasks/addition.yaml --print_config        # the resolved config, nothing trained""",
    "reproduce": """\
  make reproduce                                       # the quick profile, every task
  make reproduce PROFILE=paper TASKS=addition,spiky WORKERS=2
  lightning-implicit reproduce --profile quick --dry-run    # what would be trained or reused
  lightning-implicit reproduce --report-only                # the report from the runs already in MLflow""",
    "budget": """\
  lightning-implicit budget --task addition --model implicit,mlp --epochs 2,4,8
  lightning-implicit budget --task spiky --model implicit,lstm --epochs 4,8,16 --seeds 0,1 -- --data.init_args.n_train 2000
  make budget TASK=earthquake MODELS=implicit,eikonet EPOCHS=4,8,16,32 ARGS="--data.init_args.coarsen 4\"""",
    "params": """\
  lightning-implicit params --task addition
  lightning-implicit params --task rolling_argmax --task spiky
  lightning-implicit params                             # every task""",
    "list": """\
  lightning-implicit list
  lightning-implicit list --task addition              # one task's parameter table""",
    "tune": """\
  make tune PROFILE=paper TASKS=spiky TRIALS=8 CV=5
  lightning-implicit tune --profile quick --task addition --trials 4 --cv 3
  lightning-implicit tune --profile paper --dry-run        # the pairs and what is left to run""",
}


def footer(command: str) -> str:
    """What ``lightning-implicit <command> --help`` adds after a parser's own help that has no examples."""
    parts = []
    if command in EXAMPLES:
        parts.append("examples:\n" + EXAMPLES[command])
    if command in ("reproduce", "budget"):
        parts.append(
            "Options after -- are LightningCLI overrides applied to every run it trains, e.g.\n"
            '  -- --trainer.max_epochs 5 --data.init_args.n_train 2000 (make ... ARGS="...")'
        )
    return "\n\n".join(parts)


def top_help() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: lightning-implicit <command> [options] [--a.b value ...]",
        "",
        "Implicit deep learning models with PyTorch Lightning, tracked in MLflow.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    lines += [
        "",
        "examples:",
        "  lightning-implicit list                                   # tasks and models",
        "  lightning-implicit train --task addition --model implicit # fit, shift sweep, MLflow run",
        "  lightning-implicit test --run-id <run id>                 # the shift sweep of a logged model again",
        "  lightning-implicit sweep --task addition --model implicit --trials 10",
        "  make ui                                                   # the MLflow UI on port 5000 (PORT=)",
        "",
        OVERRIDES,
        "",
        "`lightning-implicit <command> --help` for a command's options.",
    ]
    return "\n".join(lines)


def _conf_choices(kind: str) -> str:
    from lightning_implicit import confpath

    try:
        found = confpath.names(kind)
    except Exception as err:  # help must print even with a bad search path; say why
        return f"(cannot list: {err})"
    return ", ".join(found)


def _wrap(label: str, text: str) -> str:
    return textwrap.fill(text, width=110, initial_indent=f"  {label:<10}", subsequent_indent=" " * 12)


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one :class:`~lightning_implicit.validate.ConfigError` line pointing
    at ``--help`` (the CLI prints ``error: ...`` and exits 2), not a usage dump."""

    def add_argument(self, *args, **kwargs):
        """argparse's, keeping each option's action (its help names the make variable: :meth:`error`)."""
        action = super().add_argument(*args, **kwargs)
        self.__dict__.setdefault("options", []).append(action)
        return action

    def error(self, message: str):
        import re

        from lightning_implicit.validate import ConfigError

        # the make variable of the option the message names ("argument --seed: invalid int value: 'x'")
        named = re.search(r"argument (--[\w-]+)", message)
        action = named and next((a for a in self.options if named[1] in a.option_strings), None)
        make = re.search(r"make ([A-Z_]+=)", (action and action.help) or "")
        raise ConfigError(f"{message} ({f'make {make[1]}, ' if make else ''}see {self.prog} --help)")


def train_parser() -> argparse.ArgumentParser:
    """``lightning-implicit train``: the shorthand options; everything else is a LightningCLI override."""
    from lightning_implicit import confpath

    try:
        where = ", ".join(str(d) for d in confpath.search_path())
    except Exception as err:
        where = f"(cannot list: {err})"
    epilog = "\n".join(
        [
            f"available (config directories: {where}):",
            _wrap("tasks:", _conf_choices("tasks")),
            _wrap("models:", _conf_choices("models")),
            _wrap("trainers:", _conf_choices("trainer")),
            "(`lightning-implicit list --task T` adds each model's parameter count for task T)",
            "",
            "examples:",
            EXAMPLES["train"],
            "",
            OVERRIDES,
            "",
            textwrap.fill(
                "The run ends with a summary: its MLflow experiment and run, the UI links (`make ui`), the "
                "artifacts; `lightning-implicit test --run-id <run id>` re-runs its shift sweep later.",
                width=110,
            ),
        ]
    )
    p = OneLineParser(
        prog="lightning-implicit train",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=epilog,
        usage="lightning-implicit train --task TASK --model MODEL [options] [--a.b value ...]",
        description=textwrap.fill(
            "Fit MODEL on TASK (in-distribution data), run the shift sweep (the out-of-distribution test sets), and "
            "log the config, data card, metrics, figures and trained model to MLflow. The config stacks "
            "conf/trainer/<trainer>.yaml, conf/models/<model>.yaml, conf/tasks/<task>.yaml and "
            "conf/tuned/<task>/<model>.yaml when tuned.",
            width=110,
        ),
    )
    p.add_argument(
        "--task",
        required=True,
        help="task config name (conf/tasks/<task>.yaml, or a path to a YAML file); make TASK=",
    )
    p.add_argument(
        "--model", required=True, help="model config name (conf/models/<model>.yaml, or a path); make MODEL="
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the data and the initialisation (default 0); make SEED=",
    )
    p.add_argument(
        "--trainer",
        default="cpu",
        help="trainer config: cpu (default), gpu, ddp, multinode (conf/trainer/<name>.yaml); make TRAINER=",
    )
    p.add_argument(
        "--devices", default=None, help="devices per node: a count (4) or a GPU list (0,2); make DEVICES="
    )
    p.add_argument("--nodes", type=int, default=None, help="number of nodes (multi-node DDP; make NODES=)")
    p.add_argument(
        "--data",
        default=None,
        help="data source for tasks that load data (file path or 'synthetic'); make DATA=",
    )
    p.add_argument(
        "--interval", default=None, help="download interval for market data (1d or 1m); make INTERVAL="
    )
    p.add_argument(
        "--no-tuned",
        dest="tuned",
        action="store_false",
        help="ignore conf/tuned/<task>/<model>.yaml (the recipe `make tune` found); make TUNED=0",
    )
    return p


def list_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="lightning-implicit list",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The tasks, models and trainers on the config search path; with --task, that task's models "
        "with their trainable parameter counts at the task's Table 4 sizes.",
        epilog="examples:\n" + EXAMPLES["list"],
    )
    p.add_argument("--task", action="append", help="also this task's parameter table (repeatable)")
    return p


def fit_parser_kwargs() -> dict:
    """``parser_kwargs`` of LightningCLI for ``lightning-implicit fit`` (examples printed as written)."""
    from jsonargparse import DefaultHelpFormatter

    class RawEpilog(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    return {
        "formatter_class": RawEpilog,
        "prog": "lightning-implicit fit",
        "description": "Fit + shift sweep + MLflow run from explicit LightningCLI config files and --a.b value "
        "overrides (`train` builds the same arguments from --task/--model).",
        "epilog": "examples:\n" + EXAMPLES["fit"],
    }
