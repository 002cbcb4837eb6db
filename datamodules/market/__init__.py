"""AMC volatility data layer: minute bars -> regular-session VWAPs -> (60 -> 10) variance windows.

The paper (section 2.2) predicts the *volatility* of AMC over the next 10 minutes, defined as the
variance of the 10 minute-VWAPs in that window (raw prices, not returns), from the 60 minute-VWAPs
before it; train 2015-02-01 .. 2020-12-31, validation 2021-01-01 .. 2021-12-31.

This package is pandas/numpy/pyarrow (no torch).  Pipeline::

    resolve_source(...)            explicit file | "synthetic" | cache dir | yfinance | DataUnavailableError
      -> check_file(path)          size, symlink loop, encoding, NUL bytes, decimal comma: refused before parsing
      -> load_minute_file(path)    vendor layout detection, tz-aware America/New_York index
      -> validate(df)              DataValidationError: duplicates, order, NaN, prices <= 0, high < low,
                                   negative volume, weekend / future bars, constant sessions, split-like
                                   overnight jumps
      -> minute_vwap(df)           vendor ``vwap`` column if present, else typical price (H+L+C)/3
      -> regular_session_vwap(df)  09:30-16:00 New York, zero-volume minutes = gaps, per-session 1-minute
                                   grid, gaps of <= max_ffill minutes forward-filled, longer gaps stay NaN
      -> make_windows(...)         X (N, 60) raw VWAPs [$], y (N,) population variance (ddof=0) of the
                                   next 10 VWAPs [$^2], t (N,) forecast origins
      -> split_by_date(t, ...)     by session date; windows never cross a session or the cutoff
    load_volatility_dataset(...)   all of the above + a JSON-serialisable data card

Modules (one idea each; this package re-exports the public API)::

    conventions  timezone, regular session, paper split ranges, variance definition (see its docstring)
    errors       DataValidationError, DataUnavailableError, accepted file layouts, the DATA= hint
    cache        cache-directory file names and atomic writes
    provenance   file / content SHA-256 and JSON-safe provenance for the data card
    filecheck    check_file: size limit, symlink loops, encodings, NUL bytes, decimal commas, before parsing
    summary      changes: every row dropped, left out, filled or excluded, and the one summary line
    timestamps   vendor timestamp columns -> tz-aware New York index; bar-spacing inference
    layouts      load_minute_file, normalize_bars: CSV/parquet and vendor layout detection
    validation   validate: duplicates, order, NaN, prices <= 0, high < low, volume < 0, split-like jumps
    sessions     minute_vwap, regular_session_vwap
    windows      make_windows, split_by_date
    synthetic    synthetic_minute_bars
    yahoo        yfinance downloads with bounded rate-limit back-off
    sources      Source, resolve_source
    options      MarketOptions: the loader's options, checked on construction
    dataset      VolatilityDataset, load_volatility_dataset (and the data card)
"""

from __future__ import annotations

from .conventions import NY_TZ, PAPER_TEST_RANGE, PAPER_TRAIN_RANGE, VARIANCE_DEFINITION
from .dataset import MIN_SESSIONS_PER_SPLIT, VolatilityDataset, load_volatility_dataset
from .errors import (
    ACCEPTED_LAYOUTS,
    DATA_HINT,
    DataUnavailableError,
    DataValidationError,
    accepted_layouts_text,
)
from .filecheck import MAX_FILE_BYTES, check_file
from .layouts import load_minute_file, normalize_bars
from .options import MarketOptions
from .sessions import minute_vwap, regular_session_vwap
from .sources import Source, resolve_source
from .synthetic import synthetic_minute_bars
from .validation import validate
from .windows import make_windows, split_by_date

__all__ = [
    "ACCEPTED_LAYOUTS",
    "MAX_FILE_BYTES",
    "MIN_SESSIONS_PER_SPLIT",
    "MarketOptions",
    "DATA_HINT",
    "NY_TZ",
    "PAPER_TEST_RANGE",
    "PAPER_TRAIN_RANGE",
    "VARIANCE_DEFINITION",
    "DataUnavailableError",
    "DataValidationError",
    "Source",
    "VolatilityDataset",
    "accepted_layouts_text",
    "check_file",
    "load_minute_file",
    "load_volatility_dataset",
    "make_windows",
    "minute_vwap",
    "normalize_bars",
    "regular_session_vwap",
    "resolve_source",
    "split_by_date",
    "synthetic_minute_bars",
    "validate",
]
