"""Search spaces: ``conf/search/<task>.yaml``, validated at the edge.

A search file looks like this (every key of ``fixed`` and every ``key:`` of a parameter is a LightningCLI
path, exactly what ``make train`` accepts as ``--<path> <value>``)::

    description: what this space is for
    models: [implicit, mlp]            # swept when no --model is given (first the implicit model)
    fixed:                             # every trial of every model
      trainer.max_epochs: 20
    params:                            # optional: parameters of every model (a section's own win; a model
                                       # config without a section gets these alone)
      lr: {key: model.init_args.optim.lr, type: float, low: 1.0e-4, high: 0.1, log: true}
    quick:                             # the default budget; --full ignores this block
      fixed: {data.init_args.n_train: 2000}
      params:                          # per parameter name, merged into every model that has it
        epochs: {high: 4}
    sampler: {n_startup_trials: 5}     # optuna.samplers.TPESampler arguments (seed: --seed)
    pruner: {type: median, n_startup_trials: 3, n_warmup_steps: 1}
    implicit:                          # one section per model config (conf/models/<model>.yaml)
      fixed: {model.init_args.solver.max_iter: 100}
      params:
        lr: {key: model.init_args.optim.lr, type: float, low: 1.0e-4, high: 0.1, log: true}
        batch_size: {key: data.init_args.batch_size, type: categorical, choices: [32, 64, 128]}
        epochs: {key: trainer.max_epochs, type: int, low: 2, high: 8}
        kappa: {key: model.init_args.kappa, type: float, low: 0.5, high: 0.99}
    mlp:
      params:
        width: {key: model.init_args.arch_kwargs.hidden, type: int, low: 4, high: 32, log: true, repeat: depth}
        depth: {type: int, low: 1, high: 3}      # no key: only used by 'repeat'

Parameter types: ``float`` and ``int`` (``low``, ``high``, optional ``log``, ``step``) and ``categorical``
(``choices``: numbers, strings, booleans or null). ``repeat: <int or parameter name>`` turns a value into a
list (``[width] * depth``). ``limit: high`` (or ``low``) marks a bound that no wider search can pass (``kappa``'s
0.99: kappa < 1 is the model's well-posedness condition): a tuned value there is a limit of the model, not an
edge of the search (``make tune`` records it under ``space_limits`` instead of ``space_edges``). A key inside a
dict argument (``model.init_args.arch_kwargs.hidden``) sets that entry of the dict.

:func:`load_search_space` checks the structure (unknown keys, distribution types, bounds) and
:func:`check_cli_keys` checks every key and value against the LightningCLI parser of the model, so a typo
fails before the first trial with a message naming the entry.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from jsonargparse.typing import PositiveInt

from lightning_implicit import configfile
from lightning_implicit.run.spec import cli_value, flag_args
from lightning_implicit.validate import ConfigError

__all__ = [
    "SearchSpaceError",
    "ParamSpec",
    "ModelSpace",
    "SearchSpace",
    "load_search_space",
    "check_cli_keys",
    "parse_config",
    "cli_value",
    "search_file_path",
]

TOP_KEYS = ("description", "models", "fixed", "params", "quick", "sampler", "pruner")
PARAM_TYPES = ("float", "int", "categorical")
PRUNER_TYPES = ("median", "percentile", "nop")


class SearchSpaceError(ConfigError):
    """A search file (or a command-line choice against it) is invalid; the message names the entry."""


def search_file_path(task: str, conf: Path | None = None) -> Path:
    """The task's search file: ``<conf>/search/<task>.yaml``, by default the first on the config search path, or
    the generic recipe space ``search/default.yaml`` for a task without one."""
    from lightning_implicit import confpath

    if conf is not None:
        return conf / "search" / f"{task}.yaml"
    return confpath.find("search", confpath.name_of(task), required=False) or confpath.find(
        "search", "default"
    )


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


@dataclass(frozen=True)
class ParamSpec:
    """One searched hyper-parameter: an Optuna distribution and the CLI key it sets."""

    name: str
    type: str
    key: str | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()
    repeat: int | str | None = None
    limit: str | None = None  # 'low' or 'high': that bound is the model's limit, not a choice of the search

    def suggest(self, trial) -> Any:
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), log=self.log, step=int(self.step or 1)
            )
        return trial.suggest_categorical(self.name, list(self.choices))

    def distribution(self):
        """The Optuna distribution :meth:`suggest` draws from."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.type == "float":
            return FloatDistribution(self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return CategoricalDistribution(list(self.choices))

    def probe_values(self) -> list:
        """Values that exercise the parser: both bounds or every choice."""
        if self.type == "categorical":
            return list(self.choices)
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]


