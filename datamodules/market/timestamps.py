"""Timestamp parsing: vendor timestamp columns -> tz-aware America/New_York index, and bar-spacing inference.

Accepts tz-aware values, epoch numbers (s/ms/us/ns, UTC), strings with UTC offsets, naive strings (only
with ``assume_tz``) and date-only daily bars (exchange calendar dates); anything else raises
:class:`DataValidationError` naming the offending rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .conventions import NY_TZ
from .errors import DataValidationError

_OFFSET_RE = r"(?:[zZ]|[+-]\d{2}:?\d{2}|\s?UTC|\s?GMT)$"
_DATE_ONLY_RE = r"\d{4}-\d{2}-\d{2}"
_SLASH_RE = r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:[ T](\d{1,2}:\d{2}(?::\d{2})?))?$"


def _epoch_unit(values: np.ndarray) -> str:
    m = float(np.nanmax(np.abs(values))) if values.size else 0.0
    return "ns" if m > 1e17 else "us" if m > 1e14 else "ms" if m > 1e11 else "s"


def _parse_timestamps(col: pd.Series, assume_tz: str | None) -> tuple[pd.DatetimeIndex, str]:
    """Parse a timestamp column into a tz-aware America/New_York index (one entry per row)."""
    n = len(col)
    positions = np.arange(n)
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        return pd.DatetimeIndex(col).tz_convert(NY_TZ), "tz-aware in file"
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        vals = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(vals)
        if bad.any():
            _raise_unparseable(col, bad)
        unit = _epoch_unit(vals)
        parsed = pd.to_datetime(col.astype("int64"), unit=unit, utc=True)
        return pd.DatetimeIndex(parsed).tz_convert(NY_TZ), f"epoch {unit} (UTC)"
    if pd.api.types.is_datetime64_dtype(col.dtype):
        parsed_naive = pd.DatetimeIndex(col)
        bad = np.asarray(parsed_naive.isna())
        if bad.any():
            _raise_unparseable(col, bad)
        return _localize_naive(parsed_naive, col, assume_tz, date_only=False)

    s = col.astype("string").str.strip()
    null = np.asarray(s.isna() | (s == ""), dtype=bool)
    if null.any():
        _raise_unparseable(col, null)
    if bool(s.str.fullmatch(r"\d{9,19}").all()):
        return _parse_timestamps(pd.to_numeric(s).astype("int64"), assume_tz)
    slash = s.str.extract(_SLASH_RE)
    if bool(slash[0].notna().all()):  # M/D/YYYY or D/M/YYYY: never guessed silently
        return _parse_slash_dates(s, slash, col, assume_tz)
    has_offset = np.asarray(s.str.contains(_OFFSET_RE, regex=True), dtype=bool)
    aware = _to_datetime(s[has_offset], utc=True)
    naive = _to_datetime(s[~has_offset], utc=False)
    bad = np.zeros(n, dtype=bool)
    bad[has_offset] = np.asarray(aware.isna())
    bad[~has_offset] = np.asarray(naive.isna())
    if bad.any():
        _raise_unparseable(col, bad)
    if has_offset.any() and not has_offset.all():
        naive_pos = positions[~has_offset]
        rows = [f"row {i}: {col.iloc[i]!r}" for i in naive_pos[:3]]
        raise DataValidationError(
            [
                {
                    "problem": "mixed timestamps: some with a UTC offset, some naive",
                    "count": int((~has_offset).sum()),
                    "rows": rows,
                }
            ]
        )
    if has_offset.all():
        return pd.DatetimeIndex(aware).tz_convert(NY_TZ), "UTC offsets in file"
    date_only = bool(s.str.fullmatch(_DATE_ONLY_RE).all())
    return _localize_naive(pd.DatetimeIndex(naive), col, assume_tz, date_only=date_only)


def _parse_slash_dates(
    s: pd.Series, parts: pd.DataFrame, col: pd.Series, assume_tz: str | None
) -> tuple[pd.DatetimeIndex, str]:
    """``M/D/YYYY[ H:MM[:SS]]`` (US, a spreadsheet's export) or ``D/M/YYYY``: decided by a field above 12.

    A first field above 12 anywhere means day first; a second field above 12 means month first (US); with
    neither the order cannot be read from the data and the US order is taken, which the data card says."""
    first, second = parts[0].astype(int), parts[1].astype(int)
    if bool((first > 12).any()) and bool((second > 12).any()):
        raise DataValidationError(
            "slash dates with fields above 12 in both positions: neither M/D/YYYY nor "
            "D/M/YYYY; repair the file's dates"
        )
    day_first = bool((first > 12).any())
    if day_first:
        order = "D/M/YYYY (a first field above 12 seen)"
    elif bool((second > 12).any()):
        order = "M/D/YYYY (US; a second field above 12 seen)"
    else:
        order = "M/D/YYYY assumed (US order; no field above 12 to tell day from month)"
    month, day = (second, first) if day_first else (first, second)
    iso = (
        parts[2]
        + "-"
        + month.map("{:02d}".format)
        + "-"
        + day.map("{:02d}".format)
        + " "
        + parts[3].fillna("00:00")
    )
    parsed = pd.to_datetime(iso, format="mixed", errors="coerce")
    bad = np.asarray(parsed.isna())
    if bad.any():
        _raise_unparseable(col, bad)
    idx, source = _localize_naive(
        pd.DatetimeIndex(parsed), col, assume_tz, date_only=bool(parts[3].isna().all())
    )
    return idx, f"{source}; dates {order}"


def _to_datetime(s: pd.Series, *, utc: bool) -> pd.Series:
    """Fast ISO-8601 parse, falling back to per-element parsing; unparseable -> NaT."""
    parsed = pd.to_datetime(s, utc=utc, format="ISO8601", errors="coerce")
    if parsed.isna().any():
        parsed = pd.to_datetime(s, utc=utc, format="mixed", errors="coerce")
    return parsed


def _localize_naive(
    idx: pd.DatetimeIndex, col: pd.Series, assume_tz: str | None, *, date_only: bool
) -> tuple[pd.DatetimeIndex, str]:
    if date_only or (len(idx) and bool((idx == idx.normalize()).all()) and _one_per_day(idx)):
        # calendar dates of daily bars are exchange dates, not instants: no timezone is being guessed
        return idx.tz_localize(NY_TZ), "date-only (exchange calendar dates)"
    if assume_tz is None:
        rows = [f"row {i}: {col.iloc[i]!r}" for i in range(min(3, len(col)))]
        raise DataValidationError(
            [
                {
                    "problem": "naive timestamps (no UTC offset or timezone)",
                    "count": len(col),
                    "rows": rows,
                    "hint": "say which zone the times are in: DATA_TZ=America/New_York (make) or "
                    "--data.init_args.assume_tz America/New_York (Alpha Vantage and most US vendors: New York)",
                }
            ]
        )
    try:
        local = idx.tz_localize(assume_tz, ambiguous="raise", nonexistent="raise")
    except Exception as exc:  # noqa: BLE001 - pytz/zoneinfo raise various types
        raise DataValidationError(f"cannot localise naive timestamps to {assume_tz!r}: {exc}") from exc
    return local.tz_convert(NY_TZ), f"naive, assumed {assume_tz}"


def _one_per_day(idx: pd.DatetimeIndex) -> bool:
    return len(idx) > 0 and idx.normalize().nunique() == len(idx.unique())


def _raise_unparseable(col: pd.Series, bad: np.ndarray) -> None:
    pos = np.flatnonzero(bad)
    rows = [f"row {i}: {col.iloc[i]!r}" for i in pos[:3]]
    raise DataValidationError([{"problem": "unparseable timestamps", "count": int(bad.sum()), "rows": rows}])


def _infer_interval(idx: pd.DatetimeIndex) -> str | None:
    """'1d' (one bar per date), '1m' (modal intraday spacing of one minute) or e.g. '5min'."""
    u = idx.unique().sort_values()
    if len(u) < 2:
        return None
    if _one_per_day(u):
        return "1d"
    same_day = u.normalize()[1:] == u.normalize()[:-1]
    diffs = (u[1:] - u[:-1])[same_day]
    if len(diffs) == 0:
        return None
    mode = pd.Series(diffs).mode().iloc[0]
    if mode == pd.Timedelta(minutes=1):
        return "1m"
    return f"{int(mode / pd.Timedelta(seconds=1))}s"
