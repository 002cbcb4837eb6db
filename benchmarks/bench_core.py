"""Core benchmark of the implicit layer: training-step time per solver x adjoint, memory, trained-weight iterations.

Run with ``python -m benchmarks.bench_core`` (``make bench`` runs it through :mod:`benchmarks.run`). Sections:

1. **Training step** (forward + backward + Adam step + projection of A), in ms, median of repeats after warm-up,
   for the paper's sizes (Table 4): n=20/p=50/q=1 (arithmetic, batch 64), n=36/p=10/q=10 (the rolling-argmax
   "Regular" model, batch 64) and n=190/p=30/q=4 (earthquake, batch 1024), for every forward solver
   (picard, anderson, newton) x adjoint mode (direct, fixed_point), with the mean forward iterations; and the
   same step for the Table 4 MLP of that task (for the n=36 case Table 4 lists an LSTM 1x21x21x10, so an MLP
   10->21->21->10 stands in; the identity task's 10x9x9x10 MLP is shown too). Weights are freshly
   initialised (rows of A have L1 norm ~0.5, so few iterations): see section 3 for trained weights.
2. **Memory** of the backward, for the implicit layer (direct and fixed-point adjoint) vs the same Picard
   solve unrolled through autograd, for K = 10, 50, 200 forward iterations (tolerance 0, so exactly K):
   bytes of the tensors autograd saves for backward (counted exactly with
   ``torch.autograd.graph.saved_tensors_hooks``, unique storages, parameters excluded; device-independent),
   and the peak allocation of forward + backward (``torch.cuda.max_memory_allocated`` on CUDA, the
   profiler's allocation events on CPU) -- which shows the direct adjoint's ``batch x n x n`` workspace.
3. **Trained weights**: a short Adam fit (the addition task ``y = sum(u[r1]) + sum(u[r2])`` with
   ``u ~ U(-1,1)^50`` and two random index ranges, n=20; random regression targets for n=190), after which
   A sits on its kappa-ball; then the forward iterations (median / mean / max per sample, over a batch) and
   forward time of picard vs anderson vs newton on those weights, in distribution and at 10x input scale.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from lightning_implicit.implicit import (
    AdjointConfig,
    ConvergenceWarning,
    ImplicitModel,
    SolverConfig,
    count_parameters,
)


def quiet(adjoint: str = "auto", adjoint_max_iter: int = 300, **solver) -> dict:
    """The layer's config objects (``solver`` fields as keywords), without convergence warnings."""
    return dict(
        solver=SolverConfig(warn=False, **solver),
        adjoint=AdjointConfig(mode=adjoint, max_iter=adjoint_max_iter, warn=False),
    )


SOLVERS = ("picard", "anderson", "newton")
ADJOINTS = ("direct", "fixed_point")


@dataclass(frozen=True)
class Case:
    name: str
    n: int
    p: int
    q: int
    batch: int
    mlps: tuple[tuple[str, tuple[int, ...], str], ...]  # (label, widths, activation)


CASES = (
    Case("arithmetic", 20, 50, 1, 64, (("MLP 50x10x10x1", (50, 10, 10, 1), "relu"),)),
    Case(
        "argmax-size",
        36,
        10,
        10,
        64,
        (
            ("MLP 10x21x21x10 (stand-in)", (10, 21, 21, 10), "relu"),
            ("MLP 10x9x9x10 (identity)", (10, 9, 9, 10), "relu"),
        ),
    ),
    Case(
        "earthquake",
        190,
        30,
        4,
        1024,
        (("MLP 30x32x128x128x128x32x4 ELU", (30, 32, 128, 128, 128, 32, 4), "elu"),),
    ),
)


def mlp(widths: tuple[int, ...], activation: str) -> nn.Sequential:
    act = {"relu": nn.ReLU, "elu": nn.ELU}[activation]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        if i:
            layers.append(act())
        layers.append(nn.Linear(a, b))
    return nn.Sequential(*layers)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved_timing(
    steps: dict[str, object],
    device: torch.device,
    *,
    rounds: int = 3,
    round_budget_s: float = 0.2,
    max_reps_per_round: int = 10,
    warmup: int = 2,
    slow_s: float = 0.5,
) -> dict[str, tuple[float, float, int]]:
    """``{name: (median ms, min ms, repeats)}`` for callables timed round-robin.

    Every step gets ``warmup`` untimed calls (one if a call takes over ``slow_s``), then ``rounds`` rounds in
    which each step runs at least once and until ``round_budget_s`` (at most ``max_reps_per_round``). Spreading
    each step's repeats over the rounds keeps a burst of load from other processes on a shared machine from
    landing on one configuration only."""
    for fn in steps.values():
        t0 = time.perf_counter()
        fn()
        _sync(device)
        if time.perf_counter() - t0 < slow_s:
            for _ in range(warmup - 1):
                fn()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            start = time.perf_counter()
            k = 0
            while k < max_reps_per_round and (k == 0 or time.perf_counter() - start < round_budget_s):
                _sync(device)
                t = time.perf_counter()
                fn()
                _sync(device)
                times[name].append(time.perf_counter() - t)
                k += 1
    return {name: (1000 * statistics.median(ts), 1000 * min(ts), len(ts)) for name, ts in times.items()}


