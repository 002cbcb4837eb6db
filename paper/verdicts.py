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
* **an exact fit** (both growth rules): a loss at or below ``EXACT_MSE`` at every shift of every seed is a fit
  exact to float32 resolution; its "growth" is that of the rounding error (it grows as the targets' magnitude
  squared), not the model's. ``flat`` holds for such a loss; ``slower_growth`` with one on either side cannot
  compare growths and says so (:data:`NOISE`, with the reason).
* :func:`combine` -- a claim made of parts: **holds** if every part was evaluated and holds, **does not hold**
  if no evaluated part holds even partly, **holds partly** otherwise; not evaluated if no part was.
* A claim about a set of models evaluated without some of them (no usable runs) is at most **holds partly**.

Margins and stability (every evaluated claim; ``verdicts.json`` carries both):

* **margin** -- the value that decides the verdict against its threshold (the largest value against T, the
  ratio against F, the growth against 10, the count of winning shifts against 80%), the smallest gap and where
  (task, shift, seed), and the spread of the deciding quantity over seeds.
* **two models are separated** at a shift when their seed means differ by more than the larger of their seed
  standard deviations and by more than 0.1% (``TIE_REL``); a diverged run (infinite loss) is separated from a
  finite one. A comparison (``best``, ``factor``, ``slower_growth``; growths compared in log10) that separates the
  models nowhere gets **cannot separate the models at the seed noise** (:data:`NOISE`) instead of a verdict;
  ``combine`` counts such a part as not evaluated.
* **stability** -- the claim is evaluated again leaving out each seed in turn. A verdict that leaving out one seed
  changes, or whose deciding quantity has a seed range that straddles its threshold (some seeds on each side), is
  labelled **on the margin**, with the value that decides it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lightning_implicit import configfile
from lightning_implicit.validate import ConfigError

from .paper_numbers import TABLE4_MODELS, label, read_entries, resolve_numbers
from .results import Results, Series

__all__ = [
    "short_number",
    "HOLDS",
    "PARTLY",
    "NOT",
    "NA",
    "NOISE",
    "ON_MARGIN",
    "TIE_REL",
    "HOLD_FRAC",
    "FLAT_MAX_GROWTH",
    "GROW_MIN",
    "MAX_ITER",
    "converged_depth",
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
    "evaluate_claim",
    "table2_shift",
]

HOLDS = "holds"
PARTLY = "holds partly"
NOT = "does not hold at this budget"
NA = "not evaluated"
NOISE = "cannot separate the models at the seed noise"
ON_MARGIN = "on the margin"
TIE_REL = 1e-3
HOLD_FRAC = 0.8
FLAT_MAX_GROWTH = 10.0
GROW_MIN = 0.05
# an MSE at or below this at every shift is exact to float32 resolution for targets up to ~100 in magnitude
# (relative resolution 1.2e-7: (1.2e-7 x 100)^2 = 1.4e-10); the rolling-average no-feedback fit sits at 1e-13..1e-11
EXACT_MSE = 1e-10
MAX_ITER = 300  # the solver's iteration cap in the shift sweep (conf/models/implicit.yaml: solver.max_iter)


@dataclass
class RuleResult:
    """A rule's verdict and evidence, with its margin: ``margin`` (text: the deciding value against the threshold,
    the smallest gap and where, the seed spread) and ``close`` (the deciding quantity's seed range straddles the
    threshold, or the verdict rests on differences within the seed spread)."""

    verdict: str
    evidence: str
    margin: str = ""
    close: bool = False


@dataclass
class Verdict:
    """One claim's verdict. ``margin``: see :class:`RuleResult`; ``stability``: ``{"leave_one_out": {seed:
    verdict}, "flipped_by": [seeds whose omission changes the verdict], "text": ...}``; ``on_margin``: one seed
    flips the verdict or its deciding quantity straddles the threshold (``label`` then says so)."""

    id: str
    source: str
    claim: str
    rule: str
    verdict: str
    evidence: str
    section: str
    margin: str = ""
    stability: dict = field(default_factory=dict)
    on_margin: bool = False

    @property
    def label(self) -> str:
        """The verdict as the report prints it: ``holds partly (on the margin: ...)``."""
        if not self.on_margin:
            return self.verdict
        why = self.margin.split("; ")[0]
        if self.stability.get("flipped_by"):
            why += "; " + self.stability["text"]
        return f"{self.verdict} ({ON_MARGIN}: {why})"

    def to_dict(self) -> dict:
        return {**asdict(self), "label": self.label}


