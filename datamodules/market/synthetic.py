"""Seeded SYNTHETIC 1-minute bars with a volatility regime change at the split (a labelled stand-in)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .conventions import NY_TZ, PAPER_TEST_RANGE

__all__ = ["SYNTHETIC_RANGE", "synthetic_minute_bars"]

SYNTHETIC_RANGE = ("2020-10-01", "2021-03-31")


def synthetic_minute_bars(
    start: str = SYNTHETIC_RANGE[0],
    end: str = SYNTHETIC_RANGE[1],
    *,
    split_date: str = PAPER_TEST_RANGE[0],
    seed: int = 0,
    price0: float = 5.0,
    sigma_train: float = 5e-4,
    sigma_test: float = 3e-3,
    level_jump: float = 1.5,
) -> pd.DataFrame:
    """Seeded SYNTHETIC 1-minute bars (390 per weekday, 09:30-15:59 New York, no holiday calendar).

    Log-price random walk with per-minute std ``sigma_train`` before ``split_date`` and ``sigma_test``
    from it on, plus a x``level_jump`` overnight level shift at the split: a regime change imitating
    AMC's 2021 volatility explosion.  Columns ``open, high, low, close`` [$] and ``volume`` [shares,
    always > 0]; no ``vwap`` column (typical price is used, as for yfinance).  Not market data.
    """
    rng = np.random.default_rng(seed)
    days = pd.bdate_range(start, end)
    if len(days) == 0:
        raise ValueError(f"no weekdays between {start} and {end}")
    n_min = 390
    after = np.asarray(days >= pd.Timestamp(split_date))
    sigma = np.where(after, sigma_test, sigma_train)[:, None] * np.ones((1, n_min))
    steps = rng.standard_normal((len(days), n_min)) * sigma
    overnight = rng.standard_normal(len(days)) * 0.01
    first_test = int(np.argmax(after)) if after.any() and not after.all() else -1
    if first_test > 0:
        overnight[first_test] += math.log(level_jump)
    steps[:, 0] += overnight
    steps[0, 0] = 0.0
    logp = math.log(price0) + np.cumsum(steps.ravel())
    close = np.exp(logp)
    open_ = np.concatenate([[price0], close[:-1]])
    wick = np.abs(rng.standard_normal((2, close.size))) * sigma.ravel() * 0.5
    high = np.maximum(open_, close) * (1.0 + wick[0])
    low = np.minimum(open_, close) * (1.0 - wick[1])
    base_vol = np.where(np.repeat(after, n_min), 200_000.0, 20_000.0)
    volume = rng.poisson(base_vol).astype(np.float64) + 1.0
    offsets = pd.to_timedelta(np.arange(n_min) + 9 * 60 + 30, unit="min")
    naive = (days.values[:, None] + offsets.values[None, :]).ravel()
    idx = pd.DatetimeIndex(naive).tz_localize(NY_TZ).as_unit("ns").rename("timestamp")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=idx
    )
