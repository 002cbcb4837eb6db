"""Minute files as users have them (hand-made fixtures in each vendor layout) and every bad file's one error."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from lightning_implicit.datamodules import market as md
from market_fixtures import GOOD, bars, write_fixture

WINDOWS_PER_SESSION = 100 - (60 + 10) + 1  # 31


@pytest.mark.parametrize("kind", GOOD)
def test_vendor_files_load_with_what_they_are_in_the_data_card(kind, tmp_path):
    path = write_fixture(kind, tmp_path)
    ticker = "GME" if kind == "one_ticker_not_amc" else "AMC"
    d = md.load_volatility_dataset(str(path), ticker=ticker)
    card = d.card
    # four 100-minute sessions, the last 20% (one) is the test period: the file does not cover the paper's years
    assert card["n_windows"] == {"train": 3 * WINDOWS_PER_SESSION, "test": WINDOWS_PER_SESSION}
    assert card["splits"]["sessions"] == {"train": 3, "test": 1}
    assert (
        card["splits"]["rule"].startswith("chronological, automatic") and "SPLIT=" in card["splits"]["rule"]
    )
    assert d.t_train.max() < d.t_test.min()
    f = card["file"]
    if kind == "alphavantage_pandas":
        assert f["layout"] == "alphavantage" and f["tickers_in_file"] == ["AMC", "GME"]
        assert f["row_order"].startswith("newest first") and "America/New_York" in f["tz_source"]
        assert "M/D/YYYY" in f["tz_source"]
        assert (
            card["bars"]["bars_outside_regular_session"] == 4 * 60
        )  # pre/post-market minutes left out, counted
        # the AMC rows, not GME's (prices near 20, not 90)
        assert 10 < d.X_train.mean() < 30
    if kind == "duplicates":
        assert f["exact_duplicates_dropped"] == 10
    if kind == "polygon":
        assert f["layout"] == "polygon" and "epoch" in f["tz_source"]


def test_same_prices_whatever_the_layout(tmp_path):
    """yfinance, Polygon and the stacked Alpha Vantage file hold the same AMC minutes: the same windows."""
    got = {
        k: md.load_volatility_dataset(str(write_fixture(k, tmp_path))) for k in ("yfinance_recent", "polygon")
    }
    np.testing.assert_allclose(got["yfinance_recent"].y_train, got["polygon"].y_train, rtol=1e-12)


def test_a_file_without_the_ticker_lists_the_tickers_it_has(tmp_path):
    path = write_fixture("one_ticker_not_amc", tmp_path)
    with pytest.raises(
        md.DataValidationError, match=r"(?s)no rows for ticker 'AMC'.*tickers in the file: GME.*TICKER="
    ):
        md.load_volatility_dataset(str(path))


def _write(df: pd.DataFrame, path):
    out = df.copy()
    out.index.name = "timestamp"
    out.to_csv(path)
    return path


def _bad_files(tmp_path) -> dict[str, tuple[object, str]]:
    b = bars()
    tick, step, flat, inf = b.copy(), b.copy(), b.copy(), b.copy()
    tick.iloc[150, :4] *= 1000.0  # one mis-keyed minute in session 2
    step.iloc[150:200, :4] *= 10.0  # a x10 level inside session 2
    flat[["open", "high", "low", "close"]] = 12.5
    inf.iloc[7, 3] = np.inf
    other = bars(1, base=90.0)
    interleaved = pd.concat([b, other]).sort_index(kind="stable")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1" + b"\x00garbage" * 50)
    (tmp_path / "folder").mkdir()
    return {
        "empty": (tmp_path / "empty.csv", "is empty"),
        "binary": (tmp_path / "binary.csv", "not a text CSV"),
        "corrupt parquet": (tmp_path / "corrupt.parquet", "cannot be read as parquet"),
        "directory": (tmp_path / "folder", "is a directory"),
        "no volume": (_write(b.drop(columns="volume"), tmp_path / "novol.csv"), "no 'volume' column"),
        "+inf": (_write(inf, tmp_path / "inf.csv"), "infinite prices"),
        "interleaved": (_write(interleaved, tmp_path / "two.csv"), "two tickers interleaved"),
        "constant": (_write(flat, tmp_path / "flat.csv"), "variance is zero everywhere"),
        "x10 step": (_write(step, tmp_path / "step.csv"), "jumps by more than 5x inside a session"),
        "tick": (_write(tick, tmp_path / "tick.csv"), ""),
    }


def test_every_bad_file_has_its_own_error(tmp_path):
    for name, (path, needle) in _bad_files(tmp_path).items():
        if name == "tick":
            continue
        with pytest.raises(md.DataValidationError) as err:
            md.load_volatility_dataset(str(path))
        assert needle in str(err.value), (name, str(err.value))


def test_an_isolated_bad_tick_is_dropped_and_counted(tmp_path):
    path, _ = _bad_files(tmp_path)["tick"]
    d = md.load_volatility_dataset(str(path))
    assert d.card["file"]["isolated_bad_ticks_dropped"] == 1
    assert d.y_train.max() < 1.0  # no $1000^2-scale variance from the bad print


@pytest.mark.slow
def test_make_sweep_on_a_vendor_file_and_a_bad_file(tmp_path):
    """The user's command on a hand-made Alpha Vantage file completes trials; a bad file stops at once, exit 2,
    one message, no MLflow run."""
    import mlflow

    env_store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    good = write_fixture("alphavantage_pandas", tmp_path)
    cmd = [
        sys.executable,
        "-m",
        "lightning_implicit.cli",
        "sweep",
        "--task",
        "volatility",
        "--data",
        str(good),
        "--trials",
        "2",
        "--model",
        "linear",
        "--no-retrain",
        "--storage",
        f"sqlite:///{tmp_path / 'optuna.db'}",
        "--tracking-uri",
        env_store,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert (
        res.stdout.count("COMPLETE") + res.stdout.count("PRUNED") >= 2
        and "split chronological" in res.stdout + res.stderr
    )
    bad = _write(bars().drop(columns="volume"), tmp_path / "novol.csv")
    t0 = time.monotonic()
    res = subprocess.run([*cmd[:7], str(bad), *cmd[8:]], capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t0
    assert res.returncode == 2 and res.stderr.count("error:") == 1 and "'volume'" in res.stderr
    assert "Traceback" not in res.stderr and took < 60
    client = mlflow.MlflowClient(env_store)
    exp = client.get_experiment_by_name("volatility")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`sweep.role` = 'parent'")
    assert len(runs) == 1  # the good sweep's parent; the bad file left none


def test_a_damaged_market_cache_names_the_file_to_delete(tmp_path):
    (tmp_path / "AMC_1d.parquet").write_bytes(b"PAR1" + b"\x00" * 100)
    with pytest.raises(
        md.DataValidationError, match=r"market cache .*AMC_1d.parquet is damaged.*rm .*AMC_1d.parquet"
    ):
        md.resolve_source(None, tmp_path, allow_download=False, ticker="AMC", interval="1d")
