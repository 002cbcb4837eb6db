"""The sweep's MLflow record: one parent run per study, one nested run per trial, summary artifacts.

Run tree in the task's experiment::

    sweep-<study>                     parent (tags: optuna.study, optuna.storage, sampler, pruner,
    │                                 search_file, search_file_hash, budget, cv; summary/ artifacts)
    ├── <model>-t003                  one per trial: params, objective, fold_val_loss, state, reasons
    │   └── <model>-t003-f0 ...       the trial's training run(s), one per CV fold (Lightning's MLFlowLogger)
    └── best-<model>-t003             the best config retrained with the shift sweep (ood/* metrics)

The parent run of a study is reused when the study is resumed (its id is a study user attribute).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from lightning_implicit.tracking.store import (
    artifact_location,
    check_store,
    first_use,
    resolve_tracking_uri,
    store_error,
)

__all__ = ["SweepRecorder", "write_summary"]

log = logging.getLogger(__name__)
PARENT_ATTR = "mlflow_parent_run_id"


def _store_key(uri: str) -> str:
    """A short stable name of a tracking store (no credentials: a hash of the URI)."""
    import hashlib

    return hashlib.sha1(uri.encode()).hexdigest()[:10]


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


class SweepRecorder:
    """MLflow bookkeeping of a sweep through an ``MlflowClient`` (works from any worker process)."""

    def __init__(self, uri: str | None, experiment: str) -> None:
        import mlflow

        for name in ("mlflow", "alembic"):  # mlflow configures its logger on import
            logging.getLogger(name).setLevel(logging.WARNING)
        self.uri = resolve_tracking_uri(uri)
        self.experiment = experiment
        check_store(self.uri, "MLflow")  # read-only, damaged, full, unreachable: one named error, no retries
        try:
            # (MlflowClient creates or migrates a new store's schema: one process at a time)
            self.client = first_use(lambda: mlflow.MlflowClient(self.uri), self.uri)
            self._open_experiment(experiment)
        except Exception as err:
            named = store_error(err, self.uri, "MLflow")
            if named is None:
                raise
            raise named from None

    def _open_experiment(self, experiment: str) -> None:
        import mlflow

        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            location = artifact_location(self.uri)
            try:
                self.experiment_id = self.client.create_experiment(
                    experiment, artifact_location=None if location is None else f"{location}/{experiment}"
                )
            except mlflow.exceptions.MlflowException:  # created concurrently
                self.experiment_id = self.client.get_experiment_by_name(experiment).experiment_id
        else:
            self.experiment_id = exp.experiment_id

    # ---- parent --------------------------------------------------------------------------------------
    def parent_run(self, study: optuna.Study, tags: dict[str, str]) -> str:
        """The study's parent run (reused on resume), marked RUNNING, with ``tags`` updated.

        One parent per study and tracking store, whichever worker or machine created it: the pointer is kept
        per store (``mlflow_parent_run_id:<store hash>``, so a worker on another store never overwrites it), the
        store itself is searched for the study's parent, and of two workers that create one at the same moment
        the later deletes its own and joins the earlier.
        """
        key = f"{PARENT_ATTR}:{_store_key(self.uri)}"
        run_id = study.user_attrs.get(key) or study.user_attrs.get(PARENT_ATTR)
        if run_id and not self._usable_parent(run_id):
            run_id = None
        run_id = run_id or self._find_parent(study.study_name)
        if not run_id:
            run = self.client.create_run(
                self.experiment_id,
                run_name=f"sweep-{study.study_name}",
                tags={"sweep.role": "parent", "optuna.study": study.study_name},
            )
            run_id = self._find_parent(study.study_name) or run.info.run_id
            if run_id != run.info.run_id:  # another worker won the race
                self.client.delete_run(run.info.run_id)
        else:
            self.client.update_run(run_id, status="RUNNING")
        if study.user_attrs.get(key) != run_id:
            study.set_user_attr(key, run_id)
        for k, v in tags.items():
            self.client.set_tag(run_id, k, str(v))
        return run_id

    def _usable_parent(self, run_id: str) -> bool:
        try:
            run = self.client.get_run(run_id)
        except Exception:  # another tracking store, or deleted
            return False
        return run.info.lifecycle_stage == "active" and run.info.experiment_id == self.experiment_id

    def _find_parent(self, study_name: str) -> str | None:
        """The earliest active parent run of ``study_name`` in this store's experiment."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`sweep.role` = 'parent' and tags.`optuna.study` = '{study_name}'",
            order_by=["attributes.start_time ASC"],
            max_results=50,
        )
        runs = sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))
        return runs[0].info.run_id if runs else None

    def close_parent(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    # ---- trials --------------------------------------------------------------------------------------
    def start_trial(
        self,
        parent_id: str,
        study_name: str,
        model: str,
        trial: optuna.Trial,
        params: dict[str, Any],
        overrides: list[str],
    ) -> str:
        from mlflow.entities import Param, RunTag

        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{model}-t{trial.number:03d}",
            tags={
                "mlflow.parentRunId": parent_id,
                "sweep.role": "trial",
                "optuna.study": study_name,
                "optuna.trial": str(trial.number),
                "model": model,
                "optuna.state": "RUNNING",
            },
        )
        ps = [Param(k, str(v)[:6000]) for k, v in params.items()]
        try:
            self.client.log_batch(
                run.info.run_id, params=ps, tags=[RunTag("cli_overrides", " ".join(overrides)[:5000])]
            )
        except BaseException:  # (a signal, or a store error: the run is not left RUNNING)
            self.client.set_terminated(run.info.run_id, "KILLED")
            raise
        return run.info.run_id

    def finish_trial(
        self,
        run_id: str,
        state: TrialState,
        *,
        value: float | None = None,
        fold_values: list[float] = (),
        reason: str | None = None,
        pruned_step: int | None = None,
        extra: dict[str, float] | None = None,
    ) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        metrics = [
            Metric("fold_val_loss", v, now, i) for i, v in enumerate(fold_values) if _finite(v) is not None
        ]
        if _finite(value) is not None:
            metrics.append(Metric("objective", value, now, 0))
        for k, v in (extra or {}).items():
            if _finite(v) is not None:
                metrics.append(Metric(k, v, now, 0))
        tags = [RunTag("optuna.state", state.name)]
        if reason:
            key = "prune_reason" if state == TrialState.PRUNED else "fail_reason"
            tags.append(RunTag(key, reason[:5000]))
            if state == TrialState.FAIL:  # (MLflow's own place for why a run failed, as for training runs)
                tags.append(RunTag("error", reason[:5000]))
        if pruned_step is not None:
            tags.append(RunTag("pruned_step", str(pruned_step)))
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        status = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED"}.get(state, "FAILED")
        self.client.set_terminated(run_id, status)

    def mark_run(self, run_id: str, status: str, tags: dict[str, str]) -> None:
        """Set a (training) run's status and tags, e.g. a fold run stopped by the pruner."""
        for k, v in tags.items():
            self.client.set_tag(run_id, k, str(v)[:5000])
        self.client.set_terminated(run_id, status)

    def fail_tree(self, run_id: str, reason: str) -> None:
        """A dead worker's trial run and its still-RUNNING fold runs -> FAILED with ``fail_reason``."""
        children = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{run_id}' and attributes.status = 'RUNNING'",
        )
        for r in [*children]:
            self.mark_run(r.info.run_id, "FAILED", {"fail_reason": reason, "error": reason})
        self.mark_run(run_id, "FAILED", {"fail_reason": reason, "error": reason, "optuna.state": "FAIL"})

    def end_running_children(self, run_id: str, reason: str) -> None:
        """The RUNNING child runs of ``run_id`` (a retraining whose worker was killed) -> KILLED with ``error``."""
        children = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{run_id}' and attributes.status = 'RUNNING'",
        )
        for r in children:
            self.mark_run(r.info.run_id, "KILLED", {"error": reason})

    # ---- summary -------------------------------------------------------------------------------------
    def log_summary(
        self,
        parent_id: str,
        study: optuna.Study,
        *,
        best_rows: list[dict] | None,
        comparison: dict[str, list[dict]] | None,
        metric: str | None,
        info: dict,
    ) -> None:
        from mlflow.entities import Metric, RunTag

        counts = _counts(study)
        now = int(time.time() * 1000)
        metrics = [Metric(f"trials_{k}", v, now, 0) for k, v in counts.items()]
        tags = []
        best = _best(study)
        if best is not None:
            metrics.append(Metric("best_value", best.value, now, 0))
            tags.append(RunTag("best_trial", str(best.number)))
            tags += [RunTag(f"best.{k}", str(v)[:5000]) for k, v in best.params.items()]
        self.client.log_batch(parent_id, metrics=metrics, tags=tags)
        with tempfile.TemporaryDirectory() as tmp:
            write_summary(
                Path(tmp), study, best_rows=best_rows, comparison=comparison, metric=metric, info=info
            )
            self.client.log_artifacts(parent_id, tmp, artifact_path="summary")


