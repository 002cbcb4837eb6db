"""One run specification: :class:`RunSpec`, what a run trains, and the one place that turns it into
LightningCLI input.

A run is a task, a model, a seed and a trainer config, plus ordered layers of overrides (LightningCLI keys
without the leading ``--``, e.g. ``model.init_args.optim.lr``, mapped to values). The config files come first,
in this order (a later one overrides an earlier one): ``conf/trainer/<trainer>.yaml``,
``conf/models/<model>.yaml``, ``conf/tasks/<task>.yaml`` (the task's recipe overrides the model file's
defaults). Then the layers, lowest precedence first (:data:`PRECEDENCE`; docs/design.md has the table):

============== ============================================================================================
``defaults``   what a command gives its runs unless a config says otherwise (:data:`QUIET_TRAINER`: no
               progress bars or checkpoints in bulk runs)
``profile``    a reproduction profile's overrides (``conf/reproduce/<name>.yaml``)
``tuned``      the tuned recipe (``conf/tuned/<task>/<model>.yaml``): it replaces the profile's values of the
               keys it sets (a tuned recipe started from them)
``space``      a search space's fixed values (``fixed:`` of ``conf/search`` / ``conf/tune``)
``trial``      the values a trial drew from the search space
``run``        what the command sets for this run itself: data file, validation fold, MLflow experiment,
               run name and tags
``user``       the user's own flags (``--key value`` on the command line): they always win
============== ============================================================================================

:meth:`RunSpec.merge` applies that order whatever order the layers were added in, and :meth:`RunSpec.to_args`
is the command line. :func:`cli_value` is the one value-to-flag converter.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["PRECEDENCE", "QUIET_TRAINER", "RunSpec", "cli_value", "flag_args", "parse_flags"]

PRECEDENCE = ("defaults", "profile", "tuned", "space", "trial", "run", "user")

# Settings of the runs a command starts in bulk (sweep trials, reproduce's runs): no progress bars, model
# summaries or checkpoints. They change neither the result nor a run's identity.
QUIET_TRAINER = {
    "trainer.enable_progress_bar": False,
    "trainer.enable_model_summary": False,
    "trainer.enable_checkpointing": False,
}


def cli_value(v: Any) -> str:
    """A value as LightningCLI (jsonargparse) reads it on the command line: ``true``/``false``, ``null``, a
    number as Python writes it (``repr``: ``0.001``, ``1e-05``), a string as it is, a list or mapping as JSON."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(list(v) if isinstance(v, tuple) else v)
    return str(v)


def flag_args(overrides: Mapping[str, Any]) -> list[str]:
    """``{key: value}`` as LightningCLI arguments ``--key value`` (in the mapping's order)."""
    return [a for k, v in overrides.items() for a in (f"--{k}", cli_value(v))]


def parse_flags(argv: Iterable[str]) -> dict[str, str]:
    """LightningCLI arguments ``--key value`` / ``--key=value`` as ``{key: value}`` (values as given; a key
    given twice keeps its last value, as LightningCLI does). Raises ``ValueError`` for anything else."""
    out: dict[str, str] = {}
    items = list(argv)
    i = 0
    while i < len(items):
        a = items[i]
        if not a.startswith("--") or len(a) == 2:
            raise ValueError(f"expected a LightningCLI option --key value, got {a!r}")
        if "=" in a:
            k, v = a[2:].split("=", 1)
            i += 1
        elif i + 1 < len(items):
            k, v = a[2:], items[i + 1]
            i += 2
        else:
            raise ValueError(f"option {a!r} has no value")
        out.pop(k, None)  # (re-set keys move to the end: the order of the command line)
        out[k] = v
    return out


@dataclass(frozen=True)
class RunSpec:
    """What one run trains: ``task``, ``model`` (config names found on the config search path), ``seed``
    (``None``: the config's), ``trainer`` (``conf/trainer/<trainer>.yaml``), ``devices`` / ``nodes`` (the
    trainer's device count or GPU list and node count; ``None``: the trainer file's), and ``layers``: named
    override dicts, merged in the order of :data:`PRECEDENCE`."""

    task: str
    model: str
    seed: int | None = None
    trainer: str = "cpu"
    devices: int | str | None = None
    nodes: int | None = None
    layers: tuple[tuple[str, Mapping[str, Any]], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name, _ in self.layers:
            if name not in PRECEDENCE:
                raise ValueError(f"unknown override layer {name!r}: choose one of {', '.join(PRECEDENCE)}")

    def with_layer(self, name: str, overrides: Mapping[str, Any] | None) -> RunSpec:
        """A copy with one more layer (merged after any earlier layer of the same name)."""
        if not overrides:
            return self
        return replace(self, layers=(*self.layers, (name, dict(overrides))))

    def layer(self, name: str) -> dict[str, Any]:
        """The overrides of one layer (several of the same name merged in the order they were added)."""
        out: dict[str, Any] = {}
        for n, over in self.layers:
            if n == name:
                out.update(over)
        return out

    def merge(self) -> dict[str, Any]:
        """Every override key with its winning value: the layers in the order of :data:`PRECEDENCE`, a later
        layer's value replacing an earlier one's (the insertion order is the order of first setting)."""
        out: dict[str, Any] = {}
        for name in PRECEDENCE:
            out.update(self.layer(name))
        return out

    def config_args(self) -> list[str]:
        """The config files (trainer, model, task) and the run's shorthands as LightningCLI arguments: what
        ``make train TASK=... MODEL=...`` runs before any override. Raises
        :class:`~lightning_implicit.validate.ConfigError` for a name found on no config directory."""
        from lightning_implicit import confpath

        files = [
            confpath.find("trainer", self.trainer),
            confpath.find("models", self.model),
            confpath.find("tasks", self.task),
        ]
        out = [a for f in files for a in ("--config", str(f))]
        out += ["--tracking.model_name", confpath.name_of(self.model)]
        if self.seed is not None:
            out += ["--seed_everything", str(self.seed)]
        if self.devices is not None:
            devices = str(self.devices)  # a count ("4") or a GPU list ("0,2" -> [0, 2])
            out += ["--trainer.devices", f"[{devices}]" if "," in devices else devices]
        if self.nodes is not None:
            out += ["--trainer.num_nodes", str(self.nodes)]
        return out

    def to_args(self) -> list[str]:
        """The LightningCLI arguments of this run: :meth:`config_args`, then :meth:`merge` as flags."""
        return self.config_args() + flag_args(self.merge())
