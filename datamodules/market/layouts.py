"""Reading bar files (CSV/parquet) and normalising vendor layouts (yfinance, Alpha Vantage, Polygon, generic).

:func:`load_minute_file` reads a file, :func:`normalize_bars` maps any accepted layout (see
:data:`~lightning_implicit.datamodules.market.errors.ACCEPTED_LAYOUTS`) to the canonical frame: tz-aware New York index
named ``timestamp`` and float64 ``open, high, low, close, volume[, vwap]`` columns.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataValidationError, accepted_layouts_text
from .filecheck import check_file
from .provenance import _file_sha256
from .tidy import select_ticker, tidy_bars
from .timestamps import _infer_interval, _parse_timestamps, offsets_in_other_season

__all__ = ["load_minute_file", "normalize_bars"]

# name, time-column candidates, required {canonical: source}, optional {canonical: source}
# (source names are matched case-insensitively after stripping whitespace)
_TIME_NAMES = ("timestamp", "time", "datetime", "date")  # what vendors and pandas call the time column
_LAYOUT_SPECS: tuple[tuple[str, tuple[str, ...], dict[str, str], dict[str, str]], ...] = (
    (
        "alphavantage",
        _TIME_NAMES,
        {"open": "1. open", "high": "2. high", "low": "3. low", "close": "4. close", "volume": "5. volume"},
        {},
    ),
    (
        "polygon",
        ("t", *_TIME_NAMES),
        {"open": "o", "high": "h", "low": "l", "close": "c", "volume": "v"},
        {"vwap": "vw"},
    ),
    (
        "yfinance",
        ("datetime", "date"),
        {"open": "open", "high": "high", "low": "low", "close": "close", "volume": "volume"},
        {"vwap": "vwap"},
    ),
    (
        "generic",
        _TIME_NAMES,
        {"open": "open", "high": "high", "low": "low", "close": "close", "volume": "volume"},
        {"vwap": "vwap"},
    ),
)
_INDEX_FALLBACK = ("index", "unnamed: 0", "level_0", "")
# naive timestamps of these layouts are in this zone unless DATA_TZ says otherwise (the vendor documents it)
VENDOR_TZ = {"alphavantage": "America/New_York"}


def _read_raw(path: Path) -> tuple[pd.DataFrame, str]:
    """Read a CSV or parquet file; unreadable files raise one :class:`DataValidationError` naming the file."""
    try:
        return _read_raw_unchecked(path)
    except DataValidationError:
        raise
    except pd.errors.EmptyDataError:
        raise DataValidationError(
            f"{path} is empty (no header, no rows); pass a CSV or parquet file of minute bars with DATA="
        ) from None
    except UnicodeDecodeError:
        raise DataValidationError(
            f"{path} is not a text CSV file (binary content); pass a CSV or a .parquet file with DATA="
        ) from None
    except (pd.errors.ParserError, ValueError, OSError) as err:
        kind = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "CSV"
        first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise DataValidationError(
            f"{path} cannot be read as {kind} ({first}); is the file complete?"
        ) from None
    except Exception as err:  # pyarrow raises its own types for corrupt files
        raise DataValidationError(f"{path} cannot be read ({type(err).__name__}: {str(err)[:200]})") from None


def _read_raw_unchecked(path: Path) -> tuple[pd.DataFrame, str]:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path), "parquet"
    if suffix in (".csv", ".txt", ".gz") or suffix == "":
        raw = pd.read_csv(path)  # the C parser: measured faster than engine="pyarrow" here (bench_market)
        # yf.download(...).to_csv() with multi-level columns: "Price,..." / "Ticker,AMC,..." / "Datetime,,,"
        if (
            len(raw.columns)
            and str(raw.columns[0]).strip() == "Price"
            and len(raw) >= 2
            and str(raw.iloc[0, 0]).strip() == "Ticker"
        ):
            tickers = {str(v) for v in raw.iloc[0, 1:].tolist()}
            if len(tickers) > 1:
                raise DataValidationError(
                    f"multi-ticker yf.download file ({sorted(tickers)}); save one ticker"
                )
            time_name = (
                str(raw.iloc[1, 0]).strip()
                if str(raw.iloc[1, 0]).strip() in ("Datetime", "Date")
                else "Datetime"
            )
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
                if c in lower:
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
    for name, _, required, _ in reversed(_LAYOUT_SPECS):  # one column short of a layout: name it
        absent = [src for src in required.values() if src not in lower]
        if len(absent) == 1 and len(required) > 2:
            raise DataValidationError(
                f"the file looks like the {name} layout but has no {absent[0]!r} column "
                f"(columns: {cols}); the task needs {', '.join(required.values())}"
            )
    raise DataValidationError(
        [
            {
                "problem": f"unknown file layout (columns: {cols})",
                "count": 0,
                "rows": [],
                "hint": accepted_layouts_text().replace("\n", "\n    "),
            }
        ],
        header="unrecognised price file",
    )


def normalize_bars(
    frame: pd.DataFrame, *, assume_tz: str | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Normalise a vendor bar frame (index or column timestamps) to the canonical layout.

    Returns ``(df, info)``: ``df`` has a tz-aware ``America/New_York`` DatetimeIndex named ``timestamp``
    (file order kept: :func:`validate` reports duplicates / disorder) and float64 columns
    ``open, high, low, close, volume[, vwap]`` (prices in the file's currency, volume in shares;
    non-numeric cells become NaN).  ``info``: ``layout``, ``tz_source``, ``columns``, ``n_rows``,
    ``bar_interval`` ('1m', '1d', other spacing, or None).
    """
    if isinstance(frame.columns, pd.MultiIndex):  # yf.download without multi_level_index=False
        levels = [
            lvl
            for lvl in range(frame.columns.nlevels)
            if frame.columns.get_level_values(lvl).nunique() == 1 and frame.columns.nlevels > 1
        ]
        if not levels:
            raise DataValidationError("multi-level columns with several tickers; pass one ticker's bars")
        frame = frame.droplevel(levels, axis=1)
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index()
    layout, time_col, mapping = _detect_layout(frame)
    tz = assume_tz if assume_tz is not None else VENDOR_TZ.get(layout)
    idx, tz_source = _parse_timestamps(frame[time_col], tz)
    other_season = offsets_in_other_season(frame[time_col], idx) if tz_source == "UTC offsets in file" else 0
    if assume_tz is None and tz is not None and tz_source.startswith("naive"):
        tz_source += f" (the {layout} default; DATA_TZ= / --data.init_args.assume_tz to change)"
    elif assume_tz is not None and tz_source.startswith("naive"):
        tz_source += " (DATA_TZ / assume_tz)"
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
    if other_season:
        info["offsets_other_season"] = other_season
    return out, info


def load_minute_file(
    path: str | os.PathLike, *, assume_tz: str | None = None, ticker: str = "AMC"
) -> tuple[pd.DataFrame, dict]:
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
    facts = check_file(p)  # symlink loops, size limit, encodings, NUL bytes, decimal commas: before parsing
    raw, fmt = _read_raw(p)
    if raw.empty:
        raise DataValidationError(f"{p} has a header but no rows")
    raw, ticker_info = select_ticker(raw, ticker)
    df, info = normalize_bars(raw, assume_tz=assume_tz)
    df, tidy_info = tidy_bars(df)
    sha = facts.sha256 or _file_sha256(p)
    info = (
        {"path": str(p), "format": fmt, "sha256": sha, "bytes": facts.size} | info | ticker_info | tidy_info
    )
    return df, info
