"""The whole dataset: source -> validation -> sessions -> windows -> date split, plus the JSON data card."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .conventions import VARIANCE_DEFINITION
from .errors import DataUnavailableError
from .options import MarketOptions
from .provenance import _content_sha256, _jsonable
from .sessions import minute_vwap, regular_session_vwap
from .sources import Source, resolve_source
from .summary import changes
from .validation import validate
from .windows import _session_dates, _window_starts, make_windows, split_by_date

__all__ = ["MIN_SESSIONS_PER_SPLIT", "VolatilityDataset", "load_volatility_dataset"]


@dataclass
class VolatilityDataset:
    """Train/test windows and the data card.

    ``X_*``: ``(N, input_len)`` float64 raw VWAPs [$]; ``y_*``: ``(N,)`` float64 population variance
    (ddof=0) of the next ``horizon`` VWAPs [$^2]; ``t_*``: ``(N,)`` tz-aware forecast origins.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    t_train: pd.DatetimeIndex
    X_test: np.ndarray
    y_test: np.ndarray
    t_test: pd.DatetimeIndex
    card: dict[str, Any]


AUTO_TEST_FRACTION = 0.2
#: the minute task needs at least this many usable sessions in each split (a split of one day measures one day)
MIN_SESSIONS_PER_SPLIT = 2


def _covers(dates: list[pd.Timestamp], lo, hi) -> bool:
    lo, hi = pd.Timestamp(lo), pd.Timestamp(hi)
    return any(lo <= d <= hi for d in dates)


def _n_test(n: int, test_fraction: float) -> int:
    """Sessions (or days) in the test split when the last ``test_fraction`` of ``n`` are the test period."""
    return min(n - 1, max(1, round(test_fraction * n)))


def _working_fraction(n: int, minimum: int) -> float | None:
    """A ``SPLIT=`` value (2 decimals, nearest to 20%) that leaves at least ``minimum`` units in each split, or
    None when ``n`` units cannot be split so."""
    if n < 2 * minimum:
        return None
    target = min(max(minimum, round(AUTO_TEST_FRACTION * n)), n - minimum)
    for f in sorted({round(k / 100, 2) for k in range(1, 100)}, key=lambda f: (abs(f * n - target), f)):
        k = _n_test(n, f)
        if k >= minimum and n - k >= minimum:
            return f
    return None


def _split_rule(
    dates: list[pd.Timestamp], train_range, test_range, test_fraction, explicit_ranges: bool, minimum: int
) -> tuple[float | None, str]:
    """Which split: ``(test_fraction or None, rule text)``. The file's own sessions decide when it does not
    cover both date ranges and no range or fraction was asked for: the last 20% of them, at least ``minimum``."""
    if test_fraction is not None:
        return (
            test_fraction,
            f"chronological: the last {test_fraction:.0%} of sessions are the test period (SPLIT=)",
        )
    if explicit_ranges or (_covers(dates, *train_range) and _covers(dates, *test_range)):
        return (
            None,
            f"date ranges: train {train_range[0]}..{train_range[1]}, test {test_range[0]}..{test_range[1]}",
        )
    auto = max(AUTO_TEST_FRACTION, min(minimum / len(dates), 0.5)) if dates else AUTO_TEST_FRACTION
    return auto, (
        f"chronological, automatic: the file ({dates[0].date() if dates else '-'}..{dates[-1].date() if dates else '-'})"
        f" does not cover the date ranges {train_range[0]}..{train_range[1]} / {test_range[0]}..{test_range[1]}, so "
        f"the last {AUTO_TEST_FRACTION:.0%} of its sessions (at least {minimum}) are the test period; change it with "
        "SPLIT=0.3 (--data.init_args.test_fraction) or TRAIN_RANGE=/TEST_RANGE= (--data.init_args.train_range/"
        "test_range)"
    )


def _resolve_ranges(dates: list[pd.Timestamp], train_range, test_range, test_fraction):
    if test_fraction is None:
        return tuple(str(pd.Timestamp(x).date()) for x in (*train_range, *test_range))
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction must be in (0, 1)")
    if len(dates) < 2:
        raise DataUnavailableError(
            f"only {len(dates)} usable session(s): cannot split chronologically; the volatility task needs at "
            f"least {2 * MIN_SESSIONS_PER_SPLIT} sessions with a complete window; pass a longer file with DATA="
        )
    n_test = _n_test(len(dates), test_fraction)
    return (
        str(dates[0].date()),
        str(dates[-n_test - 1].date()),
        str(dates[-n_test].date()),
        str(dates[-1].date()),
    )


