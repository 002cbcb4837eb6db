"""The market-data cache directory: file names (``{ticker}_{interval}.parquet`` / ``.csv``), atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd


def _cache_candidates(cache_dir: str | os.PathLike | None, ticker: str, interval: str) -> list[Path]:
    if cache_dir is None:
        return []
    base = Path(cache_dir)
    return [base / f"{ticker}_{interval}.parquet", base / f"{ticker}_{interval}.csv"]


def _write_cache(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    df.to_parquet(tmp)
    os.replace(tmp, path)
