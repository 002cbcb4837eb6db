"""The options of :func:`~lightning_implicit.datamodules.market.dataset.load_volatility_dataset`, checked once."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd

from .conventions import PAPER_TEST_RANGE, PAPER_TRAIN_RANGE
from .synthetic import SYNTHETIC_RANGE

__all__ = ["MarketOptions", "date_range"]


def date_range(value, name: str) -> tuple[str, str]:
    """``(FROM, TO)`` from a pair or a ``"FROM..TO"`` string (what ``TRAIN_RANGE=2019-01-01..2020-12-31`` passes);
    a ValueError naming ``name`` and the format otherwise."""
    if isinstance(value, str):
        parts = value.split("..")
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise ValueError(f"{name} must be FROM..TO (e.g. 2019-01-01..2020-12-31), got {value!r}")
        return (parts[0].strip(), parts[1].strip())
    return tuple(value)


@dataclass(frozen=True)
class MarketOptions:
    """Where the bars come from, how they are split and how they become windows.

    Source (see :func:`resolve_source`): ``data`` (a CSV/parquet file, ``"synthetic"``, or None for the cache /
    a download), ``cache_dir``, ``allow_download``, ``ticker``, ``interval`` (``"1d"`` or ``"1m"``: only the
    cache and downloads; a file's bar spacing decides between the minute task and the daily variant),
    ``assume_tz`` (zone of naive timestamps), ``price_basis`` (declared basis: accepts split-like jumps),
    ``synthetic_range`` and ``seed`` (the ``"synthetic"`` series).

    Split, by session date: ``train_range`` / ``test_range`` (inclusive ISO dates, default the paper's) and
    ``explicit_ranges`` (the user chose them: used even when the file does not cover them), or ``test_fraction``
    in (0, 1): the last fraction of usable sessions is the test split.

    Windows: ``input_len`` and ``horizon`` [bars: minutes, or days in the daily variant], ``stride`` [bars between
    window starts], ``max_ffill`` [minutes: longer gaps stay gaps].

    Raises ``ValueError`` naming the field on construction when a value is out of range.
    """

    data: str | os.PathLike | None = None
    cache_dir: str | os.PathLike | None = None
    allow_download: bool = False
    ticker: str = "AMC"
    interval: str = "1d"
    train_range: tuple[str, str] = PAPER_TRAIN_RANGE
    test_range: tuple[str, str] = PAPER_TEST_RANGE
    test_fraction: float | None = None
    explicit_ranges: bool = False
    input_len: int = 60
    horizon: int = 10
    stride: int = 1
    max_ffill: int = 2
    price_basis: str | None = None
    assume_tz: str | None = None
    synthetic_range: tuple[str, str] = SYNTHETIC_RANGE
    seed: int = 0

    def __post_init__(self) -> None:
        if self.interval not in ("1m", "1d"):
            raise ValueError(f"interval must be '1m' or '1d', got {self.interval!r}")
        if self.test_fraction is not None and not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction (SPLIT=) must be in (0, 1), got {self.test_fraction}")
        for name in ("input_len", "horizon", "stride"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_ffill < 0:
            raise ValueError(f"max_ffill must be >= 0, got {self.max_ffill}")
        for name in ("train_range", "test_range", "synthetic_range"):
            value = tuple(getattr(self, name))
            if len(value) != 2:
                raise ValueError(f"{name} must be two dates (start, end), got {getattr(self, name)!r}")
            object.__setattr__(self, name, tuple(str(pd.Timestamp(x).date()) for x in value))
