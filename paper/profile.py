"""Reproduction profiles (``conf/reproduce/<name>.yaml``), validated at the edge.

A profile says which tasks and models run, over which seeds, with which LightningCLI overrides::

    description: what this profile is for
    extends: paper                # optional: start from conf/reproduce/paper.yaml; each key set here replaces
                                  # the parent's whole value (``compare_with: null`` resets one to its default);
                                  # ``tasks`` merge per task (an entry replaces the parent's; ``<task>: null``
                                  # drops one)
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

The file parses into :class:`ProfileFile` (jsonargparse checks the types, :mod:`lightning_implicit.configfile`
the keys). Unknown keys anywhere, unknown tasks/models and override keys that the trainer, the task's datamodule or the
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
from jsonargparse.typing import NonNegativeInt, PositiveInt

from lightning_implicit import configfile, confpath

from .paper_numbers import ABLATION_TASKS, TABLE4_MODELS

__all__ = [
    "ProfileError",
    "Profile",
    "ProfileFile",
    "TaskEntry",
    "TaskPlan",
    "load_profile",
    "profile_path",
    "default_models",
]

ABLATION_MODEL = "implicit_nofeedback"
BIAS_MODEL = "implicit_bias"
# The tasks whose shifted test inputs are rescaled training inputs (identity: U(-5,5) -> U(-k,k); addition and
# subtraction: U(-1,1) -> U(-k/2,k/2); rolling argmax: U(0,1) -> U(0,k)): a positively homogeneous model
# (the bias-free implicit model) extrapolates on them by construction.
RESCALING_TASKS = ("identity", "addition", "subtraction", "rolling_argmax")
# The tasks whose target is a linear map of the inputs but whose shift is no rescaling (rolling average: the
# series' mean moves from 3 to 3 + k): the skip term ``D u`` represents the target exactly and an exact fit
# extrapolates to every shift, but homogeneity says nothing under a translation (no rescaling diagnostic there).
LINEAR_TARGET_TASKS = ("rolling_average",)


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


@dataclass
class TaskEntry:
    """One task's block of a profile file, as written (``models: null``: the task's default models)."""

    models: list[str] | None = None
    overrides: dict = field(default_factory=dict)  # bare dict: values kept as written
    model_overrides: dict[str, dict] = field(default_factory=dict)


@dataclass
class ProfileFile:
    """A profile file's schema (the module docstring says what each key means)."""

    description: str = ""
    extends: str | None = None
    seeds: list[NonNegativeInt] = field(default_factory=lambda: [0, 1, 2])
    workers: PositiveInt = 1
    threads_per_worker: PositiveInt = 1
    trainer: str = "cpu"
    ui_url: str = "http://127.0.0.1:5000"
    experiment_prefix: str | None = ""
    tuned: bool = False
    compare_with: str | None = None
    overrides: dict = field(default_factory=dict)  # bare dict: values kept as written
    model_overrides: dict[str, dict] = field(default_factory=dict)
    tasks: dict[str, TaskEntry] = field(default_factory=dict)


FIX = "the keys are described in conf/reproduce/quick.yaml and paper/profile.py"


def _expanded(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """The file's mapping over its parent's (``extends: <profile>``): each top-level key the file sets replaces
    the parent's whole value (``key: null`` resets it to the default), except ``tasks``, merged per task: a task
    the file names replaces the parent's entry of that task (``<task>: null`` drops it), the others are
    inherited, so a task is listed once; ``extends`` chains."""
    if path.resolve() in seen:
        chain = " -> ".join(p.stem for p in (*seen, path.resolve()))
        raise ProfileError(
            f"{path}: extends: profiles extend each other in a cycle ({chain}); remove one 'extends'"
        )
    raw = configfile.read_yaml(path, ProfileError)
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str) or not parent:
        raise ProfileError(f"{path}: extends: expected a profile name, got {parent!r}")
    try:
        base = _expanded(profile_path(parent), (*seen, path.resolve()))
    except ProfileError as err:
        raise ProfileError(f"{path}: extends: {err}") from None
    merged = {**base, **raw}
    if isinstance(base.get("tasks"), dict) and isinstance(raw.get("tasks"), dict):
        tasks = {**base["tasks"], **raw["tasks"]}  # per task: the parent's order, the child's entries
        merged["tasks"] = {task: entry for task, entry in tasks.items() if entry is not None}
    return merged


