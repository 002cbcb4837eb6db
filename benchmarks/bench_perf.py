"""Performance of implicit training (issue 10): six figures, measured in one run on one machine.

Run with ``python -m benchmarks.bench_perf`` (``make bench`` runs it through :mod:`benchmarks.run`); it needs the
``bench`` extra (``torchdeq==0.1.0``). Every model is first fitted briefly (Adam) and its weights saved and
reloaded, so the figures are on **trained** weights (``A`` on its kappa = 0.95 ball), where iterations are 2-10x
those of a fresh initialisation. All timings: ``torch.set_num_threads(1)`` (``--threads``), interleaved
round-robin repeats, medians; the load average is printed with them.

1. **Training step vs torchdeq 0.1.0** at the paper's sizes (n=20/p=50/q=1 batch 64: addition; n=36/p=10/q=10
   batch 64: rolling-argmax "Regular" model; n=190/p=30/q=4 batch 1024: earthquake size, smooth synthetic
   targets): forward + backward + Adam step (fused, lr 1e-5, the same for all) + projection of ``A``. torchdeq is
   a faithful DEQ of the same ``f(x) = relu(x A^T + u B^T)`` (same parameters, output ``C x + D u``): ``get_deq``
   with ``f_solver = b_solver = 'fixed_point_iter'`` or ``'anderson'`` (torchdeq's defaults m=6, lam=1e-4),
   ``ift=True``, ``f_tol = b_tol = 3e-6`` (``abs``: torchdeq's per-sample L2 norm, stopped on the batch's worst
   sample), ``f_max_iter = b_max_iter = 300``. Ours: the defaults (``picard``, tol 3e-6 abs per sample,
   ``adjoint='auto'``). The fixed points must agree: ``max |x_ours - x_torchdeq| <= 10 * tol``, else exit 1.
2. **Cost per iteration**: the solver call (forward Picard; fixed-point adjoint; the default fused C++ loop)
   against the bare loop of the batched products it needs, ``x <- relu(x A^T + BU)`` (resp.
   ``w <- g + (d * w) A``), written in C++ with the same BLAS calls (the faster of batch-first and (n, batch)
   layouts) and run for as many iterations as the slowest sample needs, with no residual, stopping test or
   recording at all. Also the Python loop
   (``backend='python'``) against the bare products in Python (the faster of row- and column-major).
3. **Iterations on trained models**: per-sample iterations to the same tolerance, picard vs anderson vs newton
   (median over a batch of 1024), and their forward times.
4. **Adjoint crossover**: direct (batched LU) vs fixed-point adjoint, on the trained cases and on a grid of
   (n, batch) at 10 and 25 iterations (trained models need ~5-25), against the ``auto`` rule.
5. **Memory**: bytes autograd saves and peak memory of forward + backward at n=190, batch 1024, for K = 10 and
   200 forward iterations: implicit (fixed-point adjoint) vs the same Picard solve unrolled through autograd.
6. **ImplicitRNN warm start** on trained RNNs (rolling average: s ~ N(3, 1); rolling argmax: s ~ U(0, 1); length
   10): total forward iterations per sequence, warm vs cold start, the largest output difference, and the forward
   times (interleaved).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from benchmarks.bench_core import addition_data, peak_bytes, quiet, saved_bytes
from lightning_implicit.implicit import (
    AdjointConfig,
    ConvergenceWarning,
    ImplicitModel,
    ImplicitRNN,
    SolverConfig,
    fixed_point_solve,
    project_rows_l1,
)
from lightning_implicit.implicit.adjoint import solve_adjoint

TOL = 3e-6
MAX_ITER = 300
AGREE = 10 * TOL  # fixed points of two implementations must agree to this (max abs difference)
# Warm- and cold-started RNN outputs (10 recurrent steps, each solved to tol: the model's sensitivity amplifies
# the tolerance-level differences of x; both are compared with a float64 reference in [6]).
RNN_AGREE = 1e-3  # relative to max(1, max |y|)


@dataclass(frozen=True)
class Case:
    name: str
    n: int
    p: int
    q: int
    batch: int
    task: str  # addition | argmax | smooth
    fit_steps: int
    lr: float = 0.02


CASES = (
    Case("addition", 20, 50, 1, 64, "addition", 300),
    Case("argmax", 36, 10, 10, 64, "argmax", 300),
    Case("earthquake-size", 190, 30, 4, 1024, "smooth", 60),
)


class Task:
    """Data and loss of a case (a fixed generator per task, so every run sees the same data)."""

    def __init__(self, case: Case, seed: int = 0):
        self.case = case
        self.gen = torch.Generator().manual_seed(seed + 11)
        if case.task == "addition":
            self._sample, _ = addition_data(0, p=case.p, seed=seed)
        elif case.task == "smooth":
            self.W = torch.randn(
                case.p, case.q, generator=torch.Generator().manual_seed(seed + 12)
            ) / math.sqrt(case.p / 4)

    def sample(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.case
        if c.task == "addition":
            return self._sample(m, self.gen)
        if c.task == "argmax":
            u = torch.rand(m, c.p, generator=self.gen)
            return u, u.argmax(dim=1)
        u = torch.rand(m, c.p, generator=self.gen) * 2 - 1
        return u, torch.tanh(u @ self.W)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.case.task == "argmax":
            return nn.functional.cross_entropy(out, y)
        return nn.functional.mse_loss(out, y)


def _quiet():
    warnings.simplefilter("ignore", ConvergenceWarning)


def _median_time(fn, reps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def interleaved(fns: dict, rounds: int = 5, reps: int = 5, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each function, timed round-robin (load bursts hit every entry alike)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            for _ in range(reps):
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


# ------------------------------------------------------------------------------------------ trained weights


def fit_and_save(case: Case, task: Task, directory: Path, seed: int = 0) -> Path:
    """A short Adam fit of the default implicit model; the weights are saved (and reloaded by every user)."""
    torch.manual_seed(seed)
    model = ImplicitModel(case.p, case.n, case.q, **quiet())
    opt = torch.optim.Adam(model.parameters(), lr=case.lr)
    for _ in range(case.fit_steps):
        u, y = task.sample(case.batch)
        opt.zero_grad(set_to_none=True)
        task.loss(model(u), y).backward()
        opt.step()
        model.project_()
    path = directory / f"{case.name}.pt"
    torch.save(model.state_dict(), path)
    return path


def load_model(case: Case, path: Path, **solver) -> ImplicitModel:
    model = ImplicitModel(case.p, case.n, case.q, **quiet(**solver))
    model.load_state_dict(torch.load(path))
    return model


# ---------------------------------------------------------------------------------------------- torchdeq


class TorchDEQModel(nn.Module):
    """The same implicit model as a torchdeq DEQ: ``x* = relu(x* A^T + u B^T)``, output ``x* C^T + u D^T``."""

    def __init__(self, src: ImplicitModel, solver: str):
        super().__init__()
        from torchdeq import get_deq

        self.A = nn.Parameter(src.A.detach().clone())
        self.B = nn.Parameter(src.B.detach().clone())
        self.C = nn.Parameter(src.C.detach().clone())
        self.D = nn.Parameter(src.D.detach().clone())
        self.kappa = src.layer.kappa
        self.deq = get_deq(
            f_solver=solver,
            b_solver=solver,
            f_tol=TOL,
            b_tol=TOL,
            f_max_iter=MAX_ITER,
            b_max_iter=MAX_ITER,
            f_stop_mode="abs",
            b_stop_mode="abs",
            ift=True,
        )
        self.info = None

    def fixed_point(self, u: torch.Tensor) -> torch.Tensor:
        BU = u @ self.B.t()
        z, self.info = self.deq(
            lambda x: torch.relu(x @ self.A.t() + BU), u.new_zeros(u.shape[0], self.A.shape[0])
        )
        return z[-1]

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.fixed_point(u) @ self.C.t() + u @ self.D.t()

    @torch.no_grad()
    def project_(self) -> None:  # the same well-posedness projection as ours
        self.A.copy_(project_rows_l1(self.A, self.kappa))


def train_step(model: nn.Module, task: Task, u: torch.Tensor, y: torch.Tensor, phases: list | None = None):
    """One training step; with ``phases`` given, appends ``(forward, backward, optimiser + projection)`` seconds."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-5, fused=True)

    def step():
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = task.loss(model(u), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        model.project_()
        if phases is not None:
            phases.append((t1 - t0, t2 - t1, time.perf_counter() - t2))

    return step


def _phase_ms(phases: list) -> tuple[float, ...]:
    return tuple(1e3 * statistics.median(p[i] for p in phases) for i in range(3))


def _fixed_points(ours: ImplicitModel, deqs: dict, u: torch.Tensor):
    """Our fixed point and torchdeq's (eval mode: its solution) on the same weights and inputs."""
    with torch.no_grad():
        x_ours = ours.layer(u)
        agree, nstep = {}, {}
        for s, d in deqs.items():
            d.eval()
            x_d = d.fixed_point(u)
            agree[s] = float((x_d - x_ours).abs().max())
            nstep[s] = int(d.info["nstep"].max())
            d.train()
    return agree, nstep


def bench_step(paths: dict[str, Path], tasks: dict[str, Task], rounds: int) -> list[dict]:
    rows = []
    for case in CASES:
        task = tasks[case.name]
        u, y = task.sample(case.batch)
        ours = load_model(case, paths[case.name])
        deqs = {s: TorchDEQModel(ours, s) for s in ("fixed_point_iter", "anderson")}
        agree, nstep = _fixed_points(ours, deqs, u)
        phases: dict[str, list] = {"ours": [], "torchdeq fixed_point_iter": [], "torchdeq anderson": []}
        steps = {"ours": train_step(ours, task, u, y, phases["ours"])}
        steps.update(
            {f"torchdeq {s}": train_step(d, task, u, y, phases[f"torchdeq {s}"]) for s, d in deqs.items()}
        )
        slow = case.n >= 100
        # (small cases: 3x the rounds, cheap there, so that a load burst cannot decide a median of ~0.4 ms steps)
        t = interleaved(
            steps, rounds=rounds if slow else 3 * rounds, reps=1 if slow else 5, warmup=1 if slow else 3
        )
        st = ours.last_stats  # of our last training step
        rows.append(
            dict(
                case=case,
                ms={k: 1e3 * v for k, v in t.items()},
                agree=agree,
                nstep=nstep,
                phases={k: _phase_ms(v) for k, v in phases.items()},
                fwd=(float(st.iterations.float().median()), int(st.iterations.max())),
                bwd=(float(st.backward_iterations.float().median()), int(st.backward_iterations.max())),
                adjoint=st.adjoint_mode,
            )
        )
        r = rows[-1]
        r["floor"] = _products_floor(ours, task, u, y, st, r["phases"]["ours"][2])
        ms, ph = r["ms"], r["phases"]
        fp, an = ms["torchdeq fixed_point_iter"], ms["torchdeq anderson"]
        print(
            f"  {case.name:<16} n={case.n:<3} b={case.batch:<5} ours {ms['ours']:8.2f} ms | torchdeq fp "
            f"{fp:8.2f} ms ({fp / ms['ours']:5.1f}x) | torchdeq anderson {an:8.2f} ms ({an / ms['ours']:5.1f}x)",
            flush=True,
        )
        for k, v in ph.items():
            print(
                f"  {'':<16} {k:<26} forward {v[0]:7.2f} | backward {v[1]:7.2f} | Adam + projection {v[2]:6.2f} ms"
            )
        print(
            f"  {'':<16} ours: fwd it median/max {r['fwd'][0]:.0f}/{r['fwd'][1]}, adjoint ({r['adjoint']}) "
            f"median/max {r['bwd'][0]:.0f}/{r['bwd'][1]}; torchdeq fwd steps fp {nstep['fixed_point_iter']}, "
            f"anderson {nstep['anderson']}; max|dx| fp {agree['fixed_point_iter']:.2e}, "
            f"anderson {agree['anderson']:.2e} (limit {AGREE:.0e})",
            flush=True,
        )
        fl = r["floor"]
        print(
            f"  {'':<16} floor: bare products {fl['products']:.2f} ms (forward {fl['n_fwd']} it + adjoint {fl['n_bwd']} "
            f"it at the mean counts, + dL/dA, dL/dB) + Adam/projection {fl['adam']:.2f} ms = {fl['ms']:.2f} ms: "
            f"no implementation of these iterations beats torchdeq fp by more than {fp / fl['ms']:.1f}x here",
            flush=True,
        )
    return rows


def _products_floor(model: ImplicitModel, task: Task, u, y, st, adam_ms: float) -> dict:
    """A lower bound on any implementation's training step that runs the same iterations: the bare batched
    products alone (forward and adjoint at the mean per-sample counts, i.e. perfect per-sample stopping at zero
    cost, no bookkeeping, no autograd, no output layer or loss) plus the measured Adam + projection phase."""
    A, B = model.A.detach(), model.B.detach()
    with torch.no_grad():
        x = model.layer(u)
    d, g = _adjoint_inputs(model, task, u, y, x)
    BU = u @ B.t()
    n_fwd = max(1, round(float(st.iterations.float().mean())))
    n_bwd = max(1, round(float(st.backward_iterations.float().mean())))
    fr, fc = bare_forward(A, BU, torch.zeros_like(BU), n_fwd)
    br, bc = bare_adjoint(A, d, g, n_bwd)
    v = d * g
    slow = A.shape[0] >= 100
    t = interleaved(
        {"fr": fr, "fc": fc, "br": br, "bc": bc, "grads": lambda: (v.t() @ x, v.t() @ u)},
        rounds=3,
        reps=2 if slow else 20,
        warmup=1,
    )
    products = 1e3 * (min(t["fr"], t["fc"]) + min(t["br"], t["bc"]) + t["grads"])
    return dict(products=products, adam=adam_ms, ms=products + adam_ms, n_fwd=n_fwd, n_bwd=n_bwd)


# ------------------------------------------------------------------------------------------ [2] iteration


def bare_forward(A, BU, x0, N):
    def row():
        x = x0
        At = A.t()
        for _ in range(N):
            x = torch.relu(torch.addmm(BU, x, At))
        return x

    BUt = BU.t().contiguous()

    def col():
        x = x0.t()
        for _ in range(N):
            x = torch.addmm(BUt, A, x).relu_()
        return x

    return row, col


def bare_adjoint(A, d, g, N):
    def row():
        w = g
        for _ in range(N):
            w = torch.addmm(g, d * w, A)
        return w

    gt, dt, At = g.t().contiguous(), d.t().contiguous(), A.t()

    def col():
        w = gt
        for _ in range(N):
            w = torch.addmm(gt, At, dt * w)
        return w

    return row, col


def _adjoint_inputs(model: ImplicitModel, task: Task, u, y, x):
    """``d = relu'(z)`` at the fixed point and ``g = dL/dx`` of the batch's loss."""
    A, B = model.A.detach(), model.B.detach()
    xg = x.clone().requires_grad_()
    task.loss(xg @ model.C.detach().t() + u @ model.D.detach().t(), y).backward()
    d = (torch.addmm(u @ B.t(), x, A.t()) > 0).to(x.dtype)
    return d, xg.grad


# The bare products in C++: the BLAS calls of the fused loop (lightning_implicit/implicit/csrc), run for a fixed
# number of iterations with no residual, no stopping test, no recording: what the fused loop's bookkeeping is
# measured against. Both layouts: batch-first rows (`*_rows`, the fused loop's on large problems) and (n, batch)
# columns (`*_cols`, its layout on small ones); the benchmark takes the faster. Built on first use (like the
# library's extension).
_BARE_CPP = r"""
#include <torch/extension.h>
#include <cstring>
extern "C" void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
                       const int*, const float*, const int*, const float*, float*, const int*);
static void relu(float* p, int64_t count) {
  for (int64_t k = 0; k < count; ++k) p[k] = p[k] < 0.f ? 0.f : p[k];
}
// x <- relu(BU + x A^T); cols: x^T <- relu(BU^T + A x^T)
torch::Tensor bare_picard(torch::Tensor A, torch::Tensor BU, int64_t K, bool cols) {
  auto bias = cols ? BU.t().contiguous() : BU;
  auto x = torch::zeros_like(bias), nxt = torch::empty_like(bias);
  const int m = BU.size(0), n = BU.size(1);
  const float one = 1.f;
  float *cur = x.data_ptr<float>(), *next = nxt.data_ptr<float>();
  for (int64_t t = 0; t < K; ++t) {
    std::memcpy(next, bias.data_ptr<float>(), sizeof(float) * m * n);
    if (cols) sgemm_("N", "N", &m, &n, &n, &one, cur, &m, A.data_ptr<float>(), &n, &one, next, &m);
    else sgemm_("T", "N", &n, &m, &n, &one, A.data_ptr<float>(), &n, cur, &n, &one, next, &n);
    relu(next, (int64_t)m * n);
    std::swap(cur, next);
  }
  return x;
}
// w <- g + (d * w) A; cols: w^T <- g^T + A^T (d^T * w^T)
torch::Tensor bare_adjoint(torch::Tensor A, torch::Tensor d, torch::Tensor g, int64_t K, bool cols) {
  auto bias = cols ? g.t().contiguous() : g, dd = cols ? d.t().contiguous() : d;
  auto w = bias.clone(), nxt = torch::empty_like(bias), v = torch::empty_like(bias);
  const int m = g.size(0), n = g.size(1);
  const float one = 1.f;
  float *cur = w.data_ptr<float>(), *next = nxt.data_ptr<float>(), *pv = v.data_ptr<float>();
  const float* pd = dd.data_ptr<float>();
  for (int64_t t = 0; t < K; ++t) {
    for (int64_t k = 0; k < (int64_t)m * n; ++k) pv[k] = pd[k] * cur[k];
    std::memcpy(next, bias.data_ptr<float>(), sizeof(float) * m * n);
    if (cols) sgemm_("N", "T", &m, &n, &n, &one, pv, &m, A.data_ptr<float>(), &n, &one, next, &m);
    else sgemm_("N", "N", &n, &m, &n, &one, A.data_ptr<float>(), &n, pv, &n, &one, next, &n);
    std::swap(cur, next);
  }
  return w;
}
"""


def _bare_cpp():
    from torch.utils.cpp_extension import load_inline

    from lightning_implicit.implicit.fused import _isa_flags, ninja_on_path

    name, isa = _isa_flags()  # the library build's instruction set, so both loops vectorise alike
    with ninja_on_path():
        return load_inline(
            name.replace("lightning_implicit_fused", "bench_perf_bare"),
            cpp_sources=[_BARE_CPP],
            functions=["bare_picard", "bare_adjoint"],
            extra_cflags=["-O3", "-fopenmp-simd", *isa],
        )


def _iteration_case(case: Case, model: ImplicitModel, task: Task, rounds: int, bare_cpp) -> dict:
    u, y = task.sample(case.batch)
    A, B = model.A.detach().contiguous(), model.B.detach()
    BU = (u @ B.t()).contiguous()
    x0 = torch.zeros_like(BU)
    cfg = SolverConfig(warn=False)  # the default: the fused loop on CPU
    py_cfg = SolverConfig(warn=False, backend="python")
    hint: list[int] = []  # as ImplicitLayer keeps it between training steps (Python loop only)
    x, st = fixed_point_solve(A, BU, x0, cfg)
    x_py, _ = fixed_point_solve(A, BU, x0, py_cfg, hint)
    N = int(st.iterations.max())
    d, g = _adjoint_inputs(model, task, u, y, x)
    d, g = d.contiguous(), g.contiguous()
    acfg = AdjointConfig(mode="fixed_point", warn=False)
    py_acfg = AdjointConfig(mode="fixed_point", warn=False, backend="python")
    ahint: list[int] = []
    _, bit, *_ = solve_adjoint(A, d, g, acfg)
    solve_adjoint(A, d, g, py_acfg, hint=ahint)
    Nb = int(bit.max())
    one = SolverConfig(warn=False, tol=1e-30, max_iter=1)  # one iteration: the fixed cost of a call
    fr, fc = bare_forward(A, BU, x0, N)
    br, bc = bare_adjoint(A, d, g, Nb)
    fns = {
        "fused": lambda: fixed_point_solve(A, BU, x0, cfg),
        "bare C++ rows": lambda: bare_cpp.bare_picard(A, BU, N, False),
        "bare C++ cols": lambda: bare_cpp.bare_picard(A, BU, N, True),
        "python": lambda: fixed_point_solve(A, BU, x0, py_cfg, hint),
        "bare row": fr,
        "bare col": fc,
        "fused 1": lambda: fixed_point_solve(A, BU, x0, one),
        "bare C++ rows 1": lambda: bare_cpp.bare_picard(A, BU, 1, False),
        "bare C++ cols 1": lambda: bare_cpp.bare_picard(A, BU, 1, True),
        "adjoint fused": lambda: solve_adjoint(A, d, g, acfg),
        "adjoint bare C++ rows": lambda: bare_cpp.bare_adjoint(A, d, g, Nb, False),
        "adjoint bare C++ cols": lambda: bare_cpp.bare_adjoint(A, d, g, Nb, True),
        "adjoint python": lambda: solve_adjoint(A, d, g, py_acfg, hint=ahint),
        "adjoint bare row": br,
        "adjoint bare col": bc,
    }
    slow = case.n >= 100
    with torch.no_grad():  # as in training, where the solvers run inside autograd.Function's forward/backward
        t = interleaved(fns, rounds=rounds, reps=2 if slow else 20, warmup=2)
    # the faster layout (one layout for the full and the one-iteration loop, so their difference is one layout's)
    lay = "rows" if t["bare C++ rows"] <= t["bare C++ cols"] else "cols"
    t["bare C++"], t["bare C++ 1"] = t[f"bare C++ {lay}"], t[f"bare C++ {lay} 1"]
    t["adjoint bare C++"] = min(t["adjoint bare C++ rows"], t["adjoint bare C++ cols"])
    bare_py = min(t["bare row"], t["bare col"])
    bare_py_b = min(t["adjoint bare row"], t["adjoint bare col"])
    return dict(
        case=case,
        N=N,
        Nb=Nb,
        mean_it=float(st.iterations.float().mean()),
        fwd=t["fused"] / t["bare C++"],
        bwd=t["adjoint fused"] / t["adjoint bare C++"],
        fwd_py=t["python"] / bare_py,
        bwd_py=t["adjoint python"] / bare_py_b,
        us=1e6 * t["fused"] / N,
        us_bare=1e6 * t["bare C++"] / N,
        us_b=1e6 * t["adjoint fused"] / max(Nb, 1),
        us_bare_b=1e6 * t["adjoint bare C++"] / max(Nb, 1),
        us_py=1e6 * t["python"] / N,
        us_bare_py=1e6 * bare_py / N,
        fixed=1e6 * (t["fused 1"] - t["bare C++ 1"]),
        marginal=(t["fused"] - t["fused 1"]) / max(t["bare C++"] - t["bare C++ 1"], 1e-12),
        dx=float((x - x_py).abs().max()),
    )


def bench_iteration(paths, tasks, rounds: int) -> list[dict]:
    rows = []
    bare_cpp = _bare_cpp()
    for case in CASES:
        r = _iteration_case(case, load_model(case, paths[case.name]), tasks[case.name], rounds, bare_cpp)
        rows.append(r)
        print(
            f"  {case.name:<16} forward: {r['N']:3d} it (slowest sample; mean {r['mean_it']:.1f}) fused "
            f"{r['us']:7.1f} us/it vs bare C++ products {r['us_bare']:7.1f} us/it = {r['fwd']:.2f}x | adjoint: "
            f"{r['Nb']:3d} it {r['us_b']:7.1f} vs {r['us_bare_b']:7.1f} us/it = {r['bwd']:.2f}x",
            flush=True,
        )
        if case.n < 100:  # (large problems: the one-iteration calls are too noisy to subtract)
            print(
                f"  {'':<16} forward: fixed cost of a call beyond the bare loop's {r['fixed']:.1f} us (Python "
                f"wrapper, statistics, allocation); per further iteration {r['marginal']:.2f}x the bare products'",
                flush=True,
            )
        print(
            f"  {'':<16} Python loop (backend='python'): forward {r['us_py']:7.1f} vs bare Python products "
            f"{r['us_bare_py']:7.1f} us/it = {r['fwd_py']:.2f}x, adjoint {r['bwd_py']:.2f}x; "
            f"max|x_fused - x_python| {r['dx']:.1e}",
            flush=True,
        )
    return rows


# ------------------------------------------------------------------------------------------ [3] iterations


def _time_layer(model: ImplicitModel, u: torch.Tensor, slow: bool) -> float:
    with torch.no_grad():
        return 1e3 * _median_time(lambda: model.layer(u), reps=1 if slow else 5, warmup=0 if slow else 1)


def bench_iterations(paths, tasks) -> list[dict]:
    rows = []
    for case in CASES:
        task = tasks[case.name]
        u, _ = task.sample(1024)
        out, xs = {}, {}
        for solver in ("picard", "anderson", "newton"):
            model = load_model(case, paths[case.name], method=solver)
            with torch.no_grad():
                xs[solver] = model.layer(u)
            st = model.last_stats
            ms = _time_layer(model, u, slow=case.n >= 100 and solver == "newton")
            it = st.iterations.float()
            out[solver] = dict(
                median=float(it.median()),
                mean=float(it.mean()),
                max=int(it.max()),
                conv=st.converged_fraction,
                ms=ms,
                dx=float((xs[solver] - xs["picard"]).abs().max()),
            )
        rows.append(dict(case=case, solvers=out))
        pic = out["picard"]["median"]
        line = " | ".join(
            f"{s} median {v['median']:.0f} (mean {v['mean']:.1f}, max {v['max']}; {v['median'] / pic:.2f}x "
            f"picard's; {v['ms']:.1f} ms; max|dx| {v['dx']:.1e})"
            for s, v in out.items()
        )
        print(f"  {case.name:<16} {line}", flush=True)
    return rows


# ------------------------------------------------------------------------------------------- [4] adjoint


def _adjoint_times(A, d, g, cfgs: dict, rounds: int, reps: int) -> dict[str, float]:
    return interleaved(
        {k: (lambda c=c: solve_adjoint(A, d, g, c)) for k, c in cfgs.items()},
        rounds=rounds,
        reps=reps,
        warmup=1,
    )


def bench_adjoint(paths, tasks) -> dict:
    trained = []
    modes = {m: AdjointConfig(mode=m, warn=False) for m in ("direct", "fixed_point")}
    for case in CASES:
        task = tasks[case.name]
        model = load_model(case, paths[case.name])
        u, y = task.sample(case.batch)
        with torch.no_grad():
            x = model.layer(u)
        d, g = _adjoint_inputs(model, task, u, y, x)
        t = _adjoint_times(model.A.detach(), d, g, modes, rounds=3, reps=1 if case.n >= 100 else 10)
        auto = AdjointConfig().resolved_mode(case.n, case.batch, "cpu", fused=True)
        best = min(t, key=t.get)
        trained.append(dict(case=case, ms={k: 1e3 * v for k, v in t.items()}, auto=auto, best=best))
        print(
            f"  trained {case.name:<16} direct {1e3 * t['direct']:9.3f} ms, fixed_point {1e3 * t['fixed_point']:8.3f} ms"
            f" -> faster: {best:<11} auto: {auto:<11} {'ok' if auto == best else 'MISMATCH'}",
            flush=True,
        )
    grid = []
    ns, batches = (4, 8, 12, 16, 20, 24, 32), (16, 64, 256, 1024)
    for backend in ("auto", "python"):  # the fused loop (the CPU default), then the Python loop
        gen = torch.Generator().manual_seed(3)
        loop = "fused C++ loop" if backend == "auto" else "Python loop (backend='python')"
        print(
            f"  grid, fixed point in the {loop} (direct vs fixed-point at K iterations; cell: faster mode at "
            f"K=10/K=25, * = auto disagrees at both):"
        )
        print("  " + f"{'batch':>7} " + " ".join(f"{'n=' + str(n):>9}" for n in ns))
        for b in batches:
            cells = []
            for n in ns:
                A = project_rows_l1(torch.randn(n, n, generator=gen), 0.95)
                d = (torch.rand(b, n, generator=gen) > 0.4).float()
                gr = torch.randn(b, n, generator=gen) * 1e-3
                cfgs = {"direct": AdjointConfig(mode="direct")}
                cfgs.update(
                    {
                        f"fp{K}": AdjointConfig(
                            mode="fixed_point",
                            tol=1e-30,
                            max_iter=K,
                            warn=False,
                            check_every=K,
                            backend=backend,
                        )
                        for K in (10, 25)
                    }
                )
                t = _adjoint_times(A, d, gr, cfgs, rounds=3, reps=3)
                f10 = "d" if t["direct"] < t["fp10"] else "f"
                f25 = "d" if t["direct"] < t["fp25"] else "f"
                auto = AdjointConfig().resolved_mode(n, b, "cpu", fused=backend == "auto")[0]
                ok = auto in (f10, f25)
                grid.append(
                    dict(
                        n=n,
                        b=b,
                        backend=backend,
                        f10=f10,
                        f25=f25,
                        auto=auto,
                        ok=ok,
                        direct=t["direct"],
                        fp10=t["fp10"],
                        fp25=t["fp25"],
                    )
                )
                cells.append(f"{f10}/{f25}{'' if ok else '*'}")
            print("  " + f"{b:>7} " + " ".join(f"{c:>9}" for c in cells), flush=True)
    print(
        "  (d = direct faster, f = fixed-point faster; auto rule on CPU: the fixed point in the fused loop; for"
    )
    print("  the Python loop, direct iff batch * n^2 <= 8192 and n <= 64)")
    return dict(trained=trained, grid=grid)


# -------------------------------------------------------------------------------------------- [5] memory


def bench_memory() -> dict:
    n, p, q, b = 190, 30, 4, 1024
    torch.manual_seed(0)
    u = torch.rand(b, p) * 2 - 1
    out = {}
    for K in (10, 200):
        model = ImplicitModel(p, n, q, **quiet("fixed_point", K, tol=1e-30, max_iter=K))
        implicit_saved = saved_bytes(lambda model=model: model(u), list(model.parameters()))
        model.zero_grad(set_to_none=True)
        implicit_peak = peak_bytes(lambda model=model: model(u).sum().backward(), torch.device("cpu"))
        assert int(model.last_stats.iterations.max()) == K

        def unrolled(model=model, K=K):
            BU = u @ model.B.t()
            x = torch.zeros(b, n)
            for _ in range(K):
                x = torch.relu(torch.addmm(BU, x, model.A.t()))
            return x @ model.C.t() + u @ model.D.t()

        unrolled_saved = saved_bytes(unrolled, list(model.parameters()))
        model.zero_grad(set_to_none=True)
        unrolled_peak = peak_bytes(lambda unrolled=unrolled: unrolled().sum().backward(), torch.device("cpu"))
        out[K] = dict(implicit=(implicit_saved, implicit_peak), unrolled=(unrolled_saved, unrolled_peak))
        mib = 2.0**20
        print(
            f"  K={K:<4} implicit: saved {implicit_saved / mib:7.2f} MiB, peak {_mib(implicit_peak)} | unrolled "
            f"autograd: saved {unrolled_saved / mib:7.2f} MiB, peak {_mib(unrolled_peak)}",
            flush=True,
        )
    return out


def _mib(v) -> str:
    return "n/a" if v is None else f"{v / 2**20:7.2f} MiB"


# ----------------------------------------------------------------------------------------------- [6] RNN


RNN_TASKS = {
    # name: (hidden n, state h, out, sampler, loss)
    "rolling average": (32, 10, 1),
    "rolling argmax": (21, 22, 10),
}


def _rnn_batch(name: str, m: int, gen: torch.Generator):
    if name == "rolling average":
        s = torch.randn(m, 10, 1, generator=gen) + 3.0
        return s, s.cumsum(dim=1) / torch.arange(1, 11)[None, :, None]
    s = torch.rand(m, 10, 1, generator=gen)
    return s, s[..., 0].cummax(dim=1).indices


def _rnn_loss(name: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if name == "rolling average":
        return nn.functional.mse_loss(out, y)
    return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def bench_rnn(directory: Path, steps: int = 200) -> list[dict]:
    rows = []
    for name, (n, h, out_f) in RNN_TASKS.items():
        gen = torch.Generator().manual_seed(21)
        torch.manual_seed(0)
        rnn = ImplicitRNN(1, n, h, out_f, **quiet())
        opt = torch.optim.Adam(rnn.parameters(), lr=0.01)
        for _ in range(steps):
            s, y = _rnn_batch(name, 64, gen)
            opt.zero_grad(set_to_none=True)
            _rnn_loss(name, rnn(s), y).backward()
            opt.step()
            rnn.project_()
        path = directory / f"rnn-{name.replace(' ', '-')}.pt"
        torch.save(rnn.state_dict(), path)
        s, y = _rnn_batch(name, 512, gen)
        res, models = {}, {}
        for warm in (False, True):
            m = models[warm] = ImplicitRNN(1, n, h, out_f, warm_start=warm, **quiet())
            m.load_state_dict(torch.load(path))
            with torch.no_grad():
                yy = m(s)
            it = m.last_stats.iterations  # (batch, time)
            res[warm] = dict(
                y=yy,
                per_seq=float(it.sum(dim=1).float().mean()),
                per_step=it.float().mean(dim=0),
                ref_it=m.last_stats.extra.get("reference_iterations", 0),
            )
            with torch.no_grad():
                m(s)  # again, same weights: the reference points are reused
            res[warm]["ref_it_again"] = m.last_stats.extra.get("reference_iterations", 0)

        def moved(m=models[True], s=s):  # as after an optimiser step: the reference points are solved again
            m._reference = None
            return m(s)

        fns = {
            False: lambda m=models[False], s=s: m(s),
            True: lambda m=models[True], s=s: m(s),
            "moved": moved,
        }
        with torch.no_grad():  # forward times, interleaved
            t = interleaved(fns, rounds=7, reps=5)
        for warm in (False, True):
            res[warm]["ms"] = 1e3 * t[warm]
        res[True]["ms_moved"] = 1e3 * t["moved"]
        # an exact reference (float64, tol 1e-12) and the relative change of x between consecutive steps
        ref = ImplicitRNN(1, n, h, out_f, warm_start=False, **quiet(tol=1e-12, tol_mode="rel", max_iter=5000))
        ref.load_state_dict(torch.load(path))
        ref = ref.double()
        with torch.no_grad():
            y64 = ref(s.double())
        change = _state_change(ref, s.double())
        red = 1 - res[True]["per_seq"] / res[False]["per_seq"]
        dy = float((res[True]["y"] - res[False]["y"]).abs().max())
        scale = float(res[False]["y"].abs().max())
        err = {w: float((res[w]["y"].double() - y64).abs().max()) for w in (False, True)}
        rows.append(
            dict(
                name=name,
                cold=res[False]["per_seq"],
                warm=res[True]["per_seq"],
                reduction=red,
                dy=dy,
                scale=scale,
                ms_cold=res[False]["ms"],
                ms_warm=res[True]["ms"],
                err=err,
                change=change,
                ref_it=res[True]["ref_it"],
                ref_it_again=res[True]["ref_it_again"],
                batch=s.shape[0],
                ms_moved=res[True]["ms_moved"],
                steps_cold=res[False]["per_step"],
                steps_warm=res[True]["per_step"],
            )
        )
        r = rows[-1]
        fmt = " ".join(f"{v:4.1f}" for v in r["steps_cold"].tolist())
        fmt_w = " ".join(f"{v:4.1f}" for v in r["steps_warm"].tolist())
        print(
            f"  {name:<16} iterations/sequence cold {r['cold']:6.1f} -> warm {r['warm']:6.1f} "
            f"({100 * red:+.1f} %; + {r['ref_it']} for the 2 first-step reference points per batch of "
            f"{r['batch']}, {r['ref_it_again']} in a second call on the same weights), forward "
            f"{r['ms_cold']:.2f} -> {r['ms_warm']:.2f} ms ({r['ms_moved']:.2f} ms with the reference points "
            f"solved again, as after an optimiser step)",
            flush=True,
        )
        print(f"  {'':<16} per step cold: {fmt}", flush=True)
        print(f"  {'':<16} per step warm: {fmt_w}", flush=True)
        print(
            f"  {'':<16} outputs: max|y_warm - y_cold| {dy:.2e} (max|y| {scale:.2g}); vs float64 tol-1e-12 "
            f"reference: cold {err[False]:.2e}, warm {err[True]:.2e}",
            flush=True,
        )
        print(
            f"  {'':<16} median relative change of x between steps ||x_i - x_i-1|| / ||x_i||, steps 2..10: "
            + " ".join(f"{c:.2f}" for c in change),
            flush=True,
        )
    return rows


@torch.no_grad()
def _state_change(rnn: ImplicitRNN, s: torch.Tensor) -> list[float]:
    """Median over the batch of ``||x_i - x_{i-1}||_inf / ||x_i||_inf`` for steps 2..T (exact fixed points)."""
    b, T, _ = s.shape
    h = s.new_zeros(b, rnn.state_features)
    prev, out = None, []
    for i in range(T):
        u = torch.cat([s[:, i], h], dim=1)
        x = rnn.layer(u)
        if prev is not None:
            out.append(float(((x - prev).abs().amax(1) / x.abs().amax(1).clamp(min=1e-12)).median()))
        prev, h = x, x @ rnn.C.t() + u @ rnn.D.t()
    return out


# ---------------------------------------------------------------------------------------------- main


def machine_line() -> str:
    load = os.getloadavg()
    return (
        f"machine: {platform.node() or '?'} {platform.platform()} | {platform.processor() or platform.machine()} "
        f"x{os.cpu_count()} | torch {torch.__version__} | threads {torch.get_num_threads()} | "
        f"load avg {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    ap.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["step", "iteration", "iterations", "adjoint", "memory", "rnn"],
    )
    args = ap.parse_args(argv)
    try:
        import torchdeq  # noqa: F401 - only whether it is installed
    except ImportError:
        print("bench_perf: torchdeq is not installed (pip install -e '.[bench]' or torchdeq==0.1.0)")
        return 1
    torch.set_num_threads(args.threads)
    _quiet()
    t_start = time.perf_counter()
    print("=" * 120)
    print("bench_perf: implicit training speed (issue 10), trained weights, tol 3e-6")
    print(machine_line())
    print("=" * 120, flush=True)
    tasks = {c.name: Task(c) for c in CASES}
    with tempfile.TemporaryDirectory(prefix="bench_perf_") as tmp:
        directory = Path(tmp)
        t0 = time.perf_counter()
        paths = {c.name: fit_and_save(c, tasks[c.name], directory) for c in CASES}
        print(
            f"[0] short fits ({', '.join(f'{c.name}: {c.fit_steps} Adam steps' for c in CASES)}): "
            f"{time.perf_counter() - t0:.1f} s; weights saved and reloaded",
            flush=True,
        )
        res: dict = {}
        if "step" not in args.skip:
            print(
                "\n[1] training step (fwd + bwd + Adam + projection) vs torchdeq 0.1.0, median ms", flush=True
            )
            res["step"] = bench_step(paths, tasks, args.rounds)
        if "iteration" not in args.skip:
            print(
                "\n[2] cost per iteration: solver call vs the bare loop of its products (slowest sample's count)",
                flush=True,
            )
            res["iteration"] = bench_iteration(paths, tasks, args.rounds)
        if "iterations" not in args.skip:
            print("\n[3] iterations on trained weights, batch of 1024, tol 3e-6 abs", flush=True)
            res["iterations"] = bench_iterations(paths, tasks)
        if "adjoint" not in args.skip:
            print("\n[4] adjoint: direct (batched LU) vs fixed point", flush=True)
            res["adjoint"] = bench_adjoint(paths, tasks)
        if "memory" not in args.skip:
            print("\n[5] memory of forward + backward, n=190, batch 1024, K forward iterations", flush=True)
            res["memory"] = bench_memory()
        if "rnn" not in args.skip:
            print(
                "\n[6] ImplicitRNN warm start (trained, 200 Adam steps), 512 sequences of length 10",
                flush=True,
            )
            res["rnn"] = bench_rnn(directory)
    status = summary(res)
    print(f"\nbench_perf done in {time.perf_counter() - t_start:.0f} s")
    return status


def summary(res: dict) -> int:
    print("\n" + "=" * 120)
    print("SUMMARY (ratios measured in this run, same machine)")
    print(machine_line())
    print("-" * 120)
    fail = False
    rows = []
    if "step" in res:
        parts, worst = [], math.inf
        for r in res["step"]:
            fp = r["ms"]["torchdeq fixed_point_iter"] / r["ms"]["ours"]
            an = r["ms"]["torchdeq anderson"] / r["ms"]["ours"]
            worst = min(worst, fp, an)
            parts.append(f"{r['case'].name} {fp:.1f}x/{an:.1f}x")
            bad = [s for s, v in r["agree"].items() if not v <= AGREE]
            if bad:
                fail = True
                print(f"FIXED POINTS DISAGREE: {r['case'].name}: {r['agree']} (limit {AGREE:.0e})")
        agree = max(v for r in res["step"] for v in r["agree"].values())
        ceil = "/".join(
            f"{r['ms']['torchdeq fixed_point_iter'] / r['floor']['ms']:.1f}x" for r in res["step"]
        )
        rows.append(
            (
                "1 training step vs torchdeq (fp/anderson)",
                ">= 10x",
                "; ".join(parts) + f"; max|dx| {agree:.1e}; products-floor bound vs fp {ceil}",
                worst >= 10,
            )
        )
    if "iteration" in res:
        parts = [f"{r['case'].name} fwd {r['fwd']:.2f}x bwd {r['bwd']:.2f}x" for r in res["iteration"]]
        py = "/".join(f"{r['fwd_py']:.1f}x" for r in res["iteration"])
        worst = max(max(r["fwd"], r["bwd"]) for r in res["iteration"])
        rows.append(
            (
                "2 cost per iteration vs bare products",
                "<= 1.5x",
                "fused vs bare C++: "
                + "; ".join(parts)
                + f" (Python loop vs bare Python products, forward: {py})",
                worst <= 1.5,
            )
        )
    if "iterations" in res:
        parts, ok = [], True
        for r in res["iterations"]:
            s = r["solvers"]
            for name, v in s.items():
                if not v["dx"] <= AGREE:
                    fail = True
                    print(
                        f"FIXED POINTS DISAGREE: {r['case'].name}: {name} vs picard {v['dx']:.2e} (limit {AGREE:.0e})"
                    )
            pic = s["picard"]["median"]
            best = min(("anderson", "newton"), key=lambda k: s[k]["median"])
            ratio = s[best]["median"] / pic
            ok &= ratio <= 1 / 3 + 1e-9
            parts.append(f"{r['case'].name} {best} {s[best]['median']:.0f}/{pic:.0f} = {ratio:.2f}")
        rows.append(("3 accelerated / picard iterations (median)", "<= 0.33", "; ".join(parts), ok))
    if "adjoint" in res:
        tr = res["adjoint"]["trained"]
        grid = res["adjoint"]["grid"]
        ok_t = sum(r["auto"] == r["best"] for r in tr)
        ok_g = sum(r["ok"] for r in grid)
        parts = "; ".join(f"{r['case'].name} {r['auto']}" for r in tr)
        ok_f = sum(r["ok"] for r in grid if r["backend"] == "auto")
        n_f = sum(r["backend"] == "auto" for r in grid)
        rows.append(
            (
                "4 adjoint auto picks the faster",
                "all",
                f"trained {ok_t}/{len(tr)} ({parts}); grid "
                f"{ok_f}/{n_f} (fused loop), {ok_g - ok_f}/{len(grid) - n_f} (Python loop)",
                ok_t == len(tr),
            )
        )
    if "memory" in res:
        m = res["memory"]
        i_s = m[200]["implicit"][0] / m[10]["implicit"][0]
        u_s = m[200]["unrolled"][0] / m[10]["unrolled"][0]
        pk = ""
        if m[10]["implicit"][1] and m[200]["implicit"][1]:
            pk = (
                f"; peak K=200/K=10: implicit {m[200]['implicit'][1] / m[10]['implicit'][1]:.2f}x, "
                f"unrolled {m[200]['unrolled'][1] / m[10]['unrolled'][1]:.1f}x"
            )
        rows.append(
            (
                "5 memory K=200 vs K=10 (saved bytes)",
                "flat",
                f"implicit {i_s:.2f}x, unrolled {u_s:.1f}x{pk}",
                i_s < 1.05,
            )
        )
    if "rnn" in res:
        parts = [
            f"{r['name']} {100 * r['reduction']:.0f} % (max|dy| {r['dy']:.1e}; forward time "
            f"{r['ms_warm'] / r['ms_cold']:.2f}x cold's, {r['ms_moved'] / r['ms_cold']:.2f}x after a weight "
            f"update)"
            for r in res["rnn"]
        ]
        for r in res["rnn"]:
            if not r["dy"] <= RNN_AGREE * max(1.0, r["scale"]):
                fail = True
                print(f"RNN OUTPUTS DISAGREE (warm vs cold start): {r['name']}: {r['dy']:.2e}")
        rows.append(
            (
                "6 RNN warm start: fewer iterations/seq",
                ">= 30 %",
                "; ".join(parts),
                all(r["reduction"] >= 0.3 for r in res["rnn"]),
            )
        )
    w = max(len(r[0]) for r in rows) if rows else 10
    print(f"{'figure':<{w}}  {'target':<8}  {'met':<4}  measured")
    for name, target, measured, ok in rows:
        print(f"{name:<{w}}  {target:<8}  {'yes' if ok else 'NO':<4}  {measured}")
    print("=" * 120)
    if fail:
        print("bench_perf: FAILED (fixed points of compared implementations disagree)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
