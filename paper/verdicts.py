"""The explicit rules that turn our measured numbers into a verdict on each of the paper's claims.

The claims are data: ``claims.yaml`` beside this module lists each one (id, source, report section, text, rule
name) with a ``check`` -- one of the kinds in :data:`CHECKS` (``best``, ``all_below``, ``factor``, ``flat``,
``slower_growth``, ``grows``, ``combine`` of named parts) and its parameters: tasks, models, metric, shifts,
thresholds. The paper's numbers are read from ``numbers.yaml`` (``{text_number: KEY}``), never copied.
:func:`load_claims` rejects an unknown key, check kind, model set or number with a :class:`ClaimsError` that
names the claim; :func:`evaluate_claims` runs every check on the logged MLflow metrics of a :class:`.Results`.

A verdict is one of :data:`HOLDS`, :data:`PARTLY`, :data:`NOT` (``does not hold at this budget``) or
:data:`NA` (not evaluated: the task was not run, or its data were unavailable). Nothing is pre-written:
every verdict is computed by one of the rules below from the per-seed, per-shift values read from MLflow.

Rules (``HOLD_FRAC = 0.8``; "better" is lower for losses, higher for accuracy; NaN is never better):

* :func:`rule_best` -- *"A beats every model in a set across shifts"*. For each shift ``k``: A is *best at
  every seed* when, at each seed that all models ran, A is better than every other model; A is *best on the
  seed mean* when its mean over seeds is better than every other model's mean. **holds**: best at every
  seed at >= 80% of the shifts; **holds partly**: best at every seed or on the seed mean at >= 1 shift;
  **does not hold**: at no shift. A run whose training diverged (non-finite loss) counts as an infinite loss.
* :func:`rule_all_below` -- *"values stay below T"* (e.g. MSE < 1 for shifts < 100): **holds**: every
  (task, shift, seed) value below T; **partly**: some; **not**: none.
* :func:`rule_factor` -- *"A is better than every other model by a factor F"* (Table 1): with seed means,
  ratio = best other / A (losses). **holds**: A better than every other model at every seed and
  ratio >= F; **partly**: A better on the seed mean (ratio > 1) or at >= 1 seed; **not**: otherwise.
* :func:`rule_grows` -- *"solver iterations grow with the shift"* (Figure 8): a run *grows* when the mean
  iterations at the largest shift exceed those at the smallest by >= 5% (``GROW_MIN``) and the Spearman rank
  correlation between shift and iterations is > 0. **holds**: >= 80% of the runs grow; **partly**: >= 1;
  **not**: none.
* :func:`rule_flat` -- *"the loss stays close to constant across shifts"*: growth = loss at the largest shift
  / loss at the smallest, per seed. **holds**: growth <= 10 (one decade) at every seed; **partly**: A's
  median growth is below every other model's (it grows more slowly); **not**: otherwise.
* :func:`rule_slower_growth` -- *"A's loss grows more slowly with the shift than B's"*: **holds**: A's growth
  below B's at every common seed; **partly**: A's median growth below B's; **not**: otherwise.
* :func:`combine` -- a claim made of parts: **holds** if every part was evaluated and holds, **does not hold**
  if no evaluated part holds even partly, **holds partly** otherwise; not evaluated if no part was.
* A claim about a set of models evaluated without some of them (no usable runs) is at most **holds partly**.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .paper_numbers import TABLE4_MODELS, label, read_entries, resolve_numbers
from .results import Results, Series

__all__ = [
    "HOLDS",
    "PARTLY",
    "NOT",
    "NA",
    "HOLD_FRAC",
    "FLAT_MAX_GROWTH",
    "GROW_MIN",
    "RuleResult",
    "Verdict",
    "rule_best",
    "rule_all_below",
    "rule_factor",
    "rule_grows",
    "rule_flat",
    "rule_slower_growth",
    "combine",
    "Claim",
    "ClaimsError",
    "CHECKS",
    "load_claims",
    "evaluate_claims",
    "table2_shift",
]

HOLDS = "holds"
PARTLY = "holds partly"
NOT = "does not hold at this budget"
NA = "not evaluated"
HOLD_FRAC = 0.8
FLAT_MAX_GROWTH = 10.0
GROW_MIN = 0.05


@dataclass
class RuleResult:
    verdict: str
    evidence: str


@dataclass
class Verdict:
    id: str
    source: str
    claim: str
    rule: str
    verdict: str
    evidence: str
    section: str

    def to_dict(self) -> dict:
        return asdict(self)


def _better(a: float, b: float, higher: bool) -> bool:
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return False
    return a > b if higher else a < b


def _mean(vals) -> float:
    arr = np.array([v for v in vals if v is not None and not math.isnan(v)], dtype=float)
    return float(arr.mean()) if len(arr) else math.nan


def _fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if math.isinf(v):
        return "inf"
    return f"{v:.3g}"


# ---- rules ------------------------------------------------------------------------------------------------
def rule_best(
    ours: Series,
    others: dict[str, Series],
    *,
    higher_is_better: bool = False,
    keys=None,
    hold_frac: float = HOLD_FRAC,
) -> RuleResult:
    """See the module doc. ``keys``: restrict to these shifts."""
    others = {k: v for k, v in others.items() if v}
    if not ours or not others:
        return RuleResult(NA, "no measurements to compare")
    shifts = sorted({k for per in ours.values() for k in per}, key=_sort_key)
    if keys is not None:
        shifts = [k for k in shifts if k in set(keys)]
    n = robust = on_mean = 0
    for k in shifts:
        seeds = [s for s in ours if k in ours[s] and all(s in o and k in o[s] for o in others.values())]
        if not seeds:
            continue
        n += 1
        if all(_better(ours[s][k], o[s][k], higher_is_better) for s in seeds for o in others.values()):
            robust += 1
        m = _mean(per[k] for per in ours.values() if k in per)
        if all(
            _better(m, _mean(per[k] for per in o.values() if k in per), higher_is_better)
            for o in others.values()
        ):
            on_mean += 1
    if n == 0:
        return RuleResult(NA, "no shift measured for every model")
    ev = f"best at every seed at {robust}/{n} shifts, best on the seed mean at {on_mean}/{n}"
    if robust >= hold_frac * n:
        return RuleResult(HOLDS, ev)
    if robust or on_mean:
        return RuleResult(PARTLY, ev)
    return RuleResult(NOT, ev)


def _sort_key(k):
    return (0, k) if isinstance(k, (int, float)) else (1, str(k))


def rule_all_below(values: dict[str, float], threshold: float) -> RuleResult:
    vals = {k: v for k, v in values.items() if v is not None and not math.isnan(v)}
    if not vals:
        return RuleResult(NA, "no measurements")
    below = sum(v < threshold for v in vals.values())
    ev = f"{below}/{len(vals)} values below {threshold:g} (largest {_fmt(max(vals.values()))})"
    if below == len(vals):
        return RuleResult(HOLDS, ev)
    return RuleResult(PARTLY if below else NOT, ev)


def rule_factor(
    ours: dict[int, float],
    others: dict[str, dict[int, float]],
    factor: float,
    *,
    higher_is_better: bool = False,
) -> RuleResult:
    others = {k: v for k, v in others.items() if v}
    if not ours or not others:
        return RuleResult(NA, "no measurements to compare")
    seeds = [s for s in ours if all(s in o for o in others.values())]
    wins = sum(all(_better(ours[s], o[s], higher_is_better) for o in others.values()) for s in seeds)
    m = _mean(ours.values())
    means = {name: _mean(o.values()) for name, o in others.items()}
    best_name = (max if higher_is_better else min)(means, key=lambda k: means[k])
    best = means[best_name]
    ratio = (m / best if higher_is_better else best / m) if m and not math.isnan(m) and m != 0 else math.nan
    ev = (
        f"{_fmt(m)} vs best other {_fmt(best)} ({label(best_name)}): ratio {_fmt(ratio)} "
        f"(paper: {factor:.3g}); better than every other model at {wins}/{len(seeds)} seeds"
    )
    if seeds and wins == len(seeds) and ratio >= factor:
        return RuleResult(HOLDS, ev)
    if (not math.isnan(ratio) and ratio > 1) or wins:
        return RuleResult(PARTLY, ev)
    return RuleResult(NOT, ev)


def _spearman(x, y) -> float:
    if len(x) < 2:
        return math.nan
    rx = np.argsort(np.argsort(x)).astype(float)
    ry = _rank(np.asarray(y, dtype=float))
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def _rank(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v), dtype=float)
    ranks[order] = np.arange(len(v), dtype=float)
    for val in np.unique(v):  # average ranks for ties
        idx = v == val
        ranks[idx] = ranks[idx].mean()
    return ranks


def rule_grows(runs: dict[str, dict[object, float]], hold_frac: float = HOLD_FRAC) -> RuleResult:
    """``runs``: ``{run label: {shift: mean iterations}}``."""
    runs = {k: v for k, v in runs.items() if len(v) >= 2}
    if not runs:
        return RuleResult(NA, "no implicit runs with at least two shifts")
    grows, firsts, lasts = 0, [], []
    for per in runs.values():
        ks = sorted(per, key=_sort_key)
        ys = [per[k] for k in ks]
        firsts.append(ys[0])
        lasts.append(ys[-1])
        if ys[-1] >= ys[0] * (1 + GROW_MIN) and ys[-1] > ys[0] and _spearman(list(range(len(ks))), ys) > 0:
            grows += 1
    ev = (
        f"iterations grow with the shift in {grows}/{len(runs)} runs (mean over runs: {_fmt(_mean(firsts))} at "
        f"the smallest shift -> {_fmt(_mean(lasts))} at the largest)"
    )
    if grows >= hold_frac * len(runs):
        return RuleResult(HOLDS, ev)
    return RuleResult(PARTLY if grows else NOT, ev)


def _growth(series: Series) -> dict[int, float]:
    out = {}
    for s, per in series.items():
        ks = sorted(per, key=_sort_key)
        if len(ks) < 2:
            continue
        lo, hi = per[ks[0]], per[ks[-1]]
        out[s] = math.inf if lo == 0 else hi / lo
    return out


def rule_flat(ours: Series, others: dict[str, Series], max_growth: float = FLAT_MAX_GROWTH) -> RuleResult:
    g = _growth(ours)
    if not g:
        return RuleResult(NA, "no run with at least two shifts")
    og = {name: _growth(s) for name, s in others.items() if _growth(s)}
    med = float(np.median(list(g.values())))
    meds = {name: float(np.median(list(v.values()))) for name, v in og.items()}
    ev = (
        f"loss(largest shift)/loss(smallest shift) = {_fmt(med)} (median over seeds; max {_fmt(max(g.values()))})"
        + ("; others: " + ", ".join(f"{label(k)} {_fmt(v)}" for k, v in meds.items()) if meds else "")
    )
    if all(v <= max_growth for v in g.values()):
        return RuleResult(HOLDS, ev)
    if meds and all(med < v for v in meds.values()):
        return RuleResult(PARTLY, ev)
    return RuleResult(NOT, ev)


def rule_slower_growth(ours: Series, other: Series) -> RuleResult:
    g, h = _growth(ours), _growth(other)
    if not g or not h:
        return RuleResult(NA, "no runs with at least two shifts")
    seeds = [s for s in g if s in h]
    slower = sum(g[s] < h[s] for s in seeds)
    mg, mh = float(np.median(list(g.values()))), float(np.median(list(h.values())))
    ev = f"growth {_fmt(mg)} vs {_fmt(mh)} (median over seeds); slower at {slower}/{len(seeds)} seeds"
    if seeds and slower == len(seeds):
        return RuleResult(HOLDS, ev)
    return RuleResult(PARTLY if (mg < mh or slower) else NOT, ev)


def combine(parts: list[tuple[str, RuleResult]]) -> RuleResult:
    evaluated = [(n, r) for n, r in parts if r.verdict != NA]
    ev = "; ".join(f"{n}: {r.verdict} ({r.evidence})" for n, r in parts)
    if not evaluated:
        return RuleResult(NA, ev)
    if all(r.verdict == HOLDS for _, r in evaluated):
        return RuleResult(HOLDS if len(evaluated) == len(parts) else PARTLY, ev)
    if all(r.verdict == NOT for _, r in evaluated):
        return RuleResult(NOT, ev)
    return RuleResult(PARTLY, ev)


# ---- the claims: data in claims.yaml, each checked by one kind of check --------------------------------------
CLAIMS_FILE = Path(__file__).with_name("claims.yaml")
CLAIM_KEYS = ("id", "source", "section", "claim", "rule", "check")
OTHERS = ("table4 others", "table4 baselines")
SHIFT_SELECTORS = ("at_most", "below", "in_range")


class ClaimsError(ValueError):
    """``claims.yaml`` names an unknown key, check kind, model set or paper number (the message names the claim)."""


@dataclass(frozen=True)
class Claim:
    id: str
    source: str
    section: str
    claim: str
    rule: str
    check: dict  # {"kind": ..., **parameters}, paper numbers and model sets resolved


@dataclass(frozen=True)
class _Context:
    results: Results
    skipped: dict[str, str]  # task -> why it was not run (AMC volatility without data)

    def missing(self, task: str, models) -> str | None:
        if self.skipped.get(task):
            return f"skipped: {self.skipped[task]}"
        return _missing(self.results, task, models)


def table2_shift(results: Results, task: str):
    """The shift at which our Table 2 is read: the smallest OOD shift of the task's grid (see the report)."""
    shifts = results.shifts(task)
    return shifts[0] if shifts else None


