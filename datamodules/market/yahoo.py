"""Yahoo Finance downloads via yfinance: bounded rate-limit back-off, price-basis label, 1-minute cache merge.

yfinance is imported lazily (only when a download is attempted).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataUnavailableError, DataValidationError, _unavailable

__all__ = ["YAHOO_1M_CHUNK_DAYS", "YAHOO_1M_DAYS"]

YAHOO_1M_DAYS = 29  # Yahoo serves 1-minute bars for the last ~30 days only
YAHOO_1M_CHUNK_DAYS = 7  # and at most ~8 days per request


def _yf_basis(now: pd.Timestamp) -> str:
    return f"split-adjusted by Yahoo as of {now.date()} (auto_adjust=False: Close not dividend-adjusted)"


class _Fetcher:
    """Calls ``yf.Ticker(t).history`` with bounded exponential back-off on rate limits only."""

    def __init__(
        self,
        ticker: str,
        *,
        sleep: Callable[[float], Any],
        max_tries: int,
        backoff_s: float,
        max_total_wait_s: float,
        request_timeout_s: float,
        interval: str,
        cache_dir=None,
    ):
        self.ticker, self.sleep, self.max_tries = ticker, sleep, max_tries
        self.backoff_s, self.max_total_wait_s = backoff_s, max_total_wait_s
        self.request_timeout_s, self.interval, self.cache_dir = request_timeout_s, interval, cache_dir
        self.waited = 0.0
        self.calls = 0
        self._tk = None

    def _err(self, what: str) -> DataUnavailableError:
        return _unavailable(what, ticker=self.ticker, interval=self.interval, cache_dir=self.cache_dir)

    def history(self, start: pd.Timestamp | str, end: pd.Timestamp | str) -> pd.DataFrame:
        try:
            import yfinance as yf
            from yfinance.exceptions import YFRateLimitError
        except ImportError as exc:  # pragma: no cover - yfinance is a dependency
            raise self._err(f"yfinance is not installed ({exc})") from exc
        attempt = 0
        while True:
            attempt += 1
            self.calls += 1
            try:
                if self._tk is None:
                    self._tk = yf.Ticker(self.ticker)
                return self._tk.history(
                    start=start,
                    end=end,
                    interval=self.interval,
                    auto_adjust=False,
                    timeout=self.request_timeout_s,
                )
            except YFRateLimitError as exc:
                delay = self.backoff_s * 2 ** (attempt - 1)
                if attempt >= self.max_tries or self.waited + delay > self.max_total_wait_s:
                    raise self._err(
                        f"Yahoo Finance rate-limited the download (YFRateLimitError, HTTP 429: {exc}) "
                        f"after {attempt} tries and {self.waited:g} s of back-off; try later."
                    ) from exc
                self.sleep(delay)
                self.waited += delay
            except OSError as exc:  # DNS / connection errors (curl_cffi errors subclass OSError)
                raise self._err(
                    f"network error while downloading from Yahoo Finance ({type(exc).__name__}: {exc}); "
                    "no network access?"
                ) from exc
            except Exception as exc:  # any other yfinance failure becomes a clear error
                raise self._err(f"yfinance failed ({type(exc).__name__}: {exc})") from exc


def _merge_minute_cache(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    if old is None or old.empty:
        merged = new
    else:
        common = old.index.intersection(new.index)
        if len(common):
            r = (new.loc[common, "close"] / old.loc[common, "close"]).to_numpy()
            med = float(np.nanmedian(r))
            if np.isfinite(med) and abs(med - 1.0) > 0.01:
                raise DataValidationError(
                    f"cached bars and the fresh download disagree on the price basis (median ratio {med:.4g}"
                    f" over {len(common)} overlapping bars): a split was probably applied since the cache was "
                    "written; move the cache file away to start a new history"
                )
        merged = pd.concat([old, new])
    merged = merged[~merged.index.duplicated(keep="last")].sort_index()
    return merged