@dataclass
class ModelSpace:
    """What is swept for one model: fixed CLI settings and searched parameters (budget already applied)."""

    model: str
    fixed: dict[str, Any] = field(default_factory=dict)
    params: dict[str, ParamSpec] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # fixed key -> the file section that set it

    def sample(self, trial) -> dict[str, Any]:
        """Suggest every parameter (names as in the file)."""
        return {name: spec.suggest(trial) for name, spec in self.params.items()}

    def overrides(self, values: dict[str, Any]) -> dict[str, Any]:
        """``{cli_key: value}`` for sampled ``values`` (``repeat`` expanded, key-less helpers dropped)."""
        out: dict[str, Any] = {}
        for name, spec in self.params.items():
            if spec.key is None or name not in values:
                continue
            v = values[name]
            if spec.repeat is not None:
                n = spec.repeat if isinstance(spec.repeat, int) else values.get(spec.repeat)
                if n is None:
                    continue
                v = [v] * int(n)
            out[spec.key] = v
        return out

    def without_keys(self, keys: set[str]) -> list[str]:
        """Drop parameters whose key is pinned elsewhere (command line); returns the dropped names."""
        dropped = [n for n, s in self.params.items() if s.key is not None and s.key in keys]
        for n in dropped:
            del self.params[n]
        return dropped


@dataclass
class SearchSpace:
    task: str
    path: Path
    sha256: str
    budget: str
    models: list[str]
    spaces: dict[str, ModelSpace]
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    description: str = ""

    def space(self, model: str) -> ModelSpace:
        if model not in self.spaces:
            raise SearchSpaceError(
                f"{self.path}: no search space for model {model!r}; the file has {sorted(self.spaces)} "
                f"(add a '{model}:' section with 'params:')"
            )
        return self.spaces[model]


# ---- structure -------------------------------------------------------------------------------------------
@dataclass
class ParamEntry:
    """A parameter as written in a search file (types checked by jsonargparse; the rules between fields by
    :func:`_param`)."""

    type: str | None = None
    key: str | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple | None = None  # bare tuple: kept as written (a list[Any] would read "1" as 1)
    repeat: PositiveInt | str | None = None
    limit: Literal["low", "high"] | None = None
    help: str | None = None


@dataclass
class SectionEntry:
    """``fixed`` settings and ``params`` (raw: ``quick.params`` entries merge into them before checking)."""

    fixed: dict = field(default_factory=dict)  # bare dict: values kept as written
    params: dict[str, dict] = field(default_factory=dict)


@dataclass
class SearchFile:
    """A search file's keys other than the model sections (those are :class:`SectionEntry` each)."""

    description: str = ""
    models: list[str] | None = None
    fixed: dict = field(default_factory=dict)  # bare dict: values kept as written
    params: dict[str, dict] = field(default_factory=dict)
    quick: SectionEntry = field(default_factory=SectionEntry)
    sampler: dict = field(default_factory=dict)
    pruner: dict = field(default_factory=dict)