def _too_few(
    what: str, n: int, minimum: int, unit: str, explain: str, fix_when_none: str
) -> DataUnavailableError:
    """The split error, with a ``SPLIT=`` value that works (checked with the same rounding) or why none does."""
    f = _working_fraction(n, minimum)
    fix = (
        f"SPLIT={f:g} (make) / --data.init_args.test_fraction {f:g} puts {n - _n_test(n, f)} {unit} in train and "
        f"{_n_test(n, f)} in test, or choose TRAIN_RANGE=a..b TEST_RANGE=c..d with at least {minimum} {unit} each"
        if f is not None
        else fix_when_none
    )
    return DataUnavailableError(f"{what} ({explain}); {fix}")


def _count_between(keys: list[str], lo: str, hi: str) -> int:
    return sum(lo <= k <= hi for k in keys)


@dataclass
class _Windows:
    """The windows of one variant before the train/test masks, and what the data card says about them.

    ``X``, ``y``, ``t``: as :class:`VolatilityDataset` before the split; ``ranges``: ``(train_start, train_end,
    test_start, test_end)`` ISO dates; ``kept_keys``: the usable sessions (or trading days) as ISO dates.
    """

    variant: str
    X: np.ndarray
    y: np.ndarray
    t: pd.DatetimeIndex
    ranges: tuple[str, str, str, str]
    split_rule: str
    test_fraction: float | None
    reasons: Counter[str]
    n_sessions_total: int
    n_kept: int
    kept_keys: list[str]
    bars: dict[str, Any]
    vwap_method: str
    outside: int


def load_volatility_dataset(
    data: str | os.PathLike | MarketOptions | None = None,
    *,
    sleep: Callable[[float], Any] = time.sleep,
    now: pd.Timestamp | None = None,
    **options: Any,
) -> VolatilityDataset:
    """Resolve a source, validate, build windows, split by date and write the data card.

    ``data``: a :class:`MarketOptions`, or its ``data`` field with the other fields as keyword ``options``
    (``load_volatility_dataset("amc.csv", test_fraction=0.3)``); see :class:`MarketOptions` for each field.
    ``sleep`` (download back-off) and ``now`` (future-date check, downloads) are injectable for tests.

    Raises :class:`DataValidationError` for malformed data and :class:`DataUnavailableError` when there
    is no data or a split has too few sessions or no windows.
    """
    o = data if isinstance(data, MarketOptions) else MarketOptions(data=data, **options)
    if isinstance(data, MarketOptions) and options:
        raise TypeError(f"pass options in the MarketOptions or as keywords, not both: {sorted(options)}")
    src = _resolve(o, sleep=sleep, now=now)
    basis = o.price_basis if o.price_basis is not None else src.price_basis
    report = validate(src.frame, price_basis=basis, now=now)
    explicit = o.explicit_ranges or src.synthetic
    w = (
        _minute_windows(src.frame, o, explicit)
        if src.interval == "1m"
        else _daily_windows(src.frame, o, explicit)
    )
    train_mask, test_mask = split_by_date(w.t, *w.ranges)
    _check_split_windows(w, train_mask, test_mask, o.input_len + o.horizon)
    card = _data_card(src, o, w, basis, report, (train_mask, test_mask))
    X, y, t = w.X, w.y, w.t
    return VolatilityDataset(
        X[train_mask], y[train_mask], t[train_mask], X[test_mask], y[test_mask], t[test_mask], card
    )


def _resolve(o: MarketOptions, *, sleep: Callable[[float], Any], now: pd.Timestamp | None) -> Source:
    """The bars of ``o``'s source; a daily download covers the split ranges (1-minute: Yahoo's last ~29 days)."""
    want_daily = o.interval == "1d"
    return resolve_source(
        o.data,
        o.cache_dir,
        o.allow_download,
        ticker=o.ticker,
        interval=o.interval,
        start=o.train_range[0] if want_daily else None,
        end=str((pd.Timestamp(o.test_range[1]) + pd.Timedelta(days=1)).date()) if want_daily else None,
        assume_tz=o.assume_tz,
        sleep=sleep,
        now=now,
        synthetic_kwargs={
            "start": o.synthetic_range[0],
            "end": o.synthetic_range[1],
            "split_date": o.test_range[0],
            "seed": o.seed,
        },
    )


