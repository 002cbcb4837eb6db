"""Tidying a vendor file before validation: one ticker's rows, time order, duplicates, isolated bad ticks.

Each step says what it did (``info`` keys, shown in the data card) or raises one
:class:`~lightning_implicit.datamodules.market.errors.DataValidationError` that names the problem and the fix:

* **ticker**: a ticker column (``Stock``, ``symbol``, ``ticker``, any case) selects the rows of ``ticker``
  (``TICKER=`` / ``--data.init_args.ticker``; default AMC); a file without AMC rows names the tickers it has.
* **order**: rows in any order are sorted by time (Alpha Vantage writes newest first); the card says so.
* **duplicates**: rows repeated exactly are dropped and counted; rows with one timestamp and different values
  are an error (two tickers interleaved without a ticker column look like this).
* **non-finite, zero, negative and constant prices** are errors (a zero is a missing print, not a price; a
  volatility of exactly zero everywhere is no task).
* **isolated bad ticks**: a minute whose price is more than :data:`TICK_FACTOR` times away from the median of
  the 5 minutes on either side, while those neighbours agree with each other, is dropped and counted (a single
  mis-keyed print must not become a volatility spike); a jump by that factor that persists inside one session
  (a level shift) is an error: real intraday moves of 5x do not happen, split-adjustment mistakes do.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .errors import DataValidationError
from .validation import _fmt_rows

__all__ = ["TICKER_COLUMNS", "TICK_FACTOR", "select_ticker", "tidy_bars"]

TICKER_COLUMNS = ("ticker", "symbol", "stock", "code")
TICK_FACTOR = 5.0
_NEIGHBOURS = 5


def select_ticker(raw: pd.DataFrame, ticker: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Keep the rows of ``ticker`` when the file has a ticker column; ``info``: column, tickers found."""
    lower = {str(c).strip().lower(): c for c in raw.columns}
    col = next((lower[c] for c in TICKER_COLUMNS if c in lower), None)
    if col is None:
        return raw, {}
    values = raw[col].astype("string").str.strip()
    found = sorted(v for v in values.dropna().unique())
    keep = values.str.upper() == ticker.upper()
    if not keep.any():
        raise DataValidationError(
            [
                {
                    "problem": f"no rows for ticker {ticker!r} in the ticker column {str(col)!r}",
                    "count": 0,
                    "rows": [],
                    "hint": f"tickers in the file: {', '.join(found[:20])}; choose one with TICKER=<name> (make) or "
                    "--data.init_args.ticker <name>",
                }
            ]
        )
    out = raw[keep.to_numpy()].drop(columns=[col]).reset_index(drop=True)
    return out, {
        "ticker_column": str(col),
        "tickers_in_file": found,
        "rows_other_tickers": int((~keep).sum()),
    }