def _better(a: float, b: float, higher: bool) -> bool:
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return False
    return a > b if higher else a < b


def _mean(vals) -> float:
    arr = np.array([v for v in vals if v is not None and not math.isnan(v)], dtype=float)
    return float(arr.mean()) if len(arr) else math.nan


def short_number(v: float) -> str:
    """Three significant digits, ``n/a`` for a missing or NaN value, ``inf`` for an infinite one (verdict text and
    the paper-magnitude tables)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if math.isinf(v):
        return "inf"
    return f"{v:.3g}"


def _f4(v: float) -> str:
    """Four significant digits: a margin's deciding values (``0.6528 vs 0.6534``)."""
    return short_number(v) if v is None or math.isnan(v) or math.isinf(v) else f"{v:.4g}"


def _finite(vals) -> list[float]:
    return [float(v) for v in vals if v is not None and not math.isnan(v)]


def _sd(vals) -> float:
    """Sample standard deviation (0 for one value; NaN with an infinite value)."""
    v = _finite(vals)
    if len(v) < 2:
        return 0.0
    if any(math.isinf(x) for x in v):
        return math.nan
    return float(np.std(v, ddof=1))


def _separated(a, b, *, log: bool = False) -> bool:
    """Whether two sets of seed values are told apart at their noise level: seed means differing by more than the
    larger seed standard deviation and by more than ``TIE_REL`` (``log``: compared in log10, for growths)."""
    a, b = _finite(a), _finite(b)
    if not a or not b:
        return False
    ia, ib = any(math.isinf(x) for x in a), any(math.isinf(x) for x in b)
    if ia or ib:
        return ia != ib
    if log:
        if min(a + b) <= 0:
            return False
        a, b = [math.log10(x) for x in a], [math.log10(x) for x in b]
        tie = math.log10(1 + TIE_REL)
    else:
        tie = TIE_REL * max(abs(float(np.mean(a))), abs(float(np.mean(b))))
    d = abs(float(np.mean(a)) - float(np.mean(b)))
    return d > tie and d > max(_sd(a), _sd(b))


def _straddles(vals, threshold: float) -> bool:
    """Some values below ``threshold`` and some at or above it."""
    v = _finite(vals)
    return any(x < threshold for x in v) and any(x >= threshold for x in v)


def _gap(a: float, b: float, higher: bool) -> float:
    """Signed relative gap of ``a`` over ``b`` (positive: ``a`` better)."""
    if any(x is None or math.isnan(x) for x in (a, b)):
        return math.nan
    if math.isinf(a) or math.isinf(b):
        if a == b:
            return 0.0
        return (1.0 if (a > b) == higher else -1.0) * math.inf
    d = (a - b) if higher else (b - a)
    scale = max(abs(a), abs(b))
    return 0.0 if scale == 0 else d / scale


def _pct(g: float) -> str:
    if math.isnan(g):
        return "n/a"
    if math.isinf(g):
        return "inf"
    return f"{100 * g:+.2g}%"


