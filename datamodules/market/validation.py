"""Validation of normalised bar frames: every problem reported with its count and first offending rows.

Duplicates, unsorted rows, NaN, non-positive prices, high < low, negative volume, bars on weekends or after
now, constant sessions, and split-like overnight jumps (mixed as-traded / split-adjusted price bases) -- see
:func:`validate`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .conventions import SESSION_MINUTES
from .errors import DataValidationError
from .sessions import wall_clock

__all__ = ["CONSTANT_SESSION_MINUTES", "PRICE_COLUMNS", "SPLIT_RATIOS", "SPLIT_TOLERANCE", "validate"]

SPLIT_RATIOS = (10.0, 0.1, 2.0, 0.5)
SPLIT_TOLERANCE = 0.15
PRICE_COLUMNS = ("open", "high", "low", "close")
CONSTANT_SESSION_MINUTES = 30  # a regular session with at least this many traded minutes, all at one price


def _calendar_problems(df: pd.DataFrame, now: pd.Timestamp) -> list[dict[str, Any]]:
    """Bars on a Saturday or Sunday (New York), bars that start after ``now``, and constant sessions."""
    problems: list[dict[str, Any]] = []
    day, minute = wall_clock(df.index)
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    weekend = weekday >= 5
    if weekend.any():
        days = sorted({str(d.date()) for d in pd.to_datetime(np.unique(day[weekend]), unit="D")})
        problems.append(
            {
                "problem": f"bars on weekends, when the exchange is closed ({len(days)} day(s): "
                + ", ".join(days[:3])
                + (", ..." if len(days) > 3 else "")
                + ")",
                "count": int(weekend.sum()),
                "rows": _fmt_rows(df, np.flatnonzero(weekend)),
                "hint": "wrong dates (day and month swapped?) or a wrong time zone (DATA_TZ=); repair the dates or "
                "remove those rows",
            }
        )
    future = np.asarray(df.index > now)
    if future.any():
        problems.append(
            {
                "problem": f"bars dated after now ({now.floor('s')})",
                "count": int(future.sum()),
                "rows": _fmt_rows(df, np.flatnonzero(future)),
                "hint": "a wrong year, or day and month swapped? repair the dates",
            }
        )
    lo, hi = SESSION_MINUTES
    traded = (minute >= lo) & (minute < hi) & (df["volume"].to_numpy() > 0)
    if traded.any():
        prices = df[list(PRICE_COLUMNS)].to_numpy(dtype=np.float64)[traded]
        g = pd.DataFrame({"hi": prices.max(axis=1), "lo": prices.min(axis=1)}).groupby(day[traded])
        per = g.agg(hi=("hi", "max"), lo=("lo", "min"), n=("hi", "size"))
        flat = per[(per["n"] >= CONSTANT_SESSION_MINUTES) & (per["hi"] == per["lo"])]
        if len(flat):
            rows = [
                f"{pd.Timestamp(int(d), unit='D').date()}: {int(r.n)} minutes at {r.hi:g}"
                for d, r in flat.head(3).iterrows()
            ]
            problems.append(
                {
                    "problem": f"constant sessions (every traded regular-session minute at one price, "
                    f"at least {CONSTANT_SESSION_MINUTES} minutes: a stale feed)",
                    "count": int(flat["n"].sum()),
                    "rows": rows,
                    "hint": "remove those sessions' rows from the file",
                }
            )
    return problems


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
                jumps.append(
                    {
                        "session": str(first_open.index[j + 1].date()),
                        "previous_session": str(last_close.index[j].date()),
                        "previous_close": float(last_close.iloc[j]),
                        "open": float(first_open.iloc[j + 1]),
                        "ratio": float(r),
                        "near": f"x{k:g}",
                    }
                )
                break
    return jumps


def validate(
    df: pd.DataFrame,
    *,
    price_basis: str | None = None,
    split_tolerance: float = SPLIT_TOLERANCE,
    now: pd.Timestamp | None = None,
) -> dict[str, Any]:
    """Check a normalised bar frame; raise :class:`DataValidationError` listing every problem.

    Problems (each reported with its count and first offending rows): duplicate timestamps, rows not
    sorted by time, NaN/missing prices or volume, non-positive prices, high < low, negative volume,
    and split-like overnight jumps -- a session's first open over the previous session's last close
    within ``split_tolerance`` (relative) of x10, x0.1, x2 or x0.5, the signature of mixed price bases
    (AMC's 2023 1:10 reverse split makes adjusted 2015-2021 prices ~10x the as-traded ones).  Jumps are
    an error only while ``price_basis`` is undeclared; declare it (``"as-traded"``, ``"adjusted"``, ...)
    to accept genuine moves -- they are still reported.  Also problems: bars on a Saturday or Sunday (New York
    date), bars starting after ``now`` (default: the current time), and constant sessions (a regular session of
    at least :data:`CONSTANT_SESSION_MINUTES` traded minutes whose open/high/low/close are all one price).

    Returns a report ``{"n_rows", "price_basis", "split_like_jumps": [...]}``.
    """
    problems: list[dict[str, Any]] = []
    idx = df.index
    if not isinstance(idx, pd.DatetimeIndex) or idx.tz is None:
        raise DataValidationError(
            "index must be a tz-aware DatetimeIndex (use load_minute_file/normalize_bars)"
        )
    missing = [c for c in (*PRICE_COLUMNS, "volume") if c not in df.columns]
    if missing:
        raise DataValidationError(f"missing columns {missing}")

    dup = np.asarray(idx.duplicated(keep=False))
    if dup.any():
        problems.append(
            {
                "problem": "duplicate timestamps",
                "count": int(np.asarray(idx.duplicated()).sum()),
                "rows": _fmt_rows(df, np.flatnonzero(dup)),
            }
        )
    ts = idx.tz_convert("UTC").tz_localize(None).to_numpy()
    back = np.flatnonzero(ts[1:] < ts[:-1]) + 1
    if back.size:
        rows = [
            f"row {int(i)} @ {idx[int(i)]} is earlier than row {int(i) - 1} @ {idx[int(i) - 1]}"
            for i in back[:3]
        ]
        problems.append({"problem": "rows not sorted by time", "count": int(back.size), "rows": rows})

    prices = [c for c in (*PRICE_COLUMNS, "vwap") if c in df.columns]
    nan = np.asarray(df[[*PRICE_COLUMNS, "volume"]].isna().any(axis=1))
    if nan.any():
        problems.append(
            {
                "problem": "NaN/missing prices or volume (open/high/low/close/volume)",
                "count": int(nan.sum()),
                "rows": _fmt_rows(df, np.flatnonzero(nan)),
            }
        )
    nonpos = np.asarray((df[prices] <= 0).any(axis=1))
    if nonpos.any():
        problems.append(
            {
                "problem": "non-positive prices",
                "count": int(nonpos.sum()),
                "rows": _fmt_rows(df, np.flatnonzero(nonpos)),
            }
        )
    hl = np.asarray(df["high"] < df["low"])
    if hl.any():
        problems.append(
            {"problem": "high < low", "count": int(hl.sum()), "rows": _fmt_rows(df, np.flatnonzero(hl))}
        )
    negv = np.asarray(df["volume"] < 0)
    if negv.any():
        problems.append(
            {
                "problem": "negative volume",
                "count": int(negv.sum()),
                "rows": _fmt_rows(df, np.flatnonzero(negv)),
            }
        )

    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    problems += _calendar_problems(df, now if now.tzinfo is not None else now.tz_localize("UTC"))

    jumps = _split_like_jumps(df, split_tolerance)
    if jumps and price_basis is None:
        rows = [
            f"{j['session']} open {j['open']:g} vs {j['previous_session']} close {j['previous_close']:g} "
            f"(x{j['ratio']:.3g}, near {j['near']})"
            for j in jumps[:3]
        ]
        problems.append(
            {
                "problem": "split-like overnight jumps (mixed as-traded / split-adjusted prices?)",
                "count": len(jumps),
                "rows": rows,
                "hint": "if these are genuine moves or the basis is known, declare it: "
                "price_basis='as-traded' or price_basis='adjusted'",
            }
        )
    if problems:
        raise DataValidationError(problems)
    return {"n_rows": len(df), "price_basis": price_basis, "split_like_jumps": jumps}
