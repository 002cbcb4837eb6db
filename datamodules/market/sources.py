"""Where the bars come from: explicit file, ``"synthetic"``, cache directory, or a yfinance download.

:func:`resolve_source` returns a :class:`Source` (normalised bars, interval ``"1m"``/``"1d"``, price basis
and provenance) or raises :class:`DataUnavailableError`; downloads cover the daily variant and Yahoo's
last ~29 days of 1-minute bars (accumulated in the cache).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .cache import _cache_candidates, _write_cache
from .conventions import PAPER_TRAIN_RANGE
from .errors import DataUnavailableError, DataValidationError, _unavailable
from .layouts import load_minute_file, normalize_bars
from .provenance import _file_sha256
from .synthetic import synthetic_minute_bars
from .yahoo import YAHOO_1M_CHUNK_DAYS, YAHOO_1M_DAYS, _Fetcher, _merge_minute_cache, _yf_basis

__all__ = ["Source", "resolve_source"]


@dataclass
class Source:
    """Where the bars came from.

    ``kind``: ``"file" | "synthetic" | "cache" | "yfinance"``; ``frame``: normalised bars (see
    :func:`normalize_bars`); ``interval``: ``"1m"`` or ``"1d"``; ``price_basis``: declared by the source
    (None for user files unless passed); ``info``: provenance (path, sha256, layout, notes ...).
    """

    kind: str
    frame: pd.DataFrame
    interval: str
    info: dict[str, Any] = field(default_factory=dict)
    price_basis: str | None = None
    synthetic: bool = False


def resolve_source(
    data: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    allow_download: bool = False,
    ticker: str = "AMC",
    interval: str = "1d",
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    *,
    assume_tz: str | None = None,
    refresh: bool = False,
    now: pd.Timestamp | None = None,
    sleep: Callable[[float], Any] = time.sleep,
    max_tries: int = 3,
    backoff_s: float = 1.0,
    max_total_wait_s: float = 8.0,
    request_timeout_s: float = 10.0,
    synthetic_kwargs: Mapping[str, Any] | None = None,
) -> Source:
    """Find bars, in this order: explicit file, ``"synthetic"``, cache directory, yfinance download.

    Parameters
    ----------
    data: path to a CSV/parquet bar file, or ``"synthetic"`` (seeded, labelled synthetic minute bars),
        or None to use the cache / a download.
    cache_dir: directory holding ``{ticker}_{interval}.parquet`` (or ``.csv``); downloads are written there.
    allow_download: allow yfinance.  ``interval="1d"``: ``yf.Ticker(ticker).history(start, end,
        interval="1d", auto_adjust=False)`` -- the *daily variant* (used from the cache when present
        unless ``refresh``).  ``interval="1m"``: the last ~29 days in <= 7-day chunks, starting at the last
        cached session, merged into the cache so history accumulates across runs (the cache is used
        with a warning if the download fails).
    start, end: download range (daily default: paper range 2015-02-01 .. 2022-01-01; 1-minute: clipped
        to the last 29 days).
    sleep, max_tries, backoff_s, max_total_wait_s: rate-limit back-off (``YFRateLimitError`` only),
        injectable for tests; total waiting is capped so the call fails within seconds.

    Raises :class:`DataUnavailableError` (what is missing, accepted layouts, ``DATA=`` hint) when
    nothing is usable; never returns an empty frame.
    """
    if interval not in ("1m", "1d"):
        raise ValueError(f"interval must be '1m' or '1d', got {interval!r}")
    now = pd.Timestamp.now(tz="UTC") if now is None else _utc(now)
    if data is not None and str(data).strip().lower() != "synthetic":
        return _from_file(Path(data), assume_tz=assume_tz, ticker=ticker, interval=interval)
    if data is not None:
        return _synthetic(synthetic_kwargs)
    cache = _read_cache(cache_dir, ticker, interval, assume_tz)
    if cache.frame is not None and (not allow_download or (interval == "1d" and not refresh)):
        return Source("cache", cache.frame, _file_interval(cache.info), cache.info)
    if not allow_download:
        raise _unavailable(
            "no DATA file was given and downloads are not allowed (allow_download=False).",
            ticker=ticker,
            interval=interval,
            cache_dir=cache_dir,
        )
    fetch = _Fetcher(
        ticker,
        sleep=sleep,
        max_tries=max_tries,
        backoff_s=backoff_s,
        max_total_wait_s=max_total_wait_s,
        request_timeout_s=request_timeout_s,
        interval=interval,
        cache_dir=cache_dir,
    )
    if interval == "1d":
        return _download_daily(fetch, ticker, start, end, now=now, cache_dir=cache_dir)
    return _download_minutes(fetch, ticker, start, end, now=now, cache_dir=cache_dir, cache=cache)


def _from_file(p: Path, *, assume_tz: str | None, ticker: str, interval: str) -> Source:
    """1. The user's file (its bar spacing gives the interval)."""
    if not p.is_symlink() and not p.exists():  # a dangling link or a loop is named by load_minute_file
        raise _unavailable(f"DATA file {str(p)!r} does not exist.", ticker=ticker, interval=interval)
    df, info = load_minute_file(p, assume_tz=assume_tz, ticker=ticker)
    if df.empty:
        raise _unavailable(f"DATA file {str(p)!r} has no rows.", ticker=ticker, interval=interval)
    return Source("file", df, _file_interval(info), info)


