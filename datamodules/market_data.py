"""AMC volatility data layer: minute bars -> regular-session VWAPs -> (60 -> 10) variance windows.

The paper (section 2.2) predicts the *volatility* of AMC over the next 10 minutes, defined as the
variance of the 10 minute-VWAPs in that window (raw prices, not returns), from the 60 minute-VWAPs
before it; train 2015-02-01 .. 2020-12-31, validation 2021-01-01 .. 2021-12-31.

This module is pure pandas/numpy (no torch).  Pipeline::

    resolve_source(...)            explicit file | "synthetic" | cache dir | yfinance | DataUnavailableError
      -> load_minute_file(path)    vendor layout detection, tz-aware America/New_York index
      -> validate(df)              DataValidationError: duplicates, order, NaN, prices <= 0, high < low,
                                   negative volume, split-like overnight jumps
      -> minute_vwap(df)           vendor ``vwap`` column if present, else typical price (H+L+C)/3
      -> regular_session_vwap(df)  09:30-16:00 New York, zero-volume minutes = gaps, per-session 1-minute
                                   grid, gaps of <= max_ffill minutes forward-filled, longer gaps stay NaN
      -> make_windows(...)         X (N, 60) raw VWAPs [$], y (N,) population variance (ddof=0) of the
                                   next 10 VWAPs [$^2], t (N,) forecast origins
      -> split_by_date(t, ...)     by session date; windows never cross a session or the cutoff
    load_volatility_dataset(...)   all of the above + a JSON-serialisable data card

Conventions
-----------
* Bars are labelled by the *start* of their minute (yfinance, Polygon).  The regular session is the
  bars labelled 09:30 <= time < 16:00 New York (390 bars on a full day; early closes simply end
  earlier).  Vendors that label bars by their end lose one minute at each end.
* The forecast origin ``t`` of a window is the label of its first *target* bar, i.e. the moment the
  last input bar closes: the forecast uses bars labelled ``< t`` and predicts bars labelled in
  ``[t, t + horizon)`` minutes.
* Variance is the population variance (``ddof=0``) of raw VWAP prices, in $^2.
* Daily variant (yfinance daily bars, or a file with one bar per day): minute data for 2015-2021 is
  not obtainable through yfinance, so the daily variant windows over *consecutive trading-day*
  typical prices: ``input_len`` days -> variance of the next ``horizon`` days.  A "session" is then
  one contiguous split period (the train period or the test period), so no daily window ever spans
  the cutoff and test windows use no training-period context.  Cards say ``variant="daily"``.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import time as dtime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "ACCEPTED_LAYOUTS",
    "DATA_HINT",
    "NY_TZ",
    "PAPER_TEST_RANGE",
    "PAPER_TRAIN_RANGE",
    "VARIANCE_DEFINITION",
    "DataUnavailableError",
    "DataValidationError",
    "Source",
    "VolatilityDataset",
    "accepted_layouts_text",
    "load_minute_file",
    "load_volatility_dataset",
    "make_windows",
    "minute_vwap",
    "normalize_bars",
    "regular_session_vwap",
    "resolve_source",
    "split_by_date",
    "synthetic_minute_bars",
    "validate",
]

NY_TZ = "America/New_York"
SESSION_OPEN = dtime(9, 30)
SESSION_CLOSE = dtime(16, 0)  # exclusive: the last regular bar is labelled 15:59
PAPER_TRAIN_RANGE = ("2015-02-01", "2020-12-31")
PAPER_TEST_RANGE = ("2021-01-01", "2021-12-31")
VARIANCE_DEFINITION = "population (ddof=0)"
SPLIT_RATIOS = (10.0, 0.1, 2.0, 0.5)
SPLIT_TOLERANCE = 0.15
DATA_HINT = "make sweep TASK=volatility DATA=path/to/amc_1min.csv"
SYNTHETIC_RANGE = ("2020-10-01", "2021-03-31")
YAHOO_1M_DAYS = 29  # Yahoo serves 1-minute bars for the last ~30 days only
YAHOO_1M_CHUNK_DAYS = 7  # and at most ~8 days per request

PRICE_COLUMNS = ("open", "high", "low", "close")

#: (name, one-line header example, note) for every accepted file layout.
ACCEPTED_LAYOUTS: tuple[tuple[str, str, str], ...] = (
    ("yfinance", "Datetime,Open,High,Low,Close,Volume[,Dividends,Stock Splits]",
     "'Date' instead of 'Datetime' for daily bars; timestamps with UTC offsets"),
    ("Alpha Vantage", "timestamp,1. open,2. high,3. low,4. close,5. volume",
     "'time' instead of 'timestamp' also accepted; naive times need assume_tz"),
    ("Polygon", "t,o,h,l,c,v,vw", "'t' in epoch milliseconds (UTC) or 'timestamp'; 'vw' = VWAP"),
    ("generic", "timestamp,open,high,low,close,volume[,vwap]", "lower-case; timestamps with UTC offsets"),
)


def accepted_layouts_text() -> str:
    """Human-readable list of accepted layouts, one header example per line."""
    lines = ["Accepted minute-bar file layouts (CSV or parquet; header line shown):"]
    for name, header, note in ACCEPTED_LAYOUTS:
        lines.append(f"  {name + ':':<15}{header}    ({note})")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------
class DataValidationError(ValueError):
    """A price file is malformed.  The message names each problem, its count and first offending rows.

    ``problems`` holds ``{"problem": str, "count": int, "rows": [str, ...]}`` dicts.
    """

    def __init__(self, problems: list[dict[str, Any]] | str, *, header: str = "data validation failed"):
        if isinstance(problems, str):
            problems = [{"problem": problems, "count": 0, "rows": []}]
        self.problems = problems
        lines = [f"{header} ({len(problems)} problem{'s' if len(problems) != 1 else ''}):"]
        for p in problems:
            line = f"  - {p['problem']}"
            if p.get("count"):
                line += f": {p['count']} row(s)"
            if p.get("rows"):
                line += "; first: " + "; ".join(p["rows"])
            if p.get("hint"):
                line += f"\n    {p['hint']}"
            lines.append(line)
        super().__init__("\n".join(lines))


class DataUnavailableError(RuntimeError):
    """No usable price data: says what is missing, which layouts are accepted and how to pass a file."""


def _unavailable(what: str, *, ticker: str = "AMC", interval: str = "1m",
                 cache_dir: str | os.PathLike | None = None) -> DataUnavailableError:
    cache_line = (f"No cache file {_cache_candidates(cache_dir, ticker, interval)[0]} either.\n"
                  if cache_dir is not None else "")
    return DataUnavailableError(
        f"No {ticker} price data available: {what}\n{cache_line}"
        "Minute data for the paper's 2015-2021 range cannot be downloaded from Yahoo; supply a file.\n"
        f"{accepted_layouts_text()}\n"
        f"Pass one with `{DATA_HINT}` (load_volatility_dataset(data=...)), "
        "or `make sweep TASK=volatility DATA=synthetic` for a labelled synthetic series, "
        "or allow downloads for the yfinance daily variant (interval='1d') / recent 1-minute bars."
    )


# --------------------------------------------------------------------------------------------------
# loading and layout detection
# --------------------------------------------------------------------------------------------------
# name, time-column candidates, required {canonical: source}, optional {canonical: source}
# (source names are matched case-insensitively after stripping whitespace)
_LAYOUT_SPECS: tuple[tuple[str, tuple[str, ...], dict[str, str], dict[str, str]], ...] = (
    ("alphavantage", ("timestamp", "time"),
     {"open": "1. open", "high": "2. high", "low": "3. low", "close": "4. close", "volume": "5. volume"}, {}),
    ("polygon", ("t", "timestamp"),
     {"open": "o", "high": "h", "low": "l", "close": "c", "volume": "v"}, {"vwap": "vw"}),
    ("yfinance", ("datetime", "date"),
     {"open": "open", "high": "high", "low": "low", "close": "close", "volume": "volume"}, {"vwap": "vwap"}),
    ("generic", ("timestamp",),
     {"open": "open", "high": "high", "low": "low", "close": "close", "volume": "volume"},
     {"vwap": "vwap"}),
)
_INDEX_FALLBACK = ("index", "unnamed: 0", "level_0")


def _file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _content_sha256(df: pd.DataFrame) -> str:
    """Hash of a normalised bar frame (index in UTC ns + values), independent of file format."""
    h = hashlib.sha256()
    idx = df.index.tz_convert("UTC").as_unit("ns").tz_localize(None)
    h.update(np.asarray(idx.to_numpy(), dtype="datetime64[ns]").view(np.int64).tobytes())
    for col in df.columns:
        h.update(col.encode())
        h.update(np.ascontiguousarray(df[col].to_numpy(dtype=np.float64)).tobytes())
    return h.hexdigest()


def _read_raw(path: Path) -> tuple[pd.DataFrame, str]:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path), "parquet"
    if suffix in (".csv", ".txt", ".gz") or suffix == "":
        raw = pd.read_csv(path)
        # yf.download(...).to_csv() with multi-level columns: "Price,..." / "Ticker,AMC,..." / "Datetime,,,"
        if len(raw.columns) and str(raw.columns[0]).strip() == "Price" and len(raw) >= 2 \
                and str(raw.iloc[0, 0]).strip() == "Ticker":
            tickers = {str(v) for v in raw.iloc[0, 1:].tolist()}
            if len(tickers) > 1:
                raise DataValidationError(f"multi-ticker yf.download file ({sorted(tickers)}); save one ticker")
            time_name = str(raw.iloc[1, 0]).strip() if str(raw.iloc[1, 0]).strip() in ("Datetime", "Date") \
                else "Datetime"
            skip = [1, 2] if str(raw.iloc[1, 0]).strip() in ("Datetime", "Date") else [1]
            raw = pd.read_csv(path, skiprows=skip).rename(columns={"Price": time_name})
        return raw, "csv"
    raise DataValidationError(f"unsupported file type {path.suffix!r} for {path} (use .csv or .parquet)")


def _detect_layout(frame: pd.DataFrame) -> tuple[str, str, dict[str, str]]:
    """Return (layout, time column, {canonical: actual column}) or raise listing accepted layouts."""
    lower: dict[str, str] = {}
    for c in frame.columns:
        lower.setdefault(str(c).strip().lower(), c)
    for name, time_cands, required, optional in _LAYOUT_SPECS:
        if not all(src in lower for src in required.values()):
            continue
        time_col = next((lower[c] for c in time_cands if c in lower), None)
        if time_col is None:
            for c in _INDEX_FALLBACK:
                if c in lower and (name in ("yfinance", "generic")):
                    time_col = lower[c]
                    break
        if time_col is None:
            continue
        mapping = {canon: lower[src] for canon, src in required.items()}
        for canon, src in optional.items():
            if src in lower:
                mapping[canon] = lower[src]
            elif canon == "vwap" and "vwap" in lower:
                mapping[canon] = lower["vwap"]
        return name, time_col, mapping
    cols = ", ".join(repr(str(c)) for c in list(frame.columns)[:12])
    raise DataValidationError(
        [{"problem": f"unknown file layout (columns: {cols})", "count": 0, "rows": [],
          "hint": accepted_layouts_text().replace("\n", "\n    ")}],
        header="unrecognised price file",
    )


_OFFSET_RE = r"(?:[zZ]|[+-]\d{2}:?\d{2}|\s?UTC|\s?GMT)$"
_DATE_ONLY_RE = r"\d{4}-\d{2}-\d{2}"


def _epoch_unit(values: np.ndarray) -> str:
    m = float(np.nanmax(np.abs(values))) if values.size else 0.0
    return "ns" if m > 1e17 else "us" if m > 1e14 else "ms" if m > 1e11 else "s"


def _parse_timestamps(col: pd.Series, assume_tz: str | None) -> tuple[pd.DatetimeIndex, str]:
    """Parse a timestamp column into a tz-aware America/New_York index (one entry per row)."""
    n = len(col)
    positions = np.arange(n)
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        return pd.DatetimeIndex(col).tz_convert(NY_TZ), "tz-aware in file"
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        vals = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(vals)
        if bad.any():
            _raise_unparseable(col, bad)
        unit = _epoch_unit(vals)
        parsed = pd.to_datetime(col.astype("int64"), unit=unit, utc=True)
        return pd.DatetimeIndex(parsed).tz_convert(NY_TZ), f"epoch {unit} (UTC)"
    if pd.api.types.is_datetime64_dtype(col.dtype):
        parsed_naive = pd.DatetimeIndex(col)
        bad = np.asarray(parsed_naive.isna())
        if bad.any():
            _raise_unparseable(col, bad)
        return _localize_naive(parsed_naive, col, assume_tz, date_only=False)

    s = col.astype("string").str.strip()
    null = np.asarray(s.isna() | (s == ""), dtype=bool)
    if null.any():
        _raise_unparseable(col, null)
    if bool(s.str.fullmatch(r"\d{9,19}").all()):
        return _parse_timestamps(pd.to_numeric(s).astype("int64"), assume_tz)
    has_offset = np.asarray(s.str.contains(_OFFSET_RE, regex=True), dtype=bool)
    aware = _to_datetime(s[has_offset], utc=True)
    naive = _to_datetime(s[~has_offset], utc=False)
    bad = np.zeros(n, dtype=bool)
    bad[has_offset] = np.asarray(aware.isna())
    bad[~has_offset] = np.asarray(naive.isna())
    if bad.any():
        _raise_unparseable(col, bad)
    if has_offset.any() and not has_offset.all():
        naive_pos = positions[~has_offset]
        rows = [f"row {i}: {col.iloc[i]!r}" for i in naive_pos[:3]]
        raise DataValidationError([{"problem": "mixed timestamps: some with a UTC offset, some naive",
                                    "count": int((~has_offset).sum()), "rows": rows}])
    if has_offset.all():
        return pd.DatetimeIndex(aware).tz_convert(NY_TZ), "UTC offsets in file"
    date_only = bool(s.str.fullmatch(_DATE_ONLY_RE).all())
    return _localize_naive(pd.DatetimeIndex(naive), col, assume_tz, date_only=date_only)


def _to_datetime(s: pd.Series, *, utc: bool) -> pd.Series:
    """Fast ISO-8601 parse, falling back to per-element parsing; unparseable -> NaT."""
    parsed = pd.to_datetime(s, utc=utc, format="ISO8601", errors="coerce")
    if parsed.isna().any():
        parsed = pd.to_datetime(s, utc=utc, format="mixed", errors="coerce")
    return parsed


def _localize_naive(idx: pd.DatetimeIndex, col: pd.Series, assume_tz: str | None,
                    *, date_only: bool) -> tuple[pd.DatetimeIndex, str]:
    if date_only or (len(idx) and bool((idx == idx.normalize()).all()) and _one_per_day(idx)):
        # calendar dates of daily bars are exchange dates, not instants: no timezone is being guessed
        return idx.tz_localize(NY_TZ), "date-only (exchange calendar dates)"
    if assume_tz is None:
        rows = [f"row {i}: {col.iloc[i]!r}" for i in range(min(3, len(col)))]
        raise DataValidationError([{
            "problem": "naive timestamps (no UTC offset or timezone)", "count": len(col), "rows": rows,
            "hint": "pass assume_tz='America/New_York' (Alpha Vantage and most US vendors) or the file's "
                    "zone to load_minute_file(..., assume_tz=...)",
        }])
    try:
        local = idx.tz_localize(assume_tz, ambiguous="raise", nonexistent="raise")
    except Exception as exc:  # noqa: BLE001 - pytz/zoneinfo raise various types
        raise DataValidationError(f"cannot localise naive timestamps to {assume_tz!r}: {exc}") from exc
    return local.tz_convert(NY_TZ), f"naive, assumed {assume_tz}"


def _one_per_day(idx: pd.DatetimeIndex) -> bool:
    return len(idx) > 0 and idx.normalize().nunique() == len(idx.unique())


def _raise_unparseable(col: pd.Series, bad: np.ndarray) -> None:
    pos = np.flatnonzero(bad)
    rows = [f"row {i}: {col.iloc[i]!r}" for i in pos[:3]]
    raise DataValidationError([{"problem": "unparseable timestamps", "count": int(bad.sum()), "rows": rows}])


def _infer_interval(idx: pd.DatetimeIndex) -> str | None:
    """'1d' (one bar per date), '1m' (modal intraday spacing of one minute) or e.g. '5min'."""
    u = idx.unique().sort_values()
    if len(u) < 2:
        return None
    if _one_per_day(u):
        return "1d"
    same_day = u.normalize()[1:] == u.normalize()[:-1]
    diffs = (u[1:] - u[:-1])[same_day]
    if len(diffs) == 0:
        return None
    mode = pd.Series(diffs).mode().iloc[0]
    if mode == pd.Timedelta(minutes=1):
        return "1m"
    return f"{int(mode / pd.Timedelta(seconds=1))}s"


def normalize_bars(frame: pd.DataFrame, *, assume_tz: str | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Normalise a vendor bar frame (index or column timestamps) to the canonical layout.

    Returns ``(df, info)``: ``df`` has a tz-aware ``America/New_York`` DatetimeIndex named ``timestamp``
    (file order kept: :func:`validate` reports duplicates / disorder) and float64 columns
    ``open, high, low, close, volume[, vwap]`` (prices in the file's currency, volume in shares;
    non-numeric cells become NaN).  ``info``: ``layout``, ``tz_source``, ``columns``, ``n_rows``,
    ``bar_interval`` ('1m', '1d', other spacing, or None).
    """
    if isinstance(frame.columns, pd.MultiIndex):  # yf.download without multi_level_index=False
        levels = [lvl for lvl in range(frame.columns.nlevels)
                  if frame.columns.get_level_values(lvl).nunique() == 1 and frame.columns.nlevels > 1]
        if not levels:
            raise DataValidationError("multi-level columns with several tickers; pass one ticker's bars")
        frame = frame.droplevel(levels, axis=1)
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index()
    layout, time_col, mapping = _detect_layout(frame)
    idx, tz_source = _parse_timestamps(frame[time_col], assume_tz)
    out = pd.DataFrame(index=idx.as_unit("ns").rename("timestamp"))
    for canon in ("open", "high", "low", "close", "volume", "vwap"):
        if canon in mapping:
            out[canon] = pd.to_numeric(frame[mapping[canon]], errors="coerce").to_numpy(dtype=np.float64)
    info = {
        "layout": layout,
        "tz_source": tz_source,
        "columns": {k: str(v) for k, v in mapping.items()} | {"timestamp": str(time_col)},
        "n_rows": len(out),
        "bar_interval": _infer_interval(out.index),
    }
    return out, info


