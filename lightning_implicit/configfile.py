"""YAML config files parsed into dataclasses by jsonargparse; errors are one line naming the file, key and fix.

A config file's schema is a dataclass (fields with types and defaults). :func:`parse` checks the keys first (an
unknown key, at any depth of nested dataclasses, is named with the closest known key: "did you mean"), then lets
jsonargparse validate the types and build the dataclass. Domain rules (a task that exists, distinct seeds) stay
with the loader that knows them.

Free-form values (LightningCLI overrides, Optuna arguments, categorical choices) are typed as a bare ``dict`` or
``tuple``: jsonargparse keeps their values as written, where ``dict[str, Any]`` would read the string ``"1"`` as
``1`` and ``"true"`` as ``True``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from lightning_implicit.cliargs import closest
from lightning_implicit.validate import ConfigError

__all__ = ["ConfigFileError", "read_yaml", "parse", "suggest"]

T = TypeVar("T")


class ConfigFileError(ConfigError):
    """A config file that cannot be used: the message names the file, the key and the fix."""


def suggest(word: str, options) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``options`` (empty when none is close)."""
    match = closest(str(word), [str(o) for o in options])
    return f"; did you mean {match!r}?" if match else ""


def read_yaml(path: Path, error: type[Exception] = ConfigFileError) -> dict:
    """The mapping a YAML file holds (an empty file: ``{}``); ``error`` names the file otherwise."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise error(f"{path}: cannot read it as YAML ({' '.join(str(err).split())})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a mapping of keys to values, got {type(raw).__name__}")
    return raw


def _dataclass_of(tp) -> type | None:
    """The dataclass in ``tp`` (``X``, ``X | None``), else ``None``."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        return found[0] if len(found) == 1 else None
    return None


def _check_keys(cls: type, raw, where: str, error: type[Exception]) -> None:
    """Unknown keys of ``raw`` against ``cls``'s fields, recursing into dataclass and ``dict[str, dataclass]``
    fields (jsonargparse would reject them too, but without the position or a suggestion)."""
    if not isinstance(raw, dict):
        return  # a type error: jsonargparse says it
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for key, value in raw.items():
        at = f"{where}{key}"
        if key not in names:
            raise error(f"{at}: unknown key {key!r}{suggest(key, names)} (known keys: {', '.join(names)})")
        tp = hints[key]
        inner = _dataclass_of(tp)
        if inner is not None:
            _check_keys(inner, value, f"{at}.", error)
        elif typing.get_origin(tp) is dict and isinstance(value, dict):
            item = _dataclass_of(typing.get_args(tp)[1])
            for name, sub in value.items() if item is not None else ():
                _check_keys(item, sub, f"{at}.{name}.", error)


@functools.cache
def _parser(cls: type):
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "cfg")
    return parser


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    text = re.sub(r'Parser key "cfg\.?([^"]*)":', lambda m: f"{m.group(1) or 'file'}:", text)
    return re.sub(r"(?<![\w.])cfg\.", "", text)


def parse(
    cls: type[T],
    raw: dict[str, Any],
    *,
    path: Path | str,
    error: type[Exception] = ConfigFileError,
    fix: str = "",
) -> T:
    """``raw`` (a file's mapping) as a ``cls`` instance; else ``error("<path>: <key>: <problem>[; <fix>]")``."""
    tail = f"; {fix}" if fix else ""
    _check_keys(cls, raw, "", lambda msg: error(f"{path}: {msg}{tail}"))
    parser = _parser(cls)
    try:
        ns = parser.parse_object({"cfg": raw})
        built = (getattr(parser, "instantiate", None) or parser.instantiate_classes)(ns)
    except Exception as err:  # jsonargparse's ArgumentError (and a dataclass's own __post_init__ check)
        raise error(f"{path}: {_one_line(err)}{tail}") from None
    return built.cfg
