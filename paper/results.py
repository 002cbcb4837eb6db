"""The measured results, read back from MLflow: one :class:`RunRecord` per (task, model, seed).

Everything in the report comes from the tracking store (not from the worker processes), so a report can be
rebuilt from reused runs alone and every number has a run to link to. Per run: the shift sweep
(``sweep/shift_sweep.json``, the same rows as the ``ood/<metric>`` metrics with ``step = shift``), the final
``val/*`` metrics, the ``train_eval/*`` metrics of Table 1, and on demand metric histories and artifacts.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["RunRecord", "Results", "Series", "load_results", "run_url"]

# seed -> shift -> value
Series = dict[int, dict[object, float]]


def run_url(ui_url: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI page of a run (``make ui`` serves ``http://127.0.0.1:5000``)."""
    return f"{ui_url}/#/experiments/{experiment_id}/runs/{run_id}"


@dataclass
class RunRecord:
    task: str
    model: str
    seed: int
    key: str
    command: str
    run_id: str | None = None
    experiment_id: str | None = None
    outcome: str = "missing"  # ok | diverged | failed | interrupted | missing | skipped
    source: str = ""  # trained | reused
    wall_s: float = 0.0
    error: str | None = None
    rows: list[dict] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    data_card: dict | None = None

    @property
    def usable(self) -> bool:
        return self.outcome == "ok" and bool(self.rows)

    def url(self, ui_url: str) -> str | None:
        if not self.run_id or not self.experiment_id:
            return None
        return run_url(ui_url, self.experiment_id, self.run_id)


class Results:
    """All run records of a reproduction, with the lookups the figures, tables and verdicts use."""

    def __init__(self, records: list[RunRecord], ui_url: str = "http://127.0.0.1:5000") -> None:
        self.records = records
        self.ui_url = ui_url
        self._by = {(r.task, r.model, r.seed): r for r in records}

    # ---- lookups ------------------------------------------------------------------------------------------
    def runs(self, task: str, model: str) -> list[RunRecord]:
        return sorted((r for r in self.records if r.task == task and r.model == model), key=lambda r: r.seed)

    def has(self, task: str, model: str) -> bool:
        return any(r.usable or r.outcome == "diverged" for r in self.runs(task, model))

    def tasks(self) -> set[str]:
        return {r.task for r in self.records}

    def models(self, task: str) -> list[str]:
        return list(dict.fromkeys(r.model for r in self.records if r.task == task))

    def shifts(self, task: str) -> list:
        out = set()
        for r in self.records:
            if r.task == task and r.usable:
                out.update(row["shift"] for row in r.rows)
        return sorted(out)

    def series(self, task: str, model: str, metric: str, *, diverged: float = math.inf) -> Series:
        """``{seed: {shift: value}}`` of a sweep metric; a diverged run counts ``diverged`` at every shift."""
        out: Series = {}
        for r in self.runs(task, model):
            if r.usable:
                vals = {
                    row["shift"]: float(row[metric])
                    for row in r.rows
                    if metric in row and row[metric] is not None
                }
                if vals:
                    out[r.seed] = vals
            elif r.outcome == "diverged" and not math.isnan(diverged):
                out[r.seed] = {k: diverged for k in self.shifts(task)}
        return out

    def scalar(self, task: str, model: str, metric: str) -> dict[int, float]:
        """``{seed: value}`` of a run-level metric (``val/mse``, ``train_eval/mse``, ...)."""
        return {r.seed: r.metrics[metric] for r in self.runs(task, model) if r.usable and metric in r.metrics}

    def links(self, task: str, model: str) -> list[tuple[int, str]]:
        return [(r.seed, r.url(self.ui_url)) for r in self.runs(task, model) if r.url(self.ui_url)]

    def record(self, task: str, model: str, seed: int) -> RunRecord | None:
        return self._by.get((task, model, seed))


def _download_json(client, run_id: str, path: str):
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, path, tmp)
        except Exception:  # a missing artifact means "no data", reported as such
            return None
        return json.loads(Path(local).read_text())


def _clean(v):
    if isinstance(v, float) and abs(v) >= 1e300:  # how the tracker stores non-finite values
        return math.inf if v > 0 else math.nan
    return v


def load_results(records: list[RunRecord], client, ui_url: str) -> Results:
    """Fill each record that has a run id with its sweep rows, metrics and experiment id."""
    for rec in records:
        if not rec.run_id:
            continue
        try:
            run = client.get_run(rec.run_id)
        except Exception:
            rec.outcome = "missing"
            continue
        rec.experiment_id = run.info.experiment_id
        rec.metrics = {k: _clean(v) for k, v in run.data.metrics.items()}
        rec.wall_s = rec.wall_s or rec.metrics.get("repro/wall_s", 0.0)
        if rec.outcome == "ok":
            rows = _download_json(client, rec.run_id, "sweep/shift_sweep.json") or []
            rec.rows = [{k: _clean(v) for k, v in row.items()} for row in rows]
            if not rec.rows:
                rec.outcome, rec.error = "failed", "no shift sweep logged"
        if rec.task == "volatility":
            rec.data_card = _download_json(client, rec.run_id, "data_card.json")
    return Results(records, ui_url)


def metric_history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    """``[(step, value)]`` of a logged metric (empty when absent)."""
    try:
        return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
    except Exception:
        return []


def download_artifact(client, run_id: str, path: str, dst: Path) -> Path | None:
    dst.mkdir(parents=True, exist_ok=True)
    try:
        return Path(client.download_artifacts(run_id, path, str(dst)))
    except Exception:
        return None


def seed_stats(values: dict[int, float] | list[float]) -> tuple[float, float, int]:
    """(mean, sample std, n) over seeds, ignoring NaN; std 0 for one seed."""
    vals = np.array(list(values.values()) if isinstance(values, dict) else list(values), dtype=float)
    vals = vals[~np.isnan(vals)]
    if len(vals) == 0:
        return math.nan, math.nan, 0
    if np.isinf(vals).any():
        return float(np.mean(vals)), math.nan, len(vals)
    return float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0, len(vals)