def load_minute_file(path: str | os.PathLike, *, assume_tz: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Load a CSV or parquet bar file in any accepted vendor layout (see :data:`ACCEPTED_LAYOUTS`).

    Parameters
    ----------
    path: ``.csv`` or ``.parquet`` file of 1-minute (or daily) bars.
    assume_tz: timezone for *naive* timestamps (e.g. ``"America/New_York"`` for Alpha Vantage).  Naive
        timestamps without it raise :class:`DataValidationError`; so do unparseable ones.

    Returns
    -------
    ``(df, info)``: ``df`` indexed by tz-aware New York timestamps (bar start), columns
    ``open, high, low, close`` [$], ``volume`` [shares] and optional ``vwap`` [$]; ``info`` adds
    ``path``, ``format`` and ``sha256`` (of the file bytes) to :func:`normalize_bars`' info.
    Not validated: call :func:`validate`.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"price file not found: {p}")
    raw, fmt = _read_raw(p)
    df, info = normalize_bars(raw, assume_tz=assume_tz)
    info = {"path": str(p), "format": fmt, "sha256": _file_sha256(p)} | info
    return df, info


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------
def _fmt_rows(df: pd.DataFrame, positions: np.ndarray, limit: int = 3) -> list[str]:
    out = []
    cols = [c for c in ("open", "high", "low", "close", "volume", "vwap") if c in df.columns]
    for i in positions[:limit]:
        row = df.iloc[int(i)]
        vals = ", ".join(f"{c}={row[c]:g}" for c in cols)
        out.append(f"row {int(i)} @ {df.index[int(i)]} ({vals})")
    return out


