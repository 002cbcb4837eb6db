"""Run every benchmark: ``python -m benchmarks.run`` (what ``make bench`` runs).

Calls ``main()`` of :mod:`benchmarks.bench_core` first, then of every other ``benchmarks/bench_*.py`` module
(e.g. ``bench_earthquake``) in name order. A module fails if importing or running it raises, or if its
``main()`` returns a non-zero status; the exit status is non-zero when any module failed.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
import time
import traceback
from pathlib import Path


def discover() -> list[str]:
    here = Path(__file__).resolve().parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    if "bench_core" in names:
        names.remove("bench_core")
        names.insert(0, "bench_core")
    return names


def run_one(name: str) -> bool:
    t0 = time.perf_counter()
    try:
        module = importlib.import_module(f"benchmarks.{name}")
        main = getattr(module, "main", None)
        if main is None:
            print(f"[run] {name}: no main(), skipped", flush=True)
            return True
        # ``main(argv)`` gets an empty argv (not this process's sys.argv); a ``main()`` without parameters too.
        status = main([]) if inspect.signature(main).parameters else main()
    except SystemExit as exc:  # argparse or sys.exit inside main()
        status = exc.code
    except Exception:
        traceback.print_exc()
        print(f"[run] {name}: FAILED (exception) after {time.perf_counter() - t0:.0f} s", flush=True)
        return False
    ok = status in (None, 0, True)
    print(
        f"[run] {name}: {'ok' if ok else f'FAILED (status {status!r})'} in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    names = list(argv) if argv else discover()
    failed = [name for name in names if not run_one(name)]
    print(
        f"[run] {len(names) - len(failed)}/{len(names)} benchmarks ok"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
