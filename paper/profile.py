"""Reproduction profiles (``conf/reproduce/<name>.yaml``), validated at the edge.

A profile says which tasks and models run, over which seeds, with which LightningCLI overrides::

    description: what this profile is for
    seeds: [0, 1, 2]              # every (task, model) runs once per seed (model init, shuffling and data)
    workers: 2                    # parallel worker processes (1: in this process)
    threads_per_worker: 1         # torch.set_num_threads in each worker
    trainer: cpu                  # conf/trainer/<name>.yaml
    ui_url: http://127.0.0.1:5000 # MLflow UI the report links to (`make ui`)
    experiment_prefix: ""         # runs go to experiment <prefix><task>, the report run to <prefix>reproduce
    tuned: false                  # true: a (task, model) with conf/tuned/<task>/<model>.yaml trains on that recipe
    compare_with: paper-default   # the report sets this profile's verdicts beside another's (from MLflow only)
    overrides: {trainer.max_epochs: 5}          # for every task (LightningCLI keys without the leading --)
    model_overrides:                            # for a model in every task that runs it
      implicit: {model.init_args.sweep_tol_mode: abs}
    tasks:
      addition:
        models: [implicit, mlp]                 # default: the task's Table 4 models (+ the ablation model)
        overrides: {data.init_args.n_train: 2000}
        model_overrides: {mlp: {trainer.max_epochs: 10}}

Unknown keys anywhere, unknown tasks/models and override keys that the trainer, the task's datamodule or the
model's module do not accept are errors that name the key (:class:`ProfileError`), raised before anything
trains.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lightning_implicit import confpath

from .paper_numbers import ABLATION_TASKS, TABLE4_MODELS

__all__ = ["ProfileError", "Profile", "TaskPlan", "load_profile", "profile_path", "default_models"]

TOP_KEYS = {
    "description",
    "seeds",
    "workers",
    "threads_per_worker",
    "trainer",
    "ui_url",
    "experiment_prefix",
    "tuned",
    "compare_with",
    "overrides",
    "model_overrides",
    "tasks",
}
TASK_KEYS = {"models", "overrides", "model_overrides"}
ABLATION_MODEL = "implicit_nofeedback"
BIAS_MODEL = "implicit_bias"
# The tasks whose shifted test inputs are rescaled training inputs (identity: U(-5,5) -> U(-k,k); addition and
# subtraction: U(-1,1) -> U(-k/2,k/2); rolling argmax: U(0,1) -> U(0,k)): a positively homogeneous model
# (the bias-free implicit model) extrapolates on them by construction.
RESCALING_TASKS = ("identity", "addition", "subtraction", "rolling_argmax")


class ProfileError(ValueError):
    """A profile that cannot be run: the message names the file and the offending key."""


@dataclass
class TaskPlan:
    task: str
    models: list[str]
    overrides: dict[str, object] = field(default_factory=dict)
    model_overrides: dict[str, dict[str, object]] = field(default_factory=dict)

    def overrides_for(self, model: str) -> dict[str, object]:
        return {**self.overrides, **self.model_overrides.get(model, {})}


@dataclass
class Profile:
    name: str
    path: Path
    description: str = ""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    workers: int = 1
    threads_per_worker: int = 1
    trainer: str = "cpu"
    ui_url: str = "http://127.0.0.1:5000"
    experiment_prefix: str = ""
    tuned: bool = False
    compare_with: str | None = None
    tasks: dict[str, TaskPlan] = field(default_factory=dict)

    def experiment(self, task: str) -> str:
        return f"{self.experiment_prefix}{task}"

    @property
    def reproduce_experiment(self) -> str:
        return f"{self.experiment_prefix}reproduce"


def default_models(task: str) -> list[str]:
    """The task's Table 4 models, plus the feedback ablation on the Table 2 tasks and the bias ablation on the
    tasks whose shifts rescale the inputs (:data:`RESCALING_TASKS`: the structural reading of the report)."""
    models = list(TABLE4_MODELS.get(task, ()))
    if task in ABLATION_TASKS:
        models.append(ABLATION_MODEL)
    if task in RESCALING_TASKS:
        models.append(BIAS_MODEL)
    return models


def profile_path(profile: str) -> Path:
    """``quick`` -> ``conf/reproduce/quick.yaml``; an existing path is used as is."""
    p = Path(profile)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    cand = confpath.find("reproduce", profile, required=False)
    if cand is not None:
        return cand
    looked = ", ".join(str(r / "reproduce") for r in confpath.search_path())
    raise ProfileError(
        f"no reproduction profile {profile!r} (looked in {looked}); choose one of "
        f"{confpath.names('reproduce')} or give a path to a .yaml file"
    )


def _choices(kind: str) -> list[str]:
    return confpath.names(kind)


def _class_params(cls) -> set[str]:
    """Keyword parameters a class accepts, following ``**kwargs`` up its bases."""
    params: set[str] = set()
    for klass in inspect.getmro(cls):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        sig = inspect.signature(init)
        more = False
        for name, p in sig.parameters.items():
            if name == "self" or p.kind == p.VAR_POSITIONAL:
                continue
            if p.kind == p.VAR_KEYWORD:
                more = True
                continue
            params.add(name)
        if not more:
            break
    return params


def _config_class(kind: str, name: str, section: str):
    cfg = yaml.safe_load(confpath.find(kind, name).read_text()) or {}
    path = ((cfg.get(section) or {}).get("class_path")) or ""
    module, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _config_fields(cls, name: str) -> set[str]:
    """Field names of the config object (a dataclass, e.g. ``optim``, ``solver``) that ``cls`` takes as ``name``."""
    for klass in inspect.getmro(cls):
        init = klass.__dict__.get("__init__")
        p = inspect.signature(init).parameters.get(name) if init is not None else None
        if p is not None:
            default = p.default
            return (
                {f.name for f in dataclasses.fields(default)} if dataclasses.is_dataclass(default) else set()
            )
    return set()


def _check_override_keys(where: str, overrides: dict, task: str, models: list[str]) -> None:
    from lightning.pytorch import Trainer

    trainer_params = _class_params(Trainer)
    data_params = _class_params(_config_class("tasks", task, "data"))
    for key in overrides:
        if not isinstance(key, str):
            raise ProfileError(f"{where}: override keys must be strings, got {key!r}")
        parts = key.split(".")
        if parts[0] == "trainer" and len(parts) == 2:
            if parts[1] not in trainer_params:
                raise ProfileError(f"{where}: unknown override key {key!r} (the Trainer has no {parts[1]!r})")
        elif parts[:2] == ["data", "init_args"] and len(parts) == 3:
            if parts[2] not in data_params:
                raise ProfileError(
                    f"{where}: unknown override key {key!r} (the {task!r} datamodule accepts "
                    f"{sorted(data_params)})"
                )
        elif parts[:2] == ["model", "init_args"] and len(parts) in (3, 4):
            for model in models:
                cls = _config_class("models", model, "model")
                mp = _class_params(cls)
                if parts[2] not in mp:
                    raise ProfileError(
                        f"{where}: unknown override key {key!r} for model {model!r} (it accepts "
                        f"{sorted(mp - {'task'})})"
                    )
                fields = _config_fields(cls, parts[2])
                if len(parts) == 4 and parts[3] not in fields:
                    raise ProfileError(
                        f"{where}: unknown override key {key!r} for model {model!r} "
                        + (
                            f"(its {parts[2]!r} has {sorted(fields)})"
                            if fields
                            else f"({parts[2]!r} has no fields)"
                        )
                    )
        else:
            raise ProfileError(
                f"{where}: unknown override key {key!r}; use trainer.<arg>, data.init_args.<arg> "
                "or model.init_args.<arg> (seeds come from 'seeds', tracking from the profile)"
            )


def _mapping(where: str, value, allowed: set[str] | None = None) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProfileError(f"{where}: expected a mapping, got {type(value).__name__}")
    if allowed is not None:
        for key in value:
            if key not in allowed:
                raise ProfileError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
    return value


def _int(where: str, value, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ProfileError(f"{where}: expected an integer >= {lo}, got {value!r}")
    return value


def load_profile(profile: str | Path) -> Profile:
    """Read and validate a profile (name under ``conf/reproduce/`` or a path)."""
    path = profile_path(str(profile))
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ProfileError(f"{path}: not valid YAML: {err}") from None
    raw = _mapping(str(path), raw, TOP_KEYS)
    prof = Profile(name=path.stem, path=path)
    prof.description = str(raw.get("description", ""))
    seeds = raw.get("seeds", prof.seeds)
    if not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds):
        raise ProfileError(f"{path}: seeds: expected a non-empty list of distinct integers, got {seeds!r}")
    prof.seeds = [_int(f"{path}: seeds", s, 0) for s in seeds]
    prof.workers = _int(f"{path}: workers", raw.get("workers", prof.workers))
    prof.threads_per_worker = _int(f"{path}: threads_per_worker", raw.get("threads_per_worker", 1))
    prof.trainer = str(raw.get("trainer", prof.trainer))
    if prof.trainer not in _choices("trainer"):
        raise ProfileError(
            f"{path}: trainer: unknown trainer config {prof.trainer!r}; choose one of {_choices('trainer')}"
        )
    prof.ui_url = str(raw.get("ui_url", prof.ui_url)).rstrip("/")
    prof.experiment_prefix = str(raw.get("experiment_prefix", "") or "")
    tuned = raw.get("tuned", False)
    if not isinstance(tuned, bool):
        raise ProfileError(f"{path}: tuned: expected true or false, got {tuned!r}")
    prof.tuned = tuned
    other = raw.get("compare_with")
    if other is not None:
        if not isinstance(other, str) or not other:
            raise ProfileError(f"{path}: compare_with: expected a profile name, got {other!r}")
        profile_path(other)  # exists (names the choices otherwise)
        prof.compare_with = other
    common = _mapping(f"{path}: overrides", raw.get("overrides"))
    common_models = _mapping(f"{path}: model_overrides", raw.get("model_overrides"))
    for m, ov in common_models.items():
        if m not in _choices("models"):
            raise ProfileError(
                f"{path}: model_overrides: unknown model {m!r}; choose from {_choices('models')}"
            )
        _mapping(f"{path}: model_overrides.{m}", ov)
    tasks = _mapping(f"{path}: tasks", raw.get("tasks"))
    if not tasks:
        raise ProfileError(f"{path}: tasks: at least one task is needed (choose from {_choices('tasks')})")
    for task, spec in tasks.items():
        where = f"{path}: tasks.{task}"
        if task not in _choices("tasks"):
            raise ProfileError(f"{where}: unknown task {task!r}; choose from {_choices('tasks')}")
        spec = _mapping(where, spec, TASK_KEYS)
        models = spec.get("models")
        models = default_models(task) if models is None else models
        if not isinstance(models, list) or not models or len(set(models)) != len(models):
            raise ProfileError(
                f"{where}.models: expected a non-empty list of distinct model names, got {models!r}"
            )
        for m in models:
            if m not in _choices("models"):
                raise ProfileError(f"{where}.models: unknown model {m!r}; choose from {_choices('models')}")
        overrides = {**common, **_mapping(f"{where}.overrides", spec.get("overrides"))}
        _check_override_keys(f"{where}.overrides", overrides, task, models)
        own = _mapping(f"{where}.model_overrides", spec.get("model_overrides"))
        for m in own:
            if m not in models:
                raise ProfileError(
                    f"{where}.model_overrides: model {m!r} is not in this task's models {models}"
                )
        model_overrides = {}
        for m in models:
            ov = {**(common_models.get(m) or {}), **_mapping(f"{where}.model_overrides.{m}", own.get(m))}
            if ov:
                _check_override_keys(f"{where}.model_overrides.{m}", ov, task, [m])
                model_overrides[m] = ov
        prof.tasks[task] = TaskPlan(
            task=task, models=list(models), overrides=overrides, model_overrides=model_overrides
        )
    return prof