def make_train_step(model: nn.Module, u: torch.Tensor, y: torch.Tensor, lr: float = 1e-3):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    project = getattr(model, "project_", None)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(u), y)
        loss.backward()
        opt.step()
        if project is not None:
            project()
        return loss

    return step


# ------------------------------------------------------------------------------------------------ section 1


def bench_training_step(device: torch.device, seed: int = 0) -> list[dict]:
    rows = []
    for case in CASES:
        g = torch.Generator().manual_seed(seed)
        u = (torch.rand(case.batch, case.p, generator=g) * 2 - 1).to(device)
        y = torch.randn(case.batch, case.q, generator=g).to(device)
        steps, info = {}, {}
        for solver in SOLVERS:
            for adjoint in ADJOINTS:
                torch.manual_seed(seed)
                model = ImplicitModel(case.p, case.n, case.q, **quiet(adjoint, method=solver))
                model = model.to(device)
                iters: list[float] = []
                train = make_train_step(model, u, y)

                def step(train=train, model=model, iters=iters):
                    train()
                    iters.append(float(model.last_stats.iterations.float().mean()))

                key = f"{solver}/{adjoint}"
                steps[key] = step
                info[key] = dict(
                    model=f"implicit n={case.n}",
                    solver=solver,
                    adjoint=adjoint,
                    iters=iters,
                    params=count_parameters(model),
                )
        for label, widths, act in case.mlps:
            torch.manual_seed(seed)
            net = mlp(widths, act).to(device)
            y_m = y if widths[-1] == case.q else torch.randn(case.batch, widths[-1], device=device)
            steps[label] = make_train_step(net, u[:, : widths[0]], y_m)
            info[label] = dict(
                model=label,
                solver="-",
                adjoint="-",
                iters=[float("nan")],
                params=sum(p.numel() for p in net.parameters()),
            )
        for key, (ms, ms_min, reps) in interleaved_timing(steps, device).items():
            r = info[key]
            rows.append(
                dict(
                    case=case.name,
                    model=r["model"],
                    solver=r["solver"],
                    adjoint=r["adjoint"],
                    ms=ms,
                    ms_min=ms_min,
                    iters=r["iters"][0],
                    reps=reps,
                    params=r["params"],
                )
            )
            _print_row(rows[-1])
    return rows


def _print_row(r: dict) -> None:
    it = "" if r["iters"] != r["iters"] else f"{r['iters']:.1f}"
    print(
        f"  {r['case']:<12} {r['model']:<34} {r['solver']:<9} {r['adjoint']:<12} {r['ms']:>9.2f} "
        f"{r['ms_min']:>9.2f} {it:>7} {r['reps']:>5} {r['params']:>7}",
        flush=True,
    )


# ------------------------------------------------------------------------------------------------ section 2


def saved_bytes(fn, exclude: list[torch.Tensor]) -> int:
    """Bytes of the distinct storages autograd saves for backward while running ``fn`` (parameters excluded)."""
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        st = t.untyped_storage()
        if st.data_ptr() not in skip:
            seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    out.sum().backward()
    return sum(seen.values())


@contextlib.contextmanager
def _drop_stderr_lines(*patterns: str):
    """Filter the profiler's C++ log lines (written to fd 2) containing any of ``patterns``; keep the rest."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode(errors="replace").splitlines(keepends=True):
                if not any(p in line for p in patterns):
                    sys.stderr.write(line)


def peak_bytes(fn, device: torch.device) -> int | None:
    """Peak of the memory allocated while ``fn()`` runs, above what was allocated before.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the allocation/free events of the PyTorch profiler
    (``profile_memory=True``) summed in time order; frees of blocks allocated before ``fn`` are not reported
    by the profiler, so this is an upper bound. ``None`` if that (semi-private) API is unavailable."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with warnings.catch_warnings(), _drop_stderr_lines("USDT:", "Memory block of unknown size"):
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
    try:
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
        events.sort(key=lambda e: e.start_ns())
        current = peak = 0
        for e in events:
            current += e.nbytes()  # negative for a free (also of blocks allocated before fn)
            peak = max(peak, current)
        return peak
    except AttributeError:
        return None


