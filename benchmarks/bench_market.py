"""Benchmark of the market-data loader on a paper-size minute file (issue 33: <= 30 s for 2.5 M rows).

Run ``python -m benchmarks.bench_market`` (options: ``--rows N``, ``--keep DIR``, ``--limit-s S``).

1. Write a valid yfinance-layout CSV (``Datetime,Open,High,Low,Close,Adj Close,Volume``, timestamps with the
   New York UTC offset of their date, as yfinance saves them) of ``--rows`` 1-minute regular-session bars
   (390 a weekday, a seeded random walk) into a temporary directory.
2. In a child process (so its peak RSS is the loader's alone): ``load_minute_file`` (read, normalise, tidy),
   then the whole ``load_volatility_dataset`` (validation, sessions, 60 -> 10 windows, split, data card).
   Prints rows, seconds per stage, peak RSS [MiB] and the load average beside them (the machine is shared).

Exit status 1 when the whole load takes longer than ``--limit-s`` (default 30 s).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROWS = 2_500_000
LIMIT_S = 30.0
SESSION_MINUTES = 390


def _peak_rss_mib() -> float:
    """Peak resident set size of this process [MiB] (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024.0 if sys.platform != "darwin" else rss / 2**20


def write_minute_file(path: Path, rows: int, seed: int = 0) -> Path:
    """A valid yfinance-layout minute CSV of ``rows`` regular-session bars (whole weekdays from 2000-01-03)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv

    n_days = -(-rows // SESSION_MINUTES)
    days = pd.bdate_range("2000-01-03", periods=n_days)
    local = days.tz_localize("America/New_York")
    offset = [
        f"{'-' if o < 0 else '+'}{abs(o) // 3600:02d}:00"
        for o in local.map(lambda d: int(d.utcoffset().total_seconds()))
    ]
    minutes = np.arange(SESSION_MINUTES) + 9 * 60 + 30
    clock = np.array([f" {m // 60:02d}:{m % 60:02d}:00" for m in minutes])
    stamps = np.char.add(
        np.char.add(np.asarray(days.strftime("%Y-%m-%d"))[:, None], clock[None, :]),
        np.asarray(offset)[:, None],
    ).ravel()[:rows]
    rng = np.random.default_rng(seed)
    close = 20.0 * np.exp(np.cumsum(rng.normal(0.0, 5e-4, rows)))
    spread = np.abs(rng.normal(0.0, 2e-3, rows)) * close
    table = pa.table(
        {
            "Datetime": stamps.astype(str),
            "Open": np.round(close + spread / 4, 4),
            "High": np.round(close + spread, 4),
            "Low": np.round(close - spread, 4),
            "Close": np.round(close, 4),
            "Adj Close": np.round(close, 4),
            "Volume": rng.integers(100, 50_000, rows),
        }
    )
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="none"))
    return path


def _child(path: str) -> None:
    """Child mode: load the file (stages timed), print one JSON line."""
    from lightning_implicit.datamodules import market as md

    t0 = time.perf_counter()
    df, _ = md.load_minute_file(path)
    t_file = time.perf_counter() - t0
    rss_file = _peak_rss_mib()
    del df
    t0 = time.perf_counter()
    d = md.load_volatility_dataset(path)
    t_all = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "rows": d.card["bars"]["bars_in_file"],
                "file_s": t_file,
                "dataset_s": t_all,
                "windows": len(d.y_train) + len(d.y_test),
                "rss_after_file_mib": rss_file,
                "peak_rss_mib": _peak_rss_mib(),
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=ROWS)
    p.add_argument("--keep", default=None, help="write the file into this directory and keep it")
    p.add_argument("--limit-s", type=float, default=LIMIT_S)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args.child)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        path = write_minute_file(folder / "amc_1min_yfinance.csv", args.rows)
        t_write = time.perf_counter() - t0
        size_mib = path.stat().st_size / 2**20
        print(
            f"[market] wrote {args.rows:,} rows ({size_mib:.0f} MiB) in {t_write:.1f} s; "
            f"load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        res = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_market", "--child", str(path)],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        if res.returncode != 0:
            print(res.stdout[-2000:] + res.stderr[-4000:], file=sys.stderr)
            return 1
        r = json.loads(res.stdout.strip().splitlines()[-1])
    print(
        f"[market] rows {r['rows']:,}: load_minute_file {r['file_s']:.1f} s (peak RSS {r['rss_after_file_mib']:.0f} "
        f"MiB); load_volatility_dataset {r['dataset_s']:.1f} s, {r['windows']:,} windows, peak RSS "
        f"{r['peak_rss_mib']:.0f} MiB; limit {args.limit_s:g} s for the whole load; load average "
        f"{os.getloadavg()[0]:.2f}",
        flush=True,
    )
    return 0 if r["dataset_s"] <= args.limit_s else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
