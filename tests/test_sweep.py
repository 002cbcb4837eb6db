"""Optuna sweeps: search-space validation, MLflow run tree, resume, pruning, failures, dead workers, workers.

Tiny budgets (300 training samples, 2 epochs, 2 shifts). One sqlite MLflow store per test session; one
Optuna sqlite file per test. Subprocess tests (killed worker, parallel workers, Ctrl-C) are marked slow.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from lightning_implicit.sweep.cli import main, options_from_args
from lightning_implicit.sweep.space import SearchSpaceError, load_search_space
from lightning_implicit.sweep.storage import HOST, open_storage, recover_stale_trials

ROOT = Path(__file__).resolve().parents[1]

TINY_FIXED = """
fixed:
  data.init_args.n_train: 300
  data.init_args.n_test: 50
  data.init_args.shifts: [10, 100]
  trainer.max_epochs: 2
"""

TINY = (
    TINY_FIXED
    + """
models: [implicit]
sampler: {n_startup_trials: 2}
pruner: {n_startup_trials: 2, n_warmup_steps: 1}
implicit:
  params:
    lr: {key: model.init_args.optim.lr, type: float, low: 1.0e-3, high: 3.0e-2, log: true}
    hidden_features: {key: model.init_args.hidden_features, type: int, low: 4, high: 12}
mlp:
  params:
    lr: {key: model.init_args.optim.lr, type: float, low: 1.0e-3, high: 3.0e-2, log: true}
    width: {key: model.init_args.arch_kwargs.hidden, type: int, low: 4, high: 12, repeat: depth}
    depth: {type: int, low: 1, high: 2}
"""
)

# a deterministic pruning setup: the first trial completes, the second (enqueued with a useless lr) is
# compared with it from the first step on
PRUNE = (
    TINY_FIXED
    + """
pruner: {n_startup_trials: 1, n_warmup_steps: 0}
mlp:
  params:
    lr: {key: model.init_args.optim.lr, type: float, low: 1.0e-7, high: 3.0e-2, log: true}
"""
)

DIVERGE = (
    TINY_FIXED
    + """
mlp:
  fixed: {model.init_args.optim.optimizer: sgd}
  params:
    lr: {key: model.init_args.optim.lr, type: categorical, choices: [1.0e6]}
"""
)

# slow enough to be killed mid-trial
SLOW = (
    TINY_FIXED.replace("trainer.max_epochs: 2", "trainer.max_epochs: 200")
    + """
mlp:
  params:
    lr: {key: model.init_args.optim.lr, type: float, low: 1.0e-3, high: 3.0e-2, log: true}
"""
)


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory):
    """One sqlite MLflow store per session (a fresh store costs a schema migration)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def env(tmp_path, mlflow_uri):
    """Search-file writer and the common CLI arguments of a test (its own Optuna file and experiment)."""

    class Env:
        storage = f"sqlite:///{tmp_path / 'optuna.db'}"
        experiment = f"sweep-test-{tmp_path.name}"

        def search(self, text: str, name: str = "space.yaml") -> Path:
            p = tmp_path / name
            p.write_text(text)
            return p

        def args(self, search: Path, *extra: str) -> list[str]:
            return [
                "--task",
                "addition",
                "--search-file",
                str(search),
                "--storage",
                self.storage,
                "--tracking-uri",
                mlflow_uri,
                "--experiment",
                self.experiment,
                "--heartbeat",
                "2",
                "--grace",
                "4",
                *extra,
            ]

        def study(self, name: str) -> optuna.Study:
            return optuna.load_study(study_name=name, storage=self.storage)

        def runs(self) -> list:
            import mlflow

            client = mlflow.MlflowClient(mlflow_uri)
            exp = client.get_experiment_by_name(self.experiment)
            return client.search_runs([exp.experiment_id], max_results=1000)

        def client(self):
            import mlflow

            return mlflow.MlflowClient(mlflow_uri)

    return Env()


def _subprocess_env(mlflow_uri: str) -> dict:
    return {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri, "PYTHONUNBUFFERED": "1"}