def _check_choices(path: Path, spec: ProfileFile) -> None:
    if not spec.seeds or len(set(spec.seeds)) != len(spec.seeds):
        raise ProfileError(
            f"{path}: seeds: expected a non-empty list of distinct integers, got {spec.seeds!r}"
        )
    if spec.trainer not in _choices("trainer"):
        raise ProfileError(
            f"{path}: trainer: unknown trainer config {spec.trainer!r}{configfile.suggest(spec.trainer, _choices('trainer'))} "
            f"(choose one of {_choices('trainer')})"
        )
    if spec.compare_with is not None:
        profile_path(spec.compare_with)  # exists (names the choices otherwise)
    for m in spec.model_overrides:
        _check_model(f"{path}: model_overrides", m)
    if not spec.tasks:
        raise ProfileError(f"{path}: tasks: at least one task is needed (choose from {_choices('tasks')})")
    for task in spec.tasks:
        if task not in _choices("tasks"):
            raise ProfileError(
                f"{path}: tasks.{task}: unknown task {task!r}{configfile.suggest(task, _choices('tasks'))} "
                f"(choose from {_choices('tasks')})"
            )


def _check_model(where: str, model: str) -> None:
    if model not in _choices("models"):
        raise ProfileError(
            f"{where}: unknown model {model!r}{configfile.suggest(model, _choices('models'))} "
            f"(choose from {_choices('models')})"
        )


def _task_plan(path: Path, task: str, entry: TaskEntry, spec: ProfileFile) -> TaskPlan:
    """A task's runs: its models, the profile's overrides under the task's own, checked against the classes."""
    where = f"{path}: tasks.{task}"
    models = default_models(task) if entry.models is None else entry.models
    if not models or len(set(models)) != len(models):
        raise ProfileError(
            f"{where}.models: expected a non-empty list of distinct model names, got {models!r}"
        )
    for m in models:
        _check_model(f"{where}.models", m)
    overrides = {**spec.overrides, **entry.overrides}
    _check_override_keys(f"{where}.overrides", overrides, task, models)
    for m in entry.model_overrides:
        if m not in models:
            raise ProfileError(f"{where}.model_overrides: model {m!r} is not in this task's models {models}")
    model_overrides = {}
    for m in models:
        ov = {**spec.model_overrides.get(m, {}), **entry.model_overrides.get(m, {})}
        if ov:
            _check_override_keys(f"{where}.model_overrides.{m}", ov, task, [m])
            model_overrides[m] = ov
    return TaskPlan(task=task, models=list(models), overrides=overrides, model_overrides=model_overrides)


def load_profile(profile: str | Path) -> Profile:
    """Read and validate a profile (name under ``conf/reproduce/`` or a path), its parent merged in."""
    path = profile_path(str(profile))
    spec = configfile.parse(ProfileFile, _expanded(path), path=path, error=ProfileError, fix=FIX)
    _check_choices(path, spec)
    return Profile(
        name=path.stem,
        path=path,
        description=spec.description,
        seeds=list(spec.seeds),
        workers=int(spec.workers),
        threads_per_worker=int(spec.threads_per_worker),
        trainer=spec.trainer,
        ui_url=spec.ui_url.rstrip("/"),
        experiment_prefix=spec.experiment_prefix or "",
        tuned=spec.tuned,
        compare_with=spec.compare_with,
        tasks={task: _task_plan(path, task, entry, spec) for task, entry in spec.tasks.items()},
    )