def _synthetic(synthetic_kwargs: Mapping[str, Any] | None) -> Source:
    """2. Seeded, labelled synthetic minute bars (only when asked for by name)."""
    kw = dict(synthetic_kwargs or {})
    df = synthetic_minute_bars(**kw)
    info = {
        "generator": "synthetic_minute_bars",
        "params": {k: str(v) for k, v in kw.items()},
        "layout": "synthetic",
        "sha256": None,
    }
    return Source("synthetic", df, "1m", info, price_basis="synthetic", synthetic=True)


@dataclass
class _Cache:
    """3. What the cache directory holds: ``frame`` None when there is no cache file or it has no rows."""

    frame: pd.DataFrame | None = None
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def _read_cache(
    cache_dir: str | os.PathLike | None, ticker: str, interval: str, assume_tz: str | None
) -> _Cache:
    """The first cache file of ``ticker``/``interval`` in ``cache_dir``; a damaged one is an error naming it."""
    cache_path = next((c for c in _cache_candidates(cache_dir, ticker, interval) if c.is_file()), None)
    if cache_path is None:
        return _Cache()
    try:
        cached, cache_info = load_minute_file(cache_path, assume_tz=assume_tz)
    except DataValidationError as err:
        raise DataValidationError(
            f"the market cache {cache_path} is damaged ({str(err).splitlines()[-1].strip()}); "
            f"delete it (rm {cache_path}) and run again to rebuild it"
        ) from None
    return _Cache(None if cached.empty else cached, cache_info, cache_path)


def _download_daily(
    fetch: _Fetcher,
    ticker: str,
    start: str | pd.Timestamp | None,
    end: str | pd.Timestamp | None,
    *,
    now: pd.Timestamp,
    cache_dir: str | os.PathLike | None,
) -> Source:
    """4a. The daily variant from yfinance over ``start..end`` (default: the paper's range), written to the cache."""
    s = str(pd.Timestamp(start or PAPER_TRAIN_RANGE[0]).date())
    e = str(pd.Timestamp(end or "2022-01-01").date())
    raw = fetch.history(s, e)
    if raw is None or len(raw) == 0:
        raise fetch._err(
            f"yfinance returned no rows for {ticker} interval=1d {s}..{e} "
            "(delisted ticker, range outside Yahoo's history, or a silent Yahoo failure)."
        )
    df, info = normalize_bars(raw)
    info |= {
        "ticker": ticker,
        "interval": "1d",
        "requested": [s, e],
        "downloaded_at": str(now),
        "yfinance_call": f"yf.Ticker({ticker!r}).history(start={s!r}, end={e!r}, interval='1d', "
        "auto_adjust=False)",
    }
    if cache_dir is not None:
        path = Path(cache_dir) / f"{ticker}_1d.parquet"
        _write_cache(df, path)
        info |= {"cache_path": str(path), "sha256": _file_sha256(path)}
    return Source("yfinance", df, "1d", info, price_basis=_yf_basis(now))


