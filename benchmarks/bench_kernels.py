"""The implicit layer's kernels against their floors (issue 32), as ratios measured in one run.

Run with ``python -m benchmarks.bench_kernels`` (``make bench`` runs it through :mod:`benchmarks.run`; a minute or
two). One thread, interleaved round-robin rounds of repeats; each figure is the ratio of the typical fastest
repeats (per round the fastest, the one least disturbed by other processes; the median of those over the rounds)
with the ratio of the plain medians beside it; the load average is printed before and
after, and a run on a busy machine says so.

1. **Training step ÷ bare products** at n = 20, 100, 500, 1000 (batch 256, p = 50, q = 10), for two kinds of
   weights with every row of ``A`` on its kappa ball (as after training): *signed* (Gaussian rows, kappa 0.95)
   and *slow* (non-negative rows, kappa 0.95: the contraction factor is about kappa itself, the slowest sample
   needing 60-200 iterations). The step is the library's: forward, MSE loss, backward, Adam (fused, lr 1e-5),
   projection of ``A``. The floor is what any implementation of the same iterations must compute: the bare
   products of the forward (from x = 0: one fewer than its iterations, the first iterate being relu(B u)) and of
   the adjoint iterations in C++ (the BLAS calls of the fused loop, no residuals, stopping test or recording) at
   the step's **mean** per-sample iteration counts (perfect per-sample stopping at zero cost), the products of
   the input, output and gradient terms, and the Adam step on the same parameters. Beside it, the step of the
   code at ``fee458c`` (the commit before this issue) on the same weights and batch, built from git into a
   temporary folder (needs the git history; skipped otherwise).
2. **Projection ÷ A.clone()** at n = 500 and 1000, float32, every row outside the ball (Gaussian rows of L1 norm
   3 kappa, and rows just outside: 1.05 kappa), and the sort-based projection of ``fee458c`` for comparison.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from lightning_implicit.implicit import AdjointConfig, ConvergenceWarning, ImplicitModel, SolverConfig
from lightning_implicit.implicit.projection import project_rows_l1

SIZES = (20, 100, 500, 1000)
BATCH, P, Q = 256, 50, 10
KINDS = {"signed": 0.95, "slow": 0.95}  # weight kind -> kappa (rows of A on that ball)
BASELINE = "fee458c"
REPO = Path(__file__).resolve().parent.parent


def load_line() -> str:
    a, b, c = os.getloadavg()
    return f"load avg {a:.2f} {b:.2f} {c:.2f} on {os.cpu_count()} cpus"


def busy(load: float) -> bool:
    """Another process's worth of work per CPU (this benchmark's own thread included in the count)."""
    return load > (os.cpu_count() or 1)


def timed(fns: dict, rounds: int, reps: int, warmup: int = 1) -> dict[str, tuple[float, float]]:
    """``{name: (typical fastest s, median s)}`` per call, timed round-robin so that load bursts hit every entry
    alike: each round keeps its fastest repeat (the one least disturbed by other processes), and the figure is the
    median of those over the rounds (one lucky repeat cannot decide it); the plain median beside it."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[list[float]]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            ts = []
            for _ in range(reps):
                t = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t)
            times[k].append(ts)
    return {
        k: (statistics.median(min(ts) for ts in v), statistics.median(t for ts in v for t in ts))
        for k, v in times.items()
    }


