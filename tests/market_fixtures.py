"""Hand-made minute files in the layouts users have (made here, never copied vendor data).

``write_fixture(kind, folder)`` writes one file and returns its path (a good file for the kinds in ``GOOD``, one
named fault for the kinds in ``BAD``, each with the words its error must contain). Prices are a seeded random walk around $20
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


def _yfinance(b: pd.DataFrame, path: Path) -> Path:
    t = b.rename(columns=str.capitalize)
    t.index.name = "Datetime"
    t.to_csv(path)
    return path


def _alphavantage(b: pd.DataFrame, path: Path) -> Path:
    """alpha_vantage's pandas output: naive New York times (its documented zone), newest first."""
    t = b.iloc[::-1]
    pd.DataFrame(
        {
            "date": t.index.tz_convert(NY).strftime("%Y-%m-%d %H:%M:%S"),
            "1. open": t["open"],
            "2. high": t["high"],
            "3. low": t["low"],
            "4. close": t["close"],
            "5. volume": t["volume"],
        }
    ).to_csv(path, index=False)
    return path


def _generic(b: pd.DataFrame, path: Path, **to_csv) -> Path:
    t = b.copy()
    t.index.name = "timestamp"
    t.to_csv(path, **to_csv)
    return path


def write_bad(kind: str, folder: Path) -> Path:
    """One file with the fault ``kind`` (see :data:`BAD`), in a vendor layout."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    b = bars()
    prices = ["open", "high", "low", "close"]
    if kind == "zero prices":  # a bar with every price 0 (used to be dropped as a bad tick and filled)
        b.iloc[150, :4] = 0.0
        return _yfinance(b, folder / "zero.csv")
    if kind == "constant session":  # session 3 at one price for all its minutes
        b.loc[b.index.normalize() == pd.Timestamp(DAYS[2], tz=NY), prices] = 12.5
        return _alphavantage(b, folder / "flat_session.csv")
    if kind == "weekend session":  # a fifth session on Saturday 2026-11-21
        sat = bars(3, days=("2026-11-21",))
        return _generic(pd.concat([b, sat]), folder / "weekend.csv")
    if kind == "future session":
        later = bars(4, days=("2099-01-05",))
        return _yfinance(pd.concat([b, later]), folder / "future.csv")
    if kind == "summer offsets -05:00":  # New York clock times written with a fixed EST offset in July
        summer = bars(5, days=("2026-07-06", "2026-07-07", "2026-07-08", "2026-07-09"))
        clock = summer.index.tz_convert(NY).strftime("%Y-%m-%d %H:%M:%S")
        t = summer.rename(columns=str.capitalize)
        t.index = pd.Index([f"{c}-05:00" for c in clock], name="Datetime")
        path = folder / "fixed_est.csv"
        t.to_csv(path)
        return path
    if kind == "two sessions":
        return _yfinance(bars(6, days=DAYS[:2]), folder / "two_sessions.csv")
    if kind == "utf-16":
        path = _yfinance(b, folder / "utf16.csv")
        path.write_bytes(path.read_text().encode("utf-16"))
        return path
    if kind == "utf-16 without BOM":
        path = _yfinance(b, folder / "utf16le.csv")
        path.write_bytes(path.read_text().encode("utf-16-le"))
        return path
    if kind == "latin-1":  # a spreadsheet's Latin-1 export: 'volumé' in the header
        path = _generic(b, folder / "latin1.csv")
        path.write_bytes(path.read_text().replace("volume", "volum\u00e9", 1).encode("latin-1"))
        return path
    if kind == "decimal comma ;":
        return _generic(b, folder / "semicolons.csv", sep=";", decimal=",")
    if kind == "decimal comma quoted":
        return _generic(b, folder / "quoted_commas.csv", decimal=",")
    if kind == "decimal comma unquoted":  # a hand-edited file: 20,15 between commas
        path = folder / "unquoted_commas.csv"
        lines = ["timestamp,open,high,low,close,volume"]
        for t, r in b.iterrows():
            cells = [f"{r[c]:.2f}".replace(".", ",") for c in prices]
            lines.append(f"{t.isoformat()},{','.join(cells)},{int(r['volume'])}")
        path.write_text("\n".join(lines) + "\n")
        return path
    if kind == "NUL padding":  # a valid CSV followed by 8 MiB of NUL bytes (a copy that stopped half-way)
        path = _yfinance(b, folder / "padded.csv")
        with open(path, "r+b") as fh:
            fh.truncate(path.stat().st_size + 8 * 2**20)
        return path
    if kind == "2 GiB of NUL padding":  # sparse: takes no disk space, refused from its size
        path = _yfinance(b, folder / "huge.csv")
        with open(path, "r+b") as fh:
            fh.truncate(2 * 2**30)
        return path
    if kind == "symlink loop":
        a, c = folder / "loop_a.csv", folder / "loop_b.csv"
        a.symlink_to(c)
        c.symlink_to(a)
        return a
    if kind == "dangling symlink":
        a = folder / "link.csv"
        a.symlink_to(folder / "moved_away.csv")
        return a
    raise ValueError(f"unknown fault {kind!r}")


#: fault -> words its one error line must contain (the reason and the fix)
BAD = {
    "zero prices": ("zero or negative prices", "remove or repair those rows"),
    "constant session": ("constant sessions", "2026-11-18: 100 minutes at 12.5", "remove those sessions"),
    "weekend session": ("bars on weekends", "2026-11-21", "DATA_TZ="),
    "future session": ("bars dated after now", "repair the dates"),
    "summer offsets -05:00": ("disagree with New York's calendar", "DATA_TZ=America/New_York"),
    "two sessions": ("at least 2 per split", "pass a file with at least 4 usable sessions"),
    "utf-16": ("is UTF-16 text (byte-order mark FF FE)", "save it as UTF-8"),
    "utf-16 without BOM": ("is UTF-16 text without a byte-order mark", "save it as UTF-8"),
    "latin-1": ("is not UTF-8 text: byte 0xE9", "save it as UTF-8"),
    "decimal comma ;": ("separates fields with ';' and writes decimal commas", "'.' as the decimal point"),
    "decimal comma quoted": ("a decimal comma (or a thousands separator)", "'.' as the decimal point"),
    "decimal comma unquoted": ("writes numbers with a comma inside (line 2", "'.' as the decimal point"),
    "NUL padding": ("not a text CSV file: NUL bytes at byte", "pass the intact CSV"),
    "2 GiB of NUL padding": ("2.00 GiB, above the 512 MiB limit", "keep the years you need"),
    "symlink loop": ("is a symlink loop", "point DATA= at the file itself"),
    "dangling symlink": ("moved_away.csv', which does not exist", "point DATA= at the file itself"),
}


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "market_fixtures")
    for k in GOOD:
        print(write_fixture(k, out))
    for k in BAD:
        print(write_bad(k, out / "bad"))