def _by_role(runs, role):
    return [r for r in runs if r.data.tags.get("sweep.role") == role]


# ---- a sweep, its MLflow tree, and resuming ----------------------------------------------------------------
def test_sweep_logs_parent_and_nested_runs_then_resumes(env, capsys):
    search = env.search(TINY)
    assert main(env.args(search, "--model", "implicit", "--trials", "2")) == 0
    out = capsys.readouterr().out
    assert "trial #0" in out and "trial #1" in out and "OOD curve" in out

    study = env.study("addition-implicit")
    assert len(study.trials) == 2
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    runs = env.runs()
    (parent,) = _by_role(runs, "parent")
    pid = parent.info.run_id
    tags = parent.data.tags
    assert tags["optuna.study"] == "addition-implicit"
    assert tags["search_file_hash"] == load_search_space(search, task="addition").sha256
    assert tags["sampler"].startswith("TPESampler(seed=0")
    trials = _by_role(runs, "trial")
    assert len(trials) == 2 and all(r.data.tags["mlflow.parentRunId"] == pid for r in trials)
    assert {r.data.tags["optuna.state"] for r in trials} <= {"COMPLETE", "PRUNED"}
    assert all("lr" in r.data.params for r in trials)
    folds = _by_role(runs, "fold")  # the Lightning training runs, nested under their trial run
    assert len(folds) == 2 and {r.data.tags["mlflow.parentRunId"] for r in folds} == {
        r.info.run_id for r in trials
    }
    (best,) = _by_role(runs, "best_retrain")
    assert best.data.tags["mlflow.parentRunId"] == pid and "ood/mse" in best.data.metrics
    arts = {a.path for a in env.client().list_artifacts(pid, "summary")}
    assert {
        "summary/best_params.json",
        "summary/trials.csv",
        "summary/optimization_history.png",
        "summary/param_importances.png",
        "summary/best_ood.csv",
    } <= arts

    # the same command again resumes: N more trials, same study and parent run, no duplicated numbers
    assert main(env.args(search, "--model", "implicit", "--trials", "1", "--no-retrain")) == 0
    study = env.study("addition-implicit")
    numbers = [t.number for t in study.trials]
    assert numbers == [0, 1, 2]
    runs = env.runs()
    assert [r.info.run_id for r in _by_role(runs, "parent")] == [pid]
    assert len(_by_role(runs, "trial")) == 3
    assert env.client().get_run(pid).info.status == "FINISHED"


def test_resume_with_a_different_objective_is_refused(env, capsys):
    search = env.search(TINY)
    assert main(env.args(search, "--model", "implicit", "--trials", "1", "--no-retrain")) == 0
    assert main(env.args(search, "--model", "implicit", "--trials", "1", "--cv", "2")) == 2
    assert "cv: study has 1, now 2" in capsys.readouterr().err


# ---- pruning ------------------------------------------------------------------------------------------------
def _enqueued_study(env, name: str, lrs: list[float]) -> None:
    study = optuna.create_study(study_name=name, storage=env.storage, direction="minimize")
    for lr in lrs:
        study.enqueue_trial({"lr": lr})


def test_bad_trial_is_pruned_with_step_and_reason(env):
    search = env.search(PRUNE)
    _enqueued_study(env, "prune", [0.02, 1e-7])
    assert main(env.args(search, "--model", "mlp", "--study", "prune", "--trials", "2", "--no-retrain")) == 0
    good, bad = env.study("prune").trials
    assert good.state == TrialState.COMPLETE
    assert bad.state == TrialState.PRUNED
    assert bad.user_attrs["pruned_step"] == 0 and "MedianPruner" in bad.user_attrs["prune_reason"]
    run = next(r for r in _by_role(env.runs(), "trial") if r.data.tags["optuna.trial"] == "1")
    assert run.info.status == "KILLED"
    assert run.data.tags["optuna.state"] == "PRUNED" and run.data.tags["pruned_step"] == "0"
    assert "MedianPruner" in run.data.tags["prune_reason"]


