"""A task added from a directory outside the repo (one Python file + one YAML, found through
``LIGHTNING_IMPLICIT_CONF_PATH``) trains, sweeps and appears in reproduce with a profile that names it, with no
file of the repo edited (the issue's acceptance test, run through the real command line)."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pytest
from conftest import cli_command

from lightning_implicit import confpath
from lightning_implicit.validate import ConfigError

REPO = Path(__file__).resolve().parents[1]

TASK_PY = '''
import numpy as np
from lightning_implicit.data import SyntheticShiftDataModule, TaskSpec


class MaximumDataModule(SyntheticShiftDataModule):
    """y = max(u) over U(0, 1)^4, tested on U(0, kappa)^4 (kappa need not be an integer)."""

    default_shifts = (1.5, 10)

    def __init__(self, **kw):
        super().__init__(**kw)
        self.spec = TaskSpec(name="maximum", kind="regression", in_shape=(4,), target_shape=(1,),
                             metrics=("mse",), presets={"implicit": {"hidden_features": 6}})

    def sample(self, rng, n, shift):
        x = rng.uniform(0, 1.0 if shift is None else shift, size=(n, 4))
        return x, x.max(axis=1, keepdims=True)
'''

TASK_YAML = """
data:
  class_path: maximum_task.MaximumDataModule
  init_args: {n_train: 200, n_test: 50, batch_size: 50}
trainer:
  max_epochs: 1
"""

PROFILE_YAML = """
description: my task only
seeds: [0]
workers: 1
tasks:
  maximum:
    models: [implicit, mlp]
"""


@pytest.fixture
def user_dir(tmp_path):
    d = tmp_path / "mine"
    (d / "tasks").mkdir(parents=True)
    (d / "reproduce").mkdir()
    (d / "maximum_task.py").write_text(textwrap.dedent(TASK_PY))
    (d / "tasks" / "maximum.yaml").write_text(textwrap.dedent(TASK_YAML))
    (d / "reproduce" / "mine.yaml").write_text(textwrap.dedent(PROFILE_YAML))
    return d


def _git_status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--", "conf", "datamodules", "lightning_implicit", "paper"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout


def _cli(args, env, cwd):
    return subprocess.run(
        cli_command(*args),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_float_shifts_have_their_own_test_sets_and_index_steps():
    from lightning_implicit.data import SyntheticShiftDataModule, TaskSpec
    from lightning_implicit.tracking.sweep_log import shift_steps

    class Uniform(SyntheticShiftDataModule):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.spec = TaskSpec(name="uniform", kind="regression", in_shape=(2,), target_shape=(2,))

        def sample(self, rng, n, shift):
            return rng.uniform(0, shift or 1.0, size=(n, 2)), np.zeros((n, 2))

    dm = Uniform(n_train=20, n_test=5, shifts=[0.5, 1, 2.5])
    splits = dm.build()
    assert [t.shift for t in splits.tests] == [0.5, 1, 2.5]
    assert not np.allclose(splits.tests[0].x / 0.5, splits.tests[2].x / 2.5)  # distinct random streams
    np.testing.assert_array_equal(dm.build().tests[2].x, splits.tests[2].x)  # reproducible
    assert shift_steps([0.5, 1, 2.5]) == [5, 10, 25] and shift_steps([10, 100]) == [10, 100]
    with pytest.raises(ValueError, match="positive numbers"):
        Uniform(shifts=[0])


def test_search_path_adds_user_directories_before_the_builtin_ones(user_dir, monkeypatch):
    monkeypatch.setenv(confpath.ENV_PATH, str(user_dir))
    assert confpath.search_path()[0] == user_dir.resolve()
    assert confpath.find("tasks", "maximum") == user_dir.resolve() / "tasks" / "maximum.yaml"
    assert confpath.find("tasks", "addition").parent.parent == confpath.builtin_root()  # added, not replaced
    assert {"maximum", "addition"} <= set(confpath.names("tasks"))
    assert confpath.name_of(str(user_dir / "tasks" / "maximum.yaml")) == "maximum"
    with pytest.raises(ConfigError, match="no tasks config 'maximun'.*maximum.*CONF_PATH"):
        confpath.find("tasks", "maximun")
    monkeypatch.setenv(confpath.ENV_PATH, str(user_dir / "missing"))
    with pytest.raises(ConfigError, match="not a directory"):
        confpath.search_path()


@pytest.mark.slow
def test_a_task_from_outside_the_repo_trains_sweeps_and_is_reproduced(user_dir, tmp_path):
    before = _git_status()
    work = tmp_path / "work"  # not the repo: nothing may depend on the current directory
    work.mkdir()
    env = {
        **os.environ,
        confpath.ENV_PATH: str(user_dir),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "OPTUNA_STORAGE": f"sqlite:///{tmp_path}/optuna.db",
        "PYTHONPATH": "",
    }

    train = _cli(["train", "--task", "maximum", "--model", "implicit"], env, work)
    assert train.returncode == 0, train.stderr[-3000:]
    sweep = _cli(
        [
            "sweep",
            "--task",
            str(user_dir / "tasks" / "maximum.yaml"),
            "--model",
            "implicit",
            "--trials",
            "1",
            "--no-retrain",
        ],
        env,
        work,
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:] + sweep.stdout[-3000:]
    assert "search/default.yaml" in sweep.stdout + sweep.stderr  # the generic space: the task brought none
    repro = _cli(["reproduce", "--profile", "mine", "--out", str(tmp_path / "reports")], env, work)
    assert repro.returncode == 0, repro.stderr[-3000:] + repro.stdout[-3000:]

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])  # (never the process-wide tracking URI)
    exp = client.get_experiment_by_name("maximum")  # named from the task, also when the sweep got a path
    assert exp is not None
    assert not [e for e in client.search_experiments() if "/" in e.name]
    runs = client.search_runs([exp.experiment_id])
    models = {r.data.tags.get("model") for r in runs}
    assert {"implicit", "mlp"} <= models, models
    # a non-integer shift grid: steps = shift x 10 (the param says so), the shifts' values as ood/shift
    trained = next(r for r in runs if r.data.tags.get("model") == "implicit" and "ood/mse" in r.data.metrics)
    shifts = {m.step: m.value for m in client.get_metric_history(trained.info.run_id, "ood/shift")}
    assert shifts == {15: 1.5, 100: 10.0} and trained.data.params["data.shift_step"] == "shift x 10"
    assert {m.step for m in client.get_metric_history(trained.info.run_id, "ood/mse")} == {15, 100}
    import optuna

    assert "maximum-implicit" in optuna.get_all_study_names(env["OPTUNA_STORAGE"])
    report = next((tmp_path / "reports").rglob("report.md")).read_text()
    assert "maximum" in report
    assert _git_status() == before  # no file of the repo was edited


BACKEND_PY = '''
from lightning_implicit.datamodules.synthetic import ArithmeticDataModule
from lightning_implicit.implicit import ACTIVATIONS, register_backend
from lightning_implicit.implicit.reference import picard

CALLS = []


@register_backend("mine")
def mine(A, BU, x0, cfg, hint=None):
    """The paper's iteration as written, counting its calls."""
    CALLS.append(BU.shape[0])
    phi = ACTIVATIONS[cfg.activation].fn
    return picard(A, BU, x0, phi=phi, tol=cfg.tol, tol_mode=cfg.tol_mode, max_iter=cfg.max_iter)


