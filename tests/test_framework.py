"""End to end: short fits + shift sweeps through the CLI, tracked in a temporary MLflow store."""

from __future__ import annotations

import lightning as L
import mlflow
import pytest
from conftest import tiny_args

from lightning_implicit.runner import run_training
from lightning_implicit.validate import ConfigError

CASES = [
    ("addition", "implicit", "mse", [10, 1000]),
    ("subtraction", "mlp", "mse", [10, 1000]),
    ("identity", "implicit", "mse", [10, 40]),
    ("rolling_average", "implicit", "mse", [5, 50]),
    ("rolling_argmax", "implicit_rnn", "accuracy", [10, 1000]),
    ("rolling_argmax", "encdec_masked", "accuracy", [10, 1000]),
]


@pytest.mark.parametrize(("task", "model", "metric", "shifts"), CASES)
def test_fit_and_sweep_are_tracked(task, model, metric, shifts, mlflow_store):
    res = run_training(tiny_args(task, model, shifts=shifts))
    assert [r["shift"] for r in res.sweep] == shifts
    assert all(r["n"] == 100 for r in res.sweep)
    client = mlflow.MlflowClient(mlflow_store)
    run = client.get_run(res.run_id)
    assert run.data.tags["task"] == task and run.data.tags["model"] == model
    assert run.data.tags["seed"] == "0" and run.data.tags["git_commit"]
    history = client.get_metric_history(res.run_id, f"ood/{metric}")
    assert sorted(m.step for m in history) == shifts
    by_step = {m.step: m.value for m in history}
    for row in res.sweep:
        assert by_step[row["shift"]] == pytest.approx(row[metric])
    if model.startswith("implicit"):
        iters = client.get_metric_history(res.run_id, "ood/iters_mean")
        assert len(iters) == len(shifts) and all(m.value >= 1 for m in iters)
        assert client.get_metric_history(res.run_id, "ood/converged_frac")
        assert client.get_metric_history(res.run_id, "train/A_inf")
    files = {a.path for a in client.list_artifacts(res.run_id)}
    assert {"config.yaml", "data_card.json", "sweep"} <= files
    sweep_files = {a.path for a in client.list_artifacts(res.run_id, "sweep")}
    assert sweep_files == {"sweep/shift_sweep.csv", "sweep/shift_sweep.json", "sweep/shift_sweep.png"}


def test_same_seed_gives_identical_metrics():
    args = tiny_args("addition", "implicit", shifts=[10, 100], extra=["--tracking.enabled", "false"])
    a = run_training(args).sweep
    b = run_training(args).sweep
    c = run_training(
        tiny_args("addition", "implicit", shifts=[10, 100], seed=1, extra=["--tracking.enabled", "false"])
    ).sweep
    assert a == b
    assert a != c


class _CertificateProbe(L.Callback):
    def __init__(self):
        self.values = []

    # A as the next step's forward uses it, i.e. after the previous optimiser step and its projection (the first
    # value: A as initialised), and A at the end of training
    def on_before_backward(self, trainer, pl_module, loss):
        self.values.append(pl_module.net.well_posedness())

    def on_train_end(self, trainer, pl_module):
        self.values.append(pl_module.net.well_posedness())


def test_projection_keeps_A_well_posed_after_every_step():
    probe = _CertificateProbe()
    kappa = 0.5
    args = tiny_args(
        "addition",
        "implicit",
        epochs=2,
        shifts=[10],
        extra=[
            "--tracking.enabled",
            "false",
            "--model.init_args.kappa",
            str(kappa),
            "--model.init_args.optim.lr",
            "0.2",
        ],
    )
    run_training(args, extra_callbacks=[probe], test=False)
    assert len(probe.values) == 2 * 5 + 1  # 320 training samples / batch 64, two epochs; and the end
    assert max(probe.values) <= kappa + 1e-6
    assert max(probe.values) > 0.9 * kappa  # the large learning rate really pushes A onto the ball


def test_typo_in_a_config_key_names_the_key_and_the_closest_one(capsys):
    with pytest.raises(ConfigError) as err:
        run_training(tiny_args("addition", "implicit", extra=["--model.init_args.kapa", "0.5"]))
    assert str(err.value).startswith(
        "unknown option --model.init_args.kapa; did you mean --model.init_args.kappa?"
    )
    assert "\n" not in str(err.value) and capsys.readouterr().err == ""  # one line, no usage dump


def test_typo_in_a_yaml_file_names_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  init_args:\n    n_trian: 100\n")
    with pytest.raises(ConfigError, match="n_trian; did you mean --data.init_args.n_train"):
        run_training(tiny_args("addition", "implicit", extra=["--config", str(bad)]))


def test_wrong_type_is_rejected():
    with pytest.raises(ConfigError, match=r"^--model.init_args.kappa big: must be a finite number"):
        run_training(tiny_args("addition", "implicit", extra=["--model.init_args.kappa", "big"]))


def test_unknown_task_lists_the_choices():
    from lightning_implicit.runner import shorthand_args

    with pytest.raises(ConfigError, match="addition"):
        shorthand_args("additon", "implicit")


def test_checkpoint_loads_back_with_plain_weights(tmp_path):
    import torch

    from lightning_implicit.modules import ImplicitModule

    args = tiny_args(
        "addition",
        "implicit",
        shifts=[10],
        extra=[
            "--tracking.enabled",
            "false",
            "--trainer.enable_checkpointing",
            "true",
            "--trainer.default_root_dir",
            str(tmp_path),
        ],
    )
    res = run_training(args, test=False)
    (ckpt,) = tmp_path.rglob("*.ckpt")
    torch.load(ckpt, weights_only=True)  # plain data only
    back = ImplicitModule.load_from_checkpoint(ckpt)
    assert back.task == res.module.task
    assert torch.equal(back.net.A, res.module.net.A)


def test_an_explicit_tracking_uri_does_not_redirect_later_runs(tmp_path, mlflow_store):
    import os

    other = f"sqlite:///{tmp_path / 'other.db'}"
    res = run_training(tiny_args("addition", "mlp", shifts=[10], extra=["--tracking.uri", other]))
    assert mlflow.MlflowClient(other).get_run(res.run_id)
    assert os.environ["MLFLOW_TRACKING_URI"] == mlflow_store
    later = run_training(tiny_args("addition", "mlp", shifts=[10]))
    assert mlflow.MlflowClient(mlflow_store).get_run(later.run_id)
