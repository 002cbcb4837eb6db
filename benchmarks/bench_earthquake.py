"""Benchmark of the earthquake data pipeline: travel-time table build and full paper-size generation.

Run ``python -m benchmarks.bench_earthquake`` (options: ``--spot-checks N``, ``--seed S``, ``--keep DIR``).

Steps (each in a fresh temporary cache unless ``--keep``):

1. build the default ak135 table (481 distances x 181 depths) from scratch, then load it back from the cache;
2. compare the table with exact ``TauPyModel.get_travel_times`` at random off-node points
   (distance in [0.5, 30] deg, depth in [0, 700] km); exit status 1 if any differs by more than 0.05 s;
3. in a child process (so its peak RSS is the generator's alone) generate every split of the paper profile
   (720,576 train + id test + 9 x 20,016) with the cached table, and report time and peak memory
   (``resource.getrusage(...).ru_maxrss``); then time writing and reading the data cache.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TOLERANCE_S = 0.05


def _peak_rss_mib() -> float:
    """Peak resident set size of this process [MiB] (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024.0 if sys.platform != "darwin" else rss / 2**20


def _child_generate(cache_dir: str, seed: int) -> None:
    """Child mode: load the cached table, generate every split (no data cache), print a JSON line."""
    from lightning_implicit.datamodules.earthquake_data import EarthquakeSpec, generate_all, split_counts
    from lightning_implicit.datamodules.traveltime import TravelTimeTable

    rss0 = _peak_rss_mib()
    t0 = time.perf_counter()
    table = TravelTimeTable.load_or_build(cache_dir=cache_dir, progress=False)
    t_load = time.perf_counter() - t0
    spec = EarthquakeSpec(seed=seed)
    t0 = time.perf_counter()
    data = generate_all(spec, table, use_cache=False)
    t_gen = time.perf_counter() - t0
    n = sum(x.shape[0] for x, _ in data.values())
    assert n == split_counts(spec)["total"]
    assert all(np.isfinite(x).all() and np.isfinite(y).all() for x, y in data.values())
    print(
        json.dumps(
            {
                "load_s": t_load,
                "gen_s": t_gen,
                "samples": n,
                "rss_before_mib": rss0,
                "peak_rss_mib": _peak_rss_mib(),
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spot-checks", type=int, default=20, help="random off-node comparisons with obspy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=str, default=None, help="use (and keep) this cache dir")
    parser.add_argument("--child-generate", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_generate is not None:
        _child_generate(args.child_generate, args.seed)
        return 0

    from lightning_implicit.datamodules.earthquake_data import EarthquakeSpec, generate_all
    from lightning_implicit.datamodules.traveltime import TravelTimeTable, exact_first_arrival, obspy_version
    from obspy.taup import TauPyModel

    tmp = None
    if args.keep is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-earthquake-")
        cache = Path(tmp.name)
    else:
        cache = Path(args.keep)
    rows: list[tuple[str, str]] = []
    try:
        t0 = time.perf_counter()
        table = TravelTimeTable.load_or_build(cache_dir=cache, progress=True)
        t_build = time.perf_counter() - t0
        rows.append(
            (f"table build {table.depths.size}x{table.distances.size} (fresh cache)", f"{t_build:8.2f} s")
        )
        t0 = time.perf_counter()
        TravelTimeTable.load_or_build(cache_dir=cache, progress=False)
        rows.append(("table load (cached)", f"{time.perf_counter() - t0:8.3f} s"))

        model = TauPyModel("ak135")
        rng = np.random.default_rng(args.seed)
        dist = rng.uniform(0.5, 30.0, args.spot_checks)
        dep = rng.uniform(0.0, 700.0, args.spot_checks)
        t0 = time.perf_counter()
        exact = np.array([exact_first_arrival(z, d, model) for d, z in zip(dist, dep, strict=True)])
        t_exact = time.perf_counter() - t0
        err = np.abs(table(dist, dep) - exact)
        worst = int(np.argmax(err))
        rows.append(
            (
                f"spot checks vs get_travel_times (n={args.spot_checks})",
                f"max {err.max():.4f} s, mean {err.mean():.4f} s",
            )
        )
        rows.append(("  worst point", f"{dist[worst]:.3f} deg, {dep[worst]:.1f} km"))
        rows.append(("  obspy per call", f"{1e3 * t_exact / max(args.spot_checks, 1):8.2f} ms"))

        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.bench_earthquake",
                "--child-generate",
                str(cache),
                "--seed",
                str(args.seed),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        child = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append((f"generate all splits ({child['samples']:,} samples)", f"{child['gen_s']:8.2f} s"))
        rows.append(("  peak RSS of the generating process", f"{child['peak_rss_mib']:8.0f} MiB"))
        rows.append(("  RSS before generation (imports + table)", f"{child['rss_before_mib']:8.0f} MiB"))

        spec = EarthquakeSpec(seed=args.seed)
        t0 = time.perf_counter()
        generate_all(spec, table, cache_dir=cache)
        rows.append(("generate_all + write data cache", f"{time.perf_counter() - t0:8.2f} s"))
        t0 = time.perf_counter()
        generate_all(spec, table, cache_dir=cache)
        rows.append(("generate_all from data cache (verified)", f"{time.perf_counter() - t0:8.2f} s"))
        rows.append(("peak RSS of this process", f"{_peak_rss_mib():8.0f} MiB"))
    finally:
        if tmp is not None:
            tmp.cleanup()

    import os

    width = max(len(r[0]) for r in rows)
    print(f"\nearthquake data benchmark (obspy {obspy_version()}, {os.cpu_count()} CPUs)")
    print("-" * (width + 30))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("-" * (width + 30))
    if err.max() > TOLERANCE_S:
        print(f"FAIL: table differs from obspy by {err.max():.4f} s > {TOLERANCE_S} s", file=sys.stderr)
        return 1
    print(f"OK: table within {TOLERANCE_S} s of obspy at all spot checks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
