"""Minute VWAPs and regular-session grids: 09:30-16:00 New York, zero-volume gaps, short gaps filled."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from .conventions import NY_TZ
from .errors import DataValidationError

__all__ = ["minute_vwap", "regular_session_vwap"]


def minute_vwap(df: pd.DataFrame) -> tuple[pd.Series, str]:
    """Per-bar VWAP [$]: the vendor ``vwap`` column when present, else typical price (H+L+C)/3.

    Bars whose ``vwap`` cell is missing fall back to the typical price (counted in the method name).
    Returns ``(series aligned with df.index, method name)``.
    """
    typical = (df["high"] + df["low"] + df["close"]) / 3.0
    if "vwap" in df.columns and df["vwap"].notna().any():
        missing = df["vwap"].isna()
        if missing.any():
            return df["vwap"].where(~missing, typical).rename(
                "vwap"
            ), f"vwap column (typical price (H+L+C)/3 for {int(missing.sum())} bars without vwap)"
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


def regular_session_vwap(
    df: pd.DataFrame, *, max_ffill: int = 2, vwap: pd.Series | None = None
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
        raise DataValidationError(
            [
                {
                    "problem": "timestamps not on whole minutes (1-minute bars expected)",
                    "count": int(bad.size),
                    "rows": [str(idx[i]) for i in bad[:3]],
                }
            ]
        )
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
