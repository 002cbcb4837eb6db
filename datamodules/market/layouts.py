"""Reading bar files (CSV/parquet) and normalising vendor layouts (yfinance, Alpha Vantage, Polygon, generic).

:func:`load_minute_file` reads a file, :func:`normalize_bars` maps any accepted layout (see
:data:`~datamodules.market.errors.ACCEPTED_LAYOUTS`) to the canonical frame: tz-aware New York index
named ``timestamp`` and float64 ``open, high, low, close, volume[, vwap]`` columns.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataValidationError, accepted_layouts_text
from .provenance import _file_sha256
from .timestamps import _infer_interval, _parse_timestamps

__all__ = ["load_minute_file", "normalize_bars"]

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
