"""Tests for lightning_implicit.datamodules.market (AMC volatility data layer).

Fixture files are generated here in tmp_path.  Expected window counts are worked out by hand from
each construction: a session of L consecutive usable minutes gives L - (60 + 10) + 1 windows.
No test touches the network: yfinance.Ticker is replaced by a guard for every test.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yfinance
from lightning_implicit.datamodules import market as md
from yfinance.exceptions import YFRateLimitError

NY = "America/New_York"
IN, H = 60, 10
FULL = 390 - (IN + H) + 1  # 321 windows in a full 09:30-16:00 session


# --------------------------------------------------------------------------------------------------
# network guard
# --------------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    calls: list = []

    class GuardTicker:
        def __init__(self, *a, **k):
            calls.append(("Ticker", a, k))
            raise RuntimeError("network access in a test")

    def guard_download(*a, **k):
        calls.append(("download", a, k))
        raise RuntimeError("network access in a test")

    monkeypatch.setattr(yfinance, "Ticker", GuardTicker)
    monkeypatch.setattr(yfinance, "download", guard_download)
    yield calls
    assert calls == [], f"unexpected yfinance use: {calls}"


# --------------------------------------------------------------------------------------------------
# fixture construction
# --------------------------------------------------------------------------------------------------
def level(s_no: int) -> float:
    return 100.0 + 10.0 * s_no


def session_bars(
    day: str, s_no: int, *, end: str = "16:00", missing=(), zero_vol=(), extended=False, extended_only=False
) -> pd.DataFrame:
    """Canonical bars whose price encodes (session, minute): p = 100 + 10 * s_no + 0.01 * k."""
    t0 = pd.Timestamp(f"{day} 09:30", tz=NY)
    n = int((pd.Timestamp(f"{day} {end}", tz=NY) - t0) / pd.Timedelta("1min"))
    k = np.arange(n)
    p = level(s_no) + 0.01 * k
    vol = np.full(n, 1000.0)
    vol[list(zero_vol)] = 0.0
    df = pd.DataFrame(
        {"open": p, "high": p + 0.005, "low": p - 0.005, "close": p, "volume": vol, "vwap": p},
        index=t0 + pd.to_timedelta(k, unit="min"),
    )
    df = df[~np.isin(k, list(missing))]
    parts = []
    if extended or extended_only:
        pre = pd.date_range(f"{day} 08:00", periods=60 if extended_only else 90, freq="1min", tz=NY)
        parts.append(
            pd.DataFrame(
                {
                    "open": level(s_no),
                    "high": level(s_no) + 0.005,
                    "low": level(s_no) - 0.005,
                    "close": level(s_no),
                    "volume": 100.0,
                    "vwap": level(s_no),
                },
                index=pre,
            )
        )
    if extended_only:
        return parts[0]
    parts.append(df)
    if extended:
        post = pd.date_range(f"{day} 16:00", periods=30, freq="1min", tz=NY)
        last = p[-1]
        parts.append(
            pd.DataFrame(
                {
                    "open": last,
                    "high": last + 0.005,
                    "low": last - 0.005,
                    "close": last,
                    "volume": 100.0,
                    "vwap": last,
                },
                index=post,
            )
        )
    return pd.concat(parts)


# (date, kwargs, expected windows computed by hand, filled minutes {grid position: source minute})
GOOD_SESSIONS = [
    ("2020-12-24", {"end": "13:00"}, 210 - 70 + 1, {}),  # early close: 210 minutes
    ("2020-12-28", {}, FULL, {}),  # regular session
    ("2020-12-29", {"missing": (50, 51)}, FULL, {50: 49, 51: 49}),  # 2-minute gap: filled
    ("2020-12-30", {"missing": range(100, 105)}, (100 - 69) + (285 - 69), {}),  # 5-minute gap: 31 + 216
    ("2021-01-04", {"zero_vol": (200,), "extended": True}, FULL, {200: 199}),  # zero-volume minute filled
    ("2021-01-05", {"zero_vol": (300, 301, 302)}, (300 - 69) + (87 - 69), {}),  # 3 zero-volume: 231 + 18
    ("2021-01-06", {"extended_only": True}, 0, {}),  # pre-market only: dropped
    ("2021-01-07", {"end": "10:19"}, 0, {}),  # 49 minutes: dropped
]
TRAIN_RANGE = ("2020-12-01", "2020-12-31")
TEST_RANGE = ("2021-01-01", "2021-01-31")
EXPECTED_TRAIN = 141 + 321 + 321 + 247
EXPECTED_TEST = 321 + 249


def good_frame() -> pd.DataFrame:
    return pd.concat([session_bars(d, i, **kw) for i, (d, kw, _, _) in enumerate(GOOD_SESSIONS)])


def write_layout(df: pd.DataFrame, path, layout: str, *, with_vwap: bool = True):
    """Write canonical bars in a vendor layout."""
    if layout == "yfinance_csv" or layout == "yfinance_parquet":
        out = pd.DataFrame(
            {
                "Open": df["open"],
                "High": df["high"],
                "Low": df["low"],
                "Close": df["close"],
                "Volume": df["volume"],
                "Dividends": 0.0,
                "Stock Splits": 0.0,
            },
            index=df.index.rename("Datetime"),
        )
        if layout == "yfinance_csv":
            out.to_csv(path)
        else:
            out.to_parquet(path)
    elif layout == "alphavantage":
        out = pd.DataFrame(
            {
                "timestamp": df.index.tz_localize(None).strftime("%Y-%m-%d %H:%M:%S"),
                "1. open": df["open"].to_numpy(),
                "2. high": df["high"].to_numpy(),
                "3. low": df["low"].to_numpy(),
                "4. close": df["close"].to_numpy(),
                "5. volume": df["volume"].to_numpy(),
            }
        )
        out.to_csv(path, index=False)
    elif layout == "polygon":
        ms = (df.index.tz_convert("UTC") - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta("1ms")
        out = pd.DataFrame(
            {
                "t": np.asarray(ms, dtype=np.int64),
                "o": df["open"].to_numpy(),
                "h": df["high"].to_numpy(),
                "l": df["low"].to_numpy(),
                "c": df["close"].to_numpy(),
                "v": df["volume"].to_numpy(),
                "vw": df["vwap"].to_numpy(),
            }
        )
        out.to_parquet(path, index=False)
    elif layout == "generic":
        out = df[["open", "high", "low", "close", "volume"] + (["vwap"] if with_vwap else [])]
        out.rename_axis("timestamp").to_csv(path)
    else:  # pragma: no cover
        raise ValueError(layout)
    return path


LAYOUTS = {
    "yfinance_csv": ("bars.csv", {}, "yfinance"),
    "yfinance_parquet": ("bars.parquet", {}, "yfinance"),
    "alphavantage": ("bars.csv", {"assume_tz": NY}, "alphavantage"),
    "polygon": ("bars.parquet", {}, "polygon"),
    "generic": ("bars.csv", {}, "generic"),
}


def decode(prices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s_no = np.floor((prices - 100.0) / 10.0 + 1e-9).astype(int)
    k = np.rint((prices - 100.0 - 10.0 * s_no) / 0.01).astype(int)
    return s_no, k


# --------------------------------------------------------------------------------------------------
# good files
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_good_file_window_counts_and_no_crossing(tmp_path, layout):
    name, kwargs, layout_name = LAYOUTS[layout]
    path = write_layout(good_frame(), tmp_path / name, layout)
    df, info = md.load_minute_file(path, **kwargs)
    assert info["layout"] == layout_name
    assert str(df.index.tz) == NY and list(df.columns[:5]) == ["open", "high", "low", "close", "volume"]

    ds = md.load_volatility_dataset(str(path), train_range=TRAIN_RANGE, test_range=TEST_RANGE, **kwargs)
    assert len(ds.y_train) == EXPECTED_TRAIN and ds.X_train.shape == (EXPECTED_TRAIN, IN)
    assert len(ds.y_test) == EXPECTED_TEST and ds.X_test.shape == (EXPECTED_TEST, IN)
    assert ds.X_train.dtype == np.float64 and ds.y_train.dtype == np.float64

    # per-session counts and no window crossing a session or the cutoff
    days = [d for d, *_ in GOOD_SESSIONS]
    for X, t in ((ds.X_train, ds.t_train), (ds.X_test, ds.t_test)):
        s_no, k = decode(X)
        assert (s_no == s_no[:, :1]).all(), "a window mixes two sessions"
        t_day = np.array([str(d) for d in t.tz_convert(NY).date])
        assert (t_day == np.array(days)[s_no[:, 0]]).all()
        # forecast origin = first target minute = last input minute + 1 (through filled minutes)
        t_min = np.asarray((t.tz_convert(NY) - t.tz_convert(NY).normalize()) / pd.Timedelta("1min")) - 570
        filled = [GOOD_SESSIONS[s][3] for s in s_no[:, 0]]
        expected_last = np.array([f.get(int(m) - 1, int(m) - 1) for f, m in zip(filled, t_min, strict=True)])
        assert (k[:, -1] == expected_last).all()
    for i, (_, _, expected, _) in enumerate(GOOD_SESSIONS):
        got = int((decode(ds.X_train)[0][:, 0] == i).sum() + (decode(ds.X_test)[0][:, 0] == i).sum())
        assert got == expected, (i, got, expected)
    assert ds.t_train.tz_convert(NY).date.max() <= pd.Timestamp("2020-12-31").date()
    assert ds.t_test.tz_convert(NY).date.min() >= pd.Timestamp("2021-01-01").date()

    card = ds.card
    json.dumps(card)  # serialisable
    assert card["variant"] == "minute" and card["synthetic"] is False and card["source"] == "file"
    assert card["n_windows"] == {"train": EXPECTED_TRAIN, "test": EXPECTED_TEST}
    assert card["variance_definition"] == "population (ddof=0)"
    assert len(card["file_sha256"]) == 64
    assert card["sessions"]["in_data"] == 8 and card["sessions"]["kept"] == 6
    assert card["sessions"]["dropped_reasons"] == {
        "only extended-hours bars": 1,
        "shorter than one window (70 minutes)": 1,
    }
    assert card["bars"]["bars_outside_regular_session"] == 90 + 30 + 60
    assert card["bars"]["zero_volume_minutes"] == 4
    assert card["bars"]["forward_filled_minutes"] == 3 and card["bars"]["unfilled_gap_minutes"] == 8
    has_vwap = layout in ("polygon", "generic")
    assert card["vwap_method"] == ("vwap column" if has_vwap else "typical price (H+L+C)/3")


def test_test_fraction_split_by_session(tmp_path):
    path = write_layout(good_frame(), tmp_path / "bars.csv", "generic")
    ds = md.load_volatility_dataset(str(path), test_fraction=0.5)
    # 6 usable sessions -> last 3 (2020-12-30, 2021-01-04, 2021-01-05) are test
    assert len(ds.y_train) == 141 + 321 + 321
    assert len(ds.y_test) == 247 + 321 + 249
    assert ds.card["splits"]["test"] == ["2020-12-30", "2021-01-05"]


def random_session(day: str, seed: int = 0, n: int = 390) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 20.0 + np.cumsum(rng.normal(0, 0.05, n))
    high = close + rng.uniform(0.0, 0.1, n)
    low = close - rng.uniform(0.0, 0.1, n)
    vwap = low + (high - low) * rng.uniform(0, 1, n)  # inside the bar, different from (H+L+C)/3
    idx = pd.date_range(f"{day} 09:30", periods=n, freq="1min", tz=NY)
    return pd.DataFrame(
        {
            "open": close,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.integers(1, 5000, n).astype(float),
            "vwap": vwap,
        },
        index=idx,
    )


def windows_from_file(path, **kw):
    df, _ = md.load_minute_file(path, **kw)
    md.validate(df)
    vwap, method = md.minute_vwap(df)
    sessions, _ = md.regular_session_vwap(df, vwap=vwap)
    return (*md.make_windows(sessions, IN, H), method)


def test_targets_are_population_variance_of_next_10_typical_prices(tmp_path):
    bars = random_session("2021-03-01")
    path = write_layout(bars, tmp_path / "yf.csv", "yfinance_csv")
    X, y, t, method = windows_from_file(path)
    typical = (bars["high"].to_numpy() + bars["low"].to_numpy() + bars["close"].to_numpy()) / 3.0
    assert method == "typical price (H+L+C)/3"
    assert X.shape == (FULL, IN) and y.shape == (FULL,) and len(t) == FULL
    expected = np.array([np.var(typical[j + IN : j + IN + H]) for j in range(FULL)])
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=0)
    np.testing.assert_allclose(X[17], typical[17 : 17 + IN], rtol=1e-12)
    assert not np.allclose(y, [np.var(typical[j + IN : j + IN + H], ddof=1) for j in range(FULL)])
    assert t[0] == pd.Timestamp("2021-03-01 10:30", tz=NY)


def test_vwap_column_preferred_over_typical_price(tmp_path):
    bars = random_session("2021-03-01", seed=3)
    path = write_layout(bars, tmp_path / "generic.csv", "generic")
    X, y, _, method = windows_from_file(path)
    v = bars["vwap"].to_numpy()
    typical = (bars["high"] + bars["low"] + bars["close"]).to_numpy() / 3.0
    assert method == "vwap column"
    np.testing.assert_allclose(y, [np.var(v[j + IN : j + IN + H]) for j in range(FULL)], rtol=1e-10)
    np.testing.assert_allclose(X[0], v[:IN], rtol=1e-12)
    assert not np.allclose(y, [np.var(typical[j + IN : j + IN + H]) for j in range(FULL)])
    s, m = md.minute_vwap(bars.drop(columns="vwap"))
    assert m == "typical price (H+L+C)/3"
    np.testing.assert_allclose(s.to_numpy(), typical)


def test_stride_and_long_gap_by_hand():
    bars = session_bars("2021-03-01", 0, missing=range(100, 110))  # 10-minute gap
    sessions, report = md.regular_session_vwap(bars, max_ffill=2)
    assert report["unfilled_gap_minutes"] == 10
    X, y, t = md.make_windows(sessions, IN, H, stride=5)
    # valid starts: 0..30 before the gap (step 5 -> 7), and 110..320 after (110, 115, ..., 320 -> 43)
    assert len(y) == 7 + 43
    X, y, t = md.make_windows(sessions, IN, H)
    assert len(y) == 31 + (280 - 69)
    sessions5, _ = md.regular_session_vwap(bars, max_ffill=10)  # gap now short enough to fill
    assert len(md.make_windows(sessions5, IN, H)[1]) == FULL


def test_split_by_date_masks_and_overlap():
    t = pd.DatetimeIndex(["2020-12-31 15:50", "2021-01-04 09:40", "2022-01-03 10:00"], tz=NY)
    train, test = md.split_by_date(t, "2015-02-01", "2020-12-31", "2021-01-01", "2021-12-31")
    assert train.tolist() == [True, False, False] and test.tolist() == [False, True, False]
    with pytest.raises(ValueError, match="train_end < test_start"):
        md.split_by_date(t, "2015-02-01", "2021-01-04", "2021-01-01", "2021-12-31")


# --------------------------------------------------------------------------------------------------
# malformed files
# --------------------------------------------------------------------------------------------------
def two_sessions() -> pd.DataFrame:
    return pd.concat([session_bars("2021-03-01", 0), session_bars("2021-03-02", 1)])


def four_sessions() -> pd.DataFrame:
    """The fewest sessions the task accepts: two per split (md.MIN_SESSIONS_PER_SPLIT)."""
    return pd.concat([session_bars(f"2021-03-0{i + 1}", i) for i in range(4)])


def test_nan_rows_rejected(tmp_path):
    df = two_sessions()
    df.iloc[5, df.columns.get_loc("close")] = np.nan
    df.iloc[7, df.columns.get_loc("high")] = np.nan
    path = write_layout(df, tmp_path / "nan.csv", "yfinance_csv")
    bars, _ = md.load_minute_file(path)
    with pytest.raises(
        md.DataValidationError,
        match=r"NaN/missing prices or volume.*: 2 row\(s\); first: row 5 @ "
        r"2021-03-01 09:35:00-05:00",
    ):
        md.validate(bars)


def test_exact_duplicates_dropped_conflicting_duplicates_rejected(tmp_path):
    df = four_sessions()
    path = write_layout(
        pd.concat([df.iloc[:11], df.iloc[10:11], df.iloc[11:]]), tmp_path / "dup.csv", "yfinance_csv"
    )
    d = md.load_volatility_dataset(str(path), test_fraction=0.5)
    assert d.card["file"]["exact_duplicates_dropped"] == 1
    other = df.iloc[10:11].copy()
    other["close"] += 1.0
    path = write_layout(
        pd.concat([df.iloc[:11], other, df.iloc[11:]]), tmp_path / "conflict.csv", "yfinance_csv"
    )
    with pytest.raises(
        md.DataValidationError,
        match=r"(?s)conflicting duplicate timestamps.*1 row\(s\).*"
        r"2021-03-01 09:40:00-05:00.*TICKER=",
    ):
        md.load_volatility_dataset(str(path))


def test_unsorted_rows_are_sorted_and_said_but_validate_still_checks_order(tmp_path):
    df = two_sessions()
    order = np.arange(len(df))
    order[[20, 21]] = [21, 20]
    path = write_layout(df.iloc[order], tmp_path / "unsorted.csv", "generic")
    bars, info = md.load_minute_file(path)
    assert bars.index.is_monotonic_increasing and info["row_order"].startswith("unordered")
    newest_first, info = md.load_minute_file(write_layout(df.iloc[::-1], tmp_path / "rev.csv", "generic"))
    assert info["row_order"].startswith("newest first") and newest_first.equals(bars)
    raw, _ = md.normalize_bars(pd.read_csv(path))
    with pytest.raises(
        md.DataValidationError,
        match=r"rows not sorted by time: 1 row\(s\); first: row 21 @ "
        r"2021-03-01 09:50:00-05:00 is earlier than row 20",
    ):
        md.validate(raw)


def test_split_like_jump_rejected_unless_basis_declared(tmp_path):
    df = two_sessions()
    second = df.index >= pd.Timestamp("2021-03-02", tz=NY)
    df.loc[second, ["open", "high", "low", "close", "vwap"]] *= 10.0
    path = write_layout(df, tmp_path / "split.csv", "yfinance_csv")
    bars, _ = md.load_minute_file(path)
    with pytest.raises(
        md.DataValidationError,
        match=r"(?s)split-like overnight jumps.*1 row\(s\); first: 2021-03-02 "
        r"open 1100 vs 2021-03-01 close 103\.89 .*near x10",
    ):
        md.validate(bars)
    with pytest.raises(md.DataValidationError, match="price_basis="):
        md.validate(bars)
    report = md.validate(bars, price_basis="as-traded")
    assert report["split_like_jumps"][0]["near"] == "x10"
    # halving is caught too; an ordinary 6 % gap is not
    df2 = two_sessions()
    df2.loc[df2.index >= pd.Timestamp("2021-03-02", tz=NY), ["open", "high", "low", "close", "vwap"]] *= 0.5
    with pytest.raises(md.DataValidationError, match="near x0.5"):
        md.validate(df2)
    assert md.validate(two_sessions())["split_like_jumps"] == []


def test_naive_timestamps_take_the_vendor_zone_or_need_data_tz(tmp_path):
    path = write_layout(two_sessions(), tmp_path / "av.csv", "alphavantage")
    df, info = md.load_minute_file(path)  # Alpha Vantage documents US/Eastern
    assert (
        df.index[0] == pd.Timestamp("2021-03-01 09:30", tz=NY) and "alphavantage default" in info["tz_source"]
    )
    df, info = md.load_minute_file(path, assume_tz="UTC")
    assert df.index[0] == pd.Timestamp("2021-03-01 09:30", tz="UTC") and "DATA_TZ" in info["tz_source"]
    generic = tmp_path / "naive.csv"
    generic.write_text(
        path.read_text().replace("1. open,2. high,3. low,4. close,5. volume", "open,high,low,close,volume")
    )
    with pytest.raises(
        md.DataValidationError,
        match=r"(?s)naive timestamps .*: 780 row\(s\); first: row 0: "
        r"'2021-03-01 09:30:00'.*DATA_TZ=",
    ):
        md.load_minute_file(generic)


def test_unparseable_timestamps_and_bad_values(tmp_path):
    path = write_layout(two_sessions(), tmp_path / "bad.csv", "generic")
    lines = path.read_text().splitlines()
    lines[4] = "not a time" + lines[4][lines[4].index(",") :]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        md.DataValidationError, match=r"unparseable timestamps: 1 row\(s\); first: row 3: 'not a time'"
    ):
        md.load_minute_file(path)

    df = two_sessions()
    df.iloc[3, df.columns.get_loc("low")] = -1.0
    df.iloc[4, df.columns.get_loc("high")] = df.iloc[4]["low"] - 1.0
    df.iloc[6, df.columns.get_loc("volume")] = -5.0
    with pytest.raises(md.DataValidationError) as exc:
        md.validate(df)
    msg = str(exc.value)
    assert "non-positive prices: 1 row(s); first: row 3" in msg
    assert "high < low: 1 row(s); first: row 4" in msg
    assert "negative volume: 1 row(s); first: row 6" in msg
    assert {p["problem"] for p in exc.value.problems} == {
        "non-positive prices",
        "high < low",
        "negative volume",
    }


def test_unknown_layout_lists_accepted_layouts(tmp_path):
    path = tmp_path / "weird.csv"
    pd.DataFrame({"when": ["2021-03-01 09:30:00-05:00"], "price": [1.0]}).to_csv(path, index=False)
    with pytest.raises(md.DataValidationError) as exc:
        md.load_minute_file(path)
    msg = str(exc.value)
    assert "unknown file layout" in msg and "'when'" in msg
    for header in (
        "Datetime,Open,High,Low,Close,Volume",
        "timestamp,1. open,2. high,3. low,4. close,5. volume",
        "t,o,h,l,c,v,vw",
        "timestamp,open,high,low,close,volume[,vwap]",
    ):
        assert header in msg


# --------------------------------------------------------------------------------------------------
# sources: yfinance (monkeypatched), cache, synthetic, nothing
# --------------------------------------------------------------------------------------------------
def recorded_daily(start="2020-06-01", end="2021-06-30") -> pd.DataFrame:
    """A frame shaped like yf.Ticker('AMC').history(interval='1d', auto_adjust=False)."""
    days = pd.bdate_range(start, end)
    p = 50.0 + 0.01 * np.arange(len(days))
    idx = pd.DatetimeIndex(days).tz_localize(NY).rename("Date")
    return pd.DataFrame(
        {
            "Open": p,
            "High": p + 0.005,
            "Low": p - 0.005,
            "Close": p,
            "Adj Close": p,
            "Volume": 1e6,
            "Dividends": 0.0,
            "Stock Splits": 0.0,
        },
        index=idx,
    )


def fake_ticker(monkeypatch, behaviour):
    calls: list[dict] = []

    class FakeTicker:
        def __init__(self, ticker, *a, **k):
            self.ticker = ticker

        def history(self, **kwargs):
            calls.append(kwargs)
            return behaviour(**kwargs)

    monkeypatch.setattr(yfinance, "Ticker", FakeTicker)
    return calls


def window_range(frame: pd.DataFrame, start, end) -> pd.DataFrame:
    s, e = pd.Timestamp(start), pd.Timestamp(end)
    s = s.tz_localize(NY) if s.tzinfo is None else s
    e = e.tz_localize(NY) if e.tzinfo is None else e
    return frame[(frame.index >= s) & (frame.index < e)]


def test_yfinance_daily_variant(monkeypatch, tmp_path):
    recorded = recorded_daily()
    calls = fake_ticker(monkeypatch, lambda start, end, **k: window_range(recorded, start, end))
    ds = md.load_volatility_dataset(
        None,
        cache_dir=tmp_path,
        allow_download=True,
        interval="1d",
        train_range=("2020-06-01", "2020-12-31"),
        test_range=("2021-01-01", "2021-06-30"),
    )
    assert len(calls) == 1
    assert calls[0]["interval"] == "1d" and calls[0]["auto_adjust"] is False
    assert (calls[0]["start"], calls[0]["end"]) == ("2020-06-01", "2021-07-01")
    n_train_days = len(pd.bdate_range("2020-06-01", "2020-12-31"))
    n_test_days = len(pd.bdate_range("2021-01-01", "2021-06-30"))
    assert len(ds.y_train) == n_train_days - (IN + H) + 1
    assert len(ds.y_test) == n_test_days - (IN + H) + 1
    # windows never span the cutoff: decode day indices from the prices
    first_test = n_train_days
    idx_train = np.rint((ds.X_train - 50.0) / 0.01)
    idx_test = np.rint((ds.X_test - 50.0) / 0.01)
    assert idx_train.max() + H <= first_test - 1 and idx_test.min() >= first_test
    day = np.rint((ds.X_train[5] - 50.0) / 0.01).astype(int)
    p = 50.0 + 0.01 * np.arange(n_train_days)
    assert ds.y_train[5] == pytest.approx(np.var(p[day[-1] + 1 : day[-1] + 1 + H]), rel=1e-9)
    card = ds.card
    assert card["variant"] == "daily" and card["source"] == "yfinance" and card["synthetic"] is False
    assert "split-adjusted by Yahoo" in card["price_basis"]
    assert card["vwap_method"] == "daily typical price (H+L+C)/3"
    assert (tmp_path / "AMC_1d.parquet").is_file() and len(card["file_sha256"]) == 64

    # the cache is used next time, without any download
    monkeypatch.setattr(yfinance, "Ticker", lambda *a, **k: pytest.fail("downloaded despite cache"))
    src = md.resolve_source(None, tmp_path, allow_download=True, interval="1d")
    assert src.kind == "cache" and len(src.frame) == len(recorded)


def recorded_minutes(days) -> pd.DataFrame:
    """Like yf.Ticker('AMC').history(interval='1m'): 'Datetime' index in exchange tz, regular hours."""
    frames = []
    for i, d in enumerate(days):
        b = session_bars(str(d.date()), i % 3)
        frames.append(
            pd.DataFrame(
                {
                    "Open": b["open"],
                    "High": b["high"],
                    "Low": b["low"],
                    "Close": b["close"],
                    "Adj Close": b["close"],
                    "Volume": b["volume"],
                    "Dividends": 0.0,
                    "Stock Splits": 0.0,
                },
                index=b.index,
            )
        )
    out = pd.concat(frames)
    out.index.name = "Datetime"
    return out


def test_yfinance_minute_chunks_accumulate_in_cache(monkeypatch, tmp_path):
    days = pd.bdate_range("2024-04-15", "2024-05-17")
    recorded = recorded_minutes(days)
    calls = fake_ticker(monkeypatch, lambda start, end, **k: window_range(recorded, start, end))
    now1 = pd.Timestamp("2024-05-10 22:00", tz="UTC")
    src = md.resolve_source(None, tmp_path, allow_download=True, interval="1m", now=now1)
    assert src.kind == "yfinance" and src.interval == "1m"
    spans = [(pd.Timestamp(c["end"]) - pd.Timestamp(c["start"])) for c in calls]
    assert all(s <= pd.Timedelta(days=7) for s in spans)
    assert pd.Timestamp(calls[0]["start"]) >= now1 - pd.Timedelta(days=30)
    assert all(c["interval"] == "1m" for c in calls)
    first_len = len(src.frame)
    expected_first = len(window_range(recorded, now1 - pd.Timedelta(days=29), now1))
    assert first_len == expected_first
    cache = tmp_path / "AMC_1m.parquet"
    assert cache.is_file()

    # a week later: history accumulates (nothing before the new 29-day window is lost)
    calls.clear()
    now2 = now1 + pd.Timedelta(days=7)
    src2 = md.resolve_source(None, tmp_path, allow_download=True, interval="1m", now=now2)
    assert pd.Timestamp(calls[0]["start"]) >= pd.Timestamp("2024-05-10", tz=NY)  # restarts at last cached day
    assert len(src2.frame) == len(window_range(recorded, now1 - pd.Timedelta(days=29), now2))
    assert len(src2.frame) > first_len
    assert src2.frame.index.is_unique and src2.frame.index.is_monotonic_increasing
    cached, _ = md.load_minute_file(cache)
    assert len(cached) == len(src2.frame)

    # a basis change between runs (e.g. a reverse split) is caught on the overlap
    tenfold = recorded.copy()
    tenfold[["Open", "High", "Low", "Close", "Adj Close"]] *= 10
    fake_ticker(monkeypatch, lambda start, end, **k: window_range(tenfold, start, end))
    with pytest.raises(md.DataValidationError, match="disagree on the price basis"):
        md.resolve_source(None, tmp_path, allow_download=True, interval="1m", now=now2 + pd.Timedelta(days=1))

    # download failure with a cache: the cache is used, with a warning
    def boom(**k):
        raise OSError("Could not resolve host: query2.finance.yahoo.com")

    fake_ticker(monkeypatch, boom)
    with pytest.warns(UserWarning, match="using the cache"):
        src3 = md.resolve_source(None, tmp_path, allow_download=True, interval="1m", now=now2)
    assert src3.kind == "cache" and "download_error" in src3.info


def test_yfinance_empty_frame_is_a_clear_error(monkeypatch, tmp_path):
    fake_ticker(monkeypatch, lambda **k: pd.DataFrame())
    with pytest.raises(md.DataUnavailableError, match="yfinance returned no rows for AMC interval=1d"):
        md.resolve_source(None, tmp_path, allow_download=True, interval="1d")
    with pytest.raises(md.DataUnavailableError, match="returned no 1-minute rows"):
        md.resolve_source(
            None, tmp_path, allow_download=True, interval="1m", now=pd.Timestamp("2024-05-10", tz="UTC")
        )


def test_yfinance_rate_limit_bounded_backoff(monkeypatch, tmp_path):
    def limited(**k):
        raise YFRateLimitError()

    calls = fake_ticker(monkeypatch, limited)
    slept: list[float] = []
    with pytest.raises(md.DataUnavailableError, match=r"(?s)rate-limited.*after 3 tries") as exc:
        md.resolve_source(None, tmp_path, allow_download=True, interval="1d", sleep=slept.append)
    assert len(calls) == 3 and slept == [1.0, 2.0]
    assert "DATA=" in str(exc.value)
    # the total wait is capped
    calls.clear()
    slept.clear()
    with pytest.raises(md.DataUnavailableError, match="rate-limited"):
        md.resolve_source(
            None,
            tmp_path,
            allow_download=True,
            interval="1d",
            sleep=slept.append,
            max_tries=10,
            max_total_wait_s=5.0,
        )
    assert sum(slept) <= 5.0 and slept == [1.0, 2.0] and len(calls) == 3


def test_yfinance_oserror_fails_fast_with_cause(monkeypatch, tmp_path):
    def dns(**k):
        raise OSError("Could not resolve host: query2.finance.yahoo.com")

    calls = fake_ticker(monkeypatch, dns)
    slept: list[float] = []
    with pytest.raises(md.DataUnavailableError) as exc:
        md.load_volatility_dataset(None, cache_dir=tmp_path, allow_download=True, sleep=slept.append)
    msg = str(exc.value)
    assert "network error" in msg and "OSError: Could not resolve host" in msg
    assert "DATA=path/to/amc_1min.csv" in msg and "DATA=synthetic" in msg
    assert len(calls) == 1 and slept == []


def test_no_data_no_network_names_layouts_and_hint(tmp_path):
    with pytest.raises(md.DataUnavailableError) as exc:
        md.load_volatility_dataset(None, cache_dir=tmp_path, allow_download=False)
    msg = str(exc.value)
    for header in (
        "Datetime,Open,High,Low,Close,Volume[,Dividends,Stock Splits]",
        "timestamp,1. open,2. high,3. low,4. close,5. volume",
        "t,o,h,l,c,v,vw",
        "timestamp,open,high,low,close,volume[,vwap]",
    ):
        assert header in msg
    assert "make sweep TASK=volatility DATA=path/to/amc_1min.csv" in msg and "DATA=synthetic" in msg
    assert "AMC_1d.parquet" in msg
    with pytest.raises(md.DataUnavailableError, match="does not exist"):
        md.resolve_source(str(tmp_path / "missing.csv"))


def test_file_outside_the_paper_ranges_is_split_chronologically_and_said(tmp_path):
    path = write_layout(four_sessions(), tmp_path / "bars.csv", "generic")
    d = md.load_volatility_dataset(str(path))
    assert (
        d.card["splits"]["rule"].startswith("chronological, automatic")
        and "SPLIT=" in d.card["splits"]["rule"]
    )
    assert d.card["splits"]["sessions"] == {"train": 2, "test": 2}
    assert d.t_train.max() < d.t_test.min()
    # explicit ranges that miss the file remain an error that names a fix that works
    with pytest.raises(
        md.DataUnavailableError, match=r"0 usable session\(s\) in the train split.*SPLIT=0.5 "
    ):
        md.load_volatility_dataset(str(path), train_range=("2015-01-01", "2015-12-31"), explicit_ranges=True)
    assert (
        md.load_volatility_dataset(str(path), test_fraction=0.5).card["splits"]["sessions"]
        == d.card["splits"]["sessions"]
    )


def test_synthetic_is_labelled_and_seeded():
    kw = {"synthetic_range": ("2020-12-21", "2021-01-08"), "seed": 7}
    a = md.load_volatility_dataset("synthetic", **kw)
    b = md.load_volatility_dataset("synthetic", **kw)
    card = a.card
    assert card["synthetic"] is True and card["source"] == "synthetic" and card["ticker"] == "synthetic"
    assert "SYNTHETIC" in card["warning"] and card["price_basis"] == "synthetic"
    n_train = len(pd.bdate_range("2020-12-21", "2020-12-31"))
    n_test = len(pd.bdate_range("2021-01-01", "2021-01-08"))
    assert len(a.y_train) == n_train * FULL and len(a.y_test) == n_test * FULL
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert a.y_test.mean() > 10 * a.y_train.mean()  # regime change at the split date
    c = md.load_volatility_dataset("synthetic", synthetic_range=kw["synthetic_range"], seed=8)
    assert not np.array_equal(a.X_train, c.X_train)