def _check_fixed(fixed: dict, where: str, path: Path) -> dict[str, Any]:
    for k in fixed:
        if not k or k.startswith("-"):
            raise SearchSpaceError(
                f"{path}: {where}: key {k!r} must be a LightningCLI path like 'trainer.max_epochs'"
            )
    return dict(fixed)


def _choices(name: str, entry: ParamEntry, where: str) -> ParamSpec:
    if any(v is not None for v in (entry.low, entry.high, entry.step, entry.limit)) or entry.log:
        raise SearchSpaceError(
            f"{where}: a categorical parameter takes 'choices', not 'low'/'high'/'log'/'step'/'limit'"
        )
    choices = entry.choices
    if not choices:
        raise SearchSpaceError(f"{where}: a categorical parameter needs a non-empty list 'choices'")
    bad = [c for c in choices if not _scalar(c)]
    if bad:
        raise SearchSpaceError(
            f"{where}: choice {bad[0]!r} is not a number, string, boolean or null (Optuna stores only "
            "those); use 'repeat' for lists or a JSON string"
        )
    if len({json.dumps(c) for c in choices}) != len(choices):
        raise SearchSpaceError(f"{where}: duplicate choices {choices}")
    return ParamSpec(
        name=name, type="categorical", key=entry.key, choices=tuple(choices), repeat=entry.repeat
    )


def _bounds(name: str, entry: ParamEntry, where: str) -> ParamSpec:
    kind, low, high, step = entry.type, entry.low, entry.high, entry.step
    if entry.choices is not None:
        raise SearchSpaceError(f"{where}: a {kind} parameter takes 'low'/'high', not 'choices'")
    missing = [f for f, v in (("low", low), ("high", high)) if v is None]
    if missing:
        raise SearchSpaceError(
            f"{where}: {'an' if kind == 'int' else 'a'} {kind} parameter needs bounds: missing {' and '.join(missing)}"
        )
    if not (math.isfinite(low) and math.isfinite(high)):
        raise SearchSpaceError(f"{where}: bounds must be finite, got low={low}, high={high}")
    if low > high:
        raise SearchSpaceError(f"{where}: low ({low:g}) > high ({high:g})")
    if entry.log and low <= 0:
        raise SearchSpaceError(f"{where}: a log-scaled parameter needs low > 0, got {low:g}")
    if step is not None and (step <= 0 or entry.log):
        raise SearchSpaceError(f"{where}: step must be > 0 and cannot be combined with 'log: true' (Optuna)")
    for f, v in (("low", low), ("high", high), ("step", step)):
        if kind == "int" and v is not None and v != int(v):
            raise SearchSpaceError(f"{where}: an int parameter needs an integer {f}, got {v:g}")
    return ParamSpec(
        name, kind, entry.key, low, high, entry.log, step, repeat=entry.repeat, limit=entry.limit
    )


def _param(name: str, raw: dict, where: str, path: Path) -> ParamSpec:
    """One parameter (``raw``: its entry with the budget's changes merged) as a checked :class:`ParamSpec`."""
    entry = configfile.parse(ParamEntry, raw, path=f"{path}: {where}", error=SearchSpaceError)
    where = f"{path}: {where}"
    if entry.type not in PARAM_TYPES:
        got = "missing" if entry.type is None else repr(entry.type)
        raise SearchSpaceError(
            f"{where}: unknown distribution type {got}; use one of {', '.join(PARAM_TYPES)}"
        )
    if entry.key is not None and (not entry.key or entry.key.startswith("-")):
        raise SearchSpaceError(
            f"{where}: key must be a LightningCLI path like 'model.init_args.optim.lr', got {entry.key!r}"
        )
    if isinstance(entry.repeat, int):
        entry.repeat = int(entry.repeat)  # a plain int (not jsonargparse's PositiveInt) in the spec
    return _choices(name, entry, where) if entry.type == "categorical" else _bounds(name, entry, where)