def _missing(results: Results, task: str, models) -> str | None:
    if task not in results.tasks():
        return f"{task} was not run in this profile"
    miss = [m for m in models if not results.has(task, m)]
    if miss:
        return f"no usable {task} runs of {', '.join(miss)}"
    return None


def _cap_partial(r: RuleResult, missing) -> RuleResult:
    """A claim checked against only some of its models is at most "holds partly"."""
    if not missing:
        return r
    ev = f"{r.evidence} (without {', '.join(missing)}: no usable runs)"
    return RuleResult(PARTLY if r.verdict == HOLDS else r.verdict, ev)


def _keep_shift(ctx: _Context, shifts, task: str) -> Callable[[object], bool]:
    """The shift selector of claims.yaml as a predicate (``None``: every shift)."""
    if shifts == "table2":
        k = table2_shift(ctx.results, task)
        shifts = None if k is None else [k]
    if shifts is None:
        return lambda k: True
    if isinstance(shifts, list):
        return lambda k: k in shifts
    how, x = next(iter(shifts.items()))
    if how == "at_most":
        return lambda k: k <= x
    if how == "below":
        return lambda k: k < x
    return lambda k: k in range(*x)  # in_range: the integer shifts x[0]..x[1]-1


# ---- the kinds of check: each turns logged sweep metrics into a rule's result ---------------------------------
def check_best(
    ctx: _Context, *, tasks, model, others, metric, higher=False, shifts=None, reverse=False
) -> RuleResult:
    """:func:`rule_best` on a sweep metric (``higher``: higher is better; ``reverse``: the claim is that ``model``
    is the *worst*). Several ``tasks`` pool their (task, shift) pairs as shifts; a task or model without usable
    runs is left out and caps the verdict at "holds partly"."""
    results = ctx.results
    absent = [t for t in tasks if ctx.missing(t, [model])]
    if len(absent) == len(tasks):
        return RuleResult(NA, ctx.missing(tasks[0], [model]))
    tasks = [t for t in tasks if t not in absent]
    missing = sorted({m for t in tasks for m in others if not results.has(t, m)}) + [
        f"task {t}" for t in absent
    ]
    others = [m for m in others if m not in missing]
    if not others:
        return RuleResult(NA, f"no usable runs of {', '.join(missing)}")
    div = -math.inf if higher else math.inf

    def pooled(m) -> Series:
        out: Series = {}
        for t in tasks:
            keep = _keep_shift(ctx, shifts, t)
            for s, per in results.series(t, m, metric, diverged=div).items():
                for k, v in per.items():
                    if keep(k):
                        out.setdefault(s, {})[(t, k) if len(tasks) > 1 else k] = v
        return out

    r = rule_best(pooled(model), {m: pooled(m) for m in others}, higher_is_better=higher != reverse)
    if reverse:
        r = RuleResult(r.verdict, r.evidence.replace("best", "worst"))
    return _cap_partial(r, missing)