def test_cv_objective_is_the_fold_mean_and_prunes_between_folds(env, capsys):
    search = env.search(PRUNE)
    _enqueued_study(env, "cv", [0.02, 1e-7])
    assert (
        main(
            env.args(search, "--model", "mlp", "--study", "cv", "--trials", "2", "--cv", "2", "--no-retrain")
        )
        == 0
    )
    good, bad = env.study("cv").trials
    assert good.state == TrialState.COMPLETE
    folds = good.user_attrs["fold_values"]
    assert len(folds) == 2 and good.value == pytest.approx(sum(folds) / 2)
    assert good.intermediate_values.keys() == {0, 1}  # running mean reported per fold
    assert bad.state == TrialState.PRUNED and bad.user_attrs["pruned_step"] == 0
    assert "after fold 0" in bad.user_attrs["prune_reason"]
    fold_runs = [r for r in _by_role(env.runs(), "fold") if r.data.tags["optuna.trial"] == "0"]
    assert sorted(r.data.tags["fold"] for r in fold_runs) == ["0", "1"]
    # a line when each trial starts and one per finished fold (the pruned trial: its one fold)
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if re.search(r"trial #\d+ fold \d+/", ln)]
    assert [ln.split("]")[1].split(":")[0].strip() for ln in lines] == [
        "trial #0 fold 1/2",
        "trial #0 fold 2/2",
        "trial #1 fold 1/2",
    ]
    assert f"val/loss={folds[0]:.5g} (running mean {folds[0]:.5g})" in lines[0]
    assert f"val/loss={folds[1]:.5g} (running mean {good.value:.5g})" in lines[1]
    assert "[addition/mlp] trial #0 started (2 folds): lr=0.02" in out
    assert "[addition/mlp] trial #1 started (2 folds): lr=1e-07" in out


# ---- failures -----------------------------------------------------------------------------------------------
def test_diverging_trial_fails_with_reason_and_the_sweep_finishes(env, capsys):
    search = env.search(DIVERGE)
    assert (
        main(env.args(search, "--model", "mlp", "--trials", "2")) == 1
    )  # finished, every trial failed: exit 1
    trials = env.study("addition-mlp").trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert all(t.user_attrs["fail_reason"].startswith("non-finite") for t in trials)
    runs = env.runs()
    for r in _by_role(runs, "trial"):
        assert r.info.status == "FAILED" and r.data.tags["fail_reason"].startswith("non-finite")
    (parent,) = _by_role(runs, "parent")
    arts = {a.path for a in env.client().list_artifacts(parent.info.run_id, "summary")}
    assert "summary/param_importances.png" in arts  # a placeholder: no completed trial
    out = capsys.readouterr().out
    assert "FAIL" in out and "non-finite" in out and "every trial failed (first reason: non-finite" in out


