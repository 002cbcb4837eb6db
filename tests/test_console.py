"""The console of `lightning-implicit train`: third-party noise filtered, an end-of-run summary (issue 20)."""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import pytest

from lightning_implicit.runner import shorthand_args

NOISE = ["LightningCLI's args parameter is intended", "litlogger", "litmodels", "LeafSpec", "Total FLOPs",
         "log_every_n_steps"]  # fmt: skip


@pytest.mark.slow
def test_train_prints_summary_without_third_party_noise(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PORT": "1"}  # nothing listens on port 1
    cmd = [sys.executable, "-m", "lightning_implicit.cli", "train", "--task", "addition", "--model", "implicit",
           "--trainer.max_epochs", "1", "--data.init_args.n_train", "400", "--data.init_args.n_test", "100",
           "--data.init_args.shifts", "[10, 100]", "--trainer.enable_model_summary", "false"]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    for noise in NOISE:
        assert noise not in text, noise
    assert "experiment:  addition" in out.stdout
    assert "run:         implicit-seed0" in out.stdout
    assert "not running; start it with `make ui`" in out.stdout
    run_id = next(line for line in out.stdout.splitlines() if line.startswith("run:")).split("(")[-1].rstrip(")")
    assert f"/runs/{run_id}" in out.stdout
    run = mlflow.MlflowClient(uri).get_run(run_id)
    assert run.data.params["model.hidden_features"] == str(run.data.params["model.hidden_features"])
    assert int(run.data.params["model.hidden_features"]) > 0
    assert int(run.data.params["model.n_parameters"]) > 0
    assert run.data.params["data.n_train"] == "400" and run.data.params["trainer.max_epochs"] == "1"
    assert not any("presets" in k for k in run.data.params)
    assert run.data.tags["git_commit"]


def test_devices_list_becomes_a_gpu_list():
    args = shorthand_args("addition", "implicit", devices="0,2")
    assert args[args.index("--trainer.devices") + 1] == "[0,2]"
    args = shorthand_args("addition", "implicit", devices=4)
    assert args[args.index("--trainer.devices") + 1] == "4"