def check_all_below(
    ctx: _Context, *, tasks, model, metric, threshold, shifts=None, empty="no measurements"
) -> RuleResult:
    """:func:`rule_all_below` on every (task, shift, seed) value of the selected shifts. One task that was not
    run is not evaluated; of several, those without runs cap the verdict at "holds partly"."""
    if len(tasks) == 1 and (why := ctx.missing(tasks[0], [model])):
        return RuleResult(NA, why)
    vals = {}
    for t in tasks:
        keep = _keep_shift(ctx, shifts, t)
        for seed, per in ctx.results.series(t, model, metric).items():
            vals.update({f"{t},k={k},seed={seed}": v for k, v in per.items() if keep(k)})
    if not vals:
        return RuleResult(NA, empty)
    absent = [f"task {t}" for t in tasks if ctx.missing(t, [model])]
    return _cap_partial(rule_all_below(vals, threshold), absent)


def check_factor(ctx: _Context, *, task, model, others, metric, shift, factor) -> RuleResult:
    """:func:`rule_factor` on the value at one ``shift`` (``last``: each run's last sweep row); a list of models
    is represented by the better of them (seed mean). Not evaluated unless every model has usable runs."""
    ours = [model] if isinstance(model, str) else list(model)
    if why := ctx.missing(task, [*ours, *others]):
        return RuleResult(NA, why)

    def at_shift(m) -> dict[int, float]:
        series = ctx.results.series(task, m, metric).items()
        if shift == "last":
            return {s: per[next(reversed(per))] for s, per in series if per}
        return {s: per[shift] for s, per in series if shift in per}

    values = {m: at_shift(m) for m in ours}
    best = min(ours, key=lambda m: _mean(values[m].values()))
    return rule_factor(values[best], {m: at_shift(m) for m in others}, factor)