def _check_kwargs(cls, kwargs: dict, where: str, path: Path, skip: tuple[str, ...] = ()) -> None:
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", *skip)]
    for k in kwargs:
        if k not in allowed:
            raise SearchSpaceError(
                f"{path}: {where}: {cls.__name__} has no argument {k!r}{configfile.suggest(str(k), allowed)} "
                f"(allowed: {', '.join(allowed)})"
            )


def _check_optuna(spec: SearchFile, path: Path) -> None:
    """``sampler`` and ``pruner`` arguments against the Optuna classes they build."""
    import optuna

    _check_kwargs(optuna.samplers.TPESampler, spec.sampler, "sampler", path, skip=("seed",))
    if "seed" in spec.sampler:
        raise SearchSpaceError(f"{path}: sampler: 'seed' comes from the command line (--seed)")
    ptype = spec.pruner.get("type", "median")
    pruners = {
        "median": optuna.pruners.MedianPruner,
        "percentile": optuna.pruners.PercentilePruner,
        "nop": optuna.pruners.NopPruner,
    }
    if ptype not in pruners:
        raise SearchSpaceError(
            f"{path}: pruner: unknown type {ptype!r}; use one of {', '.join(PRUNER_TYPES)}"
        )
    _check_kwargs(pruners[ptype], {k: v for k, v in spec.pruner.items() if k != "type"}, "pruner", path)


def _read(path: Path, task: str, model_names: list[str]) -> tuple[str, SearchFile, dict[str, SectionEntry]]:
    """The file's text, its top-level keys and its model sections (each parsed; unknown keys named)."""
    if not path.exists():
        from lightning_implicit import confpath

        have = confpath.names("search")
        raise SearchSpaceError(
            f"no search space for task {task!r}: {path} does not exist (search files: {have})"
        )
    raw = configfile.read_yaml(path, SearchSpaceError)
    for k in raw:
        if k not in TOP_KEYS and k not in set(model_names):
            raise SearchSpaceError(
                f"{path}: unknown top-level key {k!r}{configfile.suggest(str(k), [*TOP_KEYS, *model_names])} "
                f"(allowed: {', '.join(TOP_KEYS)} or a model config name from conf/models/)"
            )
    top = configfile.parse(
        SearchFile, {k: v for k, v in raw.items() if k in TOP_KEYS}, path=path, error=SearchSpaceError
    )
    sections = {
        m: configfile.parse(SectionEntry, raw[m] or {}, path=f"{path}: {m}", error=SearchSpaceError)
        for m in raw
        if m not in TOP_KEYS
    }
    return path.read_text(), top, sections


def _check_sections(path: Path, top: SearchFile, sections: dict[str, SectionEntry]) -> list[str]:
    """The models swept by default (``models``, else every section), checked against the sections."""
    if not sections:
        raise SearchSpaceError(f"{path}: no model section (e.g. 'implicit:' with 'params:')")
    models = list(sections) if top.models is None else top.models
    for m in models:
        if m not in sections:
            raise SearchSpaceError(
                f"{path}: models lists {m!r} but the file has no '{m}:' section ({list(sections)})"
            )
    for name in top.quick.params:
        if name not in top.params and not any(name in sec.params for sec in sections.values()):
            raise SearchSpaceError(f"{path}: quick.params.{name}: no model section has a parameter {name!r}")
    return models


def _model_space(m: str, sec: SectionEntry, top: SearchFile, full: bool, path: Path) -> ModelSpace:
    """One model's space: the top-level and own parameters (the budget's changes merged), the fixed layers."""
    params: dict[str, ParamSpec] = {}
    for name, entry in {**top.params, **sec.params}.items():
        where = f"{m}.params.{name}" if name in sec.params else f"params.{name}"
        merged = dict(entry)
        if not full and name in top.quick.params:
            merged.update(top.quick.params[name])
            where += " (with quick.params)"
        params[name] = _param(name, merged, where, path)
    _check_params(m, params, path)
    layers = [
        ("fixed", _check_fixed(top.fixed, "fixed", path)),
        ("quick.fixed", {} if full else _check_fixed(top.quick.fixed, "quick.fixed", path)),
        (f"{m}.fixed", _check_fixed(sec.fixed, f"{m}.fixed", path)),
    ]
    fixed = {k: v for _, layer in layers for k, v in layer.items()}
    origin = {k: where for where, layer in layers for k in layer}
    return ModelSpace(model=m, fixed=fixed, params=params, origin=origin)