def _split_like_jumps(df: pd.DataFrame, tolerance: float) -> list[dict[str, Any]]:
    """Overnight ratios first-open(session) / last-close(previous session) near a split factor."""
    clean = df[~df.index.duplicated(keep="first")].sort_index()
    clean = clean.dropna(subset=["open", "close"])
    if len(clean) < 2:
        return []
    day = clean.index.normalize()
    g = clean.groupby(day, sort=True)
    first_open = g["open"].first()
    last_close = g["close"].last()
    if len(first_open) < 2:
        return []
    ratio = first_open.to_numpy()[1:] / last_close.to_numpy()[:-1]
    jumps = []
    for j, r in enumerate(ratio):
        for k in SPLIT_RATIOS:
            if np.isfinite(r) and abs(r / k - 1.0) <= tolerance:
                jumps.append({
                    "session": str(first_open.index[j + 1].date()),
                    "previous_session": str(last_close.index[j].date()),
                    "previous_close": float(last_close.iloc[j]),
                    "open": float(first_open.iloc[j + 1]),
                    "ratio": float(r),
                    "near": f"x{k:g}",
                })
                break
    return jumps


def validate(df: pd.DataFrame, *, price_basis: str | None = None,
             split_tolerance: float = SPLIT_TOLERANCE) -> dict[str, Any]:
    """Check a normalised bar frame; raise :class:`DataValidationError` listing every problem.

    Problems (each reported with its count and first offending rows): duplicate timestamps, rows not
    sorted by time, NaN/missing prices or volume, non-positive prices, high < low, negative volume,
    and split-like overnight jumps -- a session's first open over the previous session's last close
    within ``split_tolerance`` (relative) of x10, x0.1, x2 or x0.5, the signature of mixed price bases
    (AMC's 2023 1:10 reverse split makes adjusted 2015-2021 prices ~10x the as-traded ones).  Jumps are
    an error only while ``price_basis`` is undeclared; declare it (``"as-traded"``, ``"adjusted"``, ...)
    to accept genuine moves -- they are still reported.

    Returns a report ``{"n_rows", "price_basis", "split_like_jumps": [...]}``.
    """
    problems: list[dict[str, Any]] = []
    idx = df.index
    if not isinstance(idx, pd.DatetimeIndex) or idx.tz is None:
        raise DataValidationError("index must be a tz-aware DatetimeIndex (use load_minute_file/normalize_bars)")
    missing = [c for c in (*PRICE_COLUMNS, "volume") if c not in df.columns]
    if missing:
        raise DataValidationError(f"missing columns {missing}")

    dup = np.asarray(idx.duplicated(keep=False))
    if dup.any():
        problems.append({"problem": "duplicate timestamps", "count": int(np.asarray(idx.duplicated()).sum()),
                         "rows": _fmt_rows(df, np.flatnonzero(dup))})
    ts = idx.tz_convert("UTC").tz_localize(None).to_numpy()
    back = np.flatnonzero(ts[1:] < ts[:-1]) + 1
    if back.size:
        rows = [f"row {int(i)} @ {idx[int(i)]} is earlier than row {int(i) - 1} @ {idx[int(i) - 1]}"
                for i in back[:3]]
        problems.append({"problem": "rows not sorted by time", "count": int(back.size), "rows": rows})

    prices = [c for c in (*PRICE_COLUMNS, "vwap") if c in df.columns]
    nan = np.asarray(df[[*PRICE_COLUMNS, "volume"]].isna().any(axis=1))
    if nan.any():
        problems.append({"problem": "NaN/missing prices or volume (open/high/low/close/volume)",
                         "count": int(nan.sum()), "rows": _fmt_rows(df, np.flatnonzero(nan))})
    nonpos = np.asarray((df[prices] <= 0).any(axis=1))
    if nonpos.any():
        problems.append({"problem": "non-positive prices", "count": int(nonpos.sum()),
                         "rows": _fmt_rows(df, np.flatnonzero(nonpos))})
    hl = np.asarray(df["high"] < df["low"])
    if hl.any():
        problems.append({"problem": "high < low", "count": int(hl.sum()), "rows": _fmt_rows(df, np.flatnonzero(hl))})
    negv = np.asarray(df["volume"] < 0)
    if negv.any():
        problems.append({"problem": "negative volume", "count": int(negv.sum()),
                         "rows": _fmt_rows(df, np.flatnonzero(negv))})

    jumps = _split_like_jumps(df, split_tolerance)
    if jumps and price_basis is None:
        rows = [f"{j['session']} open {j['open']:g} vs {j['previous_session']} close {j['previous_close']:g} "
                f"(x{j['ratio']:.3g}, near {j['near']})" for j in jumps[:3]]
        problems.append({
            "problem": "split-like overnight jumps (mixed as-traded / split-adjusted prices?)",
            "count": len(jumps), "rows": rows,
            "hint": "if these are genuine moves or the basis is known, declare it: "
                    "price_basis='as-traded' or price_basis='adjusted'",
        })
    if problems:
        raise DataValidationError(problems)
    return {"n_rows": len(df), "price_basis": price_basis, "split_like_jumps": jumps}