def check_flat(ctx: _Context, *, task, model, others, metric) -> RuleResult:
    """:func:`rule_flat` of ``model`` against ``others``."""
    if why := ctx.missing(task, [model]):
        return RuleResult(NA, why)
    series = ctx.results.series
    return rule_flat(series(task, model, metric), {m: series(task, m, metric) for m in others})


def check_slower_growth(ctx: _Context, *, task, model, other, metric) -> RuleResult:
    """:func:`rule_slower_growth` of ``model`` against ``other``."""
    if why := ctx.missing(task, [model, other]):
        return RuleResult(NA, why)
    series = ctx.results.series
    return rule_slower_growth(series(task, model, metric), series(task, other, metric))


def check_grows(ctx: _Context, *, tasks, model, metric, tolerances=None, empty=None) -> RuleResult:
    """:func:`rule_grows` over every (task, seed) run. ``tolerances``: ``metric`` names ``{tolerance}`` and
    each run counts under the last of them it logged (the evidence names it); ``empty``: the reason when no
    run logged the metric. Tasks without runs cap the verdict at "holds partly"."""
    runs, used = {}, None
    for t in tasks:
        for tol in tolerances or [None]:
            for seed, per in ctx.results.series(t, model, metric.format(tolerance=tol)).items():
                runs[f"{t} seed {seed}"], used = per, tol
    if not runs and empty:
        return RuleResult(NA, empty)
    r = rule_grows(runs)
    if used:
        r = RuleResult(r.verdict, f"with the {used} tolerance: {r.evidence}")
    return _cap_partial(r, [f"task {t}" for t in tasks if ctx.missing(t, [model])])