def _check_params(m: str, params: dict[str, ParamSpec], path: Path) -> None:
    """``repeat`` names an int or categorical parameter; every parameter sets a key or is repeated by one."""
    for name, spec in params.items():
        if isinstance(spec.repeat, str):
            other = params.get(spec.repeat)
            if other is None or other.type == "float" or spec.repeat == name:
                raise SearchSpaceError(
                    f"{path}: {m}.params.{name}: repeat {spec.repeat!r} must name an int or categorical "
                    f"parameter of {m!r} (have {sorted(params)})"
                )
        if spec.key is None and not any(o.repeat == name for o in params.values()):
            raise SearchSpaceError(
                f"{path}: {m}.params.{name}: missing 'key' (the LightningCLI path it sets)"
            )
    keys = [s.key for s in params.values() if s.key]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise SearchSpaceError(f"{path}: {m}.params: two parameters set the same key {dup[0]!r}")


def load_search_space(path: str | Path, *, task: str, full: bool = False, model_names=None) -> SearchSpace:
    """Read and check a search file; ``full`` ignores the ``quick`` block (the task's own budget).

    ``model_names``: the model configs that exist (``conf/models/*.yaml`` stems); other top-level keys are
    errors. A model config without a section of its own gets the file's top-level ``params`` (where the file
    has some), so a new model needs no empty section.
    """
    path = Path(path)
    if model_names is None:
        from lightning_implicit import confpath

        model_names = confpath.names("models")
    text, top, sections = _read(path, task, model_names)
    models = _check_sections(path, top, sections)
    _check_optuna(top, path)
    # a model config without a section gets the file's shared params (when it has some)
    shared = [m for m in model_names if m not in sections] if top.params else []
    return SearchSpace(
        task=task,
        path=path,
        sha256=hashlib.sha256(text.encode()).hexdigest()[:16],
        budget="full" if full else "quick",
        models=list(models),
        spaces={
            m: _model_space(m, sections.get(m, SectionEntry()), top, full, path) for m in [*sections, *shared]
        },
        sampler=dict(top.sampler),
        pruner=dict(top.pruner),
        description=top.description,
    )


# ---- CLI keys --------------------------------------------------------------------------------------------
def parse_config(args: list[str]):
    """Parse LightningCLI arguments without instantiating anything (raises ``argparse.ArgumentError``)."""
    from lightning_implicit.runner import ImplicitCLI

    class _ParseOnlyCLI(ImplicitCLI):
        def instantiate_classes(self) -> None:
            pass

    seed_log = logging.getLogger("lightning.fabric.utilities.seed")
    level = seed_log.level
    seed_log.setLevel(logging.WARNING)
    try:
        return _ParseOnlyCLI(args=args, parser_kwargs={"exit_on_error": False}).config
    finally:
        seed_log.setLevel(level)


def _error_text(exc: BaseException) -> str:
    lines = [ln.rstrip() for ln in str(exc).splitlines() if ln.strip()]
    keep = [
        ln
        for ln in lines
        if not ln.strip().startswith(("Subtypes:", "Given value type:", "- Expected a <class 'NoneType'>"))
    ]
    return "\n    ".join(keep[:8])


def _structural_key_ok(key: str, cfg) -> bool:
    if key in cfg:
        return True
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in cfg:
            v = cfg[prefix]
            return v is None or isinstance(v, dict)
    return False


