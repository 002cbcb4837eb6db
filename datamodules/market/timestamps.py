"""Timestamp parsing: vendor timestamp columns -> tz-aware America/New_York index, and bar-spacing inference.

Accepts tz-aware values, epoch numbers (s/ms/us/ns, UTC), strings with UTC offsets, naive strings (only
with ``assume_tz``) and date-only daily bars (exchange calendar dates); anything else raises
:class:`DataValidationError` naming the offending rows.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .conventions import NY_TZ, SESSION_MINUTES
from .errors import DataValidationError

_OFFSET_RE = r"(?:[zZ]|[+-]\d{2}:?\d{2}|\s?UTC|\s?GMT)$"
_OFFSET_PARTS = re.compile(r"(?:([zZ])|([+-])(\d{2}):?(\d{2})|\s?(UTC|GMT))$")
_DATE_ONLY_RE = r"^\d{4}-\d{2}-\d{2}$"
_SLASH_RE = (
    r"^(?P<f1>\d{1,2})/(?P<f2>\d{1,2})/(?P<year>\d{4})"
    r"(?:[ T](?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?)?$"
)
NY_OFFSETS_MIN = (-300, -240)  # EST, EDT


def _arrow(s: pd.Series) -> pa.ChunkedArray:
    """The strings of ``s`` as an Arrow array (regular expressions run in Arrow's RE2, not per Python object)."""
    arr = pa.array(s, from_pandas=True)
    arr = pa.chunked_array([arr]) if isinstance(arr, pa.Array) else arr
    return arr.cast(pa.large_string())


def _matches(arr: pa.ChunkedArray, pattern: str) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.match_substring_regex(arr, pattern), False).to_numpy(), dtype=bool)


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

    s = col.astype("str").str.strip()
    arr = _arrow(s)
    null = np.asarray(
        s.isna().to_numpy() | (pc.utf8_length(arr).to_numpy(zero_copy_only=False) == 0), dtype=bool
    )
    if null.any():
        _raise_unparseable(col, null)
    if _matches(arr, r"^\d{9,19}$").all():
        return _parse_timestamps(pd.Series(pc.cast(arr, pa.int64()).to_numpy()), assume_tz)
    if _matches(arr, _SLASH_RE).all():  # M/D/YYYY or D/M/YYYY: never guessed silently
        return _parse_slash_dates(arr, col, assume_tz)
    has_offset = _matches(arr, _OFFSET_RE)
    aware = _to_datetime(s[has_offset], utc=True) if has_offset.any() else None
    naive = _to_datetime(s[~has_offset], utc=False) if not has_offset.all() else None
    bad = np.zeros(n, dtype=bool)
    if aware is not None:
        bad[has_offset] = np.asarray(aware.isna())
    if naive is not None:
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
    date_only = bool(_matches(arr, _DATE_ONLY_RE).all())
    return _localize_naive(pd.DatetimeIndex(naive), col, assume_tz, date_only=date_only)


def _parse_slash_dates(
    arr: pa.ChunkedArray, col: pd.Series, assume_tz: str | None
) -> tuple[pd.DatetimeIndex, str]:
    """``M/D/YYYY[ H:MM[:SS]]`` (US, a spreadsheet's export) or ``D/M/YYYY``: decided by a field above 12.

    A first field above 12 anywhere means day first; a second field above 12 means month first (US); with
    neither the order cannot be read from the data and the US order is taken, which the data card says."""
    parts = pc.extract_regex(arr, _SLASH_RE).combine_chunks()

    def field(name: str) -> pa.Array:
        return parts.field(name)

    first = pc.cast(field("f1"), pa.int32()).to_numpy()
    second = pc.cast(field("f2"), pa.int32()).to_numpy()
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
    has_time = pc.utf8_length(field("hour")).to_numpy(zero_copy_only=False) > 0

    def number(name: str) -> np.ndarray:
        """The field as integers; 0 where the optional time part is absent."""
        a = field(name)
        return pc.cast(
            pc.if_else(pc.equal(pc.utf8_length(a), 0), pa.scalar("0", a.type), a), pa.int32()
        ).to_numpy()

    # assembled from integer fields (no per-row strptime); an impossible date (2/30) becomes NaT
    fields = {"year": number("year"), "month": month, "day": day}
    fields |= {k: number(k) for k in ("hour", "minute", "second")}
    parsed = pd.to_datetime(pd.DataFrame(fields), errors="coerce")
    clock_out_of_range = (fields["hour"] > 23) | (fields["minute"] > 59) | (fields["second"] > 59)
    bad = np.asarray(parsed.isna()) | clock_out_of_range
    if bad.any():
        _raise_unparseable(col, bad)
    idx, source = _localize_naive(pd.DatetimeIndex(parsed), col, assume_tz, date_only=not has_time.any())
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
    except Exception as exc:  # pytz/zoneinfo raise various types
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


