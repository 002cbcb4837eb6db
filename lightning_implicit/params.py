"""``lightning-implicit params --task T``: every configured model's parameter count beside the implicit one.

The paper sizes its implicit models to have "a similar number of parameters as their non-implicit
counterparts" (section 2.1); this table makes the comparison visible for any task.
"""

from __future__ import annotations

import importlib

import yaml

from lightning_implicit import confpath
from lightning_implicit.implicit import count_parameters
from lightning_implicit.validate import ConfigError

__all__ = ["task_spec", "build_module", "parameter_table", "main"]


def task_datamodule(task: str):
    """The task's datamodule as configured in ``conf/tasks/<task>.yaml`` (no data are generated)."""
    try:
        path = confpath.find("tasks", task)
    except ConfigError as err:
        raise ConfigError(f"{err} (--task)") from None
    confpath.add_user_modules()
    data = yaml.safe_load(path.read_text())["data"]
    module, _, name = data["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**(data.get("init_args") or {}))


def task_spec(task: str):
    return task_datamodule(task).spec


def build_module(spec, model: str):
    """The LightningModule for preset ``model`` of a task (``implicit``/``implicit_rnn``/... or a baseline)."""
    from lightning_implicit.modules import BaselineModule, ImplicitModule

    if model in ("implicit", "implicit_rnn"):
        return ImplicitModule(spec, family=model)
    if model == "implicit_nofeedback":
        return ImplicitModule(spec, family="implicit", feedback=False)
    return BaselineModule(spec, model=model)


def parameter_table(task: str) -> list[tuple[str, int]]:
    """``[(model, trainable parameters)]`` for every preset of the task (implicit models first)."""
    spec = task_spec(task)
    names = sorted(spec.presets, key=lambda m: (not m.startswith("implicit"), m))
    if "implicit" in spec.presets:
        names.insert(names.index("implicit") + 1, "implicit_nofeedback")
    return [(m, count_parameters(build_module(spec, m).net)) for m in names]


def main(argv: list[str] | None = None) -> int:
    from lightning_implicit.clihelp import OneLineParser  # (a bad option: one error: line, exit 2)

    p = OneLineParser(prog="lightning-implicit params", description=__doc__)
    p.add_argument("--task", action="append", help="task name (repeatable); default: every task")
    args = p.parse_args(argv)
    tasks = args.task or confpath.names("tasks")
    for task in tasks:
        rows = parameter_table(task)
        ref = dict(rows).get("implicit")
        print(f"\n{task}")
        for model, n in rows:
            ratio = f"  ({n / ref:.2f}x implicit)" if ref and model != "implicit" else ""
            print(f"  {model:<22}{n:>10,}{ratio}")
    return 0
