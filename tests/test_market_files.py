"""Minute files as users have them (hand-made fixtures in each vendor layout) and every bad file's one error."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from lightning_implicit.datamodules import market as md
from market_fixtures import BAD, GOOD, bars, write_bad, write_fixture

WINDOWS_PER_SESSION = 100 - (60 + 10) + 1  # 31
DAYS_SLASH = ("2026-11-16", "2026-11-17")


@pytest.mark.parametrize("kind", GOOD)
def test_vendor_files_load_with_what_they_are_in_the_data_card(kind, tmp_path):
    path = write_fixture(kind, tmp_path)
    ticker = "GME" if kind == "one_ticker_not_amc" else "AMC"
    d = md.load_volatility_dataset(str(path), ticker=ticker)
    card = d.card
    # four 100-minute sessions; the file does not cover the paper's years, so the last 20% of its sessions, at
    # least two (md.MIN_SESSIONS_PER_SPLIT), are the test period
    assert card["n_windows"] == {"train": 2 * WINDOWS_PER_SESSION, "test": 2 * WINDOWS_PER_SESSION}
    assert card["splits"]["sessions"] == {"train": 2, "test": 2}
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


# --------------------------------------------------------------------------------------------------
# issue 33: no data changed without a word, bad files refused by name before parsing
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """An MLflow store of this module's own (one schema migration for every bad file); returns a function listing
    the status of every run in it. Each case asserts it is still empty: no bad file may open a run."""
    import os

    import mlflow

    uri = f"sqlite:///{tmp_path_factory.mktemp('bad-files') / 'mlflow.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri

    def statuses():
        client = mlflow.MlflowClient(uri)
        return [
            r.info.status for e in client.search_experiments() for r in client.search_runs([e.experiment_id])
        ]

    yield statuses
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


@pytest.mark.parametrize("kind", list(BAD))
def test_each_bad_file_one_error_line_exit_2_no_run(kind, tmp_path, store, capsys):
    """``train`` on each bad file: exit 2, one ``error:`` line naming the reason and the fix, no traceback, no
    MLflow run (the data is loaded before any run is opened)."""
    from lightning_implicit.cli import main

    path = write_bad(kind, tmp_path / "files")
    code = main(["train", "--task", "volatility", "--model", "linear", "--data", str(path), "--no-tuned"])
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    # one message, no traceback of ours (pytest's capture can leave logging's "--- Logging error ---" reports)
    assert err.count("error: ") == 1 and err.count("Traceback") == err.count("--- Logging error ---")
    message = err[err.index("error: ") :]
    for words in BAD[kind]:
        assert words in message, (kind, words, message)
    assert store() == []


def test_big_padded_file_refused_from_its_size_without_reading_it(tmp_path, monkeypatch):
    """The 2 GiB file (valid CSV, then NUL bytes) is refused from ``stat`` alone: no block of it is read."""
    path = write_bad("2 GiB of NUL padding", tmp_path)
    import builtins

    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k))
    with pytest.raises(md.DataValidationError, match="above the 512 MiB limit"):
        md.load_minute_file(path)
    assert str(path) not in opened


def test_nul_bytes_in_the_tail_found_before_the_whole_file_is_read(tmp_path, monkeypatch):
    """A file under the limit padded with NULs is refused from its head or tail, before the full scan."""
    from lightning_implicit.datamodules.market import filecheck

    path = write_bad("NUL padding", tmp_path)
    monkeypatch.setattr(filecheck, "_scan", lambda *a: pytest.fail("the whole file was scanned"))
    with pytest.raises(md.DataValidationError, match=r"NUL bytes at byte [\d,]+"):
        md.check_file(path)


def test_utf8_bom_and_multibyte_characters_across_blocks_are_accepted(tmp_path, monkeypatch):
    """UTF-8 with a BOM, and an 'é' cut by a scan block boundary, are valid UTF-8: no false alarm."""
    from lightning_implicit.datamodules.market import filecheck

    path = tmp_path / "ok.csv"
    body = (
        "timestamp,open,high,low,close,volume,note\n" + "2026-11-16 09:30:00-05:00,1,1,1,1,1,caf\u00e9\n" * 50
    )
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    monkeypatch.setattr(filecheck, "_BLOCK", 47)  # blocks that cut 'é' (2 bytes) somewhere
    facts = md.check_file(path)
    assert facts.size == path.stat().st_size
    import hashlib

    assert facts.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_summary_line_counts_every_row_dropped_filled_or_excluded(tmp_path, capsys):
    """One line on screen with each count and reason, the same numbers as the data card."""
    from lightning_implicit.datamodules.volatility import VolatilityDataModule

    b = bars(extended=True)  # 4 sessions, 60 extended-hours minutes each
    b = pd.concat([b, b.iloc[10:13]]).sort_index(kind="stable")  # 3 exact duplicates
    session2 = np.flatnonzero(b.index.normalize() == pd.Timestamp("2026-11-17", tz="America/New_York"))
    regular = [i for i in session2 if b.index[i].hour in (9, 10, 11)]
    b.iloc[regular[5], 4] = 0.0  # one zero-volume minute: a gap of 1, forward-filled
    b.iloc[regular[40], :4] *= 1000.0  # one isolated bad tick: dropped, then a gap of 1, forward-filled
    gap = regular[90:95]  # five minutes missing: not filled, their windows left out
    b = b.drop(b.index[gap])
    path = tmp_path / "amc.csv"
    t = b.copy()
    t.index.name = "timestamp"
    t.to_csv(path)

    dm = VolatilityDataModule(data=str(path), allow_download=False, cache_dir=None, n_folds=2)
    dm.setup()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("data: ")]
    assert len(lines) == 1, err
    line = lines[0]
    changes = dm.splits.card["changes"]
    assert line == changes["summary"]
    rows = 4 * (100 + 60) + 3 - 5
    assert line.startswith(f"data: {rows} rows in amc.csv; ")
    assert changes["dropped_rows"] == {
        "rows of other tickers": 0,
        "exact duplicate rows": 3,
        "isolated bad ticks (> 5x both neighbouring medians)": 1,
    }
    assert "dropped 3 exact duplicate rows, 1 isolated bad ticks" in line
    assert "left out 240 bars outside the regular session 09:30-16:00 New York, 1 zero-volume minutes" in line
    assert changes["filled_minutes"] == 2 and "filled 2 minutes (gaps of at most 2 minutes" in line
    assert changes["excluded"] == {"minutes in gaps longer than 2 (their windows left out)": 5}
    assert "excluded 5 minutes in gaps longer than 2" in line


def test_clean_file_says_nothing_changed(tmp_path):
    path = write_fixture("polygon", tmp_path)
    card = md.load_volatility_dataset(str(path)).card
    assert (
        card["changes"]["summary"]
        == f"data: {4 * 100} rows in amc_polygon.csv; nothing dropped, filled or excluded"
    )


def test_split_error_suggests_a_split_that_works(tmp_path):
    """Too few sessions in a split: the suggested SPLIT= value is one that loads."""
    path = write_fixture("yfinance_recent", tmp_path)  # 4 sessions
    with pytest.raises(md.DataUnavailableError) as err:
        md.load_volatility_dataset(str(path), test_fraction=0.1)
    msg = str(err.value)
    assert "1 usable session(s) in the test split" in msg and "at least 2 per split" in msg
    f = float(msg.split("SPLIT=")[1].split()[0])
    d = md.load_volatility_dataset(str(path), test_fraction=f)
    assert d.card["splits"]["sessions"] == {"train": 2, "test": 2}


def test_daily_file_too_short_says_how_long_it_must_be(tmp_path):
    """A daily file of 100 days cannot hold a 70-day window in both splits: no SPLIT= is suggested (none works)."""
    days = pd.bdate_range("2025-01-02", periods=100)
    close = 10 + np.sin(np.arange(100) / 5.0)
    path = tmp_path / "daily.csv"
    pd.DataFrame(
        {
            "Date": days.strftime("%Y-%m-%d"),
            "Open": close,
            "High": close + 0.1,
            "Low": close - 0.1,
            "Close": close,
            "Volume": 1000,
        }
    ).to_csv(path, index=False)
    with pytest.raises(md.DataUnavailableError) as err:
        md.load_volatility_dataset(str(path))
    msg = str(err.value)
    assert "SPLIT=" not in msg.split(";")[-1] and "at least 140 trading days" in msg
    # 200 days and SPLIT=0.1 (20 test days): the suggested split works
    days = pd.bdate_range("2025-01-02", periods=200)
    close = 10 + np.sin(np.arange(200) / 5.0)
    pd.DataFrame(
        {
            "Date": days.strftime("%Y-%m-%d"),
            "Open": close,
            "High": close + 0.1,
            "Low": close - 0.1,
            "Close": close,
            "Volume": 1000,
        }
    ).to_csv(path, index=False)
    with pytest.raises(md.DataUnavailableError) as err:
        md.load_volatility_dataset(str(path), test_fraction=0.1)
    f = float(str(err.value).split("SPLIT=")[1].split()[0])
    d = md.load_volatility_dataset(str(path), test_fraction=f)
    assert d.card["n_windows"]["train"] > 0 and d.card["n_windows"]["test"] > 0


def test_fixed_offset_file_whose_instants_fit_the_session_is_read_and_said(tmp_path):
    """A vendor writing -05:00 all year with the clock shifted to match (08:30-05:00 = 09:30 EDT): the instants
    are right, so the file loads, and the summary line says how many rows carry the other season's offset."""
    summer = bars(5, days=("2026-07-06", "2026-07-07", "2026-07-08", "2026-07-09"))
    t = summer.rename(columns=str.capitalize)
    t.index = pd.Index(
        summer.index.tz_convert("Etc/GMT+5").strftime("%Y-%m-%d %H:%M:%S-05:00"), name="Datetime"
    )
    path = tmp_path / "est_all_year.csv"
    t.to_csv(path)
    d = md.load_volatility_dataset(str(path))
    assert d.card["file"]["offsets_other_season"] == 4 * 100
    assert "400 rows carry New York's UTC offset of the other season" in d.card["changes"]["summary"]
    assert d.card["n_windows"] == {"train": 2 * WINDOWS_PER_SESSION, "test": 2 * WINDOWS_PER_SESSION}