def _download_minutes(
    fetch: _Fetcher,
    ticker: str,
    start: str | pd.Timestamp | None,
    end: str | pd.Timestamp | None,
    *,
    now: pd.Timestamp,
    cache_dir: str | os.PathLike | None,
    cache: _Cache,
) -> Source:
    """4b. 1-minute bars: incremental chunks over Yahoo's last ~29 days, merged into the cache (the cache alone,
    with a warning, when the download fails)."""
    basis = _yf_basis(now)
    cached = cache.frame
    earliest = now - pd.Timedelta(days=YAHOO_1M_DAYS)
    s0 = earliest if start is None else max(_utc(start), earliest)
    if cached is not None:  # re-fetch the last cached session: the overlap checks the price basis
        s0 = max(earliest, _utc(cached.index.max().normalize()))
    e0 = now if end is None else min(_utc(end), now)
    try:
        frames, chunks = _fetch_minute_chunks(fetch, s0, e0)
    except DataUnavailableError as exc:
        if cached is None:
            raise
        warnings.warn(f"1-minute download failed, using the cache {cache.path}: {exc}", stacklevel=3)
        return Source("cache", cached, "1m", cache.info | {"download_error": str(exc).splitlines()[0]})
    if not frames:
        if cached is not None:
            return Source("cache", cached, "1m", cache.info | {"download_note": "no new bars"})
        raise fetch._err(
            f"yfinance returned no 1-minute rows for {ticker} between {s0} and {e0} "
            "(Yahoo serves 1-minute bars for the last ~30 days only)."
        )
    new = pd.concat(frames)
    new = new[~new.index.duplicated(keep="last")].sort_index()
    merged = _merge_minute_cache(cached, new)
    info = {
        "layout": "yfinance",
        "ticker": ticker,
        "interval": "1m",
        "downloaded_at": str(now),
        "chunks": chunks,
        "new_bars": len(new),
        "cached_bars_before": 0 if cached is None else len(cached),
        "sha256": None,
    }
    if cache_dir is not None:
        path = Path(cache_dir) / f"{ticker}_1m.parquet"
        _write_cache(merged, path)
        info |= {"cache_path": str(path), "sha256": _file_sha256(path)}
    return Source("yfinance", merged, "1m", info, price_basis=basis)


def _fetch_minute_chunks(
    fetch: _Fetcher, s0: pd.Timestamp, e0: pd.Timestamp
) -> tuple[list[pd.DataFrame], list[list[Any]]]:
    """The normalised non-empty chunks of ``s0..e0`` (at most ``YAHOO_1M_CHUNK_DAYS`` each) and, per chunk
    requested, ``[start, end, rows]``."""
    frames, chunks = [], []
    cur = s0
    while cur < e0:
        nxt = min(cur + pd.Timedelta(days=YAHOO_1M_CHUNK_DAYS), e0)
        raw = fetch.history(cur, nxt)
        chunks.append([str(cur), str(nxt), 0 if raw is None else len(raw)])
        if raw is not None and len(raw):
            frames.append(normalize_bars(raw)[0])
        cur = nxt
    return frames, chunks


def _utc(x: str | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(x)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _file_interval(info: Mapping[str, Any]) -> str:
    iv = info.get("bar_interval")
    if iv in ("1m", "1d"):
        return iv
    raise DataValidationError(
        f"only 1-minute or daily bars are supported; {info.get('path')} has a modal bar spacing of {iv}"
    )
