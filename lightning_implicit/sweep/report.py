"""The terminal summary of a sweep (rich tables)."""

from __future__ import annotations

import math

__all__ = ["make_console", "print_summary"]


def make_console():
    import sys

    from rich.console import Console

    # piped output (make, CI logs, workers): wide enough for a table of params instead of 80 columns
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _num(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


def print_summary(console, opts, outcomes, *, experiment: str | None = None) -> None:
    """Per model: trial counts, best value and params; then the best configs' OOD curves side by side."""
    from rich.table import Table

    if not outcomes:
        return
    console.print(
        f"Sweep {opts.task}: best configs (objective: in-distribution val/loss"
        f"{f', mean of {opts.cv} folds' if opts.cv > 1 else ''})",
        soft_wrap=True,
    )
    t = Table()
    for col in (
        "model",
        "study",
        "trials (this run)",
        "complete",
        "pruned",
        "failed",
        "best #",
        "best val/loss",
        "best params",
    ):
        t.add_column(col, overflow="fold")
    for o in outcomes:
        c = o.counts
        other = c.get("running", 0) + c.get("waiting", 0)
        total = sum(c.values())
        t.add_row(
            o.model,
            o.study_name,
            f"{total} ({o.ran})" + (f", {other} running/waiting" if other else ""),
            str(c.get("complete", 0)),
            str(c.get("pruned", 0)),
            str(c.get("fail", 0)),
            _num(o.best_number),
            _num(o.best_value),
            ", ".join(f"{k}={_num(v)}" for k, v in o.best_params.items()) or "-",
        )
    console.print(t)
    for o in outcomes:
        if o.parent_run_id and experiment:
            console.print(
                f"  {o.model}: MLflow experiment {experiment!r}, parent run {o.parent_run_id}"
                + (f", best retrained in run {o.retrain_run_id}" if o.retrain_run_id else ""),
                soft_wrap=True,
            )
        if getattr(o, "reproduce", None):
            console.print(
                f"  {o.model}: reproduce the best config: {o.reproduce}", markup=False, soft_wrap=True
            )
        for n in o.notes:
            console.print(f"  {o.model}: {n}", markup=False, soft_wrap=True)

    curves = [o for o in outcomes if o.best_rows]
    if not curves:
        return
    metric = next(o.metric for o in curves if o.metric)
    implicit = [o for o in curves if o.model.startswith("implicit")]
    baselines = [o for o in curves if not o.model.startswith("implicit")]
    ordered = implicit + baselines
    title = f"OOD curve of the best configs: {metric} per shift (test sets, never seen by the search)"
    if implicit and baselines:
        title += f" — {', '.join(o.model for o in implicit)} vs {', '.join(o.model for o in baselines)}"
    console.print(title, soft_wrap=True)
    ood = Table()
    ood.add_column("shift", justify="right")
    for o in ordered:
        ood.add_column(f"{o.model} (#{o.best_number})", justify="right")
    by_model = {o.model: {r["shift"]: r for r in o.best_rows} for o in ordered}
    shifts = sorted({s for rows in by_model.values() for s in rows})
    for s in shifts:
        ood.add_row(str(s), *[_num(by_model[o.model].get(s, {}).get(o.metric or metric)) for o in ordered])
    console.print(ood)