BAD_FILES = {
    "unknown top-level key": ("implicitt:\n  params: {}\n", "unknown top-level key 'implicitt'"),
    "unknown distribution": (
        "implicit:\n  params:\n    lr: {key: model.init_args.optim.lr, type: loguniform, low: 1, high: 2}\n",
        "implicit.params.lr: unknown distribution type 'loguniform'",
    ),
    "low > high": (
        "implicit:\n  params:\n    lr: {key: model.init_args.optim.lr, type: float, low: 0.1, high: 0.001}\n",
        "implicit.params.lr: low (0.1) > high (0.001)",
    ),
    "missing bounds": (
        "implicit:\n  params:\n    n: {key: model.init_args.hidden_features, type: int, low: 2}\n",
        "implicit.params.n: an int parameter needs bounds: missing high",
    ),
    "key typo": (
        "implicit:\n  params:\n    lr: {key: model.init_args.lrr, type: float, low: 0.001, high: 0.1}\n",
        "implicit.params.lr: key 'model.init_args.lrr' is not a LightningCLI option",
    ),
    "fixed key typo": (
        "fixed: {trainer.max_epoch: 2}\nimplicit:\n  params: {}\n",
        "did you mean 'trainer.max_epochs'",
    ),
    "bad value": (
        "implicit:\n  params:\n    e: {key: trainer.max_epochs, type: categorical, choices: [2, many]}\n",
        "implicit.params.e: value 'many' for key 'trainer.max_epochs' is rejected",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_invalid_search_file_names_the_bad_entry(env, capsys, case):
    text, message = BAD_FILES[case]
    search = env.search(text)
    assert main(env.args(search, "--trials", "1")) == 2
    err = capsys.readouterr().err
    assert message in err and str(search) in err


def test_every_search_file_validates():
    """Structure of every conf/search file, and its keys against the LightningCLI parser where the task exists."""
    from lightning_implicit.sweep.driver import SweepOptions, _contexts

    files = sorted((ROOT / "conf" / "search").glob("*.yaml"))
    assert {
        "addition",
        "subtraction",
        "identity",
        "rolling_average",
        "rolling_argmax",
        "spiky",
        "volatility",
        "earthquake",
    } <= {f.stem for f in files}
    for f in files:
        for full in (False, True):
            space = load_search_space(f, task=f.stem, full=full)
            assert space.models and set(space.models) <= set(space.spaces)
        if (ROOT / "conf" / "tasks" / f"{f.stem}.yaml").exists():
            _contexts(SweepOptions(task=f.stem), space, space.models, lambda msg: None)


def test_search_space_merges_budgets_and_repeat():
    space = load_search_space(ROOT / "conf" / "search" / "addition.yaml", task="addition")
    full = load_search_space(ROOT / "conf" / "search" / "addition.yaml", task="addition", full=True)
    assert space.space("implicit").fixed["data.init_args.n_train"] < 10_000
    assert "data.init_args.n_train" not in full.space("implicit").fixed
    assert space.space("mlp").params["epochs"].high < full.space("mlp").params["epochs"].high
    mlp = space.space("mlp")
    assert mlp.overrides({"lr": 0.01, "batch_size": 32, "epochs": 3, "width": 8, "depth": 3}) == {
        "model.init_args.optim.lr": 0.01,
        "data.init_args.batch_size": 32,
        "trainer.max_epochs": 3,
        "model.init_args.arch_kwargs.hidden": [8, 8, 8],
    }
    with pytest.raises(SearchSpaceError, match="no search space for model 'lstm'"):
        space.space("lstm")


def test_a_model_without_a_section_gets_the_files_shared_params(tmp_path):
    """conf/tune/default.yaml has no section for the baselines: each gets the top-level params alone (the
    implicit models add their own); a file without top-level params still names the missing section."""
    tune = load_search_space(ROOT / "conf" / "tune" / "default.yaml", task="addition", full=True)
    shared = {
        "lr",
        "lr_schedule",
        "lr_interval",
        "lr_gamma",
        "batch_size",
        "steps",
        "weight_decay",
        "grad_clip",
    }
    for model in ("mlp", "lstm", "eikonet", "encdec_nope"):
        assert set(tune.space(model).params) == shared, model
        assert tune.space(model).fixed == {"trainer.max_epochs": -1}
    assert set(tune.space("implicit").params) == shared | {"kappa", "tol"}
    (tmp_path / "s.yaml").write_text(
        "implicit:\n  params:\n    lr: {key: model.init_args.optim.lr, type: float, low: 0.001, high: 0.1}\n"
    )
    with pytest.raises(SearchSpaceError, match="no search space for model 'mlp'"):
        load_search_space(tmp_path / "s.yaml", task="addition").space("mlp")


def test_worker_command_line_round_trips():
    opts = options_from_args(
        [
            "--task",
            "addition",
            "--model",
            "implicit,mlp",
            "--trials",
            "7",
            "--workers",
            "2",
            "--cv",
            "3",
            "--study",
            "s",
            "--epochs",
            "2",
            "--no-tracking",
            "--full",
            "--model.init_args.optim.grad_clip",
            "1.0",
            "--",
            "--data.init_args.n_test",
            "9",
        ]
    )
    assert opts.models == ["implicit", "mlp"] and opts.cv == 3 and not opts.tracking and opts.full
    assert opts.overrides == ["--model.init_args.optim.grad_clip", "1.0", "--data.init_args.n_test", "9"]


def test_storage_url_resolution(tmp_path, monkeypatch):
    from lightning_implicit.sweep.storage import mask_url, resolve_storage_url

    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)
    assert resolve_storage_url(root=tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'optuna.db'}"
    monkeypatch.setenv("OPTUNA_STORAGE", "postgresql://me:secret@db/optuna")
    assert resolve_storage_url(root=tmp_path) == "postgresql://me:secret@db/optuna"
    assert resolve_storage_url("sqlite:///x.db") == "sqlite:///x.db"
    assert mask_url("postgresql://me:secret@db/optuna") == "postgresql://me:***@db/optuna"
    with pytest.raises(ValueError, match="journal"):
        open_storage("study.db")


def test_journal_storage_without_tracking(tmp_path, capsys):
    search = tmp_path / "space.yaml"
    search.write_text(TINY)
    journal = tmp_path / "study.log"
    args = [
        "--task",
        "addition",
        "--model",
        "mlp",
        "--search-file",
        str(search),
        "--storage",
        f"journal:{journal}",
        "--no-tracking",
        "--trials",
        "1",
        "--no-retrain",
    ]
    assert main(args) == 0
    assert main(args) == 0  # resumes from the journal file
    storage = open_storage(f"journal:{journal}")
    trials = optuna.load_study(study_name="addition-mlp", storage=storage).trials
    assert [t.number for t in trials] == [0, 1] and "mlflow_run_id" not in trials[0].user_attrs
    assert "MLflow" not in capsys.readouterr().out


# ---- dead workers ---------------------------------------------------------------------------------------------
def _running_trial(study: optuna.Study, storage, host: str, pid: int) -> int:
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)})
    storage.set_trial_user_attr(trial._trial_id, "worker_host", host)
    storage.set_trial_user_attr(trial._trial_id, "worker_pid", pid)
    return trial.number


