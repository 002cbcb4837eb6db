"""Sliding (input -> variance) windows inside sessions; the chronological train/test split by session date."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .conventions import NY_TZ

__all__ = ["make_windows", "split_by_date"]


def _window_starts(values: np.ndarray, span: int, stride: int) -> np.ndarray:
    """Start positions of complete (NaN-free) windows of ``span`` values, every ``stride`` positions."""
    n = len(values)
    if n < span:
        return np.zeros(0, dtype=np.int64)
    c = np.concatenate([[0], np.cumsum(np.isnan(values))])
    starts = np.arange(0, n - span + 1, stride)
    return starts[(c[starts + span] - c[starts]) == 0]


def make_windows(
    vwap_by_session: Mapping[Any, pd.Series], input_len: int = 60, horizon: int = 10, stride: int = 1
) -> tuple[np.ndarray, np.ndarray, pd.DatetimeIndex]:
    """Sliding (input -> variance) windows inside each session.

    Parameters
    ----------
    vwap_by_session: session key -> VWAP Series [$] on a regular grid (NaN = unfilled gap), e.g. from
        :func:`regular_session_vwap`.  Windows never cross from one series into the next, nor touch a NaN.
    input_len, horizon: window lengths in bars (60 and 10 minutes in the paper).
    stride: step between consecutive window starts within a session (1 = every bar).

    Returns
    -------
    X: ``(N, input_len)`` float64 raw VWAP prices [$].
    y: ``(N,)`` float64 population variance (``ddof=0``) of the next ``horizon`` VWAPs [$^2].
    t: ``(N,)`` tz-aware DatetimeIndex of forecast origins = label of the first target bar.
    """
    if input_len < 1 or horizon < 1 or stride < 1:
        raise ValueError("input_len, horizon and stride must be >= 1")
    span = input_len + horizon
    xs, ys, ts = [], [], []
    for s in vwap_by_session.values():
        v = s.to_numpy(dtype=np.float64)
        starts = _window_starts(v, span, stride)
        if starts.size == 0:
            continue
        win = np.lib.stride_tricks.sliding_window_view(v, span)[starts]
        xs.append(np.ascontiguousarray(win[:, :input_len]))
        ys.append(win[:, input_len:].var(axis=1, ddof=0))
        ts.append(s.index[starts + input_len])
    if not xs:
        tz = next(
            (s.index.tz for s in vwap_by_session.values() if isinstance(s.index, pd.DatetimeIndex)), NY_TZ
        )
        return (np.zeros((0, input_len)), np.zeros(0), pd.DatetimeIndex([], tz=tz, name="origin"))
    t = ts[0].append(ts[1:]) if len(ts) > 1 else ts[0]
    return np.concatenate(xs), np.concatenate(ys), t.rename("origin")


def _session_dates(t: pd.DatetimeIndex) -> pd.DatetimeIndex:
    t = pd.DatetimeIndex(t)
    if t.tz is not None:
        t = t.tz_convert(NY_TZ).tz_localize(None)
    return t.normalize()


def split_by_date(
    t: pd.DatetimeIndex,
    train_start: str | pd.Timestamp,
    train_end: str | pd.Timestamp,
    test_start: str | pd.Timestamp,
    test_end: str | pd.Timestamp,
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks ``(train, test)`` of shape ``(N,)`` by the New York session date of each origin ``t``.

    Ranges are inclusive calendar dates and must not overlap (``train_end < test_start``).  Because
    every window lies inside one session (or one daily split period), a window belongs wholly to the
    split its session date falls in: none crosses the cutoff.  Windows outside both ranges are in neither.
    """
    a, b, c, d = (pd.Timestamp(x).normalize() for x in (train_start, train_end, test_start, test_end))
    if a.tzinfo is not None or c.tzinfo is not None:
        a, b, c, d = (x.tz_localize(None) if x.tzinfo else x for x in (a, b, c, d))
    if not (a <= b < c <= d):
        raise ValueError(
            f"need train_start <= train_end < test_start <= test_end, got {a.date()}..{b.date()} "
            f"and {c.date()}..{d.date()}"
        )
    day = _session_dates(t)
    train = np.asarray((day >= a) & (day <= b))
    test = np.asarray((day >= c) & (day <= d))
    return train, test