def _minute_windows(df: pd.DataFrame, o: MarketOptions, explicit: bool) -> _Windows:
    """The minute task: regular-session VWAPs, the sessions with a gap-free window, split by session date."""
    vwap, method = minute_vwap(df)
    span = o.input_len + o.horizon
    reasons: Counter[str] = Counter()
    sessions, sess_report = regular_session_vwap(df, max_ffill=o.max_ffill, vwap=vwap)
    reasons.update(sess_report["dropped_reasons"])
    usable = {}
    for d, s in sessions.items():
        if len(s) < span:
            reasons[f"shorter than one window ({span} minutes)"] += 1
        elif _window_starts(s.to_numpy(dtype=np.float64), span, o.stride).size == 0:
            reasons["no gap-free window"] += 1
        else:
            usable[d] = s
    dates = [pd.Timestamp(d) for d in usable]
    test_fraction, split_rule = _split_rule(
        dates, o.train_range, o.test_range, o.test_fraction, explicit, MIN_SESSIONS_PER_SPLIT
    )
    tr0, tr1, te0, te1 = _resolve_ranges(dates, o.train_range, o.test_range, test_fraction)
    keys = [str(d) for d in usable]
    _check_minute_sessions(keys, (tr0, tr1, te0, te1), span)
    in_range = {d: s for d, s in usable.items() if tr0 <= str(d) <= tr1 or te0 <= str(d) <= te1}
    X, y, t = make_windows(in_range, o.input_len, o.horizon, o.stride)
    return _Windows(
        variant="minute",
        X=X,
        y=y,
        t=t,
        ranges=(tr0, tr1, te0, te1),
        split_rule=split_rule,
        test_fraction=test_fraction,
        reasons=reasons,
        n_sessions_total=sess_report["sessions_in_file"],
        n_kept=len(keys),
        kept_keys=keys,
        bars={k: v for k, v in sess_report.items() if k not in ("dropped_reasons", "sessions_in_file")},
        vwap_method=method,
        outside=len(usable) - len(in_range),
    )


def _check_minute_sessions(keys: list[str], ranges: tuple[str, str, str, str], span: int) -> None:
    """Raise the split error when a split holds fewer than :data:`MIN_SESSIONS_PER_SPLIT` usable sessions."""
    tr0, tr1, te0, te1 = ranges
    for name, lo, hi in (("train", tr0, tr1), ("test", te0, te1)):
        have = _count_between(keys, lo, hi)
        if have < MIN_SESSIONS_PER_SPLIT:
            raise _too_few(
                f"{have} usable session(s) in the {name} split {lo}..{hi}; the task needs at least "
                f"{MIN_SESSIONS_PER_SPLIT} per split",
                len(keys),
                MIN_SESSIONS_PER_SPLIT,
                "sessions",
                f"the file has {len(keys)} usable sessions"
                + (f", {keys[0]}..{keys[-1]}" if keys else "")
                + ", each with a complete "
                f"{span}-minute window",
                f"no split leaves {MIN_SESSIONS_PER_SPLIT} sessions on each side: pass a file with at least "
                f"{2 * MIN_SESSIONS_PER_SPLIT} usable sessions with DATA=",
            )


def _daily_windows(df: pd.DataFrame, o: MarketOptions, explicit: bool) -> _Windows:
    """The daily variant: one VWAP per traded day, windows inside each split's contiguous segment."""
    vwap, method = minute_vwap(df)
    span = o.input_len + o.horizon
    reasons: Counter[str] = Counter()
    traded = df["volume"].to_numpy() > 0
    daily = pd.Series(vwap.to_numpy(dtype=np.float64)[traded], index=df.index[traded]).sort_index()
    if (~traded).any():
        reasons["zero-volume day"] += int((~traded).sum())
    day = _session_dates(daily.index)
    dates = list(day)
    test_fraction, split_rule = _split_rule(
        dates, o.train_range, o.test_range, o.test_fraction, explicit, span
    )
    tr0, tr1, te0, te1 = _resolve_ranges(dates, o.train_range, o.test_range, test_fraction)
    segments = {
        "train": daily[np.asarray((day >= pd.Timestamp(tr0)) & (day <= pd.Timestamp(tr1)))],
        "test": daily[np.asarray((day >= pd.Timestamp(te0)) & (day <= pd.Timestamp(te1)))],
    }
    X, y, t = make_windows(segments, o.input_len, o.horizon, o.stride)
    return _Windows(
        variant="daily",
        X=X,
        y=y,
        t=t,
        ranges=(tr0, tr1, te0, te1),
        split_rule=split_rule,
        test_fraction=test_fraction,
        reasons=reasons,
        n_sessions_total=len(df),
        n_kept=int(len(daily)),
        kept_keys=[str(d.date()) for d in day],
        bars={"bars_in_file": len(df), "zero_volume_days": int((~traded).sum())},
        vwap_method=f"daily {method}",
        outside=int(len(daily) - len(segments["train"]) - len(segments["test"])),
    )