def _where(k) -> str:
    if isinstance(k, tuple):
        return f"{k[0]} k={k[1]}"
    return f"k={k}"


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
    robust_at, mean_at, separated, closest = set(), set(), {}, []
    for k in shifts:
        seeds = [s for s in ours if k in ours[s] and all(s in o and k in o[s] for o in others.values())]
        if not seeds:
            continue
        n += 1
        if all(_better(ours[s][k], o[s][k], higher_is_better) for s in seeds for o in others.values()):
            robust += 1
            robust_at.add(k)
        m = _mean(per[k] for per in ours.values() if k in per)
        means = {name: _mean(per[k] for per in o.values() if k in per) for name, o in others.items()}
        if all(_better(m, means[name], higher_is_better) for name in others):
            on_mean += 1
            mean_at.add(k)
        gaps = {name: _gap(m, mo, higher_is_better) for name, mo in means.items()}
        rival = min(
            gaps, key=lambda name: math.inf if math.isnan(gaps[name]) else gaps[name]
        )  # strongest other
        separated[k] = _separated(
            [per[k] for per in ours.values() if k in per],
            [per[k] for per in others[rival].values() if k in per],
        )
        for s in seeds:
            for name, o in others.items():
                closest.append((_gap(ours[s][k], o[s][k], higher_is_better), k, s, name, ours[s][k], o[s][k]))
    if n == 0:
        return RuleResult(NA, "no shift measured for every model")
    ev = f"best at every seed at {robust}/{n} shifts, best on the seed mean at {on_mean}/{n}"
    need = math.ceil(hold_frac * n - 1e-9)
    n_sep = sum(separated.values())
    verdict = HOLDS if robust >= hold_frac * n else PARTLY if (robust or on_mean) else NOT
    pool = closest if verdict != HOLDS else [c for c in closest if c[1] in robust_at]
    deciding = min(pool or closest, key=lambda c: abs(c[0]) if not math.isnan(c[0]) else math.inf)
    g, k, s, o, a, b = deciding
    margin = (
        f"closest: {_where(k)} seed {s}, {_f4(a)} vs {_f4(b)} ({label(o)}, gap {_pct(g)}); best at every seed at "
        f"{robust}/{n} shifts against {need} needed; separated from the best other model at {n_sep}/{n} shifts "
        "(seed means differ by more than the seed sd)"
    )
    if n_sep == 0:
        return RuleResult(
            NOISE, ev + "; the models are not separated at any shift (differences within the seed sd)", margin
        )
    wins = robust_at | mean_at
    if verdict == HOLDS:
        close = sum(separated[k] for k in robust_at) < hold_frac * n
    elif verdict == PARTLY:
        close = not any(separated[k] for k in wins)
    else:
        close = n_sep < n
    return RuleResult(verdict, ev, margin, close)


def _sort_key(k):
    return (0, k) if isinstance(k, (int, float)) else (1, str(k))


def rule_all_below(values: dict[str, float], threshold: float) -> RuleResult:
    vals = {k: v for k, v in values.items() if v is not None and not math.isnan(v)}
    if not vals:
        return RuleResult(NA, "no measurements")
    below = sum(v < threshold for v in vals.values())
    ev = f"{below}/{len(vals)} values below {threshold:g} (largest {short_number(max(vals.values()))})"
    worst = max(vals, key=lambda k: vals[k])
    groups: dict[str, list[float]] = {}  # the seeds of one (task, shift)
    for key, v in vals.items():
        groups.setdefault(key.rsplit(",seed=", 1)[0], []).append(v)
    mixed = [g for g, v in groups.items() if _straddles(v, threshold)]
    spread = groups[worst.rsplit(",seed=", 1)[0]]
    margin = (
        f"largest {_f4(vals[worst])} at {worst} against {threshold:g} (seed range there {short_number(min(spread))} to "
        f"{short_number(max(spread))}); {len(mixed)} (task, shift) pair(s) with seeds on both sides of {threshold:g}"
        + (f": {', '.join(mixed[:3])}" if mixed else "")
    )
    verdict = HOLDS if below == len(vals) else PARTLY if below else NOT
    return RuleResult(verdict, ev, margin, bool(mixed))


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
        f"{short_number(m)} vs best other {short_number(best)} ({label(best_name)}): ratio {short_number(ratio)} "
        f"(paper: {factor:.3g}); better than every other model at {wins}/{len(seeds)} seeds"
    )
    # per seed: the ratio to the best other model at that seed, and the closest comparison
    per_seed, closest = {}, None
    for s in seeds:
        vals = {name: o[s] for name, o in others.items()}
        name = (max if higher_is_better else min)(vals, key=lambda k: vals[k])
        a, b = ours[s], vals[name]
        per_seed[s] = (a / b if higher_is_better else b / a) if a and b == b and a == a else math.nan
        g = _gap(a, b, higher_is_better)
        if closest is None or abs(g) < abs(closest[0]):
            closest = (g, s, name, a, b)
    rs = _finite(per_seed.values())
    margin = f"ratio {short_number(ratio)} against {factor:.3g}" + (
        f" (per seed {short_number(min(rs))} to {short_number(max(rs))})" if rs else ""
    )
    if closest:
        g, s, name, a, b = closest
        margin += f"; closest seed: {s}, {_f4(a)} vs {_f4(b)} ({label(name)}, gap {_pct(g)})"
    if not _separated(list(ours.values()), list(others[best_name].values())):
        return RuleResult(
            NOISE, ev + f"; not separated from {label(best_name)} (difference within the seed sd)", margin
        )
    close = _straddles(rs, factor) or _straddles(rs, 1.0)
    if seeds and wins == len(seeds) and ratio >= factor:
        return RuleResult(HOLDS, ev, margin, close)
    if (not math.isnan(ratio) and ratio > 1) or wins:
        return RuleResult(PARTLY, ev, margin, close)
    return RuleResult(NOT, ev, margin, close)


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
        f"iterations grow with the shift in {grows}/{len(runs)} runs (mean over runs: {short_number(_mean(firsts))} at "
        f"the smallest shift -> {short_number(_mean(lasts))} at the largest)"
    )
    ratios = [b / a if a else math.inf for a, b in zip(firsts, lasts, strict=True)]
    margin = (
        f"{grows}/{len(runs)} runs grow against {math.ceil(hold_frac * len(runs) - 1e-9)} needed; largest/smallest "
        f"shift iterations per run {short_number(min(ratios))} to {short_number(max(ratios))} against {1 + GROW_MIN:g}"
    )
    if grows >= hold_frac * len(runs):
        return RuleResult(HOLDS, ev, margin)
    return RuleResult(PARTLY if grows else NOT, ev, margin)


