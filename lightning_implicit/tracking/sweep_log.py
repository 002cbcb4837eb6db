"""Logging a shift sweep to MLflow: one metric per quantity with ``step = shift`` (integer shifts; otherwise
the shift times a power of ten fixed by the task's grid: :func:`shift_steps`), plus artifacts.

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
from decimal import Decimal
from pathlib import Path

from .plots import plot_shift_sweep

__all__ = ["log_shift_sweep", "write_sweep_table", "shift_steps", "shift_scale", "shift_step_param"]


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


def _decimals(x: float) -> int:
    """Digits after the decimal point of ``x`` as written (``1.5`` -> 1, ``10`` -> 0, ``0.25`` -> 2)."""
    exponent = Decimal(repr(float(x))).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def shift_scale(shifts, grid=()) -> int:
    """The factor that makes every shift of a run and of its task's declared grid a whole number: ``1`` for
    integer shifts, ``10`` for ``[1.5, 3, 30]``, ``100`` for ``[0.25, 1]`` (at most ``10**6``). It depends on the
    task's grid and the run's shifts only, never on their order or count, so two runs of one task share it."""
    return 10 ** min(6, max((_decimals(s) for s in [*shifts, *grid]), default=0))


def shift_steps(shifts, grid=()) -> list[int]:
    """The MLflow steps of a shift sweep: ``round(shift * shift_scale(shifts, grid))`` — the shift itself for an
    integer grid (the UI then charts ``ood/*`` against the shift), else the shift in units of the scale
    (``[1.5, 3, 30]`` -> steps ``15, 30, 300``; the run's param ``data.shift_step`` says so and ``ood/shift``
    holds each step's shift), the same step for the same shift in every run of the task."""
    scale = shift_scale(shifts, grid)
    return [int(round(float(s) * scale)) for s in shifts]


def shift_step_param(shifts, grid=()) -> str:
    """The run's ``data.shift_step`` param: how the MLflow step of ``ood/*`` maps to the shift."""
    scale = shift_scale(shifts, grid)
    return "shift" if scale == 1 else f"shift x {scale}"


def log_shift_sweep(
    client,
    run_id: str,
    rows: list[dict],
    *,
    task: str,
    shift_name: str,
    shift_log: bool,
    label: str,
    grid=(),
) -> None:
    """Log ``rows`` (one dict per shift) to run ``run_id`` through an ``MlflowClient``; ``grid`` is the task's
    declared shift grid (the steps: :func:`shift_steps`)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = []
    steps = shift_steps([r["shift"] for r in rows], grid)
    for r, step in zip(rows, steps, strict=True):
        if step != r["shift"]:  # a non-integer grid: the step is the scaled shift, the shift itself a metric
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
