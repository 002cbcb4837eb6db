"""Shared conventions of the AMC volatility data layer: timezone, regular session, paper splits, target.

Conventions
-----------
* Bars are labelled by the *start* of their minute (yfinance, Polygon).  The regular session is the
  bars labelled 09:30 <= time < 16:00 New York (390 bars on a full day; early closes simply end
  earlier).  Vendors that label bars by their end lose one minute at each end.
* The forecast origin ``t`` of a window is the label of its first *target* bar, i.e. the moment the
  last input bar closes: the forecast uses bars labelled ``< t`` and predicts bars labelled in
  ``[t, t + horizon)`` minutes.
* Variance is the population variance (``ddof=0``) of raw VWAP prices, in $^2.
* Daily variant (yfinance daily bars, or a file with one bar per day): minute data for 2015-2021 is
  not obtainable through yfinance, so the daily variant windows over *consecutive trading-day*
  typical prices: ``input_len`` days -> variance of the next ``horizon`` days.  A "session" is then
  one contiguous split period (the train period or the test period), so no daily window ever spans
  the cutoff and test windows use no training-period context.  Cards say ``variant="daily"``.
"""

from __future__ import annotations

from datetime import time as dtime

__all__ = [
    "SESSION_MINUTES",
    "NY_TZ",
    "PAPER_TEST_RANGE",
    "PAPER_TRAIN_RANGE",
    "SESSION_CLOSE",
    "SESSION_OPEN",
    "VARIANCE_DEFINITION",
]

NY_TZ = "America/New_York"
SESSION_OPEN = dtime(9, 30)
SESSION_CLOSE = dtime(16, 0)  # exclusive: the last regular bar is labelled 15:59
# the regular session as minutes after midnight, New York: [open, close) = [570, 960), 390 bars
SESSION_MINUTES = (
    SESSION_OPEN.hour * 60 + SESSION_OPEN.minute,
    SESSION_CLOSE.hour * 60 + SESSION_CLOSE.minute,
)
PAPER_TRAIN_RANGE = ("2015-02-01", "2020-12-31")
PAPER_TEST_RANGE = ("2021-01-01", "2021-12-31")
VARIANCE_DEFINITION = "population (ddof=0)"
