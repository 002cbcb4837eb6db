"""Tuned configs: ``conf/tuned/<task>/<model>.yaml``, the recipe a tuning study found, with its provenance.

A tuned config is data, written by ``lightning-implicit tune`` (``make tune``) and read by ``train`` and
``reproduce``. Its ``overrides`` are LightningCLI keys (what ``make train`` accepts as ``--<key> <value>``),
applied after the trainer, model and task config files; ``provenance`` says where they came from::

    task: rolling_argmax
    model: implicit_rnn
    overrides: {model.init_args.optim.lr: 0.0132, data.init_args.batch_size: full, trainer.max_epochs: 600}
    provenance:
      study: tune-paper-rolling_argmax-implicit_rnn
      storage: sqlite:///mlruns/optuna.db
      objective: val/loss, mean over 5 folds of the in-distribution data (the shift sweep never enters it)
      trials: {complete: 7, pruned: 1, fail: 0}
      cv_folds: 5
      cv_score: {mean: 0.083, sd: 0.004, folds: [...]}
      budget: 8 trials per model, ...
      space_edges: [lr=0.0475 at its upper bound 0.05]       # a widened search could pass these
      space_limits: [kappa=0.97 at its upper bound 0.99 (the model's limit)]   # and not these (optional)
      date: 2026-12-04T03:00:00+00:00
      git_commit: 1b99738...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lightning_implicit import configfile
from lightning_implicit.validate import ConfigError

__all__ = ["TunedConfig", "TunedFile", "TunedConfigError", "tuned_path", "load_tuned", "find_tuned"]

FIX = "fix it, delete it, or pass --no-tuned (make TUNED=0) to train without it"


class TunedConfigError(ConfigError):
    """A tuned config file that cannot be used; the message names the file and the fix."""


@dataclass
class TunedFile:
    """A tuned config file's schema (``overrides`` is required; see the module docstring)."""

    overrides: dict  # bare dict: values kept as written
    task: str = ""
    model: str = ""
    provenance: dict | None = None


@dataclass
class TunedConfig:
    task: str
    model: str
    overrides: dict  # bare dict: values kept as written
    provenance: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def cli_args(self) -> list[str]:
        """The overrides as LightningCLI arguments (``--key value``)."""
        from lightning_implicit.run.spec import flag_args

        return flag_args(self.overrides)

    def summary(self) -> str:
        """One line for the console and the report: where the recipe came from."""
        p = self.provenance
        score = p.get("cv_score") or {}
        trials = p.get("trials") or {}
        bits = [
            f"study {p.get('study', '?')}",
            f"{trials.get('complete', '?')} complete / {trials.get('pruned', 0)} pruned trials",
        ]
        if score.get("mean") is not None:
            bits.append(
                f"CV {p.get('cv_folds', '?')}-fold val/loss {score['mean']:.4g} ± {score.get('sd', 0):.2g}"
            )
        if p.get("date"):
            bits.append(str(p["date"])[:10])
        return ", ".join(bits)

    def to_yaml(self) -> str:
        head = (
            f"# Tuned recipe for {self.task} / {self.model}, written by `lightning-implicit tune`; the overrides are\n"
            "# LightningCLI keys applied after conf/trainer, conf/models and conf/tasks (see lightning_implicit/tuned.py).\n"
        )
        body = {
            "task": self.task,
            "model": self.model,
            "overrides": dict(self.overrides),
            "provenance": self.provenance,
        }
        return head + yaml.safe_dump(body, sort_keys=False, default_flow_style=False, width=110)


def tuned_path(task: str, model: str, root: Path | None = None) -> Path:
    """``<root>/<task>/<model>.yaml``; by default under ``tuned/`` of the config directory that holds the task
    (a user's task: its own directory, never the repo's)."""
    from lightning_implicit import confpath

    return (root or confpath.home_of("tasks", task) / "tuned") / confpath.name_of(task) / f"{model}.yaml"


def load_tuned(path: Path) -> TunedConfig:
    """Read and validate one tuned config file (its schema: :class:`TunedFile`)."""
    raw = configfile.read_yaml(path, TunedConfigError)
    spec = configfile.parse(TunedFile, raw, path=path, error=TunedConfigError, fix=FIX)
    return TunedConfig(spec.task, spec.model, spec.overrides, spec.provenance or {}, path=Path(path))


def find_tuned(task: str, model: str, root: Path | None = None) -> TunedConfig | None:
    """The tuned config of ``(task, model)``, or ``None`` when none was written."""
    from lightning_implicit import confpath

    path = tuned_path(task, model, root)
    if not path.exists():
        return None
    cfg = load_tuned(path)
    if (cfg.task, cfg.model) != (confpath.name_of(task), model):
        raise TunedConfigError(f"{path}: written for {cfg.task}/{cfg.model}, found under {task}/{model}")
    return cfg
