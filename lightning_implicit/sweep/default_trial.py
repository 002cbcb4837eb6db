"""The configuration's own recipe as the first trial of a study.

A search that starts from random draws can end worse than the recipe it is meant to improve (four random draws
of a rolling-argmax study never came near the authors' full-batch, 1,000-step decayed recipe). ``make tune``
therefore enqueues, in every study and for every model family alike, one trial at the values the model's
configuration already has for each searched key (the task config, the model config, the profile's overrides),
so that a tuned config is never one the default beats on the same cross-validation.

The training length is searched in optimiser steps (``trainer.max_steps``, with ``trainer.max_epochs: -1`` fixed
by the space); a recipe given in epochs is converted with the datamodule's own count of optimiser steps per
epoch on a training fold (``epochs * ceil(n_train_fold / batch)``), so the trial takes exactly the recipe's steps.

A number outside a parameter's range (``lr_gamma: 1.0``, no decay, against a searched ``[0.95, 0.9995]``) is
enqueued as it is: Optuna runs a fixed value outside its distribution (with a warning) and the trial is the
recipe exactly; :attr:`DefaultPoint.beyond` records it. A categorical value that is not a choice (a batch size
the space does not offer) cannot be enqueued: the sampler draws that parameter and :attr:`DefaultPoint.outside`
says which and why, so that the study's record shows how far its first trial is from the recipe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from .space import ModelSpace, ParamSpec

__all__ = [
    "DefaultPoint",
    "default_point",
    "in_space",
    "has_default",
    "default_trial",
    "has_marked",
    "marked_trial",
    "record_brief",
    "DEFAULT_ATTR",
    "PREVIOUS_ATTR",
]

# the recipe trial's user attribute; its value is :attr:`DefaultPoint.label`
DEFAULT_ATTR = "default_recipe"
# the user attribute of the trial at a previous tuned record's best values (``tune --from-record``); its value is
# that record's provenance in brief (study, folds, CV score, trials, date, commit)
PREVIOUS_ATTR = "previous_record"


@dataclass
class DefaultPoint:
    """The recipe's value of each searched parameter: ``params`` (enqueued), of which ``beyond`` (``{name: why}``)
    lie outside their numeric range, and ``outside`` (``{name: why}``: not enqueued, left to the sampler)."""

    params: dict[str, Any] = field(default_factory=dict)
    beyond: dict[str, str] = field(default_factory=dict)
    outside: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The user attribute of the enqueued trial (also printed when it starts)."""
        text = "the configuration's recipe"
        if self.outside:
            text += ", except " + ", ".join(sorted(self.outside)) + " (sampled)"
        if self.beyond:
            text += "; outside the searched range: " + ", ".join(sorted(self.beyond))
        return text