@pytest.mark.parametrize("bad", ["2/30/2026 9:30", "11/16/2026 25:00", "11/16/2026 9:61"])
def test_impossible_slash_dates_and_clock_times_are_unparseable(bad, tmp_path):
    """Slash dates are assembled from integer fields: an impossible day or clock time is named, never rolled over."""
    b = bars(days=DAYS_SLASH)
    stamps = [f"{t.month}/{t.day}/{t.year} {t.hour}:{t.minute:02d}" for t in b.index]
    stamps[7] = bad
    path = tmp_path / "av.csv"
    pd.DataFrame(
        {
            "date": stamps,
            "1. open": b["open"],
            "2. high": b["high"],
            "3. low": b["low"],
            "4. close": b["close"],
            "5. volume": b["volume"],
        }
    ).to_csv(path, index=False)
    with pytest.raises(
        md.DataValidationError, match=rf"unparseable timestamps: 1 row\(s\); first: row 7: '{bad}'"
    ):
        md.load_minute_file(path)


def test_options_object_and_keywords_load_the_same_and_bad_values_are_named(tmp_path):
    path = str(write_fixture("polygon", tmp_path))
    a = md.load_volatility_dataset(md.MarketOptions(data=path, test_fraction=0.5, stride=2))
    b = md.load_volatility_dataset(path, test_fraction=0.5, stride=2)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert a.card["splits"] == b.card["splits"] and a.card["stride"] == 2
    for bad, field in (
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"stride": 0}, "stride"),
        ({"interval": "5m"}, "interval"),
        ({"train_range": ("2020-01-01",)}, "train_range"),
    ):
        with pytest.raises(ValueError, match=field):
            md.MarketOptions(data=path, **bad)
    with pytest.raises(TypeError, match="unexpected keyword"):
        md.load_volatility_dataset(path, tickr="AMC")
    with pytest.raises(TypeError, match="not both"):
        md.load_volatility_dataset(md.MarketOptions(data=path), ticker="GME")