def tidy_bars(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Sort, drop exact duplicates and isolated bad ticks; raise on conflicts, non-finite or constant prices.

    ``df``: canonical bars (tz-aware index, float columns). Returns ``(df, info)`` with counts of what changed.
    """
    info: dict[str, Any] = {}
    prices = [c for c in ("open", "high", "low", "close", "vwap") if c in df.columns]
    inf = np.isinf(df[prices].to_numpy()).any(axis=1)
    if inf.any():
        raise DataValidationError(
            [
                {
                    "problem": "infinite prices",
                    "count": int(inf.sum()),
                    "rows": _fmt_rows(df, np.flatnonzero(inf)),
                    "hint": "remove or repair those rows in the file",
                }
            ]
        )
    nonpos = (df[prices].to_numpy() <= 0).any(axis=1)
    if nonpos.any():  # before the bad-tick filter: a zero is a missing print, never a tick to drop quietly
        zero = bool((df[prices].to_numpy() == 0).any())
        raise DataValidationError(
            [
                {
                    "problem": "zero or negative prices" if zero else "negative prices",
                    "count": int(nonpos.sum()),
                    "rows": _fmt_rows(df, np.flatnonzero(nonpos)),
                    "hint": "a price of 0 is a missing print, not a trade: remove or repair those rows in the file",
                }
            ]
        )
    if not df.index.is_monotonic_increasing:
        newest_first = bool(df.index.is_monotonic_decreasing)
        df = df.sort_index(kind="stable")
        info["row_order"] = (
            "newest first in the file: sorted by time"
            if newest_first
            else "unordered in the file: sorted by time"
        )
    else:
        info["row_order"] = "sorted by time in the file"
    dup_ts = df.index.duplicated(keep=False)
    if dup_ts.any():
        frame = df.reset_index()
        exact = frame.duplicated(keep="first").to_numpy()
        df = df[~exact]
        info["exact_duplicates_dropped"] = int(exact.sum())
        conflict = df.index.duplicated(keep=False)
        if conflict.any():
            raise DataValidationError(
                [
                    {
                        "problem": "conflicting duplicate timestamps (same minute, different prices or volume)",
                        "count": int(df.index.duplicated().sum()),
                        "rows": _fmt_rows(df, np.flatnonzero(conflict)),
                        "hint": "two tickers interleaved? add a ticker column (Stock/symbol/ticker) and choose one with "
                        "TICKER=, or save one ticker per file",
                    }
                ]
            )
    close = df["close"].to_numpy(dtype=np.float64)
    finite = close[np.isfinite(close)]
    if finite.size >= 2 and np.ptp(finite) == 0:
        raise DataValidationError(
            [
                {
                    "problem": f"every close price is {finite[0]:g}: the variance is zero everywhere",
                    "count": int(finite.size),
                    "rows": [],
                }
            ]
        )
    df, dropped = _drop_isolated_ticks(df)
    info["isolated_bad_ticks_dropped"] = dropped
    return df, info


def _rolling_median_before(close: np.ndarray, day: np.ndarray, k: int) -> np.ndarray:
    """Median of the (non-NaN) closes of the ``k`` rows before each row in the same session; NaN when none.

    The same numbers as ``groupby(day).rolling(k, min_periods=1).median().shift(1)``, without a Python loop."""
    n = close.size
    pad = np.concatenate([np.full(k, np.nan), close])
    pad_day = np.concatenate([np.full(k, np.iinfo(np.int64).min), day])
    win = np.lib.stride_tricks.sliding_window_view(pad, k)[:n]  # rows i-k .. i-1 for row i
    win_day = np.lib.stride_tricks.sliding_window_view(pad_day, k)[:n]
    vals = np.where(win_day == day[:, None], win, np.nan)
    vals = np.sort(vals, axis=1)  # NaN last
    count = (~np.isnan(vals)).sum(axis=1)
    lo = np.take_along_axis(vals, np.maximum((count - 1) // 2, 0)[:, None], axis=1)[:, 0]
    hi = np.take_along_axis(vals, np.maximum(count // 2, 0)[:, None], axis=1)[:, 0]
    return np.where(count > 0, (lo + hi) / 2.0, np.nan)


def _drop_isolated_ticks(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop single minutes far from both sides' medians (same session); raise on persistent level shifts."""
    if len(df) < 3:
        return df, 0
    close = df["close"].to_numpy(dtype=np.float64)
    wall = df.index.tz_localize(None).as_unit("ns").asi8  # local wall clock of the file's zone (New York)
    day = wall // (86_400 * 10**9)
    before = _rolling_median_before(close, day, _NEIGHBOURS)
    after = _rolling_median_before(close[::-1], day[::-1], _NEIGHBOURS)[::-1]

    def far(a, b):
        return np.maximum(a / b, b / a) > TICK_FACTOR

    with np.errstate(invalid="ignore", divide="ignore"):
        far_b, far_a, apart = far(close, before), far(close, after), far(before, after)
    both = ~np.isnan(before) & ~np.isnan(after)
    bad = both & far_b & far_a & ~apart
    shift = both & far_b & ~far_a & apart
    if shift.any():
        rows = [
            f"{df.index[i]} close {close[i]:g} after a median {before[i]:g}"
            for i in np.flatnonzero(shift)[:3]
        ]
        raise DataValidationError(
            [
                {
                    "problem": f"price level jumps by more than {TICK_FACTOR:g}x inside a session and stays there",
                    "count": int(shift.sum()),
                    "rows": rows,
                    "hint": "a split adjusted part-way through the file, or another ticker's prices; repair the file",
                }
            ]
        )
    return df[~bad], int(bad.sum())