def baseline_package(directory: Path):
    """The ``lightning_implicit.implicit`` package of ``BASELINE``, imported as a top-level package (its imports
    are relative) from ``directory``; ``None`` where git or the commit is not available."""
    dest = directory / f"_implicit_{BASELINE}"
    try:
        files = subprocess.run(
            ["git", "-C", str(REPO), "ls-tree", "-r", "--name-only", BASELINE, "lightning_implicit/implicit"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        for f in files:
            data = subprocess.run(
                ["git", "-C", str(REPO), "show", f"{BASELINE}:{f}"], check=True, capture_output=True
            ).stdout
            target = dest / Path(f).relative_to("lightning_implicit/implicit")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"  (no {BASELINE} comparison: {e})")
        return None
    sys.path.insert(0, str(directory))
    try:
        return importlib.import_module(dest.name)
    finally:
        sys.path.remove(str(directory))


# ------------------------------------------------------------------------------------------ [1] step / floor


def weights(kind: str, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    kappa = KINDS[kind]
    A = torch.randn(n, n, generator=gen) if kind == "signed" else torch.rand(n, n, generator=gen)
    A = A / A.abs().sum(dim=1, keepdim=True) * kappa  # every row on the ball
    return {
        "layer.A": A,
        "layer.B": torch.randn(n, P, generator=gen) / P**0.5,
        "C": torch.randn(Q, n, generator=gen) / n**0.5,
        "D": torch.randn(Q, P, generator=gen) / P**0.5,
    }


def make_step(model: nn.Module, u: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.Adam(model.parameters(), lr=1e-5, fused=True)

    def step():
        opt.zero_grad(set_to_none=True)
        nn.functional.mse_loss(model(u), y).backward()
        opt.step()
        model.project_()

    return step


def step_counts(model: ImplicitModel) -> tuple[int, int, int, int]:
    """Mean and largest per-sample iterations of the model's last step: forward mean, adjoint mean, maxima."""
    st = model.last_stats
    return (
        max(1, round(float(st.iterations.float().mean()))),
        max(1, round(float(st.backward_iterations.float().mean()))),
        int(st.iterations.max()),
        int(st.backward_iterations.max()),
    )


def make_floor(model: ImplicitModel, u: torch.Tensor, y: torch.Tensor, bare, counts, cols: bool):
    """The floor of one training step (see the module's docstring), in the batch-first or (n, batch) layout of
    the bare C++ products, at the mean iteration counts ``counts[:2]``."""
    k_fwd, k_bwd = counts[:2]
    A, B, C, D = (t.detach().clone() for t in (model.A, model.B, model.C, model.D))
    params = [t.clone().requires_grad_() for t in (A, B, C, D)]
    for p in params:
        p.grad = torch.zeros_like(p)
    opt = torch.optim.Adam(params, lr=1e-5, fused=True)
    with torch.no_grad():
        x = model.layer(u)
        d = (torch.addmm(u @ B.t(), x, A.t()) > 0).float()
    g_out = torch.randn_like(y)

    def floor():
        BU = u @ B.t()
        # (k_fwd iterations from x = 0 need k_fwd - 1 products: the first iterate is relu(B u); the bare loop from
        # zero runs k_fwd - 1 products, the same cost)
        xk = bare.bare_picard(A, BU, max(k_fwd - 1, 1), cols)
        torch.addmm(u @ D.t(), xk.t() if cols else xk, C.t())  # y = C x + D u
        g = g_out @ C
        w = bare.bare_adjoint(A, d, g, k_bwd, cols)
        w = w.t() if cols else w
        v = d * w
        v.t() @ x, v.t() @ u, g_out.t() @ x, g_out.t() @ u, torch.addmm(g_out @ D, v, B)  # dA dB dC dD du
        opt.step()

    return floor


def bench_step(old, rounds: int) -> list[dict]:
    from benchmarks.bench_perf import _bare_cpp

    bare = _bare_cpp()
    rows = []
    for kind, kappa in KINDS.items():
        for n in SIZES:
            gen = torch.Generator().manual_seed(n)
            state = weights(kind, n, gen)
            u = torch.rand(BATCH, P, generator=gen) * 2 - 1
            y = torch.randn(BATCH, Q, generator=gen)
            # (warn=False for both solves, as the training module runs them: no convergence check per step)
            cfg = dict(kappa=kappa, solver=SolverConfig(warn=False), adjoint=AdjointConfig(warn=False))
            model = ImplicitModel(P, n, Q, **cfg)
            model.load_state_dict(state)
            step = make_step(model, u, y)
            step()  # (fills last_stats for the floor's counts)
            fns = {"step": step}
            counts = step_counts(model)
            fns["floor rows"] = make_floor(model, u, y, bare, counts, cols=False)
            fns["floor cols"] = make_floor(model, u, y, bare, counts, cols=True)
            if old is not None:
                old_model = old.ImplicitModel(
                    P,
                    n,
                    Q,
                    kappa=kappa,
                    solver=old.SolverConfig(warn=False),
                    adjoint=old.AdjointConfig(warn=False),
                )
                old_model.load_state_dict(state)
                fns[BASELINE] = make_step(old_model, u, y)
            # (many repeats where they are cheap: the fastest of few is a lottery on a loaded machine)
            small = n <= 100
            reps = 30 if small else 3 if n <= 500 else 2
            t = timed(fns, rounds=3 * rounds if small else 2 * rounds, reps=reps, warmup=2 if small else 1)
            floor = min(t["floor rows"][0], t["floor cols"][0]), min(t["floor rows"][1], t["floor cols"][1])
            r = dict(kind=kind, n=n, step=t["step"], floor=floor, counts=counts, old=t.get(BASELINE))
            rows.append(r)
            old_txt = (
                ""
                if r["old"] is None
                else f" | {BASELINE} step {1e3 * r['old'][0]:9.2f} ms: now {r['step'][0] / r['old'][0]:.2f}x "
                f"({r['step'][1] / r['old'][1]:.2f}x)"
            )
            print(
                f"  {kind:<6} n={n:<4} it fwd mean/max {counts[0]:3d}/{counts[2]:3d} adj {counts[1]:3d}/{counts[3]:3d} "
                f"| step {1e3 * r['step'][0]:9.2f} ms vs floor {1e3 * floor[0]:9.2f} ms: "
                f"{r['step'][0] / floor[0]:.2f}x ({r['step'][1] / floor[1]:.2f}x){old_txt}",
                flush=True,
            )
    return rows


# ------------------------------------------------------------------------------------------ [2] projection


def bench_projection(old, rounds: int) -> list[dict]:
    rows = []
    for n in (500, 1000):
        for factor in (3.0, 1.05):
            gen = torch.Generator().manual_seed(n)
            A = torch.randn(n, n, generator=gen)
            A = A / A.abs().sum(dim=1, keepdim=True) * (0.95 * factor)  # every row outside the ball
            fns = {"clone": A.clone, "projection": lambda A=A: project_rows_l1(A, 0.95)}
            if old is not None:
                fns[BASELINE] = lambda A=A: old.project_rows_l1(A, 0.95)
            t = timed(fns, rounds=rounds, reps=30, warmup=2)
            r = dict(n=n, factor=factor, t=t)
            rows.append(r)
            c = t["clone"]
            old_txt = (
                ""
                if old is None
                else f" | {BASELINE} (sort) {1e3 * t[BASELINE][0]:7.3f} ms = {t[BASELINE][0] / c[0]:6.1f}x"
            )
            print(
                f"  n={n:<5} rows at {factor:4.2f} kappa: clone {1e3 * c[0]:7.3f} ms, projection "
                f"{1e3 * t['projection'][0]:7.3f} ms = {t['projection'][0] / c[0]:5.1f}x "
                f"({t['projection'][1] / c[1]:5.1f}x){old_txt}",
                flush=True,
            )
    return rows


# ------------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    ap.add_argument("--skip", nargs="*", default=[], choices=["step", "projection", "baseline"])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", ConvergenceWarning)
    t0 = time.perf_counter()
    before = os.getloadavg()[0]
    print("=" * 120)
    print("bench_kernels: the implicit layer's step and projection against their floors (1 thread)")
    print(
        f"machine: {platform.platform()} | {platform.processor() or platform.machine()} | torch {torch.__version__}"
    )
    print(f"before: {load_line()}")
    print("ratios: median over rounds of each round's fastest repeat (plain medians in brackets)")
    print("=" * 120, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_kernels_") as tmp:
        old = None if "baseline" in args.skip else baseline_package(Path(tmp))
        if old is not None:
            old.fused.fused_module()  # (built before timing: ~30 s the first time)
        res = {}
        if "step" not in args.skip:
            print(f"\n[1] training step / bare products, batch {BATCH}, p={P}, q={Q}", flush=True)
            res["step"] = bench_step(old, args.rounds)
        if "projection" not in args.skip:
            print("\n[2] projection of A onto ||A||_inf <= 0.95 / A.clone(), float32", flush=True)
            res["projection"] = bench_projection(old, args.rounds)
    after = os.getloadavg()[0]
    print(f"\nafter: {load_line()}")
    summary(res, before, after)
    print(f"bench_kernels done in {time.perf_counter() - t0:.0f} s")
    return 0


def summary(res: dict, before: float, after: float) -> None:
    print("\n" + "=" * 120)
    print("SUMMARY (ratios measured in this run)")
    if busy(before) or busy(after):
        print(
            f"  busy: load average {before:.1f} before, {after:.1f} after on {os.cpu_count()} cpus: other processes "
            "shared the CPU, so these ratios can be off by tens of percent; rerun on a quiet machine."
        )
    for r in res.get("step", []):
        target = 2.0 if r["n"] < 100 else 1.5
        ratio = r["step"][0] / r["floor"][0]
        old = "" if r["old"] is None else f"; vs {BASELINE} {r['step'][0] / r['old'][0]:.2f}x (target <= 1)"
        ok = "ok" if ratio <= target else "over"
        print(
            f"  step / bare products  {r['kind']:<6} n={r['n']:<5} {ratio:5.2f}x (target <= {target}x: {ok}){old}"
        )
    for r in res.get("projection", []):
        ratio = r["t"]["projection"][0] / r["t"]["clone"][0]
        verdict = ("ok" if ratio <= 10 else "over") if r["n"] == 1000 else "the target is for n=1000"
        print(
            f"  projection / clone    n={r['n']:<5} rows at {r['factor']:4.2f} kappa {ratio:5.1f}x "
            f"(target <= 10x at n=1000: {verdict})"
        )


if __name__ == "__main__":
    sys.exit(main())