def test_the_fix_named_for_fixed_offsets_works(tmp_path):
    """The error's fix (drop the offsets, DATA_TZ=America/New_York) loads the file with every bar in session."""
    path = write_bad("summer offsets -05:00", tmp_path)
    with pytest.raises(md.DataValidationError, match="DATA_TZ=America/New_York"):
        md.load_volatility_dataset(str(path))
    fixed = tmp_path / "fixed.csv"
    fixed.write_text(path.read_text().replace("-05:00,", ","))
    d = md.load_volatility_dataset(str(fixed), assume_tz="America/New_York")
    assert d.card["bars"]["bars_outside_regular_session"] == 0
    assert d.card["n_windows"] == {"train": 2 * WINDOWS_PER_SESSION, "test": 2 * WINDOWS_PER_SESSION}


def test_vectorised_neighbour_medians_match_pandas_rolling():
    """The bad-tick filter's medians of the 5 closes before each minute (same session, NaN skipped) equal pandas'
    groupby-rolling median, the loop they replace."""
    from lightning_implicit.datamodules.market.tidy import _rolling_median_before

    rng = np.random.default_rng(3)
    close = rng.normal(20.0, 1.0, 400)
    close[rng.choice(400, 40, replace=False)] = np.nan
    day = np.sort(rng.integers(0, 9, 400))
    got = _rolling_median_before(close, day, 5)
    s = pd.Series(close)
    expected = s.groupby(day).transform(lambda x: x.rolling(5, min_periods=1).median().shift(1)).to_numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12, equal_nan=True)