@pytest.mark.filterwarnings(
    "ignore:Heartbeat of storage:UserWarning", "ignore::optuna.exceptions.ExperimentalWarning"
)
def test_stale_trials_are_failed_and_retried(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    storage = open_storage(url, heartbeat=1, grace=1)
    study = optuna.create_study(study_name="stale", storage=storage)
    # a worker on this host whose process is gone: found by process id at once
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    n_dead = _running_trial(study, storage, HOST, dead.pid)
    # a worker elsewhere that stopped sending heartbeats: found after the grace period
    n_silent = _running_trial(study, storage, "another-host", 1)
    storage.record_heartbeat(study.trials[n_silent]._trial_id)
    # a live worker on this host (this process) is left alone
    n_alive = _running_trial(study, storage, HOST, os.getpid())
    storage.record_heartbeat(study.trials[n_alive]._trial_id)

    assert recover_stale_trials(study, storage) == [n_dead]
    time.sleep(2.2)
    storage.record_heartbeat(study.trials[n_alive]._trial_id)
    assert recover_stale_trials(study, storage) == [n_silent]
    trials = study.get_trials()
    assert trials[n_dead].state == trials[n_silent].state == TrialState.FAIL
    assert "is gone" in trials[n_dead].user_attrs["fail_reason"]
    retry_of = {t.user_attrs.get("retry_of"): t for t in trials}
    assert "no heartbeat" in retry_of[n_silent].user_attrs["retry_reason"]
    assert trials[n_alive].state == TrialState.RUNNING
    retries = [t for t in trials if t.state == TrialState.WAITING]
    assert sorted(t.user_attrs["retry_of"] for t in retries) == [n_dead, n_silent]
    assert all(t.params == trials[t.user_attrs["retry_of"]].params for t in retries)
    assert "worker_pid" not in retries[0].user_attrs
    # at most max_retry re-runs per original trial
    assert (
        optuna.storages.RetryFailedTrialCallback.retried_trial_number(retries[0])
        == retries[0].user_attrs["retry_of"]
    )


def _wait_for(pred, timeout: float, what: str):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            v = pred()
        except Exception:  # the study may not exist yet
            v = None
        if v:
            return v
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_killed_worker_leaves_no_running_trial(env, mlflow_uri):
    search = env.search(SLOW)
    cmd = [
        sys.executable,
        "-m",
        "lightning_implicit.cli",
        "sweep",
        *env.args(search, "--model", "mlp", "--trials", "3", "--no-retrain"),
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=_subprocess_env(mlflow_uri), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_for(
            lambda: any(
                t.state == TrialState.RUNNING and "mlflow_run_id" in t.user_attrs
                for t in env.study("addition-mlp").trials
            ),
            90,
            "a running trial",
        )
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (orphan,) = [t for t in env.study("addition-mlp").trials if t.state == TrialState.RUNNING]

    # the next worker's check before its first trial fails the orphan and re-runs its parameters
    fast = env.search(SLOW.replace("trainer.max_epochs: 200", "trainer.max_epochs: 1"), "fast.yaml")
    assert main(env.args(fast, "--model", "mlp", "--trials", "1", "--no-retrain")) == 0
    trials = env.study("addition-mlp").trials
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    dead = trials[orphan.number]
    assert dead.state == TrialState.FAIL and "worker died" in dead.user_attrs["fail_reason"]
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == orphan.number]
    assert retry.state == TrialState.COMPLETE and retry.params == orphan.params
    run = env.client().get_run(dead.user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED" and "worker died" in run.data.tags["fail_reason"]


@pytest.mark.slow
def test_two_workers_share_the_trials(env, mlflow_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    search = env.search(TINY)
    assert main(env.args(search, "--model", "mlp", "--trials", "5", "--workers", "2", "--no-retrain")) == 0
    trials = env.study("addition-mlp").trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3, 4]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) for t in trials)
    assert len({t.user_attrs["worker_pid"] for t in trials}) == 2
    assert len(_by_role(env.runs(), "trial")) == 5