def _growth(series: Series) -> dict[int, float]:
    out = {}
    for s, per in series.items():
        ks = sorted(per, key=_sort_key)
        if len(ks) < 2:
            continue
        lo, hi = per[ks[0]], per[ks[-1]]
        out[s] = math.inf if lo == 0 else hi / lo
    return out


def _losses(series: Series) -> list[float]:
    return [v for per in series.values() for v in per.values()]


def _exact(series: Series) -> bool:
    """Every loss of every seed at or below :data:`EXACT_MSE` (a fit exact to float32 resolution)."""
    vals = _losses(series)
    return bool(vals) and all(v is not None and not math.isnan(v) and v <= EXACT_MSE for v in vals)


def _exact_text(series: Series) -> str:
    vals = _losses(series)
    return (
        f"the loss is at float32 resolution at every shift ({short_number(min(vals))} to {short_number(max(vals))}, "
        f"<= {EXACT_MSE:g}): its growth measures rounding, not the model"
    )


def rule_flat(ours: Series, others: dict[str, Series], max_growth: float = FLAT_MAX_GROWTH) -> RuleResult:
    g = _growth(ours)
    if not g:
        return RuleResult(NA, "no run with at least two shifts")
    if _exact(ours):
        return RuleResult(HOLDS, _exact_text(ours), _exact_text(ours))
    og = {name: _growth(s) for name, s in others.items() if _growth(s)}
    med = float(np.median(list(g.values())))
    meds = {name: float(np.median(list(v.values()))) for name, v in og.items()}
    ev = (
        f"loss(largest shift)/loss(smallest shift) = {short_number(med)} (median over seeds; max {short_number(max(g.values()))})"
        + ("; others: " + ", ".join(f"{label(k)} {short_number(v)}" for k, v in meds.items()) if meds else "")
    )
    levels = [
        (per[min(per, key=_sort_key)], per[max(per, key=_sort_key)]) for per in ours.values() if len(per) >= 2
    ]
    lo, hi = _mean(x for x, _ in levels), _mean(y for _, y in levels)
    margin = (
        f"growth {short_number(max(g.values()))} (largest over seeds; per seed {short_number(min(g.values()))} to "
        f"{short_number(max(g.values()))}) against {max_growth:g}; the loss goes from {short_number(lo)} to {short_number(hi)} (seed means)"
    )
    close = _straddles(list(g.values()), max_growth + 1e-12)
    if all(v <= max_growth for v in g.values()):
        return RuleResult(HOLDS, ev, margin, close)
    if meds and all(med < v for v in meds.values()):
        close = close or not all(_separated(list(g.values()), list(og[k].values()), log=True) for k in meds)
        return RuleResult(PARTLY, ev, margin, close)
    return RuleResult(NOT, ev, margin, close)