def _counts(study: optuna.Study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False)
    return {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}


def _best(study: optuna.Study):
    try:
        return study.best_trial
    except ValueError:
        return None


def _placeholder(path: Path, text: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_summary(
    folder: Path,
    study: optuna.Study,
    *,
    best_rows: list[dict] | None = None,
    comparison: dict[str, list[dict]] | None = None,
    metric: str | None = None,
    info: dict | None = None,
) -> list[Path]:
    """``best_params.json``, ``trials.csv``, ``optimization_history.png``, ``param_importances.png`` (and
    ``best_ood.csv`` / ``ood_comparison.png`` when given) in ``folder``."""
    import matplotlib

    matplotlib.use("Agg")

    folder.mkdir(parents=True, exist_ok=True)
    out = [_write_best_params(folder / "best_params.json", study, info)]
    trials = study.get_trials(deepcopy=False)
    pnames = sorted({k for t in trials for k in t.params})
    out.append(_write_trials_csv(folder / "trials.csv", trials, pnames))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    # optuna's matplotlib plots switch the global style to ggplot: keep that inside this block
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore")
        out.append(_plot_history(folder / "optimization_history.png", study, complete))
        out += _plot_importances(folder, study, complete, pnames)
    if best_rows:
        out.append(_write_best_ood(folder / "best_ood.csv", best_rows))
    if comparison and metric and any(comparison.values()):
        title = f"{(info or {}).get('task', study.study_name)}: best config of each model across shifts"
        out.append(_plot_comparison(folder / "ood_comparison.png", comparison, metric, title))
    return out


def _write_best_params(p: Path, study: optuna.Study, info: dict | None) -> Path:
    """The study's counts, the caller's ``info`` and the best trial (its values and CLI overrides) as JSON."""
    best = _best(study)
    summary = {"study": study.study_name, "counts": _counts(study), **(info or {})}
    if best is not None:
        summary.update(
            best_trial=best.number,
            best_value=best.value,
            best_params=best.params,
            cli_overrides=best.user_attrs.get("cli_overrides"),
        )
    p.write_text(json.dumps(summary, indent=2, default=str))
    return p


def _write_trials_csv(p: Path, trials: list[optuna.trial.FrozenTrial], pnames: list[str]) -> Path:
    """One row per trial: number, state, value, parameters, duration (s), pruned step, reason, MLflow run."""
    with p.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "number",
                "state",
                "value",
                *[f"params_{k}" for k in pnames],
                "duration_s",
                "pruned_step",
                "reason",
                "mlflow_run_id",
            ]
        )
        for t in trials:
            dur = (
                (t.datetime_complete - t.datetime_start).total_seconds()
                if t.datetime_complete and t.datetime_start
                else ""
            )
            reason = t.user_attrs.get("fail_reason") or t.user_attrs.get("prune_reason") or ""
            w.writerow(
                [
                    t.number,
                    t.state.name,
                    "" if t.value is None else t.value,
                    *[t.params.get(k, "") for k in pnames],
                    dur,
                    t.user_attrs.get("pruned_step", ""),
                    reason,
                    t.user_attrs.get("mlflow_run_id", ""),
                ]
            )
    return p