def _check_split_windows(w: _Windows, train_mask: np.ndarray, test_mask: np.ndarray, span: int) -> None:
    """Raise the split error (with a ``SPLIT=`` that works, or why none does) when a split has no window."""
    tr0, tr1, te0, te1 = w.ranges
    variant, kept_keys = w.variant, w.kept_keys
    for name, mask in (("train", train_mask), ("test", test_mask)):
        if not mask.any():
            have = f"{kept_keys[0]}..{kept_keys[-1]}" if kept_keys else "nothing usable"
            units = "sessions" if variant == "minute" else "trading days"
            minimum = MIN_SESSIONS_PER_SPLIT if variant == "minute" else span
            raise _too_few(
                f"no {variant} windows in the {name} split ({tr0}..{tr1} / {te0}..{te1})",
                len(kept_keys),
                minimum,
                units,
                f"the data covers {have}, {len(kept_keys)} {units}"
                + (
                    ""
                    if variant == "minute"
                    else f"; a daily window needs {span} consecutive days in its split"
                ),
                f"no split leaves {minimum} {units} on each side: pass a longer file with DATA="
                + ("" if variant == "minute" else f" (at least {2 * span} trading days), or a minute file"),
            )


#: provenance keys of a file source copied to the data card's ``file`` entry
_CARD_FILE_KEYS = (
    "layout",
    "tz_source",
    "ticker_column",
    "tickers_in_file",
    "rows_other_tickers",
    "row_order",
    "exact_duplicates_dropped",
    "isolated_bad_ticks_dropped",
    "offsets_other_season",
    "bytes",
)


def _data_card(
    src: Source,
    o: MarketOptions,
    w: _Windows,
    basis: str | None,
    report: dict,
    masks: tuple[np.ndarray, np.ndarray],
) -> dict[str, Any]:
    """The JSON data card: source and provenance, sessions kept and dropped, windows, split, and the changes."""
    df, variant, minute = src.frame, w.variant, w.variant == "minute"
    tr0, tr1, te0, te1 = w.ranges
    idx = df.index
    card = {
        "task": "volatility",
        "variant": variant,
        "synthetic": src.synthetic,
        "source": src.kind,
        "source_info": _jsonable(src.info),
        "ticker": "synthetic" if src.synthetic else o.ticker,
        "file_sha256": src.info.get("sha256"),
        "content_sha256": _content_sha256(df),
        "date_range": [str(idx.min()), str(idx.max())],
        "sessions": {
            "in_data": int(w.n_sessions_total),
            "kept": w.n_kept,
            "dropped": int(sum(w.reasons.values())),
            "dropped_reasons": dict(w.reasons),
            "outside_split_ranges": int(w.outside),
        },
        "bars": w.bars,
        "vwap_method": w.vwap_method,
        "price_basis": basis if basis is not None else "undeclared (no split-like jumps found)",
        "split_like_jumps": report["split_like_jumps"],
        "bar_label": "bar start; regular session 09:30 <= t < 16:00 America/New_York"
        if minute
        else "one bar per trading day; a daily 'session' is one contiguous split period",
        "input_len": o.input_len,
        "horizon": o.horizon,
        "units": {"X": "$ (raw VWAP)", "y": "$^2", "t": "forecast origin = label of first target bar"},
        "stride": o.stride,
        "max_ffill": o.max_ffill if minute else None,
        "variance_definition": VARIANCE_DEFINITION,
        "target": f"population variance (ddof=0) of the next {o.horizon} "
        f"{'minute-VWAPs' if minute else 'daily typical prices'} (raw prices)",
        "splits": {
            "train": [tr0, tr1],
            "test": [te0, te1],
            "rule": w.split_rule,
            "sessions": {
                "train": _count_between(w.kept_keys, tr0, tr1),
                "test": _count_between(w.kept_keys, te0, te1),
            },
            "by": "session date" if minute else "trading date (segments cut at the split)",
            "test_fraction": w.test_fraction,
        },
        "n_windows": {"train": int(masks[0].sum()), "test": int(masks[1].sum())},
    }
    for key in _CARD_FILE_KEYS:
        if key in src.info:
            card.setdefault("file", {})[key] = _jsonable(src.info[key])
    if src.synthetic:
        card["warning"] = "SYNTHETIC data (not AMC market data)"
    path = src.info.get("path")
    card["changes"] = changes(
        name=os.path.basename(str(path)) if path else f"the {src.kind} data",
        rows_read=int(src.info.get("n_rows", len(df))) + int(src.info.get("rows_other_tickers", 0) or 0),
        file_info=src.info,
        bars={k: v for k, v in w.bars.items() if not (variant == "daily" and k == "zero_volume_days")},
        session_reasons=w.reasons,
        outside_split=w.outside,
        unit="sessions" if minute else "days",
    )
    return card
