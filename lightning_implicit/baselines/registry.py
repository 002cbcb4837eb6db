"""Name -> baseline registry (each baseline registers from its own module) and a parameter counter.

A baseline module registers its class with :func:`register_baseline`, saying what the model takes from the task
(``sizes``: its input/output sizes, given the task's :class:`~lightning_implicit.task.TaskSpec`) and whether it
reads ``(batch, time, features)`` sequences (``sequence=True``) or the flattened input::

    @register_baseline("gru", sequence=True, sizes=lambda task, kw: {**kw, "in_features": task.step_features})
    class GRUNet(nn.Module): ...

The package imports every baseline module (``lightning_implicit/baselines/__init__.py``), so the names are
registered once the package is imported. ``task`` is read by attribute only (this package imports no Lightning).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from torch import nn

__all__ = [
    "BASELINES",
    "BASELINE_SPECS",
    "BaselineSpec",
    "baseline_spec",
    "build_baseline",
    "count_parameters",
    "flat_sizes",
    "register_baseline",
]

T = TypeVar("T")
Sizes = Callable[[Any, dict], dict]


def flat_sizes(task, kwargs: dict) -> dict:
    """The default: the flattened input and output sizes of the task (``in_features``, ``out_features``)."""
    return {**kwargs, "in_features": task.in_features, "out_features": task.flat_out_features}


@dataclass(frozen=True)
class BaselineSpec:
    """A registered baseline: its constructor, the constructor arguments the task dictates, its input layout."""

    name: str
    build: Callable[..., nn.Module]
    sizes: Sizes = flat_sizes  # (task, preset kwargs) -> kwargs with the task's sizes (the task's win)
    sequence: bool = False  # reads (batch, time, features); otherwise the flattened (batch, features)


BASELINE_SPECS: dict[str, BaselineSpec] = {}
BASELINES: dict[str, Callable[..., nn.Module]] = {}  # name -> constructor


def register_baseline(
    name: str, *, sizes: Sizes = flat_sizes, sequence: bool = False, **fixed: Any
) -> Callable[[T], T]:
    """Register the decorated class under ``name`` (``fixed``: constructor arguments of this name, e.g.
    ``cell="nac"``); a name registered twice is an error."""

    def deco(cls: T) -> T:
        if name in BASELINE_SPECS:
            raise ValueError(
                f"baseline {name!r} is registered twice ({BASELINE_SPECS[name].build} and {cls})"
            )
        build = partial(cls, **fixed) if fixed else cls
        BASELINE_SPECS[name] = BaselineSpec(name, build, sizes, sequence)
        BASELINES[name] = build
        return cls

    return deco


def baseline_spec(name: str) -> BaselineSpec:
    """The baseline registered under ``name``.

    Raises:
        ValueError: for an unknown name; the message lists the valid names.
    """
    try:
        return BASELINE_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; valid names: {', '.join(sorted(BASELINES))}") from None


def build_baseline(name: str, **kwargs: Any) -> nn.Module:
    """Build the baseline registered under ``name`` with constructor ``kwargs``.

    Raises:
        ValueError: for an unknown name; the message lists the valid names.
    """
    return baseline_spec(name).build(**kwargs)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable (``requires_grad``) parameter entries of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