def check_combine(ctx: _Context, *, parts) -> RuleResult:
    """:func:`combine` of named checks (``parts``: ``[{name, check}]``)."""
    return combine([(name, _run(ctx, check)) for name, check in parts])


CHECKS: dict[str, Callable[..., RuleResult]] = {
    "best": check_best,
    "all_below": check_all_below,
    "factor": check_factor,
    "flat": check_flat,
    "slower_growth": check_slower_growth,
    "grows": check_grows,
    "combine": check_combine,
}


def _run(ctx: _Context, check: dict) -> RuleResult:
    kind, params = check["kind"], {k: v for k, v in check.items() if k != "kind"}
    return CHECKS[kind](ctx, **params)


# ---- reading claims.yaml ----------------------------------------------------------------------------------------
def _fill(cid: str, text: str, params: dict) -> str:
    """A text with check parameters in braces, e.g. ``{factor:g}``."""
    try:
        return text.format(**params)
    except (KeyError, IndexError, ValueError, TypeError) as err:
        raise ClaimsError(
            f"claim {cid}: cannot fill {text!r} from its check ({type(err).__name__}: {err})"
        ) from None


def _parse_check(cid: str, spec, where: str = "check") -> dict:
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ClaimsError(f"claim {cid}: {where} needs a 'kind' (one of {', '.join(CHECKS)})")
    kind = spec["kind"]
    if kind not in CHECKS:
        raise ClaimsError(f"claim {cid}: unknown check kind {kind!r} in {where} (known: {', '.join(CHECKS)})")
    allowed = {
        n: p for n, p in inspect.signature(CHECKS[kind]).parameters.items() if p.kind is p.KEYWORD_ONLY
    }
    for key in spec:
        if key != "kind" and key not in allowed:
            raise ClaimsError(
                f"claim {cid}: unknown key {key!r} in {where} (a {kind} check takes: {', '.join(allowed)})"
            )
    for key, p in allowed.items():
        if p.default is p.empty and key not in spec:
            raise ClaimsError(f"claim {cid}: {where} of kind {kind} needs the key {key!r}")
    params = {k: resolve_numbers(v, f"claim {cid}", ClaimsError) for k, v in spec.items() if k != "kind"}
    if kind == "combine":
        if not isinstance(params["parts"], list):
            raise ClaimsError(f"claim {cid}: {where}.parts must be a list of {{name, check}}")
        params["parts"] = [_parse_part(cid, p, f"{where}.parts[{i}]") for i, p in enumerate(params["parts"])]
    for key in ("others", "other", "model"):
        if key in params and not isinstance(params[key], (str, list)):
            raise ClaimsError(f"claim {cid}: {where}.{key} must be a model name or a list of them")
    if isinstance(params.get("others"), str):
        params["others"] = _model_set(
            cid, params["others"], params.get("tasks") or [params["task"]], params["model"]
        )
    if "shifts" in params:
        _check_shifts(cid, params["shifts"], where)
    if params.get("empty"):
        params["empty"] = _fill(cid, params["empty"], params)
    return {"kind": kind, **params}


