"""Validation of normalised bar frames: every problem reported with its count and first offending rows.

Duplicates, unsorted rows, NaN, non-positive prices, high < low, negative volume, and split-like overnight
jumps (mixed as-traded / split-adjusted price bases) -- see :func:`validate`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .errors import DataValidationError

__all__ = ["PRICE_COLUMNS", "SPLIT_RATIOS", "SPLIT_TOLERANCE", "validate"]

SPLIT_RATIOS = (10.0, 0.1, 2.0, 0.5)
SPLIT_TOLERANCE = 0.15
PRICE_COLUMNS = ("open", "high", "low", "close")


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
    df: pd.DataFrame, *, price_basis: str | None = None, split_tolerance: float = SPLIT_TOLERANCE
) -> dict[str, Any]:
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