# --------------------------------------------------------------------------------------------------
# VWAP, sessions, windows
# --------------------------------------------------------------------------------------------------
def minute_vwap(df: pd.DataFrame) -> tuple[pd.Series, str]:
    """Per-bar VWAP [$]: the vendor ``vwap`` column when present, else typical price (H+L+C)/3.

    Bars whose ``vwap`` cell is missing fall back to the typical price (counted in the method name).
    Returns ``(series aligned with df.index, method name)``.
    """
    typical = (df["high"] + df["low"] + df["close"]) / 3.0
    if "vwap" in df.columns and df["vwap"].notna().any():
        missing = df["vwap"].isna()
        if missing.any():
            return df["vwap"].where(~missing, typical).rename("vwap"), \
                f"vwap column (typical price (H+L+C)/3 for {int(missing.sum())} bars without vwap)"
        return df["vwap"].astype(np.float64).rename("vwap"), "vwap column"
    return typical.rename("vwap"), "typical price (H+L+C)/3"


def _fill_short_gaps(s: pd.Series, max_ffill: int) -> tuple[pd.Series, int, int]:
    """Forward-fill NaN runs of length <= max_ffill; longer runs stay NaN entirely."""
    isna = s.isna().to_numpy()
    if not isna.any():
        return s, 0, 0
    run_id = np.cumsum(~isna)
    run_len = pd.Series(isna.astype(np.int64)).groupby(run_id).transform("sum").to_numpy()
    fill = isna & (run_len <= max_ffill)
    out = s.copy()
    out[fill] = s.ffill()[fill]
    return out, int(fill.sum()), int((isna & ~fill).sum())


