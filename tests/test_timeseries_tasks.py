"""Spiky series, AMC volatility and earthquake location as tasks: fits, metrics, figures, honest errors."""

from __future__ import annotations

import time

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import tiny_args
from lightning_implicit.datamodules.market import DataUnavailableError
from lightning_implicit.datamodules.volatility import VolatilityDataModule, variance_metrics

from lightning_implicit.cli import main as cli_main
from lightning_implicit.runner import run_training, shorthand_args

QUIET = [
    "--trainer.max_epochs",
    "1",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
    "--trainer.enable_checkpointing",
    "false",
]


@pytest.mark.parametrize("model", ["implicit_rnn", "lstm"])
def test_spiky_fit_logs_the_three_mses_and_figure(model, mlflow_store):
    small = [
        "--data.init_args.n_train",
        "1400",
        "--data.init_args.n_test",
        "600",
        "--data.init_args.n_regions_train",
        "4",
    ]
    res = run_training(shorthand_args("spiky", model) + QUIET + small)
    (row,) = res.sweep
    assert row["n"] == 590  # 600 test points, windows of 10 that do not cross the split
    for key in ("mse", "mse_spike", "mse_normal"):
        assert np.isfinite(row[key])
    client = mlflow.MlflowClient(mlflow_store)
    for key in ("ood/mse", "ood/mse_spike", "ood/mse_normal"):
        assert len(client.get_metric_history(res.run_id, key)) == 1
    assert "figures/spiky_forecast.png" in {a.path for a in client.list_artifacts(res.run_id, "figures")}


def test_volatility_without_data_or_network_fails_fast_with_guidance(tmp_path, capsys, monkeypatch):
    import yfinance

    class Offline:
        def __init__(self, *a, **k):
            pass

        def history(self, *a, **k):
            raise OSError("Could not resolve host: query2.finance.yahoo.com")

    monkeypatch.setattr(yfinance, "Ticker", Offline)  # no test touches the network
    t0 = time.monotonic()
    rc = cli_main(
        [
            "train",
            "--task",
            "volatility",
            "--model",
            "implicit",
            "--data.init_args.cache_dir",
            str(tmp_path),
            *QUIET,
        ]
    )
    assert rc == 2 and time.monotonic() - t0 < 30
    err = capsys.readouterr().err
    # one line: what failed, what to do (a file, DATA=synthetic, or downloads) and where the layouts are listed
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "DATA=" in line and "yfinance" in line and "docs/market-data.md" in line


def test_volatility_synthetic_runs_and_is_labelled(mlflow_store):
    res = run_training(
        shorthand_args("volatility", "implicit")
        + QUIET
        + [
            "--data.init_args.data",
            "synthetic",
            "--data.init_args.synthetic_range",
            "[2020-12-01, 2021-01-31]",
            "--data.init_args.stride",
            "10",
        ]
    )
    (row,) = res.sweep
    assert row["shift"] == 2021 and row["synthetic"] == 1.0
    # naive forecasters are scored on the same windows: predicting zero scores MAPE exactly 1
    assert row["naive_zero_mape"] == pytest.approx(1.0)
    assert (
        np.isfinite(row["mape"]) and np.isfinite(row["qlike"]) and np.isfinite(row["naive_persistence_mape"])
    )
    client = mlflow.MlflowClient(mlflow_store)
    card = client.download_artifacts(res.run_id, "data_card.json")
    assert "SYNTHETIC" in open(card).read()


def test_variance_metrics_reward_underprediction_as_the_notes_warn():
    y = np.array([1.0, 2.0, 4.0])
    assert variance_metrics(np.zeros(3), y)["mape"] == pytest.approx(1.0)
    assert variance_metrics(y, y)["mape"] == 0 and variance_metrics(y, y)["qlike"] == pytest.approx(0)
    # QLIKE punishes the zero forecast that MAPE rewards
    assert variance_metrics(np.zeros(3), y)["qlike"] > variance_metrics(3 * y, y)["qlike"]


def test_volatility_with_a_minute_file(tmp_path):
    # four regular sessions of a clean yfinance-layout file (two per split, the fewest the task accepts): 390
    # minutes each -> 390 - 70 + 1 windows per session
    rows = []
    for day in ("2020-12-29", "2020-12-30", "2021-01-04", "2021-01-05"):
        idx = pd.date_range(f"{day} 09:30", f"{day} 15:59", freq="1min", tz="America/New_York")
        price = 10 + np.sin(np.arange(len(idx)) / 7.0)
        rows.append(
            pd.DataFrame(
                {"Open": price, "High": price + 0.02, "Low": price - 0.02, "Close": price, "Volume": 100},
                index=idx.rename("Datetime"),
            )
        )
    path = tmp_path / "amc_1min.csv"
    pd.concat(rows).to_csv(path)
    dm = VolatilityDataModule(data=str(path), allow_download=False, cache_dir=None, n_folds=2)
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) == 2 * (390 - 70 + 1)
    assert len(dm.test_sets[0]) == 2 * (390 - 70 + 1) and dm.shifts == [2021]


def test_earthquake_quick_profile_logs_the_k_sweep(mlflow_store, tmp_path_factory):
    cache = tmp_path_factory.mktemp("eq-cache")
    args = tiny_args(
        "earthquake",
        "implicit",
        extra=[
            "--data.init_args.coarsen",
            "8",
            "--data.init_args.cache_dir",
            str(cache),
            "--model.init_args.hidden_features",
            "16",
        ],
    )
    args = [a for a in args if a not in ("--data.init_args.n_train", "400", "--data.init_args.n_test", "100")]
    res = run_training(args)
    assert [r["shift"] for r in res.sweep] == list(range(10))
    for r in res.sweep:
        for key in (
            "mse",
            "lon_mae_deg",
            "lon_wrapped_mae_deg",
            "lat_mae_deg",
            "depth_mae_km",
            "time_mae_s",
            "epicentral_median_km",
        ):
            assert np.isfinite(r[key])
        assert r["lon_wrapped_mae_deg"] <= r["lon_mae_deg"] + 1e-9
    client = mlflow.MlflowClient(mlflow_store)
    figs = {a.path for a in client.list_artifacts(res.run_id, "figures")}
    assert figs == {"figures/earthquake_error_vs_k.png", "figures/earthquake_regions_map.png"}
    assert len(client.get_metric_history(res.run_id, "ood/epicentral_median_km")) == 10


def test_volatility_error_class_is_raised_by_the_datamodule(tmp_path):
    dm = VolatilityDataModule(data=None, allow_download=False, cache_dir=str(tmp_path))
    with pytest.raises(DataUnavailableError, match="DATA="):
        dm.setup()


def test_partial_test_pass_scores_the_rows_it_saw():
    """limit_test_batches < 1: side information (raw prices) is indexed by the rows actually evaluated."""
    args = (
        shorthand_args("volatility", "implicit")
        + QUIET
        + [
            "--data.init_args.data",
            "synthetic",
            "--data.init_args.synthetic_range",
            "[2020-12-01, 2021-01-31]",
            "--data.init_args.stride",
            "10",
            "--data.init_args.eval_batch_size",
            "64",
            "--trainer.limit_test_batches",
            "2",
            "--tracking.enabled",
            "false",
        ]
    )
    res = run_training(args)
    (row,) = res.sweep
    assert row["n"] == 128
    out = res.module.sweep_outputs[2021]
    Xraw, yraw = res.datamodule.raw_test
    expected = variance_metrics(np.zeros(128), yraw[out["idx"].numpy()], prefix="naive_zero_")
    assert row["naive_zero_rmse"] == pytest.approx(expected["naive_zero_rmse"])