def rule_slower_growth(ours: Series, other: Series) -> RuleResult:
    g, h = _growth(ours), _growth(other)
    if not g or not h:
        return RuleResult(NA, "no runs with at least two shifts")
    exact = [(who, s) for who, s in (("A", ours), ("B", other)) if _exact(s)]
    if exact:
        why = "; ".join(
            f"{'this model' if who == 'A' else 'the other model'}: {_exact_text(s)}" for who, s in exact
        )
        return RuleResult(NOISE, f"the growths cannot be compared: {why}", why)
    seeds = [s for s in g if s in h]
    slower = sum(g[s] < h[s] for s in seeds)
    mg, mh = float(np.median(list(g.values()))), float(np.median(list(h.values())))
    ev = f"growth {short_number(mg)} vs {short_number(mh)} (median over seeds); slower at {slower}/{len(seeds)} seeds"
    margin = (
        f"growth ratio {short_number(mg / mh if mh else math.nan)} (medians {short_number(mg)} vs {short_number(mh)}); per seed "
        f"{short_number(min(g.values()))}-{short_number(max(g.values()))} vs {short_number(min(h.values()))}-{short_number(max(h.values()))}"
    )
    if not _separated(list(g.values()), list(h.values()), log=True):
        return RuleResult(
            NOISE, ev + "; the growths are not separated (difference within the seed sd)", margin
        )
    close = 0 < slower < len(seeds)
    if seeds and slower == len(seeds):
        return RuleResult(HOLDS, ev, margin, close)
    return RuleResult(PARTLY if (mg < mh or slower) else NOT, ev, margin, close)


def combine(parts: list[tuple[str, RuleResult]]) -> RuleResult:
    """See the module doc; a part that cannot separate its models counts as not evaluated."""
    evaluated = [(n, r) for n, r in parts if r.verdict not in (NA, NOISE)]
    ev = "; ".join(f"{n}: {r.verdict} ({r.evidence})" for n, r in parts)
    margin = "; ".join(f"{n}: {r.margin.split('; ')[0]}" for n, r in parts if r.margin)
    close = any(r.close for _, r in evaluated)
    if not evaluated:
        return RuleResult(NOISE if any(r.verdict == NOISE for _, r in parts) else NA, ev, margin)
    if all(r.verdict == HOLDS for _, r in evaluated):
        return RuleResult(HOLDS if len(evaluated) == len(parts) else PARTLY, ev, margin, close)
    if all(r.verdict == NOT for _, r in evaluated):
        return RuleResult(NOT, ev, margin, close)
    return RuleResult(PARTLY, ev, margin, close)


# ---- the claims: data in claims.yaml, each checked by one kind of check --------------------------------------
CLAIMS_FILE = Path(__file__).with_name("claims.yaml")
CLAIM_KEYS = ("id", "source", "section", "claim", "rule", "check")
OTHERS = ("table4 others", "table4 baselines")
SHIFT_SELECTORS = ("at_most", "below", "in_range")


CLAIM_FIX = PART_FIX = "the keys are described at the head of paper/claims.yaml"


@dataclass
class ClaimEntry:
    """A claim as written in claims.yaml (``check``: a check kind and its keys, checked by :func:`_parse_check`)."""

    id: str
    source: str
    section: str
    claim: str
    rule: str
    check: dict


class ClaimsError(ConfigError):
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
    return dataclasses.replace(r, verdict=PARTLY if r.verdict == HOLDS else r.verdict, evidence=ev)


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
        r = dataclasses.replace(
            r, evidence=r.evidence.replace("best", "worst"), margin=r.margin.replace("best", "worst")
        )
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


def converged_depth(
    results: Results, task: str, model: str, metric: str = "iters_mean"
) -> tuple[Series, Series]:
    """``(iterations, converged fraction)`` per seed and shift, the iterations averaged over the *converged*
    samples only: the sweep's ``<metric>_converged`` column where logged, else derived from the mean over all
    samples, since a sample that does not converge stops at the cap (``MAX_ITER``):
    ``(mean - (1 - f) * MAX_ITER) / f`` for converged fraction ``f``. A shift where no sample converged is
    left out. Without a converged fraction the mean over all samples is returned as it is."""
    conv_metric = metric.replace("iters_mean", "converged_frac")
    it = results.series(task, model, metric)
    cf = results.series(task, model, conv_metric)
    logged = results.series(task, model, metric.replace("iters_mean", "iters_mean_converged"))
    out: Series = {}
    for seed, per in it.items():
        fr = cf.get(seed, {})
        row = {}
        for k, v in per.items():
            f = fr.get(k)
            if f is None or math.isnan(f):
                row[k] = v
            elif f > 0:
                row[k] = logged.get(seed, {}).get(k, (v - (1 - f) * MAX_ITER) / f)
        if row:
            out[seed] = row
    return out, cf


