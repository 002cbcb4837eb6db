"""What loading did to the file's rows, as counts by reason and as the one line printed on screen.

:func:`changes` gathers every row dropped (other tickers, exact duplicates, isolated bad ticks), left out
(bars outside the regular session, zero-volume minutes or days), filled (short gaps forward-filled) or excluded
(sessions by reason, minutes in unfilled gaps whose windows are left out, sessions outside the split ranges),
and writes the summary line that the data card keeps and the task prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["changes"]


def _n(count: int, what: str) -> str:
    return f"{count:,} {what}"


def changes(
    *,
    name: str,
    rows_read: int | None,
    file_info: Mapping[str, Any],
    bars: Mapping[str, Any],
    session_reasons: Mapping[str, int],
    outside_split: int,
    unit: str,
) -> dict[str, Any]:
    """Counts by reason and the summary line.

    ``name``: the file (or source) name; ``rows_read``: rows in it (None when unknown); ``file_info``: the
    loader's counts (``rows_other_tickers``, ``exact_duplicates_dropped``, ``isolated_bad_ticks_dropped``,
    ``offsets_other_season``); ``bars``: the session report (``bars_outside_regular_session``,
    ``zero_volume_minutes``, ``forward_filled_minutes``, ``unfilled_gap_minutes``, ``zero_volume_days``);
    ``session_reasons``: sessions (or days) excluded by reason; ``outside_split``: sessions outside both split
    ranges; ``unit``: ``"sessions"`` (minute task) or ``"days"`` (daily variant).

    Returns ``{"dropped_rows": {...}, "left_out_rows": {...}, "filled_minutes": int, "excluded": {...},
    "notes": [...], "summary": str}`` (every count an int, reasons as keys).
    """
    dropped = {
        "rows of other tickers": int(file_info.get("rows_other_tickers", 0) or 0),
        "exact duplicate rows": int(file_info.get("exact_duplicates_dropped", 0) or 0),
        "isolated bad ticks (> 5x both neighbouring medians)": int(
            file_info.get("isolated_bad_ticks_dropped", 0) or 0
        ),
    }
    left_out = {
        "bars outside the regular session 09:30-16:00 New York": int(
            bars.get("bars_outside_regular_session", 0) or 0
        ),
        "zero-volume minutes (gaps)": int(bars.get("zero_volume_minutes", 0) or 0),
        "zero-volume days": int(bars.get("zero_volume_days", 0) or 0),
    }
    filled = int(bars.get("forward_filled_minutes", 0) or 0)
    max_ffill = bars.get("max_ffill")
    excluded = {f"{unit}: {reason}": int(count) for reason, count in session_reasons.items() if count}
    if outside_split:
        excluded[f"{unit} outside the split ranges"] = int(outside_split)
    unfilled = int(bars.get("unfilled_gap_minutes", 0) or 0)
    if unfilled:
        excluded[f"minutes in gaps longer than {max_ffill} (their windows left out)"] = unfilled
    notes = []
    other_season = int(file_info.get("offsets_other_season", 0) or 0)
    if other_season:
        notes.append(
            f"{other_season:,} rows carry New York's UTC offset of the other season (one fixed offset all year); "
            "read as the instants they state"
        )
    parts = []
    d = {k: v for k, v in dropped.items() if v}
    if d:
        parts.append("dropped " + ", ".join(_n(v, k) for k, v in d.items()))
    lo = {k: v for k, v in left_out.items() if v}
    if lo:
        parts.append("left out " + ", ".join(_n(v, k) for k, v in lo.items()))
    if filled:
        parts.append(f"filled {filled:,} minutes (gaps of at most {max_ffill} minutes, forward-filled)")
    if excluded:
        parts.append("excluded " + ", ".join(_n(v, k) for k, v in excluded.items()))
    read = f"{rows_read:,} rows in {name}" if rows_read is not None else name
    line = f"data: {read}; " + ("; ".join(parts) if parts else "nothing dropped, filled or excluded")
    if notes:
        line += "; note: " + "; ".join(notes)
    return {
        "dropped_rows": dropped,
        "left_out_rows": left_out,
        "filled_minutes": filled,
        "excluded": excluded,
        "notes": notes,
        "summary": line,
    }