def _save_axes(ax, p: Path) -> None:
    import matplotlib.pyplot as plt

    ax.figure.set_size_inches(7, 4)
    ax.figure.tight_layout()
    ax.figure.savefig(p, dpi=100)
    plt.close(ax.figure)


def _plot_history(p: Path, study: optuna.Study, complete: list) -> Path:
    """Optuna's optimization history (a placeholder before the first completed trial)."""
    from optuna.visualization import matplotlib as ovm

    if complete:
        _save_axes(ovm.plot_optimization_history(study), p)
    else:
        _placeholder(p, "no completed trial yet")
    return p


def _plot_importances(folder: Path, study: optuna.Study, complete: list, pnames: list[str]) -> list[Path]:
    """Optuna's parameter importances (JSON and plot), or a placeholder saying why there are none."""
    from optuna.visualization import matplotlib as ovm

    out = []
    p = folder / "param_importances.png"
    varying = [k for k in pnames if len({json.dumps(t.params.get(k), default=str) for t in complete}) > 1]
    if len(complete) < 2 or not varying:
        _placeholder(
            p,
            f"parameter importance needs >= 2 completed trials with varying parameters\n"
            f"(have {len(complete)} completed)",
        )
    else:
        try:
            imp = optuna.importance.get_param_importances(study)
            (folder / "param_importances.json").write_text(json.dumps(imp, indent=2))
            out.append(folder / "param_importances.json")
            _save_axes(ovm.plot_param_importances(study), p)
        except Exception as exc:  # degenerate studies (e.g. one distinct value)
            _placeholder(p, f"parameter importance unavailable: {exc}")
    out.append(p)
    return out


def _write_best_ood(p: Path, best_rows: list[dict]) -> Path:
    keys = list(dict.fromkeys(k for r in best_rows for k in r))
    with p.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(best_rows)
    return p


def _plot_comparison(p: Path, comparison: dict[str, list[dict]], metric: str, title: str) -> Path:
    """Each model's best config: ``metric`` against the shift (log axes where the values span them)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, rows in comparison.items():
        if rows:
            ax.plot(
                [r["shift"] for r in rows],
                [r.get(metric, float("nan")) for r in rows],
                marker="o",
                label=label,
            )
    shifts = [r["shift"] for rows in comparison.values() for r in rows]
    if shifts and min(shifts) > 0 and max(shifts) / min(shifts) >= 100:
        ax.set_xscale("log")
    vals = [r.get(metric) for rows in comparison.values() for r in rows]
    if vals and all(isinstance(v, (int, float)) and v > 0 for v in vals) and metric != "accuracy":
        ax.set_yscale("log")
    ax.set_xlabel("shift")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(p, dpi=100)
    plt.close(fig)
    return p