def check_grows(ctx: _Context, *, tasks, model, metric, tolerances=None, empty=None) -> RuleResult:
    """:func:`rule_grows` over every (task, seed) run, counting converged samples only (:func:`converged_depth`;
    the evidence says how many samples hit the cap). ``tolerances``: ``metric`` names ``{tolerance}`` and each run
    counts under the last of them it logged (the evidence names it); ``empty``: the reason when no run logged the
    metric. Tasks without runs cap the verdict at "holds partly"."""
    runs, used, capped = {}, None, []
    for t in tasks:
        for tol in tolerances or [None]:
            name = metric.format(tolerance=tol)
            depth, cf = converged_depth(ctx.results, t, model, name)
            for seed, per in depth.items():
                runs[f"{t} seed {seed}"], used = per, tol
                fr = cf.get(seed, {})
                if fr:
                    last = max(fr, key=_sort_key)
                    capped.append((1 - fr[last], f"{t} seed {seed} k={last}"))
    if not runs and empty:
        return RuleResult(NA, empty)
    r = rule_grows(runs)
    if capped:
        worst = max(capped)
        note = (
            f"converged samples only; at the largest shift {100 * _mean(c for c, _ in capped):.1f}% of the samples "
            f"hit the {MAX_ITER}-iteration cap (mean over runs; worst {100 * worst[0]:.1f}%, {worst[1]})"
        )
        r = dataclasses.replace(r, evidence=f"{r.evidence}; {note}", margin=f"{r.margin}; {note}")
    if used:
        r = dataclasses.replace(r, evidence=f"with the {used} tolerance: {r.evidence}")
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


@dataclass
class ClaimPart:
    """One part of a ``combine`` check as written: a name and a check."""

    name: str
    check: dict


def _parse_part(cid: str, part, where: str) -> tuple[str, dict]:
    spec = configfile.parse(ClaimPart, part, path=f"claim {cid}: {where}", error=ClaimsError, fix=PART_FIX)
    return spec.name, _parse_check(cid, spec.check, f"{where}.check")


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
        spec = configfile.parse(ClaimEntry, entry, path=f"claim {cid}", error=ClaimsError, fix=CLAIM_FIX)
        if any(c.id == cid for c in out):
            raise ClaimsError(f"claim {cid}: the id is used twice")
        check = _parse_check(cid, spec.check)
        texts = {k: _fill(cid, getattr(spec, k), check) for k in ("claim", "rule")}
        out.append(Claim(cid, spec.source, spec.section, check=check, **texts))
    return out


@functools.cache
def _shipped_claims() -> tuple[Claim, ...]:
    return tuple(load_claims(CLAIMS_FILE))


def evaluate_claims(results: Results, *, amc_skip: str | None = None) -> list[Verdict]:
    """Every claim of ``claims.yaml``, with its verdict computed from the logged metrics of ``results``
    (``amc_skip``: why AMC volatility was not run), its margin, and its stability: the verdict again leaving out
    each seed in turn (see the module doc)."""
    seeds = sorted({r.seed for r in results.records})
    out: list[Verdict] = []
    for c in load_claims():
        r = evaluate_claim(c, results, amc_skip)
        loo = {}
        if r.verdict != NA and len(seeds) > 1:
            for s in seeds:
                kept = Results([x for x in results.records if x.seed != s], results.ui_url)
                loo[s] = evaluate_claim(c, kept, amc_skip).verdict
        flipped = [s for s, v in loo.items() if v not in (r.verdict, NA)]
        if r.verdict == NA:
            text = "not evaluated"
        elif not loo:
            text = "one seed: no leave-one-out check"
        elif flipped:
            text = "; ".join(f"without seed {s}: {loo[s]}" for s in flipped)
        else:
            text = f"the same verdict leaving out each of seeds {', '.join(map(str, loo))}"
        on_margin = r.verdict not in (NA, NOISE) and (bool(flipped) or r.close)
        stability = {"leave_one_out": loo, "flipped_by": flipped, "text": text}
        out.append(
            Verdict(
                c.id,
                c.source,
                c.claim,
                c.rule,
                r.verdict,
                r.evidence,
                c.section,
                r.margin,
                stability,
                on_margin,
            )
        )
    return out


def evaluate_claim(c: Claim, results: Results, amc_skip: str | None = None) -> RuleResult:
    """One claim's rule result on ``results`` (no stability check; a broken claim is "not evaluated")."""
    ctx = _Context(results, {"volatility": amc_skip} if amc_skip else {})
    try:
        return _run(ctx, c.check)
    except Exception as err:  # a broken claim must not hide the others
        return RuleResult(NA, f"could not evaluate: {type(err).__name__}: {err}")