def check_cli_keys(
    space: ModelSpace, base_args: list[str], *, path: Path, task: str, pinned: list[str] = ()
) -> None:
    """Check every fixed key and parameter key/value of ``space`` against the LightningCLI parser.

    ``base_args``: the config files of (trainer, task, model) plus command-line overrides. Raises
    :class:`SearchSpaceError` naming the first bad entry (with a suggestion for typos).
    """
    try:
        cfg = parse_config(list(base_args))
    except Exception as exc:  # jsonargparse raises ArgumentError / ValueError / TypeError
        raise SearchSpaceError(
            f"the configuration of model {space.model!r} does not parse:\n    {_error_text(exc)}"
        ) from None
    if pinned:  # the user's own overrides: a typo there is theirs, not the search file's
        error = _parse_error([*base_args, *pinned])
        if error is not None:
            raise SearchSpaceError(
                f"a command-line override is rejected ({' '.join(pinned)}): {' '.join(error.split())}"
            )
    entries = _probe_entries(space)
    _check_keys(entries, cfg, space=space, path=path, task=task)
    _check_values(entries, space, base_args, pinned, path=path)


# A probed entry: (where it is written in the search file, its LightningCLI key, the values to try).
_Entry = tuple[str, str, list]


def _parse_error(args: list[str]) -> str | None:
    """The parser's (shortened) error for ``args``, or None when they parse."""
    try:
        parse_config(args)
    except Exception as exc:  # jsonargparse raises ArgumentError / ValueError / TypeError
        return _error_text(exc)
    return None


def _probe_entries(space: ModelSpace) -> list[_Entry]:
    """The fixed values and each parameter's probe values (repeated parameters as lists)."""
    entries: list[_Entry] = [(space.origin.get(k, "fixed"), k, [v]) for k, v in space.fixed.items()]
    for name, spec in space.params.items():
        if spec.key is None:
            continue
        values = spec.probe_values()
        if spec.repeat is not None:
            n = spec.repeat if isinstance(spec.repeat, int) else 2
            values = [[v] * n for v in values]
        entries.append((f"{space.model}.params.{name}", spec.key, values))
    return entries


def _check_keys(entries: list[_Entry], cfg, *, space: ModelSpace, path: Path, task: str) -> None:
    """Every entry's key is an option of the parsed configuration (or sits under a free-form dict)."""
    known = [k for k in cfg.keys() if not k.startswith(("config", "__"))]
    for where, key, _ in entries:
        if not _structural_key_ok(key, cfg):
            raise SearchSpaceError(
                f"{path}: {where}: key {key!r} is not a LightningCLI option of model {space.model!r} for task "
                f"{task!r}{configfile.suggest(key, known)}"
            )


def _check_values(
    entries: list[_Entry], space: ModelSpace, base_args: list[str], pinned: list[str], *, path: Path
) -> None:
    """Parse the i-th probe value of every entry together; on a failure name the value (or the combination)."""
    fixed_args = flag_args(space.fixed)

    def args_for(i: int, only: int | None = None) -> list[str]:
        out = list(base_args) + (fixed_args if only is None else [])
        for j, (_, key, values) in enumerate(entries):
            if only is not None and j != only:
                continue
            out += [f"--{key}", cli_value(values[min(i, len(values) - 1)])]
        return out + list(pinned)

    n_probe = max((len(v) for _, _, v in entries), default=0)
    for i in range(n_probe):
        if _parse_error(args_for(i)) is None:
            continue
        for j, (where, key, values) in enumerate(entries):
            for k in range(len(values)):
                error = _parse_error(args_for(k, only=j))
                if error is not None:
                    raise SearchSpaceError(
                        f"{path}: {where}: value {values[k]!r} for key {key!r} is rejected by the "
                        f"LightningCLI parser of model {space.model!r}:\n    {error}"
                    )
        error = _parse_error(args_for(i))
        if error is not None:
            raise SearchSpaceError(
                f"{path}: the settings of model {space.model!r} are rejected together:\n    {error}"
            )