def bench_memory(
    device: torch.device, n: int = 190, p: int = 30, q: int = 4, batch: int = 1024
) -> list[dict]:
    torch.manual_seed(0)
    u = torch.rand(batch, p, device=device) * 2 - 1
    rows = []
    for K in (10, 50, 200):
        models: dict[str, tuple[nn.Module, object]] = {}
        for adjoint in ADJOINTS:
            # tol so small that no sample stops: exactly K forward iterations, as in the unrolled solve.
            model = ImplicitModel(p, n, q, **quiet(adjoint, K, tol=1e-30, max_iter=K))
            models[f"implicit, {adjoint} adjoint"] = (model.to(device), lambda model=model: model(u))
        model = ImplicitModel(p, n, q).to(device)

        def unrolled(model=model, K=K):
            BU = u @ model.B.t()
            x = torch.zeros(batch, n, device=device)
            for _ in range(K):
                x = torch.relu(torch.addmm(BU, x, model.A.t()))
            return x @ model.C.t() + u @ model.D.t()

        models["unrolled Picard (autograd)"] = (model, unrolled)
        for name, (model, fwd) in models.items():
            saved = saved_bytes(fwd, list(model.parameters()))
            model.zero_grad(set_to_none=True)
            peak = peak_bytes(lambda fwd=fwd: fwd().sum().backward(), device)
            if isinstance(model, ImplicitModel) and name.startswith("implicit"):
                assert int(model.last_stats.iterations.max()) == K
            rows.append(dict(K=K, method=name, saved=saved, peak=peak))
    return rows


# ------------------------------------------------------------------------------------------------ section 3


def addition_data(n_samples: int, p: int = 50, seed: int = 0, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    a, b = sorted(torch.randperm(p, generator=g)[:2].tolist())
    c, d = sorted(torch.randperm(p, generator=g)[:2].tolist())
    r1, r2 = slice(a, b + 1), slice(c, d + 1)

    def sample(m: int, gen: torch.Generator, s: float = 1.0):
        u = (torch.rand(m, p, generator=gen) * 2 - 1) * s
        return u, (u[:, r1].sum(1) + u[:, r2].sum(1))[:, None]

    return sample, (r1, r2)


def fit(model: ImplicitModel, sampler, steps: int, lr: float) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        u, y = sampler()
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(u), y)
        loss.backward()
        opt.step()
        model.project_()
    return float(loss.detach())


def solver_iterations(model: ImplicitModel, u: torch.Tensor, device: torch.device) -> list[dict]:
    probes = {}
    for solver in SOLVERS:
        probe = ImplicitModel(
            model.in_features,
            model.hidden_features,
            model.out_features,
            kappa=model.layer.kappa,
            **quiet(method=solver),
        ).to(device)
        probe.load_state_dict(model.state_dict())
        probes[solver] = probe
    with torch.no_grad():
        timing = interleaved_timing(
            {s: (lambda p=p: p(u)) for s, p in probes.items()},
            device,
            warmup=1,
            round_budget_s=0.1,
            max_reps_per_round=3,
        )
        ref = probes["picard"](u)
        rows = []
        for solver, probe in probes.items():
            y = probe(u)
            st = probe.last_stats
            it = st.iterations.float()
            rows.append(
                dict(
                    solver=solver,
                    median=float(it.median()),
                    mean=float(it.mean()),
                    max=int(it.max()),
                    conv=st.converged_fraction,
                    ms=timing[solver][0],
                    dy=float((y - ref).abs().max()),
                )
            )
    return rows