def _parse_part(cid: str, part, where: str) -> tuple[str, dict]:
    if not isinstance(part, dict) or set(part) != {"name", "check"}:
        keys = sorted(set(part) - {"name", "check"}) if isinstance(part, dict) else []
        what = f"unknown key {keys[0]!r}" if keys else "each part needs exactly a 'name' and a 'check'"
        raise ClaimsError(f"claim {cid}: {what} in {where} (a part has: name, check)")
    return str(part["name"]), _parse_check(cid, part["check"], f"{where}.check")


def _model_set(cid: str, name: str, tasks, model) -> list[str]:
    """``table4 others``: the tasks' Table 4 models but ours; ``table4 baselines``: those that are not implicit."""
    ours = {model} if isinstance(model, str) else set(model)
    if name not in OTHERS:
        raise ClaimsError(f"claim {cid}: unknown model set {name!r} (a list of models, or one of {OTHERS})")
    if unknown := [t for t in tasks if t not in TABLE4_MODELS]:
        raise ClaimsError(f"claim {cid}: task {unknown[0]!r} has no Table 4 models in numbers.yaml")
    models = dict.fromkeys(m for t in tasks for m in TABLE4_MODELS[t])
    if name == "table4 others":
        return [m for m in models if m not in ours]
    return [m for m in models if m not in ours and not m.startswith("implicit")]