def regular_session_vwap(df: pd.DataFrame, *, max_ffill: int = 2, vwap: pd.Series | None = None
                         ) -> tuple[dict[Any, pd.Series], dict[str, Any]]:
    """Per-session regular-hours VWAP series on a full 1-minute grid.

    Keeps bars labelled 09:30 <= t < 16:00 New York; zero-volume bars are treated as missing.  Each
    session is reindexed to every minute from its first to its last traded bar (early closes simply
    end earlier); gaps of at most ``max_ffill`` consecutive minutes are forward-filled, longer gaps
    are left NaN in full (the windows that touch them are dropped by :func:`make_windows`).

    Returns ``(sessions, report)``: ``sessions`` maps ``datetime.date`` -> float64 Series [$] indexed
    by tz-aware minute timestamps (ordered by date); ``report`` counts bars and dropped sessions.
    """
    if not df.index.is_unique:
        raise DataValidationError("duplicate timestamps (run validate() first)")
    df = df.sort_index()
    idx = df.index.tz_convert(NY_TZ)
    if len(idx) and bool(((idx.second != 0) | (idx.microsecond != 0) | (idx.nanosecond != 0)).any()):
        bad = np.flatnonzero((idx.second != 0) | (idx.microsecond != 0))
        raise DataValidationError([{"problem": "timestamps not on whole minutes (1-minute bars expected)",
                                    "count": int(bad.size), "rows": [str(idx[i]) for i in bad[:3]]}])
    if vwap is None:
        vwap, _ = minute_vwap(df)
    vwap = pd.Series(vwap.to_numpy(dtype=np.float64), index=idx)
    minute_of_day = idx.hour * 60 + idx.minute
    in_session = np.asarray((minute_of_day >= 9 * 60 + 30) & (minute_of_day < 16 * 60))
    traded = np.asarray(df["volume"].to_numpy() > 0)
    keep = in_session & traded
    days = idx.normalize()
    all_days = pd.DatetimeIndex(days.unique()).sort_values()
    sessions: dict[Any, pd.Series] = {}
    reasons: Counter[str] = Counter()
    n_filled = n_unfilled = 0
    kept_v = vwap[keep]
    kept_days = days[keep]
    groups = {d: s for d, s in kept_v.groupby(kept_days, sort=True)} if keep.any() else {}
    in_session_days = set(days[in_session])
    for d in all_days:
        if d not in in_session_days:
            reasons["only extended-hours bars"] += 1
            continue
        s = groups.get(d)
        if s is None or s.empty:
            reasons["no traded regular-session minutes (all zero volume)"] += 1
            continue
        grid = pd.date_range(s.index[0], s.index[-1], freq="1min")
        g = s.reindex(grid)
        g, f, u = _fill_short_gaps(g, max_ffill)
        n_filled += f
        n_unfilled += u
        sessions[d.date()] = g.rename("vwap")
    report = {
        "bars_in_file": len(df),
        "bars_outside_regular_session": int((~in_session).sum()),
        "zero_volume_minutes": int((in_session & ~traded).sum()),
        "forward_filled_minutes": n_filled,
        "unfilled_gap_minutes": n_unfilled,
        "max_ffill": max_ffill,
        "sessions_in_file": len(all_days),
        "dropped_reasons": dict(reasons),
    }
    return sessions, report


def _window_starts(values: np.ndarray, span: int, stride: int) -> np.ndarray:
    """Start positions of complete (NaN-free) windows of ``span`` values, every ``stride`` positions."""
    n = len(values)
    if n < span:
        return np.zeros(0, dtype=np.int64)
    c = np.concatenate([[0], np.cumsum(np.isnan(values))])
    starts = np.arange(0, n - span + 1, stride)
    return starts[(c[starts + span] - c[starts]) == 0]


def make_windows(vwap_by_session: Mapping[Any, pd.Series], input_len: int = 60, horizon: int = 10,
                 stride: int = 1) -> tuple[np.ndarray, np.ndarray, pd.DatetimeIndex]:
    """Sliding (input -> variance) windows inside each session.

    Parameters
    ----------
    vwap_by_session: session key -> VWAP Series [$] on a regular grid (NaN = unfilled gap), e.g. from
        :func:`regular_session_vwap`.  Windows never cross from one series into the next, nor touch a NaN.
    input_len, horizon: window lengths in bars (60 and 10 minutes in the paper).
    stride: step between consecutive window starts within a session (1 = every bar).

    Returns
    -------
    X: ``(N, input_len)`` float64 raw VWAP prices [$].
    y: ``(N,)`` float64 population variance (``ddof=0``) of the next ``horizon`` VWAPs [$^2].
    t: ``(N,)`` tz-aware DatetimeIndex of forecast origins = label of the first target bar.
    """
    if input_len < 1 or horizon < 1 or stride < 1:
        raise ValueError("input_len, horizon and stride must be >= 1")
    span = input_len + horizon
    xs, ys, ts = [], [], []
    for s in vwap_by_session.values():
        v = s.to_numpy(dtype=np.float64)
        starts = _window_starts(v, span, stride)
        if starts.size == 0:
            continue
        win = np.lib.stride_tricks.sliding_window_view(v, span)[starts]
        xs.append(np.ascontiguousarray(win[:, :input_len]))
        ys.append(win[:, input_len:].var(axis=1, ddof=0))
        ts.append(s.index[starts + input_len])
    if not xs:
        tz = next((s.index.tz for s in vwap_by_session.values() if isinstance(s.index, pd.DatetimeIndex)),
                  NY_TZ)
        return (np.zeros((0, input_len)), np.zeros(0), pd.DatetimeIndex([], tz=tz, name="origin"))
    t = ts[0].append(ts[1:]) if len(ts) > 1 else ts[0]
    return np.concatenate(xs), np.concatenate(ys), t.rename("origin")


def _session_dates(t: pd.DatetimeIndex) -> pd.DatetimeIndex:
    t = pd.DatetimeIndex(t)
    if t.tz is not None:
        t = t.tz_convert(NY_TZ).tz_localize(None)
    return t.normalize()