def in_space(spec: ParamSpec, value: Any) -> bool:
    """Whether Optuna can enqueue ``value`` for ``spec`` (a choice, or inside ``[low, high]`` on its step grid)."""
    if spec.type == "categorical":
        return any(_same(value, c) for c in spec.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    lo, hi = float(spec.low), float(spec.high)
    if not lo <= float(value) <= hi:
        return False
    if spec.type == "int":
        if float(value) != int(value):
            return False
        return spec.step is None or (int(value) - int(lo)) % int(spec.step) == 0
    return spec.step is None or math.isclose((value - lo) / spec.step, round((value - lo) / spec.step))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b or a == b and type(a) is type(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b


def _choice(spec: ParamSpec, value: Any) -> Any:
    """The space's own spelling of a categorical value (``1.0e-4`` for ``0.0001``) so Optuna recognises it."""
    return next(c for c in spec.choices if _same(value, c))


def _lookup(cfg, key: str) -> tuple[bool, Any]:
    """``cfg[key]`` for a LightningCLI path, also an entry of a dict argument (``...arch_kwargs.hidden``)."""
    try:
        return True, cfg[key]
    except (KeyError, TypeError):
        pass
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            node = cfg[".".join(parts[:i])]
        except (KeyError, TypeError):
            continue
        for p in parts[i:]:
            if not isinstance(node, dict) or p not in node:
                return False, None
            node = node[p]
        return True, node
    return False, None


def default_point(space: ModelSpace, cfg, steps_per_epoch: int | None) -> DefaultPoint:
    """The recipe of ``cfg`` (a parsed LightningCLI config of the trial's model, before the space's fixed
    settings) as values of ``space``'s parameters.

    ``steps_per_epoch``: optimiser steps per epoch of the recipe's batch size on a training fold; used to
    express a recipe given in epochs as ``trainer.max_steps`` (``None``: no conversion possible)."""
    point = DefaultPoint()
    repeats = {s.repeat for s in space.params.values() if isinstance(s.repeat, str)}
    for name, spec in space.params.items():
        if spec.key is None:
            if name not in repeats:
                point.outside[name] = "not a configuration key"
            continue
        found, value = _lookup(cfg, spec.key)
        if spec.key == "trainer.max_steps":
            value, why = _steps(cfg, steps_per_epoch)
            if value is None:
                point.outside[name] = why
                continue
        elif not found:
            point.outside[name] = f"{spec.key} is not in the configuration"
            continue
        if spec.repeat is not None:
            if not isinstance(value, (list, tuple)) or not value or any(v != value[0] for v in value):
                point.outside[name] = f"{spec.key}={value!r} is not a repeated value"
                continue
            if isinstance(spec.repeat, str):
                point.params[spec.repeat] = len(value)
            value = value[0]
        _add(point, name, spec, value)
    for name in repeats:  # a count, enqueued with its repeated value
        if name in point.params:
            _add(point, name, space.params[name], point.params.pop(name))
    return point


def _add(point: DefaultPoint, name: str, spec: ParamSpec, value: Any) -> None:
    if spec.type == "categorical":
        if in_space(spec, value):
            point.params[name] = _choice(spec, value)
        else:
            point.outside[name] = f"{spec.key or name}={value!r} is not one of {list(spec.choices)}"
        return
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not numeric or (spec.type == "int" and float(value) != int(value)):
        point.outside[name] = f"{spec.key or name}={value!r} is not a {spec.type}"
    elif spec.log and value <= 0:
        point.outside[name] = f"{spec.key or name}={value!r} is not positive (a log-scaled range)"
    else:
        point.params[name] = int(value) if spec.type == "int" else float(value)
        if not in_space(spec, value):
            point.beyond[name] = f"{spec.key or name}={value!r} is outside [{spec.low:g}, {spec.high:g}]"


def _steps(cfg, steps_per_epoch: int | None) -> tuple[int | None, str]:
    """The recipe's optimiser steps: ``trainer.max_steps``, else ``max_epochs * steps_per_epoch`` (the smaller
    of the two when both are set, as Lightning stops at the first)."""
    max_steps, max_epochs = cfg["trainer.max_steps"], cfg["trainer.max_epochs"]
    counts = [int(max_steps)] if max_steps is not None and max_steps > 0 else []
    if max_epochs is not None and max_epochs > 0:
        if steps_per_epoch is None:
            return None, "the recipe counts epochs and its steps per epoch are unknown"
        counts.append(int(max_epochs) * int(steps_per_epoch))
    if not counts:
        return None, "the recipe sets neither trainer.max_steps nor trainer.max_epochs"
    return min(counts), ""


def has_marked(trials: list[FrozenTrial], attr: str) -> bool:
    """Whether a study already holds the trial marked with user attribute ``attr`` (the recipe's, or a previous
    record's): run, running or waiting (an interrupted one is run again when the study resumes; one that failed
    for another reason, e.g. a non-finite loss, is not)."""
    return any(
        attr in t.user_attrs
        and not (t.state == TrialState.FAIL and t.user_attrs.get("fail_reason") == "interrupted")
        for t in trials
    )


def marked_trial(trials: list[FrozenTrial], attr: str) -> FrozenTrial | None:
    """The trial marked with user attribute ``attr``: the last one that finished (complete or pruned), else the
    last one enqueued."""
    mine = [t for t in trials if attr in t.user_attrs]
    done = [t for t in mine if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    return (done or mine or [None])[-1]


def has_default(trials: list[FrozenTrial]) -> bool:
    """Whether a study already holds its recipe trial (:func:`has_marked`)."""
    return has_marked(trials, DEFAULT_ATTR)


def default_trial(trials: list[FrozenTrial]) -> FrozenTrial | None:
    """The study's recipe trial (:func:`marked_trial`)."""
    return marked_trial(trials, DEFAULT_ATTR)


def record_brief(record: dict[str, Any]) -> str:
    """A previous tuned record in brief, ``"25 trials, 3-fold CV 0.1289"`` (its :data:`PREVIOUS_ATTR` value):
    what the console says when its trial is enqueued and the report when it reads the new record."""
    score = record.get("cv_score")
    score_text = f"{score:.4g}" if isinstance(score, (int, float)) else "?"
    return f"{record.get('trials')} trials, {record.get('cv_folds')}-fold CV {score_text}"