def _check_shifts(cid: str, shifts, where: str) -> None:
    if shifts is None or shifts == "table2" or isinstance(shifts, list):
        return
    if not isinstance(shifts, dict) or len(shifts) != 1 or next(iter(shifts)) not in SHIFT_SELECTORS:
        raise ClaimsError(
            f"claim {cid}: unknown shift selector {shifts!r} in {where} (a list, 'table2' or one of "
            f"{', '.join(SHIFT_SELECTORS)})"
        )
    if "in_range" in shifts and not (isinstance(shifts["in_range"], list) and len(shifts["in_range"]) == 2):
        raise ClaimsError(f"claim {cid}: {where}.shifts.in_range must be [first, end]")


def load_claims(path: Path | str | None = None) -> list[Claim]:
    """The claims of ``claims.yaml`` (default: the one beside this module), checked and with their numbers read
    from numbers.yaml; a :class:`ClaimsError` names the claim and the key it does not know."""
    if path is None:
        return list(_shipped_claims())
    out: list[Claim] = []
    for i, entry in enumerate(read_entries(path, "claims", ClaimsError)):
        cid = str(entry.get("id", f"#{i + 1}")) if isinstance(entry, dict) else f"#{i + 1}"
        if not isinstance(entry, dict):
            raise ClaimsError(f"claim {cid}: expected a mapping with keys {', '.join(CLAIM_KEYS)}")
        for key in entry:
            if key not in CLAIM_KEYS:
                raise ClaimsError(f"claim {cid}: unknown key {key!r} (a claim has: {', '.join(CLAIM_KEYS)})")
        for key in CLAIM_KEYS:
            if key not in entry:
                raise ClaimsError(f"claim {cid}: missing key {key!r}")
        if any(c.id == cid for c in out):
            raise ClaimsError(f"claim {cid}: the id is used twice")
        check = _parse_check(cid, entry["check"])
        texts = {k: _fill(cid, str(entry[k]), check) for k in ("claim", "rule")}
        out.append(Claim(cid, str(entry["source"]), str(entry["section"]), check=check, **texts))
    return out


@functools.cache
def _shipped_claims() -> tuple[Claim, ...]:
    return tuple(load_claims(CLAIMS_FILE))


def evaluate_claims(results: Results, *, amc_skip: str | None = None) -> list[Verdict]:
    """Every claim of ``claims.yaml``, with its verdict computed from the logged metrics of ``results``
    (``amc_skip``: why AMC volatility was not run)."""
    ctx = _Context(results, {"volatility": amc_skip} if amc_skip else {})
    out: list[Verdict] = []
    for c in load_claims():
        try:
            r = _run(ctx, c.check)
        except Exception as err:  # noqa: BLE001 - a broken claim must not hide the others
            r = RuleResult(NA, f"could not evaluate: {type(err).__name__}: {err}")
        out.append(Verdict(c.id, c.source, c.claim, c.rule, r.verdict, r.evidence, c.section))
    return out