@pytest.mark.slow
def test_ctrl_c_fails_the_running_trial_and_prints_the_summary(env, mlflow_uri):
    search = env.search(SLOW)
    cmd = [
        sys.executable,
        "-m",
        "lightning_implicit.cli",
        "sweep",
        *env.args(search, "--model", "mlp", "--trials", "3"),
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=_subprocess_env(mlflow_uri),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for(
            lambda: any(
                t.state == TrialState.RUNNING and "mlflow_run_id" in t.user_attrs
                for t in env.study("addition-mlp").trials
            ),
            90,
            "a running trial",
        )
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    assert "interrupted" in out and "Sweep addition" in out
    (trial,) = env.study("addition-mlp").trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"] == "interrupted"
    (parent,) = _by_role(env.runs(), "parent")
    assert parent.info.status == "KILLED"
    summary = json.loads(
        Path(env.client().download_artifacts(parent.info.run_id, "summary/best_params.json")).read_text()
    )
    assert summary["counts"]["fail"] == 1


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL server on a unix socket (as the 'postgres' user when run as root)."""
    import glob
    import socket

    if os.environ.get("LIGHTNING_IMPLICIT_SKIP_POSTGRES") == "1":
        pytest.skip("LIGHTNING_IMPLICIT_SKIP_POSTGRES=1")
    found = [os.path.dirname(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))]
    bindir = found[-1] if found else os.path.dirname(shutil.which("initdb") or "")
    if not bindir or not os.path.exists(os.path.join(bindir, "pg_ctl")):
        pytest.fail(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: run scripts/install-system-deps.sh "
            "(make system-deps), or set LIGHTNING_IMPLICIT_SKIP_POSTGRES=1 to skip this test"
        )
    initdb, pg_ctl = os.path.join(bindir, "initdb"), os.path.join(bindir, "pg_ctl")
    import psycopg2  # noqa: F401  (installed by the dev extra)

    as_user: list[str] = []
    if os.geteuid() == 0:
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="optuna-pg-"))
    root.chmod(0o777)
    data, sock = root / "data", root
    with socket.socket() as probe:  # a free port number (the server listens on a unix socket only)
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    user = "postgres" if as_user else os.environ.get("USER", "postgres")
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-U", user, "-A", "trust"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    subprocess.run(
        [
            *as_user,
            pg_ctl,
            "-D",
            str(data),
            "-w",
            "-l",
            str(root / "log"),
            "-o",
            f"-k {sock} -p {port} -h ''",
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield f"postgresql://{user}@/postgres?host={sock}&port={port}"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_postgres_backed_sweep_with_two_workers(env, mlflow_uri, postgres_url, monkeypatch):
    """$OPTUNA_STORAGE=postgresql://...: the multi-machine setup, here with two worker processes and heartbeats."""
    monkeypatch.setenv("OPTUNA_STORAGE", postgres_url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    search = env.search(TINY)
    args = env.args(search, "--model", "mlp", "--trials", "4", "--workers", "2", "--no-retrain")
    i = args.index("--storage")
    del args[i : i + 2]  # the storage comes from the environment
    assert main(args) == 0
    study = optuna.load_study(study_name="addition-mlp", storage=open_storage(postgres_url, heartbeat=0))
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    (parent,) = _by_role(env.runs(), "parent")
    assert parent.data.tags["optuna.storage"].startswith("postgresql://")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_is_deferred_to_a_safe_point_and_a_second_one_is_immediate(signum, capsys):
    """The first SIGINT or SIGTERM only sets a flag, said with the signal's name (raised by ``check`` at the next
    batch end: never inside a database write); a second raises at once; the previous handler is back afterwards."""
    from lightning_implicit.lifecycle import DeferredSignals, Terminated

    # (Python's handler, as in a terminal: a background job starts with SIGINT ignored, which stays ignored)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        before = signal.getsignal(signum)
        with DeferredSignals() as interrupt:
            os.kill(os.getpid(), signum)
            time.sleep(0.05)  # (the handler runs between bytecodes of the main thread)
            assert interrupt.pending == signum
            with pytest.raises(Terminated) as info:
                interrupt.check()
            assert info.value.signum == signum and info.value.exit_code == 128 + signum
            with pytest.raises(Terminated):
                os.kill(os.getpid(), signum)
                time.sleep(0.5)
        assert signal.getsignal(signum) is before
    finally:
        signal.signal(signal.SIGINT, outer)
    name = signal.Signals(signum).name
    assert f"received {name}: stopping at the end of the current batch" in capsys.readouterr().out


def test_a_signal_right_after_the_trials_run_is_created_leaves_no_run_running(env, monkeypatch):
    """A Ctrl-C / SIGTERM that lands between the trial's MLflow run and its first fold (seen once in CI as a run
    left RUNNING by `test_sigterm_during_sweep_exits_143_no_run_running`) ends the run, as any interrupted trial."""
    search = env.search(PRUNE)
    original = optuna.trial.Trial.set_user_attr

    def interrupted(self, key, value):
        if key == "mlflow_run_id":
            raise KeyboardInterrupt
        return original(self, key, value)

    monkeypatch.setattr(optuna.trial.Trial, "set_user_attr", interrupted)
    assert (
        main(env.args(search, "--model", "mlp", "--study", "signal", "--trials", "2", "--no-retrain")) == 130
    )
    runs = env.runs()
    assert runs and "RUNNING" not in [r.info.status for r in runs]
    (trial,) = _by_role(runs, "trial")
    assert (
        trial.info.status == "FAILED" and trial.data.tags["fail_reason"] == "interrupted"
    )  # as any interrupted trial


def test_recorded_settings_compare_by_key_not_by_flag_order():
    """A resumed study notes changed fixed settings; the same flags in another order (a layer of the run moved,
    e.g. the profile's settings now come before the space's) are the same settings."""
    from lightning_implicit.sweep.driver import _setting_pairs

    old = "--tracking.model_name mlp --data.init_args.shifts [10, 20] --trainer.max_epochs -1 --data.init_args.n_train 200"
    new = "--tracking.model_name mlp --data.init_args.n_train 200 --data.init_args.shifts [10, 20] --trainer.max_epochs -1"
    assert _setting_pairs(old) == _setting_pairs(new)
    assert _setting_pairs(old)["data.init_args.shifts"] == "[10, 20]"
    assert _setting_pairs(new) != _setting_pairs(new.replace("n_train 200", "n_train 300"))
