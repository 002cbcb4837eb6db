"""Minute VWAPs and regular-session grids: 09:30-16:00 New York, zero-volume gaps, short gaps filled."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from .conventions import NY_TZ, SESSION_MINUTES
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


def _fill_short_gaps(v: np.ndarray, max_ffill: int) -> tuple[np.ndarray, int, int]:
    """Forward-fill NaN runs of length <= max_ffill in ``v`` (1-D, in place); longer runs stay NaN entirely.

    Returns ``(v, filled, unfilled)`` counts of NaN values."""
    isna = np.isnan(v)
    if not isna.any():
        return v, 0, 0
    run_id = np.cumsum(~isna)
    run_len = np.bincount(run_id, weights=isna)[run_id]
    fill = isna & (run_len <= max_ffill)
    last_valid = np.maximum.accumulate(np.where(isna, 0, np.arange(v.size)))
    ok = fill & ~np.isnan(v[last_valid])  # a run at the very start has nothing to fill from
    v[ok] = v[last_valid[ok]]
    return v, int(ok.sum()), int((isna & ~ok).sum())


_DAY_NS = 86_400 * 10**9
_MINUTE_NS = 60 * 10**9
_OPEN_MINUTE, _CLOSE_MINUTE = SESSION_MINUTES  # the regular session, minutes after midnight New York


def wall_clock(idx: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """``(day, minute)``: New York calendar day (int64 days since 1970-01-01) and minute of the day of each bar."""
    wall = idx.tz_convert(NY_TZ).tz_localize(None).as_unit("ns").asi8
    return wall // _DAY_NS, (wall % _DAY_NS) // _MINUTE_NS


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
    if len(idx):
        ns = idx.as_unit("ns").asi8
        off_minute = ns % _MINUTE_NS != 0
        if off_minute.any():
            bad = np.flatnonzero(off_minute)
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
    values = np.asarray(vwap.to_numpy(dtype=np.float64))
    day, minute = wall_clock(idx)
    in_session = (minute >= _OPEN_MINUTE) & (minute < _CLOSE_MINUTE)
    traded = np.asarray(df["volume"].to_numpy() > 0)
    keep = in_session & traded
    all_days = np.unique(day)
    session_days = np.unique(day[in_session])
    kept_days, first_row, n_rows = np.unique(day[keep], return_index=True, return_counts=True)
    slot = (minute[keep] - _OPEN_MINUTE).astype(np.int64)
    kept_values = values[keep]
    kept_idx = idx[keep]
    sessions: dict[Any, pd.Series] = {}
    reasons: Counter[str] = Counter()
    reasons["only extended-hours bars"] = int(all_days.size - session_days.size)
    reasons["no traded regular-session minutes (all zero volume)"] = int(session_days.size - kept_days.size)
    n_filled = n_unfilled = 0
    for i0, n in zip(first_row, n_rows, strict=True):
        s_slot = slot[i0 : i0 + n]
        grid = np.full(int(s_slot[-1] - s_slot[0]) + 1, np.nan)
        grid[s_slot - s_slot[0]] = kept_values[i0 : i0 + n]
        grid, f, u = _fill_short_gaps(grid, max_ffill)
        n_filled += f
        n_unfilled += u
        start = kept_idx[i0]
        index = pd.date_range(start, periods=grid.size, freq="1min")
        sessions[start.date()] = pd.Series(grid, index=index, name="vwap")
    report = {
        "bars_in_file": len(df),
        "bars_outside_regular_session": int((~in_session).sum()),
        "zero_volume_minutes": int((in_session & ~traded).sum()),
        "forward_filled_minutes": n_filled,
        "unfilled_gap_minutes": n_unfilled,
        "max_ffill": max_ffill,
        "sessions_in_file": int(all_days.size),
        "dropped_reasons": {k: v for k, v in reasons.items() if v},
    }
    return sessions, report
