"""What the tuning budgets need: per study, the best-so-far curve of its cross-validated loss, whether it has
flattened, tuned values at the edge of their range, and the folds, against what a skeptic asks of a search behind
a verdict that does not hold or sits on the margin (:data:`MIN_TRIALS` trials per family, the same for every
family compared, a flat curve, no value at an edge without a widened search, the paper's 5 folds).

The curve is the tuned config's ``provenance.best_so_far`` (written by ``make tune``), else it is read from the
study's Optuna storage (``provenance.storage``); where neither is available the table says so and shows the
record's trial counts only.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

from lightning_implicit.sweep.default_trial import record_brief
from lightning_implicit.sweep.tune import best_so_far, trial_values

from .verdicts import EXACT_MSE

__all__ = [
    "MIN_TRIALS",
    "PAPER_FOLDS",
    "FLAT_REL",
    "flattened",
    "study_curve",
    "needs",
    "edges_and_limits",
    "tuning_table",
    "previous_text",
]

MIN_TRIALS = 12
PAPER_FOLDS = 5
FLAT_REL = 0.01  # the curve is flat when its last third improved it by less than 1%


def flattened(curve: list[float], rel: float = FLAT_REL) -> bool | None:
    """Whether the best-so-far ``curve`` improved by less than ``rel`` (relative) over its last third of trials
    (at least 3); ``None`` with fewer than 6 trials (too short to tell). A curve that has reached an exact fit
    (a loss at or below :data:`~.verdicts.EXACT_MSE`, float32 resolution) is flat: nothing is left to improve,
    and its last digits' relative changes are rounding."""
    curve = [c for c in curve if not math.isinf(c)]
    if curve and curve[-1] <= EXACT_MSE:
        return True
    if len(curve) < 6:
        return None
    tail = max(3, len(curve) // 3)
    start, end = curve[-tail - 1], curve[-1]
    return start - end <= rel * abs(start)


def study_curve(provenance: dict) -> list[float] | None:
    """The best-so-far curve of a tuned config: its provenance's ``best_so_far`` (written by ``make tune``), else
    read from the study's storage; ``None`` when neither is available here."""
    if provenance.get("best_so_far"):
        return _as_curve(provenance["best_so_far"])
    url = str(provenance.get("storage", ""))
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None  # (opening it would create an empty store)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=provenance["study"], storage=provenance["storage"])
    except Exception:  # another machine's store: the table says the curve is not available
        return None
    return _as_curve(best_so_far(trial_values(study.trials)))


def _as_curve(curve: list[float | None]) -> list[float]:
    """A best-so-far curve with ``inf`` before its first value (what :func:`flattened` and the table read)."""
    return [math.inf if v is None else float(v) for v in curve]


def edges_and_limits(provenance: dict, task: str, model: str) -> tuple[list[str], list[str]]:
    """A record's ``space_edges`` (a wider search could pass them) and ``space_limits`` (the model's limits), with
    an edge that a record written before the spaces marked ``limit`` bounds lists moved to the limits where
    today's search file for ``task`` marks that bound ``limit`` (the same text, computed from the record's
    ``best_params``); the record as it is where that file cannot be read."""
    from lightning_implicit.sweep.tune import space_bounds

    edges = list(provenance.get("space_edges") or [])
    limits = list(provenance.get("space_limits") or [])
    params = provenance.get("best_params")
    if not edges or not params:
        return edges, limits
    try:
        space = _search_space(task).space(model)
    except Exception:  # (a task or model that today's files do not know)
        return edges, limits
    now = set(space_bounds(params, space)[1])
    moved = [e for e in edges if f"{e} (the model's limit)" in now]
    return [e for e in edges if e not in moved], limits + [f"{e} (the model's limit)" for e in moved]


@functools.cache
def _search_space(task: str):
    """Today's search file of ``task``, read once per report (the tuning sections ask per record)."""
    from lightning_implicit.sweep.space import load_search_space
    from lightning_implicit.sweep.tune import tune_space_path

    return load_search_space(tune_space_path(task), task=task)


def needs(provenance: dict, curve: list[float] | None, edges: list[str] | None = None) -> list[str]:
    """What the study still needs before a skeptic accepts it (empty: nothing); ``edges``: its space edges
    (:func:`edges_and_limits`; default: the record's ``space_edges``)."""
    out = []
    tr = provenance.get("trials") or {}
    n = int(tr.get("complete", 0)) + int(tr.get("pruned", 0))
    if n < MIN_TRIALS:
        out.append(f">= {MIN_TRIALS} trials (has {n})")
    flat = flattened(curve) if curve else None
    if flat is False:
        out.append("more trials: the best-so-far curve still improves")
    for edge in provenance.get("space_edges") or [] if edges is None else edges:
        out.append(f"a widened search ({edge})")
    folds = provenance.get("cv_folds")
    if isinstance(folds, int) and folds < PAPER_FOLDS:
        out.append(f"{PAPER_FOLDS} folds as the paper (has {folds}), or a measured 3-vs-5-fold comparison")
    return out


def previous_text(provenance: dict) -> str | None:
    """One sentence on a study started also from an earlier record (``tune --from-record``): that record's folds,
    trials and CV score, what its best values scored on this study's folds, and whether this search picked them
    again; ``None`` for a study without one."""
    prev = provenance.get("previous_record")
    if not prev:
        return None
    old = prev.get("record") or {}
    score = prev.get("cv_score")
    now = provenance.get("cv_score", {}).get("mean")
    if prev.get("state") != "complete" or score is None:
        scored = f"was {prev.get('state', 'not run')} on these folds"
    else:
        scored = f"scored {score:.4g} on these {provenance.get('cv_folds')} folds"
    if not prev.get("beaten"):
        picked = "this search picked it again"
    elif isinstance(now, (int, float)):
        picked = f"this search picked another recipe (trial #{provenance.get('best_trial')}, {now:.4g})"
    else:
        picked = "this search picked another recipe"
    return f"the previous record's best ({record_brief(old)}, trial #{prev.get('trial')} here) {scored}; {picked}"


def _curve_text(curve: list[float] | None) -> str:
    if curve is None:
        return "not available (the study's storage is not on this machine)"
    pts = [c for c in curve if not math.isinf(c)]
    if not pts:
        return "no completed trial"
    marks = sorted({0, len(curve) // 4, len(curve) // 2, (3 * len(curve)) // 4, len(curve) - 1})
    return " → ".join(f"{curve[i]:.4g} (#{i + 1})" for i in marks if not math.isinf(curve[i]))


def tuning_table(tuned: dict, verdicts, curves: dict | None = None) -> str:
    """Markdown: one row per tuned (task, model) study with its best-so-far curve, whether it flattened, its
    budget against the family it is compared with, and what it needs; tasks behind a verdict that does not hold,
    sits on the margin or cannot separate its models are marked. ``curves``: ``{(task, model): curve}`` (read
    from the studies' storage when not given)."""
    from . import verdicts as V
    from .paper_numbers import label
    from .structure import _claim_tasks

    weak: dict[str, list[str]] = {}
    claims = {c.id: c for c in V.load_claims()}
    for v in verdicts:
        if v.verdict in (V.NOT, V.NOISE) or v.on_margin:
            for t in _claim_tasks(claims[v.id].check) if v.id in claims else []:
                weak.setdefault(t, []).append(v.id)
    per_task: dict[str, set[int]] = {}
    rows = []
    retuned: list[str] = []
    for (task, model), cfg in sorted(tuned.items()):
        p = cfg.provenance
        tr = p.get("trials") or {}
        n = int(tr.get("complete", 0)) + int(tr.get("pruned", 0))
        per_task.setdefault(task, set()).add(n)
        curve = (curves or {}).get((task, model)) if curves is not None else study_curve(p)
        flat = flattened(curve) if curve else None
        flat_text = {True: "yes", False: "**no**", None: "too short to tell" if curve else "-"}[flat]
        behind = ", ".join(sorted(set(weak.get(task, [])))) or "-"
        edges = edges_and_limits(p, task, getattr(cfg, "model", "") or model)[0]
        rows.append((task, model, n, curve, flat_text, behind, needs(p, curve, edges)))
        if (text := previous_text(p)) is not None:
            retuned.append(f"- {task} / {label(model)}: {text}.")
    if not rows:
        return ""
    lines = [
        "What each tuning budget needs (a skeptic's bar for a search behind a verdict that does not hold or sits on "
        f"the margin: >= {MIN_TRIALS} trials per family, the same for every family of the task, a flat best-so-far "
        f"curve (the last third improved it by < {100 * FLAT_REL:g}%), no tuned value at an edge of its range "
        f"without a widened search, {PAPER_FOLDS} folds as the paper):\n",
        "| task | model | trials (complete + pruned) | best-so-far CV loss (trial) | flat | behind (claims that do not "
        "hold / on the margin / cannot separate) | needs |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, model, n, curve, flat_text, behind, need in rows:
        uneven = len(per_task[task]) > 1
        n_text = f"{n}" + (" (**uneven across the task's families**)" if uneven else "")
        lines.append(
            f"| {task} | {label(model)} | {n_text} | {_curve_text(curve)} | {flat_text} | {behind} | "
            f"{'; '.join(need) or 'nothing'} |"
        )
    if retuned:
        lines += [
            "",
            "Studies started also from an earlier record (`tune --from-record`: its best values are one trial of "
            "the new search, on the new folds):",
            "",
            *retuned,
        ]
    return "\n".join(lines) + "\n"