def bench_trained(device: torch.device, seed: int = 0) -> list[tuple[str, float, float, list[dict]]]:
    out = []
    # Addition (n=20, p=50, q=1): 200 Adam steps (lr 0.02, the authors' notebooks), batch 64.
    sample, _ = addition_data(0, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    torch.manual_seed(seed)
    model = ImplicitModel(50, 20, 1).to(device)
    loss = fit(model, lambda: tuple(t.to(device) for t in sample(64, g)), steps=200, lr=0.02)
    for scale in (1.0, 10.0):
        u, _ = sample(1024, torch.Generator().manual_seed(seed + 2), scale)
        out.append(
            (
                f"addition n=20, |u|<={scale:g}",
                model.well_posedness(),
                loss,
                solver_iterations(model, u.to(device), device),
            )
        )
    # Earthquake size (n=190, p=30, q=4): random regression targets, 100 full-batch Adam steps (lr 0.02).
    torch.manual_seed(seed)
    model = ImplicitModel(30, 190, 4, **quiet()).to(device)
    g = torch.Generator().manual_seed(seed + 3)
    u = (torch.rand(512, 30, generator=g) * 2 - 1).to(device)
    y = torch.randn(512, 4, generator=g).to(device)
    loss = fit(model, lambda: (u, y), steps=100, lr=0.02)
    u_eval = (torch.rand(1024, 30, generator=g) * 2 - 1).to(device)
    for scale in (1.0, 10.0):
        out.append(
            (
                f"random targets n=190, |u|<={scale:g}",
                model.well_posedness(),
                loss,
                solver_iterations(model, u_eval * scale, device),
            )
        )
    return out


# ------------------------------------------------------------------------------------------------------ main


def machine_line(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return (
        f"machine: {platform.platform()} | processor: {cpu} | torch {torch.__version__} | "
        f"threads: {torch.get_num_threads()} | device: {dev} | load avg {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", nargs="*", default=[], choices=["step", "memory", "trained"])
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    t_start = time.perf_counter()
    print("=" * 100)
    print("bench_core: implicit layer x = relu(A x + B u), y = C x + D u")
    print(machine_line(device))
    load = os.getloadavg()[0]
    if device.type == "cpu" and args.threads > 1 and load > (os.cpu_count() or 1):
        print(
            f"note: load average {load:.1f} on {os.cpu_count()} cpus: other processes compete with the {args.threads} "
            "threads, and every parallel op waits for a descheduled thread; multi-threaded CPU timings are then "
            "unreliable (the 'min' column less so). Rerun on an idle machine or with --threads 1."
        )
    print("=" * 100)
    warnings.simplefilter("ignore", ConvergenceWarning)

    if "step" not in args.skip:
        print("\n[1] training step (forward + backward + Adam + projection), fresh init")
        print(
            "  ms/step: median of the repeats after warm-up; min: fastest repeat; fwd it: mean forward iterations"
        )
        print(
            "  of the first step. adjoint 'direct' and solver 'newton' are batched LU solves; on CPU for n > 64 those"
        )
        print(
            "  run single-threaded (pytorch#142815 workaround in lightning_implicit.implicit.solvers.batched_solve)."
        )
        print(
            f"  {'case':<12} {'model':<34} {'solver':<9} {'adjoint':<12} {'ms/step':>9} {'min':>9} {'fwd it':>7} "
            f"{'reps':>5} {'params':>7}"
        )
        rows = bench_training_step(device)
        print("\n  fastest implicit configuration per case:")
        for case in CASES:
            impl = [r for r in rows if r["case"] == case.name and r["solver"] != "-"]
            best = min(impl, key=lambda r: r["ms"])
            mlps = [r for r in rows if r["case"] == case.name and r["solver"] == "-"]
            print(
                f"    {case.name:<12} {best['solver']}/{best['adjoint']}: {best['ms']:.2f} ms "
                f"({best['ms'] / mlps[0]['ms']:.2f}x the time of {mlps[0]['model']})"
            )

    if "memory" not in args.skip:
        print("\n[2] memory, n=190 batch 1024 float32, K forward iterations (tol 0)")
        print(
            "  saved: bytes autograd keeps for backward (saved_tensors_hooks, unique storages, parameters excluded)"
        )
        peak_how = (
            "torch.cuda.max_memory_allocated" if device.type == "cuda" else "profiler alloc/free events"
        )
        print(f"  peak: peak allocation during forward + backward above the starting level ({peak_how})")
        if device.type != "cuda":
            print("        (frees of blocks allocated before the step are not seen: an upper bound)")
        print(f"  {'K':>4}  {'method':<30} {'saved':>12} {'peak':>12}")
        for r in bench_memory(device):
            peak = "n/a" if r["peak"] is None else f"{r['peak'] / 2**20:.2f} MiB"
            print(f"  {r['K']:>4}  {r['method']:<30} {r['saved'] / 2**20:>8.2f} MiB {peak:>12}", flush=True)

    if "trained" not in args.skip:
        print(
            "\n[3] forward iterations on trained weights (A on its kappa=0.95 ball), batch of 1024, tol 3e-6 abs"
        )
        for title, norm, loss, rows in bench_trained(device):
            print(f"  {title}: ||A||_inf = {norm:.4f}, final train MSE = {loss:.3g}")
            print(
                f"    {'solver':<9} {'median it':>9} {'mean it':>8} {'max it':>7} {'converged':>9} {'fwd ms':>8} {'max|dy| vs picard':>18}"
            )
            for r in rows:
                print(
                    f"    {r['solver']:<9} {r['median']:>9.1f} {r['mean']:>8.1f} {r['max']:>7} "
                    f"{r['conv']:>9.3f} {r['ms']:>8.2f} {r['dy']:>18.2e}",
                    flush=True,
                )

    print(f"\nbench_core done in {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