class MineAddition(ArithmeticDataModule):
    """The shipped addition task, from this module (so that a run imports it)."""
'''

MINE_TASK_YAML = """
data:
  class_path: mine_backend.MineAddition
  init_args: {operation: add, n_train: 64, n_test: 16, batch_size: 32, shifts: [10],
              sizes: {implicit: {hidden_features: 4}}}
trainer:
  max_epochs: 1
"""


def test_a_backend_registered_in_a_users_module_is_selected_on_the_command_line(
    tmp_path, monkeypatch, capsys
):
    """``register_backend`` in a module of the user's CONF_PATH directory; ``--model.init_args.solver.backend
    mine`` selects it through the command line (``backend`` is a name checked against the registry when the
    config is built, not a fixed list); a name nobody registered is one error naming the registered ones."""
    import sys

    from lightning_implicit.cli import main
    from lightning_implicit.implicit import BACKENDS, SolverConfig
    from lightning_implicit.implicit.registry import BUILTIN_BACKENDS, backend_names

    assert set(BUILTIN_BACKENDS) <= set(BACKENDS)  # the names listed once are the loops solvers.py registers
    assert backend_names()[:4] == ["auto", *BUILTIN_BACKENDS]

    d = tmp_path / "mine"
    (d / "tasks").mkdir(parents=True)
    (d / "mine_backend.py").write_text(textwrap.dedent(BACKEND_PY))
    (d / "tasks" / "mine_add.yaml").write_text(textwrap.dedent(MINE_TASK_YAML))
    monkeypatch.setenv(confpath.ENV_PATH, str(d))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # (the CLI puts the user directory on it)
    try:
        args = ["train", "--task", "mine_add", "--model", "implicit", "--tracking.log_model", "false"]
        assert main([*args, "--model.init_args.solver.backend", "mine"]) == 0
        calls = sys.modules["mine_backend"].CALLS
        assert calls and all(n > 0 for n in calls)  # the training and the sweep's solves ran in it
        capsys.readouterr()
        assert main([*args, "--model.init_args.solver.backend", "mien"]) == 2  # before any data or run
        err = capsys.readouterr().err.strip().splitlines()
        assert (
            err[-1].startswith("error: --model.init_args.solver: solver.backend must be one of")
            and "'mine'" in err[-1]
        )
        assert SolverConfig(backend="mine").backend == "mine"
        with pytest.raises(ValueError, match=r"solver.backend must be one of \['auto', .*'mine'\].*register"):
            SolverConfig(backend="mien")
    finally:
        BACKENDS.pop("mine", None)
        sys.modules.pop("mine_backend", None)
    with pytest.raises(ValueError, match="got 'mine'"):
        SolverConfig(backend="mine")  # (unregistered again)
