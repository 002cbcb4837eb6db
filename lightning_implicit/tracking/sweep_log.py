"""Logging a shift sweep to MLflow: one metric per quantity with ``step = shift``, plus artifacts.

Logged as ``ood/<metric>`` (e.g. ``ood/mse``, ``ood/accuracy``, ``ood/iters_mean``, ``ood/iters_p95``,
``ood/converged_frac``) so that the MLflow UI charts the OOD curve of a run and compares runs directly.
Artifacts: ``sweep/shift_sweep.csv``, ``sweep/shift_sweep.json`` and ``sweep/shift_sweep.png``.
"""

from __future__ import annotations

import csv
import json
import math
import tempfile
import time
from pathlib import Path

from .plots import plot_shift_sweep

__all__ = ["log_shift_sweep", "write_sweep_table"]


def write_sweep_table(rows: list[dict], folder: Path) -> list[Path]:
    """``shift_sweep.csv`` and ``shift_sweep.json`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    csv_path, json_path = folder / "shift_sweep.csv", folder / "shift_sweep.json"
    with csv_path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    json_path.write_text(json.dumps(rows, indent=2))
    return [csv_path, json_path]


def shift_steps(shifts: list[float]) -> list[int]:
    """The MLflow steps of a shift grid: the shifts themselves when all are integers (the UI then charts
    metrics against the shift), else their indices ``0, 1, ...`` (the value is logged as ``ood/shift``)."""
    if all(float(s).is_integer() for s in shifts):
        return [int(s) for s in shifts]
    return list(range(len(shifts)))


def log_shift_sweep(
    client, run_id: str, rows: list[dict], *, task: str, shift_name: str, shift_log: bool, label: str
) -> None:
    """Log ``rows`` (one dict per shift) to run ``run_id`` through an ``MlflowClient``."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = []
    steps = shift_steps([r["shift"] for r in rows])
    for r, step in zip(rows, steps, strict=True):
        if step != r["shift"]:  # a non-integer grid: the step is the shift's index, its value a metric
            metrics.append(Metric(key="ood/shift", value=float(r["shift"]), timestamp=now, step=step))
        for k, v in r.items():
            if k in ("shift", "n") or not isinstance(v, (int, float)):
                continue
            if math.isnan(float(v)):
                continue  # undefined for this split (e.g. no spiky targets): not logged, never a fake score
            value = float(v) if math.isfinite(float(v)) else (1e300 if v > 0 else -1e300)
            metrics.append(Metric(key=f"ood/{k}", value=value, timestamp=now, step=step))
    for i in range(0, len(metrics), 900):  # MLflow accepts at most 1000 metrics per batch
        client.log_batch(run_id, metrics=metrics[i : i + 900])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_sweep_table(rows, folder)
        png = folder / "shift_sweep.png"
        plot_shift_sweep(rows, task=task, shift_name=shift_name, shift_log=shift_log, label=label, path=png)
        for p in [*paths, png]:
            client.log_artifact(run_id, str(p), artifact_path="sweep")
