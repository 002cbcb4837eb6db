"""Hand-made minute files in the layouts users have (made here, never copied vendor data).

``write_fixture(kind, folder)`` writes one file and returns its path. Prices are a seeded random walk around $20
with 1-cent noise; every file covers four sessions of 100 regular-hours minutes (09:30-11:09 New York), so the
volatility task (60 minutes in, 10 out) has 31 windows per session. ``python -m tests.market_fixtures DIR``
writes every kind into DIR (for trying ``make sweep TASK=volatility DATA=DIR/<file>`` by hand).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

NY = "America/New_York"
DAYS = ("2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19")
MINUTES = 100


def bars(seed: int = 0, days=DAYS, base: float = 20.0, extended: bool = False) -> pd.DataFrame:
    """OHLCV minute bars, tz-aware New York index; ``extended`` adds 30 pre-market and 30 after-hours minutes."""
    rng = np.random.default_rng(seed)
    frames = []
    for day in days:
        idx = pd.date_range(f"{day} 09:30", periods=MINUTES, freq="1min", tz=NY)
        if extended:
            idx = idx.append(pd.date_range(f"{day} 08:00", periods=30, freq="1min", tz=NY))
            idx = idx.append(pd.date_range(f"{day} 16:30", periods=30, freq="1min", tz=NY)).sort_values()
        close = base + np.cumsum(rng.normal(0.0, 0.02, len(idx)))
        frames.append(
            pd.DataFrame(
                {
                    "open": close + 0.01,
                    "high": close + 0.03,
                    "low": close - 0.03,
                    "close": close,
                    "volume": rng.integers(1_000, 5_000, len(idx)).astype(float),
                },
                index=idx,
            )
        )
    return pd.concat(frames)


def _us(idx: pd.DatetimeIndex) -> list[str]:
    """US spreadsheet style ``M/D/YYYY H:MM``, naive New York time."""
    return [f"{t.month}/{t.day}/{t.year} {t.hour}:{t.minute:02d}" for t in idx.tz_convert(NY)]


def write_fixture(kind: str, folder: Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    b = bars()
    if kind == "alphavantage_pandas":  # alpha_vantage's pandas output, several tickers stacked, newest first
        parts = []
        for ticker, seed, base in (("AMC", 0, 20.0), ("GME", 1, 90.0)):
            t = bars(seed, base=base, extended=True).iloc[::-1]
            parts.append(
                pd.DataFrame(
                    {
                        "date": _us(t.index),
                        "1. open": t["open"].round(4),
                        "2. high": t["high"].round(4),
                        "3. low": t["low"].round(4),
                        "4. close": t["close"].round(4),
                        "5. volume": t["volume"],
                        "Stock": ticker,
                    }
                )
            )
        path = folder / "amc_gme_alphavantage.csv"
        pd.concat(parts).to_csv(path, index=False)
    elif kind == "yfinance_recent":
        t = b.rename(columns=str.capitalize)
        t["Dividends"], t["Stock Splits"] = 0.0, 0.0
        t.index.name = "Datetime"
        path = folder / "amc_yfinance.csv"
        t.to_csv(path)
    elif kind == "polygon":
        path = folder / "amc_polygon.csv"
        pd.DataFrame(
            {
                "t": (b.index.tz_convert("UTC").as_unit("ms").asi8).astype(np.int64),
                "o": b["open"],
                "h": b["high"],
                "l": b["low"],
                "c": b["close"],
                "v": b["volume"],
                "vw": (b["high"] + b["low"] + b["close"]) / 3,
            }
        ).to_csv(path, index=False)
    elif kind == "duplicates":
        t = pd.concat([b, b.iloc[50:60]]).sort_index(kind="stable")
        t.index.name = "timestamp"
        path = folder / "amc_duplicates.csv"
        t.to_csv(path)
    elif kind == "one_ticker_not_amc":
        t = bars(2, base=90.0)
        path = folder / "gme_only.csv"
        pd.DataFrame({"timestamp": t.index, **{c: t[c] for c in t.columns}, "symbol": "GME"}).to_csv(
            path, index=False
        )
    else:
        raise ValueError(f"unknown fixture {kind!r}")
    return path


GOOD = ("alphavantage_pandas", "yfinance_recent", "polygon", "duplicates", "one_ticker_not_amc")


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "market_fixtures")
    for k in GOOD:
        print(write_fixture(k, out))
