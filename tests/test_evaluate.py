"""The trained model in MLflow and `lightning-implicit test`: the shift sweep of a logged model, again (issue 20)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch
from conftest import tiny_args

from lightning_implicit.evaluate import _run_from_ckpt_path, main
from lightning_implicit.runner import run_training

SHIFTS = [10, 100, 1000]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny implicit run, logged (with its model) to its own store, with a checkpoint on disk."""
    root = tmp_path_factory.mktemp("evaluate")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    args = tiny_args("addition", "implicit", n_train=300, n_test=60, shifts=SHIFTS) + [
        "--trainer.enable_checkpointing",
        "true",
        "--trainer.default_root_dir",
        str(root / "lightning"),
        "--tracking.uri",
        uri,
        "--tracking.experiment",
        "evaluate-test",
    ]
    res = run_training(args)
    return uri, res, root


def test_trained_model_is_logged_as_weights_and_loads_back_with_one_line(trained):
    import json

    from lightning_implicit.evaluate import load_logged_model

    uri, res, _ = trained
    client = mlflow.MlflowClient(uri)
    run = client.get_run(res.run_id)
    assert run.data.tags["logged_model"] == f"runs:/{res.run_id}/model"
    assert {a.path for a in client.list_artifacts(res.run_id, "model")} == {
        "model/state_dict.pt",
        "model/model.json",
    }
    # plain tensors: loads with weights_only=True, equal to the trained module's weights
    path = client.download_artifacts(res.run_id, "model/state_dict.pt")
    state = torch.load(path, weights_only=True)
    trained_state = res.module.state_dict()
    assert state.keys() == trained_state.keys()
    assert all(torch.equal(state[k], trained_state[k].cpu()) for k in state)
    model = load_logged_model(res.run_id, uri)
    assert type(model).__name__ == "ImplicitModule" and model.task.name == "addition"
    x = res.datamodule.test_sets[1][0:16][0]
    res.module.eval()
    with torch.no_grad():
        assert torch.equal(model(x), res.module.cpu()(x))
    # the card says what the model reads and returns (any batch size)
    card = json.loads(Path(client.download_artifacts(res.run_id, "model/model.json")).read_text())
    with torch.no_grad():
        y = model(x)
    assert card["input_shape"] == [-1, *x.shape[1:]] and card["output_shape"] == [-1, *y.shape[1:]]


def test_test_command_reproduces_the_runs_sweep_and_logs_a_nested_run(trained, capsys):
    uri, res, _ = trained
    assert main(["--run-id", res.run_id, "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert f"testing runs:/{res.run_id}/model" in out
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("evaluate-test")
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{res.run_id}'")
    assert len(children) == 1
    child = children[0]
    assert child.info.run_name == "test-implicit-seed0" and child.info.status == "FINISHED"
    assert child.data.tags["eval.source_run_id"] == res.run_id
    assert "logged_model" not in child.data.tags  # a test run logs results, not another copy of the model
    # same weights, same data: the same numbers as the sweep right after training, at every shift
    for key in ("ood/mse", "ood/iters_mean"):
        before = {m.step: m.value for m in client.get_metric_history(res.run_id, key)}
        after = {m.step: m.value for m in client.get_metric_history(child.info.run_id, key)}
        assert sorted(after) == SHIFTS
        assert after == pytest.approx(before, rel=1e-6), key
    assert "config.yaml" in {a.path for a in client.list_artifacts(child.info.run_id)}
    assert "mse per shift: this test vs the trained run's own sweep" in out
    assert f"run:         test-implicit-seed0 ({child.info.run_id})" in out


def test_checkpoint_path_of_a_run_is_tested_without_logging(trained, capsys):
    uri, res, root = trained
    ckpts = list((root / "lightning").rglob("*.ckpt"))
    assert len(ckpts) == 1 and _run_from_ckpt_path(ckpts[0]) == res.run_id
    client = mlflow.MlflowClient(uri)
    n_runs = len(client.search_runs([client.get_experiment_by_name("evaluate-test").experiment_id]))
    overrides = ["--data.init_args.shifts", "[10, 10000]"]
    assert main(["--ckpt_path", str(ckpts[0]), "--tracking-uri", uri, "--no-log", *overrides]) == 0
    out = capsys.readouterr().out
    assert f"testing {ckpts[0]} (trained in run {res.run_id})" in out
    rows = [line.split() for line in out.splitlines() if line.strip().split(" ")[0] in ("10", "10000")]
    assert [r[0] for r in rows[:2]] == ["10", "10000"]  # the override's shifts, not the run's
    before = {m.step: m.value for m in client.get_metric_history(res.run_id, "ood/mse")}
    assert float(rows[0][1]) == pytest.approx(
        before[10], rel=1e-3
    )  # the checkpoint holds the trained weights
    assert len(client.search_runs([client.get_experiment_by_name("evaluate-test").experiment_id])) == n_runs


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "nothing to test: give --run-id ID"),
        (["--run-id", "0" * 32], "no MLflow run '00000000000000000000000000000000'"),
        (["--ckpt_path", "/no/such.ckpt"], "no checkpoint file /no/such.ckpt"),
        (["--ckpt_path", __file__], "cannot tell which run trained"),
        (["--ckpt_path", __file__, "--task", "addition"], "needs --model too"),
    ],
)
def test_test_command_errors_name_the_fix(argv, message, mlflow_store, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_run_id_is_read_from_lightnings_checkpoint_layout(tmp_path):
    run_id = "0123456789abcdef0123456789abcdef"
    path = tmp_path / "lightning" / "3" / run_id / "checkpoints" / "epoch=0-step=5.ckpt"
    assert _run_from_ckpt_path(path) == run_id
    assert _run_from_ckpt_path(tmp_path / "elsewhere" / "model.ckpt") is None
    assert _run_from_ckpt_path(Path("checkpoints/x.ckpt")) is None