def offsets_in_other_season(col: pd.Series, idx: pd.DatetimeIndex) -> int:
    """Rows whose UTC offset is New York's of the *other* season (-05:00 in summer, -04:00 in winter).

    ``col``: the file's timestamp strings (all with offsets); ``idx``: their parsed instants. When reading the
    times at the offsets they state moves regular-session bars out of 09:30-16:00 New York (the clock times are
    New York's, the offset is a fixed one) -- or keeps as many inside as reading the clock times would (ambiguous)
    -- this raises :class:`DataValidationError` naming the rows and the fix; when the stated instants put more bars
    inside the session than the clock times (a vendor writing one fixed offset all year, with the clock times
    shifted to match), the rows are counted and returned (the data card and the summary line say so)."""
    tails = pc.utf8_slice_codeunits(_arrow(col.astype("str").str.strip()), -7)
    encoded = pc.dictionary_encode(tails).combine_chunks()
    per_tail = np.array([_offset_of(t) for t in encoded.dictionary.to_pylist()], dtype=np.float64)
    stated = per_tail[encoded.indices.to_numpy()]
    utc = idx.tz_convert("UTC").tz_localize(None).as_unit("ns").asi8
    ny_wall = idx.tz_convert(NY_TZ).tz_localize(None).as_unit("ns").asi8
    ny_offset = (ny_wall - utc) // (60 * 10**9)
    wrong = np.isin(stated, NY_OFFSETS_MIN) & (stated != ny_offset)
    if not wrong.any():
        return 0
    stated_wall = utc[wrong] + (stated[wrong] * 60 * 10**9).astype(np.int64)

    def in_session(wall: np.ndarray) -> int:
        minute = (wall % (86_400 * 10**9)) // (60 * 10**9)
        return int(((minute >= SESSION_MINUTES[0]) & (minute < SESSION_MINUTES[1])).sum())

    by_clock, by_instant = in_session(stated_wall), in_session(ny_wall[wrong])
    if (
        by_instant <= by_clock
    ):  # the clock times fit the session at least as well as the instants: ambiguous or wrong
        first = np.flatnonzero(wrong)[:3]
        days = np.unique(ny_wall[wrong] // (86_400 * 10**9)).size
        rows = [
            f"row {i}: {col.iloc[i]!r}, but New York was at UTC{int(ny_offset[i]) // 60:+03d}:00 that day"
            for i in first
        ]
        raise DataValidationError(
            [
                {
                    "problem": f"UTC offsets that disagree with New York's calendar on {days} day(s) (read as "
                    "stated, those bars move an hour against the exchange's 09:30-16:00 session)",
                    "count": int(wrong.sum()),
                    "rows": rows,
                    "hint": "the clock times look like New York times written with one fixed offset: remove the "
                    "offsets from the time column and pass DATA_TZ=America/New_York (make) or "
                    "--data.init_args.assume_tz America/New_York, or write each day's true offset",
                }
            ]
        )
    return int(wrong.sum())


def _offset_of(tail: str | None) -> float:
    """Minutes east of UTC stated by the end of a timestamp string (NaN when none)."""
    m = _OFFSET_PARTS.search(tail or "")
    if m is None:
        return np.nan
    if m.group(1) or m.group(5):
        return 0.0
    sign = -1.0 if m.group(2) == "-" else 1.0
    return sign * (int(m.group(3)) * 60 + int(m.group(4)))