def split_by_date(t: pd.DatetimeIndex, train_start: str | pd.Timestamp, train_end: str | pd.Timestamp,
                  test_start: str | pd.Timestamp, test_end: str | pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks ``(train, test)`` of shape ``(N,)`` by the New York session date of each origin ``t``.

    Ranges are inclusive calendar dates and must not overlap (``train_end < test_start``).  Because
    every window lies inside one session (or one daily split period), a window belongs wholly to the
    split its session date falls in: none crosses the cutoff.  Windows outside both ranges are in neither.
    """
    a, b, c, d = (pd.Timestamp(x).normalize() for x in (train_start, train_end, test_start, test_end))
    if a.tzinfo is not None or c.tzinfo is not None:
        a, b, c, d = (x.tz_localize(None) if x.tzinfo else x for x in (a, b, c, d))
    if not (a <= b < c <= d):
        raise ValueError(f"need train_start <= train_end < test_start <= test_end, got {a.date()}..{b.date()} "
                         f"and {c.date()}..{d.date()}")
    day = _session_dates(t)
    train = np.asarray((day >= a) & (day <= b))
    test = np.asarray((day >= c) & (day <= d))
    return train, test


# --------------------------------------------------------------------------------------------------
# synthetic data
# --------------------------------------------------------------------------------------------------
def synthetic_minute_bars(start: str = SYNTHETIC_RANGE[0], end: str = SYNTHETIC_RANGE[1], *,
                          split_date: str = PAPER_TEST_RANGE[0], seed: int = 0,
                          price0: float = 5.0, sigma_train: float = 5e-4, sigma_test: float = 3e-3,
                          level_jump: float = 1.5) -> pd.DataFrame:
    """Seeded SYNTHETIC 1-minute bars (390 per weekday, 09:30-15:59 New York, no holiday calendar).

    Log-price random walk with per-minute std ``sigma_train`` before ``split_date`` and ``sigma_test``
    from it on, plus a x``level_jump`` overnight level shift at the split: a regime change imitating
    AMC's 2021 volatility explosion.  Columns ``open, high, low, close`` [$] and ``volume`` [shares,
    always > 0]; no ``vwap`` column (typical price is used, as for yfinance).  Not market data.
    """
    rng = np.random.default_rng(seed)
    days = pd.bdate_range(start, end)
    if len(days) == 0:
        raise ValueError(f"no weekdays between {start} and {end}")
    n_min = 390
    after = np.asarray(days >= pd.Timestamp(split_date))
    sigma = np.where(after, sigma_test, sigma_train)[:, None] * np.ones((1, n_min))
    steps = rng.standard_normal((len(days), n_min)) * sigma
    overnight = rng.standard_normal(len(days)) * 0.01
    first_test = int(np.argmax(after)) if after.any() and not after.all() else -1
    if first_test > 0:
        overnight[first_test] += math.log(level_jump)
    steps[:, 0] += overnight
    steps[0, 0] = 0.0
    logp = math.log(price0) + np.cumsum(steps.ravel())
    close = np.exp(logp)
    open_ = np.concatenate([[price0], close[:-1]])
    wick = np.abs(rng.standard_normal((2, close.size))) * sigma.ravel() * 0.5
    high = np.maximum(open_, close) * (1.0 + wick[0])
    low = np.minimum(open_, close) * (1.0 - wick[1])
    base_vol = np.where(np.repeat(after, n_min), 200_000.0, 20_000.0)
    volume = rng.poisson(base_vol).astype(np.float64) + 1.0
    offsets = pd.to_timedelta(np.arange(n_min) + 9 * 60 + 30, unit="min")
    naive = (days.values[:, None] + offsets.values[None, :]).ravel()
    idx = pd.DatetimeIndex(naive).tz_localize(NY_TZ).as_unit("ns").rename("timestamp")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=idx)


# --------------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------------
@dataclass
class Source:
    """Where the bars came from.

    ``kind``: ``"file" | "synthetic" | "cache" | "yfinance"``; ``frame``: normalised bars (see
    :func:`normalize_bars`); ``interval``: ``"1m"`` or ``"1d"``; ``price_basis``: declared by the source
    (None for user files unless passed); ``info``: provenance (path, sha256, layout, notes ...).
    """

    kind: str
    frame: pd.DataFrame
    interval: str
    info: dict[str, Any] = field(default_factory=dict)
    price_basis: str | None = None
    synthetic: bool = False


def _cache_candidates(cache_dir: str | os.PathLike | None, ticker: str, interval: str) -> list[Path]:
    if cache_dir is None:
        return []
    base = Path(cache_dir)
    return [base / f"{ticker}_{interval}.parquet", base / f"{ticker}_{interval}.csv"]


def _yf_basis(now: pd.Timestamp) -> str:
    return f"split-adjusted by Yahoo as of {now.date()} (auto_adjust=False: Close not dividend-adjusted)"


class _Fetcher:
    """Calls ``yf.Ticker(t).history`` with bounded exponential back-off on rate limits only."""

    def __init__(self, ticker: str, *, sleep: Callable[[float], Any], max_tries: int, backoff_s: float,
                 max_total_wait_s: float, request_timeout_s: float, interval: str, cache_dir=None):
        self.ticker, self.sleep, self.max_tries = ticker, sleep, max_tries
        self.backoff_s, self.max_total_wait_s = backoff_s, max_total_wait_s
        self.request_timeout_s, self.interval, self.cache_dir = request_timeout_s, interval, cache_dir
        self.waited = 0.0
        self.calls = 0
        self._tk = None

    def _err(self, what: str) -> DataUnavailableError:
        return _unavailable(what, ticker=self.ticker, interval=self.interval, cache_dir=self.cache_dir)

    def history(self, start: pd.Timestamp | str, end: pd.Timestamp | str) -> pd.DataFrame:
        try:
            import yfinance as yf
            from yfinance.exceptions import YFRateLimitError
        except ImportError as exc:  # pragma: no cover - yfinance is a dependency
            raise self._err(f"yfinance is not installed ({exc})") from exc
        attempt = 0
        while True:
            attempt += 1
            self.calls += 1
            try:
                if self._tk is None:
                    self._tk = yf.Ticker(self.ticker)
                return self._tk.history(start=start, end=end, interval=self.interval, auto_adjust=False,
                                        timeout=self.request_timeout_s)
            except YFRateLimitError as exc:
                delay = self.backoff_s * 2 ** (attempt - 1)
                if attempt >= self.max_tries or self.waited + delay > self.max_total_wait_s:
                    raise self._err(
                        f"Yahoo Finance rate-limited the download (YFRateLimitError, HTTP 429: {exc}) "
                        f"after {attempt} tries and {self.waited:g} s of back-off; try later."
                    ) from exc
                self.sleep(delay)
                self.waited += delay
            except OSError as exc:  # DNS / connection errors (curl_cffi errors subclass OSError)
                raise self._err(
                    f"network error while downloading from Yahoo Finance ({type(exc).__name__}: {exc}); "
                    "no network access?"
                ) from exc
            except Exception as exc:  # noqa: BLE001 - any other yfinance failure becomes a clear error
                raise self._err(f"yfinance failed ({type(exc).__name__}: {exc})") from exc


def _merge_minute_cache(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    if old is None or old.empty:
        merged = new
    else:
        common = old.index.intersection(new.index)
        if len(common):
            r = (new.loc[common, "close"] / old.loc[common, "close"]).to_numpy()
            med = float(np.nanmedian(r))
            if np.isfinite(med) and abs(med - 1.0) > 0.01:
                raise DataValidationError(
                    f"cached bars and the fresh download disagree on the price basis (median ratio {med:.4g}"
                    f" over {len(common)} overlapping bars): a split was probably applied since the cache was "
                    "written; move the cache file away to start a new history")
        merged = pd.concat([old, new])
    merged = merged[~merged.index.duplicated(keep="last")].sort_index()
    return merged


def _write_cache(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    df.to_parquet(tmp)
    os.replace(tmp, path)


def resolve_source(data: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                   allow_download: bool = False, ticker: str = "AMC", interval: str = "1d",
                   start: str | pd.Timestamp | None = None, end: str | pd.Timestamp | None = None, *,
                   assume_tz: str | None = None, refresh: bool = False, now: pd.Timestamp | None = None,
                   sleep: Callable[[float], Any] = time.sleep, max_tries: int = 3, backoff_s: float = 1.0,
                   max_total_wait_s: float = 8.0, request_timeout_s: float = 10.0,
                   synthetic_kwargs: Mapping[str, Any] | None = None) -> Source:
    """Find bars, in this order: explicit file, ``"synthetic"``, cache directory, yfinance download.

    Parameters
    ----------
    data: path to a CSV/parquet bar file, or ``"synthetic"`` (seeded, labelled synthetic minute bars),
        or None to use the cache / a download.
    cache_dir: directory holding ``{ticker}_{interval}.parquet`` (or ``.csv``); downloads are written there.
    allow_download: allow yfinance.  ``interval="1d"``: ``yf.Ticker(ticker).history(start, end,
        interval="1d", auto_adjust=False)`` -- the *daily variant* (used from the cache when present
        unless ``refresh``).  ``interval="1m"``: the last ~29 days in <= 7-day chunks, starting at the last
        cached session, merged into the cache so history accumulates across runs (the cache is used
        with a warning if the download fails).
    start, end: download range (daily default: paper range 2015-02-01 .. 2022-01-01; 1-minute: clipped
        to the last 29 days).
    sleep, max_tries, backoff_s, max_total_wait_s: rate-limit back-off (``YFRateLimitError`` only),
        injectable for tests; total waiting is capped so the call fails within seconds.

    Raises :class:`DataUnavailableError` (what is missing, accepted layouts, ``DATA=`` hint) when
    nothing is usable; never returns an empty frame.
    """
    if interval not in ("1m", "1d"):
        raise ValueError(f"interval must be '1m' or '1d', got {interval!r}")
    now = pd.Timestamp.now(tz="UTC") if now is None else _utc(now)

    # 1. explicit file
    if data is not None and str(data).strip().lower() != "synthetic":
        p = Path(data)
        if not p.is_file():
            raise _unavailable(f"DATA file {str(p)!r} does not exist.", ticker=ticker, interval=interval)
        df, info = load_minute_file(p, assume_tz=assume_tz)
        if df.empty:
            raise _unavailable(f"DATA file {str(p)!r} has no rows.", ticker=ticker, interval=interval)
        return Source("file", df, _file_interval(info), info)

    # 2. synthetic, only by name
    if data is not None:
        kw = dict(synthetic_kwargs or {})
        df = synthetic_minute_bars(**kw)
        info = {"generator": "synthetic_minute_bars", "params": {k: str(v) for k, v in kw.items()},
                "layout": "synthetic", "sha256": None}
        return Source("synthetic", df, "1m", info, price_basis="synthetic", synthetic=True)

    # 3. cache directory
    cached: pd.DataFrame | None = None
    cache_info: dict[str, Any] = {}
    cache_path = next((c for c in _cache_candidates(cache_dir, ticker, interval) if c.is_file()), None)
    if cache_path is not None:
        cached, cache_info = load_minute_file(cache_path, assume_tz=assume_tz)
        if cached.empty:
            cached = None
        elif not allow_download or (interval == "1d" and not refresh):
            return Source("cache", cached, _file_interval(cache_info), cache_info)

    # 4. yfinance
    if not allow_download:
        raise _unavailable("no DATA file was given and downloads are not allowed (allow_download=False).",
                           ticker=ticker, interval=interval, cache_dir=cache_dir)
    fetch = _Fetcher(ticker, sleep=sleep, max_tries=max_tries, backoff_s=backoff_s,
                     max_total_wait_s=max_total_wait_s, request_timeout_s=request_timeout_s,
                     interval=interval, cache_dir=cache_dir)
    basis = _yf_basis(now)
    if interval == "1d":
        s = str(pd.Timestamp(start or PAPER_TRAIN_RANGE[0]).date())
        e = str(pd.Timestamp(end or "2022-01-01").date())
        raw = fetch.history(s, e)
        if raw is None or len(raw) == 0:
            raise fetch._err(f"yfinance returned no rows for {ticker} interval=1d {s}..{e} "
                             "(delisted ticker, range outside Yahoo's history, or a silent Yahoo failure).")
        df, info = normalize_bars(raw)
        info |= {"ticker": ticker, "interval": "1d", "requested": [s, e], "downloaded_at": str(now),
                 "yfinance_call": f"yf.Ticker({ticker!r}).history(start={s!r}, end={e!r}, interval='1d', "
                                  "auto_adjust=False)"}
        if cache_dir is not None:
            path = Path(cache_dir) / f"{ticker}_1d.parquet"
            _write_cache(df, path)
            info |= {"cache_path": str(path), "sha256": _file_sha256(path)}
        return Source("yfinance", df, "1d", info, price_basis=basis)

    # 1-minute: incremental chunks over Yahoo's last ~29 days
    earliest = now - pd.Timedelta(days=YAHOO_1M_DAYS)
    s0 = earliest if start is None else max(_utc(start), earliest)
    if cached is not None:  # re-fetch the last cached session: the overlap checks the price basis
        s0 = max(earliest, _utc(cached.index.max().normalize()))
    e0 = now if end is None else min(_utc(end), now)
    frames, chunks = [], []
    try:
        cur = s0
        while cur < e0:
            nxt = min(cur + pd.Timedelta(days=YAHOO_1M_CHUNK_DAYS), e0)
            raw = fetch.history(cur, nxt)
            chunks.append([str(cur), str(nxt), 0 if raw is None else len(raw)])
            if raw is not None and len(raw):
                frames.append(normalize_bars(raw)[0])
            cur = nxt
    except DataUnavailableError as exc:
        if cached is None:
            raise
        warnings.warn(f"1-minute download failed, using the cache {cache_path}: {exc}", stacklevel=2)
        return Source("cache", cached, "1m", cache_info | {"download_error": str(exc).splitlines()[0]})
    if not frames:
        if cached is not None:
            return Source("cache", cached, "1m", cache_info | {"download_note": "no new bars"})
        raise fetch._err(f"yfinance returned no 1-minute rows for {ticker} between {s0} and {e0} "
                         "(Yahoo serves 1-minute bars for the last ~30 days only).")
    new = pd.concat(frames)
    new = new[~new.index.duplicated(keep="last")].sort_index()
    merged = _merge_minute_cache(cached, new)
    info = {"layout": "yfinance", "ticker": ticker, "interval": "1m", "downloaded_at": str(now),
            "chunks": chunks, "new_bars": len(new), "cached_bars_before": 0 if cached is None else len(cached),
            "sha256": None}
    if cache_dir is not None:
        path = Path(cache_dir) / f"{ticker}_1m.parquet"
        _write_cache(merged, path)
        info |= {"cache_path": str(path), "sha256": _file_sha256(path)}
    return Source("yfinance", merged, "1m", info, price_basis=basis)


def _utc(x: str | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(x)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _file_interval(info: Mapping[str, Any]) -> str:
    iv = info.get("bar_interval")
    if iv in ("1m", "1d"):
        return iv
    raise DataValidationError(f"only 1-minute or daily bars are supported; {info.get('path')} has a modal "
                              f"bar spacing of {iv}")


# --------------------------------------------------------------------------------------------------
# the whole dataset
# --------------------------------------------------------------------------------------------------
@dataclass
class VolatilityDataset:
    """Train/test windows and the data card.

    ``X_*``: ``(N, input_len)`` float64 raw VWAPs [$]; ``y_*``: ``(N,)`` float64 population variance
    (ddof=0) of the next ``horizon`` VWAPs [$^2]; ``t_*``: ``(N,)`` tz-aware forecast origins.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    t_train: pd.DatetimeIndex
    X_test: np.ndarray
    y_test: np.ndarray
    t_test: pd.DatetimeIndex
    card: dict[str, Any]


