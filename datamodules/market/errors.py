"""The data layer's errors and the guidance they carry: accepted file layouts and the ``DATA=`` hint.

:class:`DataValidationError` (a file is malformed) and :class:`DataUnavailableError` (no usable data:
what is missing, which layouts are accepted, how to pass a file).
"""

from __future__ import annotations

import os
from typing import Any

from .cache import _cache_candidates

__all__ = [
    "ACCEPTED_LAYOUTS",
    "DATA_HINT",
    "DataUnavailableError",
    "DataValidationError",
    "accepted_layouts_text",
]

DATA_HINT = "make sweep TASK=volatility DATA=path/to/amc_1min.csv"

#: (name, one-line header example, note) for every accepted file layout.
ACCEPTED_LAYOUTS: tuple[tuple[str, str, str], ...] = (
    (
        "yfinance",
        "Datetime,Open,High,Low,Close,Volume[,Dividends,Stock Splits]",
        "'Date' instead of 'Datetime' for daily bars; timestamps with UTC offsets",
    ),
    (
        "Alpha Vantage",
        "timestamp,1. open,2. high,3. low,4. close,5. volume",
        "'date'/'time' also accepted; naive times are New York (DATA_TZ= to change)",
    ),
    ("Polygon", "t,o,h,l,c,v,vw", "'t' in epoch milliseconds (UTC) or 'timestamp'; 'vw' = VWAP"),
    (
        "generic",
        "timestamp,open,high,low,close,volume[,vwap]",
        "any case; time column timestamp/time/date/datetime; naive times need DATA_TZ=",
    ),
    (
        "any of these",
        "...,Stock (or symbol/ticker)",
        "several tickers stacked: TICKER= picks the rows (default AMC)",
    ),
)


def accepted_layouts_text() -> str:
    """Human-readable list of accepted layouts, one header example per line."""
    lines = ["Accepted minute-bar file layouts (CSV or parquet; header line shown):"]
    for name, header, note in ACCEPTED_LAYOUTS:
        lines.append(f"  {name + ':':<15}{header}    ({note})")
    return "\n".join(lines)


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


def _unavailable(
    what: str, *, ticker: str = "AMC", interval: str = "1m", cache_dir: str | os.PathLike | None = None
) -> DataUnavailableError:
    cache_line = (
        f"No cache file {_cache_candidates(cache_dir, ticker, interval)[0]} either.\n"
        if cache_dir is not None
        else ""
    )
    return DataUnavailableError(
        f"No {ticker} price data available: {what}\n{cache_line}"
        "Minute data for the paper's 2015-2021 range cannot be downloaded from Yahoo; supply a file.\n"
        f"{accepted_layouts_text()}\n"
        f"Pass one with `{DATA_HINT}` (load_volatility_dataset(data=...)), "
        "or `make sweep TASK=volatility DATA=synthetic` for a labelled synthetic series, "
        "or allow downloads for the yfinance daily variant (interval='1d') / recent 1-minute bars."
    )
