"""What a run logs for the paper's analyses, from the run itself (issue 19: the paper's runner reads only
logged metrics): the training-split metrics (``eval_train``), the depth under the other stopping tolerance
(``depth_other_tol``) and the learned ``A`` — each checked against a computation on the trained module."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import torch
from conftest import tiny_args

from lightning_implicit.runner import run_training


def test_depth_under_the_other_tolerance_train_split_metrics_and_A_are_logged(mlflow_store):
    extra = [
        "--model.init_args.depth_other_tol",
        "true",
        "--model.init_args.eval_train",
        "true",
        "--model.init_args.sweep_tol_mode",
        "abs",
    ]
    res = run_training(tiny_args("addition", "implicit", shifts=[10, 1000], extra=extra))
    module, dm = res.module.eval(), res.datamodule
    client = mlflow.MlflowClient(mlflow_store)

    # the other tolerance's depth, per shift: the module solved again at 'rel'
    rel = module.sweep_solver_cfg("rel")
    for row, ds in zip(res.sweep, dm.test_sets, strict=True):
        x = ds.tensors[0] if hasattr(ds, "tensors") else ds[: len(ds)][0]
        with torch.no_grad():
            module.net(x.reshape(len(x), -1), solver_cfg=rel)
        assert row["iters_mean_rel"] == pytest.approx(float(module.net.last_stats.iterations.float().mean()))
        assert row["iters_mean"] != row["iters_mean_rel"] or row["shift"] == 10
    history = {m.step: m.value for m in client.get_metric_history(res.run_id, "ood/iters_mean_rel")}
    assert history == pytest.approx({r["shift"]: r["iters_mean_rel"] for r in res.sweep})

    # the training split's MSE, with the sweep's settings
    x, y, _ = dm.train_set[: len(dm.train_set)]
    with torch.no_grad():
        pred = module.net(x.reshape(len(x), -1), solver_cfg=module.sweep_solver_cfg())
    logged = client.get_run(res.run_id).data.metrics["train_eval/mse"]
    assert logged == pytest.approx(float(((pred - y) ** 2).mean()), rel=1e-5)

    # the learned A as the state equation uses it
    path = client.download_artifacts(res.run_id, "weights/A.npy")
    np.testing.assert_array_equal(np.load(path), module.layer.effective_A().detach().numpy())


def test_without_the_options_nothing_extra_is_computed(mlflow_store):
    res = run_training(tiny_args("addition", "implicit", shifts=[10]))
    assert not any(k.endswith(("_rel", "_abs")) for k in res.sweep[0])
    metrics = mlflow.MlflowClient(mlflow_store).get_run(res.run_id).data.metrics
    assert not any(k.startswith("train_eval/") for k in metrics)