def _resolve_ranges(dates: list[pd.Timestamp], train_range, test_range, test_fraction):
    if test_fraction is None:
        return tuple(str(pd.Timestamp(x).date()) for x in (*train_range, *test_range))
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction must be in (0, 1)")
    if len(dates) < 2:
        raise _unavailable(f"only {len(dates)} usable session(s): cannot split chronologically")
    n_test = min(len(dates) - 1, max(1, round(test_fraction * len(dates))))
    return (str(dates[0].date()), str(dates[-n_test - 1].date()), str(dates[-n_test].date()),
            str(dates[-1].date()))


def load_volatility_dataset(
    data: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike | None = None,
    allow_download: bool = False, ticker: str = "AMC", interval: str = "1d",
    train_range: tuple[str, str] = PAPER_TRAIN_RANGE, test_range: tuple[str, str] = PAPER_TEST_RANGE,
    test_fraction: float | None = None, input_len: int = 60, horizon: int = 10, stride: int = 1,
    max_ffill: int = 2, price_basis: str | None = None, assume_tz: str | None = None,
    synthetic_range: tuple[str, str] = SYNTHETIC_RANGE, seed: int = 0,
    sleep: Callable[[float], Any] = time.sleep, now: pd.Timestamp | None = None,
) -> VolatilityDataset:
    """Resolve a source, validate, build windows, split by date and write the data card.

    ``data``/``cache_dir``/``allow_download``/``ticker``/``interval`` go to :func:`resolve_source`
    (``interval`` only matters for the cache and downloads; a file's bar spacing decides between the
    minute task and the daily variant).  Splits are by session date: ``train_range``/``test_range``
    (inclusive, default the paper's 2015-02-01..2020-12-31 / 2021-01-01..2021-12-31), or with
    ``test_fraction`` the last fraction of usable sessions is the test split (for recent 1-minute data).
    ``price_basis`` declares the basis of a user file (accepts split-like jumps, see :func:`validate`).

    Raises :class:`DataValidationError` for malformed data and :class:`DataUnavailableError` when there
    is no data or a split has no windows.
    """
    want_daily = interval == "1d"  # 1-minute downloads always cover Yahoo's last ~29 days
    src = resolve_source(data, cache_dir, allow_download, ticker=ticker, interval=interval,
                         start=train_range[0] if want_daily else None,
                         end=str((pd.Timestamp(test_range[1]) + pd.Timedelta(days=1)).date()) if want_daily else None,
                         assume_tz=assume_tz, sleep=sleep, now=now,
                         synthetic_kwargs={"start": synthetic_range[0], "end": synthetic_range[1],
                                           "split_date": test_range[0], "seed": seed})
    basis = price_basis if price_basis is not None else src.price_basis
    report = validate(src.frame, price_basis=basis)
    df = src.frame
    vwap, method = minute_vwap(df)
    span = input_len + horizon
    reasons: Counter[str] = Counter()

    if src.interval == "1m":
        variant = "minute"
        sessions, sess_report = regular_session_vwap(df, max_ffill=max_ffill, vwap=vwap)
        reasons.update(sess_report["dropped_reasons"])
        usable = {}
        for d, s in sessions.items():
            if len(s) < span:
                reasons[f"shorter than one window ({span} minutes)"] += 1
            elif _window_starts(s.to_numpy(dtype=np.float64), span, stride).size == 0:
                reasons["no gap-free window"] += 1
            else:
                usable[d] = s
        dates = [pd.Timestamp(d) for d in usable]
        tr0, tr1, te0, te1 = _resolve_ranges(dates, train_range, test_range, test_fraction)
        in_range = {d: s for d, s in usable.items()
                    if tr0 <= str(d) <= tr1 or te0 <= str(d) <= te1}
        X, y, t = make_windows(in_range, input_len, horizon, stride)
        n_sessions_total = sess_report["sessions_in_file"]
        bars = {k: v for k, v in sess_report.items() if k not in ("dropped_reasons", "sessions_in_file")}
        vwap_method = method
        kept_keys = [str(d) for d in usable]
        outside = len(usable) - len(in_range)
    else:
        variant = "daily"
        traded = df["volume"].to_numpy() > 0
        daily = pd.Series(vwap.to_numpy(dtype=np.float64)[traded], index=df.index[traded]).sort_index()
        if (~traded).any():
            reasons["zero-volume day"] += int((~traded).sum())
        day = _session_dates(daily.index)
        dates = list(day)
        tr0, tr1, te0, te1 = _resolve_ranges(dates, train_range, test_range, test_fraction)
        segments = {
            "train": daily[np.asarray((day >= pd.Timestamp(tr0)) & (day <= pd.Timestamp(tr1)))],
            "test": daily[np.asarray((day >= pd.Timestamp(te0)) & (day <= pd.Timestamp(te1)))],
        }
        X, y, t = make_windows(segments, input_len, horizon, stride)
        n_sessions_total = len(df)
        bars = {"bars_in_file": len(df), "zero_volume_days": int((~traded).sum())}
        vwap_method = f"daily {method}"
        kept_keys = [str(d.date()) for d in day]
        outside = int(len(daily) - len(segments["train"]) - len(segments["test"]))

    train_mask, test_mask = split_by_date(t, tr0, tr1, te0, te1)
    for name, mask in (("train", train_mask), ("test", test_mask)):
        if not mask.any():
            have = f"{kept_keys[0]}..{kept_keys[-1]}" if kept_keys else "nothing usable"
            raise _unavailable(
                f"no {variant} windows in the {name} split ({tr0}..{tr1} / {te0}..{te1}); the data covers "
                f"{have}. Pass train_range/test_range or test_fraction to match the data.",
                ticker=ticker, interval=src.interval)
    idx = df.index
    card = {
        "task": "volatility",
        "variant": variant,
        "synthetic": src.synthetic,
        "source": src.kind,
        "source_info": _jsonable(src.info),
        "ticker": "synthetic" if src.synthetic else ticker,
        "file_sha256": src.info.get("sha256"),
        "content_sha256": _content_sha256(df),
        "date_range": [str(idx.min()), str(idx.max())],
        "sessions": {
            "in_data": int(n_sessions_total),
            "kept": len(kept_keys) if variant == "minute" else int(len(daily)),
            "dropped": int(sum(reasons.values())),
            "dropped_reasons": dict(reasons),
            "outside_split_ranges": int(outside),
        },
        "bars": bars,
        "vwap_method": vwap_method,
        "price_basis": basis if basis is not None else "undeclared (no split-like jumps found)",
        "split_like_jumps": report["split_like_jumps"],
        "bar_label": "bar start; regular session 09:30 <= t < 16:00 America/New_York" if variant == "minute"
        else "one bar per trading day; a daily 'session' is one contiguous split period",
        "input_len": input_len,
        "horizon": horizon,
        "units": {"X": "$ (raw VWAP)", "y": "$^2", "t": "forecast origin = label of first target bar"},
        "stride": stride,
        "max_ffill": max_ffill if variant == "minute" else None,
        "variance_definition": VARIANCE_DEFINITION,
        "target": f"population variance (ddof=0) of the next {horizon} "
                  f"{'minute-VWAPs' if variant == 'minute' else 'daily typical prices'} (raw prices)",
        "splits": {"train": [tr0, tr1], "test": [te0, te1],
                   "by": "session date" if variant == "minute" else "trading date (segments cut at the split)",
                   "test_fraction": test_fraction},
        "n_windows": {"train": int(train_mask.sum()), "test": int(test_mask.sum())},
    }
    if src.synthetic:
        card["warning"] = "SYNTHETIC data (not AMC market data)"
    return VolatilityDataset(X[train_mask], y[train_mask], t[train_mask], X[test_mask], y[test_mask],
                             t[test_mask], card)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)
