"""The fused CPU loops (``csrc/fused_fixed_point.cpp``): per-sample Picard and adjoint iterations in C++.

At the paper's small sizes (n = 20-36, batch 64) an iteration's product costs ~1 us of arithmetic but ~2 us of
Python and dispatcher overhead per operation, so the Python loop (:func:`.solvers.blocked_iteration`) spends
most of its time on dispatch and bookkeeping. The fused loop runs one BLAS product per iteration and a single
pass over its result (ReLU, residuals, recording; finished samples leaving the batch where that measured cheaper,
:func:`.solvers.fused_layout`): same stopping rule, no per-iteration Python. On the smallest problems (the paper's
n = 20, batch 64) it keeps the Python loop's ``(n, batch)`` layout and products, so both give the same results
bit for bit; where finished samples leave, they agree up to the rounding of the products.

The extension is compiled on first use with :func:`torch.utils.cpp_extension.load` (a C++ compiler and ``ninja``,
a dependency of this package; ~30 s once, cached under ``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``).
The build's name carries a key of the source, the compiler flags, the torch version and the interpreter
(:func:`build_key`), so two checkouts or two virtualenvs on one machine each keep their own build and never
rebuild each other's. A build is verified before it is loaded (:func:`damaged`: the ELF file complete, its
SHA-256 the one recorded when it was built): a truncated or overwritten ``.so`` would otherwise kill the process
with "Bus error" at ``dlopen``, so a damaged one is removed and rebuilt, with a warning.
Solvers choose it with ``backend`` (:class:`~.config.SolverConfig`): ``auto`` uses it for CPU float32/float64
tensors when it builds, and otherwise warns once (naming the build error and the fix) and runs the Python loop;
``fused`` requires it; ``python`` never builds it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import sys
import time
import warnings
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import torch

__all__ = [
    "FusedUnavailableWarning",
    "fused_module",
    "usable",
    "picard",
    "adjoint",
    "layer_forward",
    "layer_backward",
    "project_rows_l1",
]

_SOURCE = Path(__file__).with_name("csrc") / "fused_fixed_point.cpp"
_DTYPES = (torch.float32, torch.float64)


class FusedUnavailableWarning(RuntimeWarning):
    """The fused C++ loops could not be built; the (slower) Python loops run instead."""


_NAME = "lightning_implicit_fused"


# Products called straight through the BLAS symbols only where torch's BLAS is known to be MKL with 32-bit integer
# arguments (the x86 wheels); elsewhere the loop calls ATen's addmm (same results, ~1 us more per product).
_DIRECT_BLAS = bool(torch.backends.mkl.is_available())


def build_key(
    isa: list[str], source: Path = _SOURCE, torch_version: str | None = None, interpreter: str | None = None
) -> str:
    """12 hex digits of SHA-256 over the source and where it lies, the flags, the torch version and the interpreter
    (its version and prefix): the part of the build's name that separates environments. (The folder matters:
    the compiler records the source's path in the library, so two checkouts sharing one virtualenv build
    different bytes and, under one name, would each take the other's build for a damaged one.)"""
    h = hashlib.sha256(source.read_bytes())
    for part in (
        str(source.resolve().parent),
        *_CFLAGS,
        *isa,
        torch_version or f"{torch.__version__}+{torch.version.git_version}",
        interpreter or f"{sys.version}|{sys.prefix}",
    ):
        h.update(b"\0" + part.encode())
    return h.hexdigest()[:12]


_CFLAGS = ("-O3", "-fopenmp-simd")


def _digest(path: Path) -> str:
    return f"{path.stat().st_size}:{hashlib.sha256(path.read_bytes()).hexdigest()}"


def damaged(so: Path) -> str | None:
    """Why the built library ``so`` must not be loaded (``None``: it looks whole). Checks that its ELF section
    table lies inside the file (a truncated file fails this) and, where the build recorded one, its size and
    SHA-256 (``<so>.sha256``)."""
    try:
        data = so.read_bytes()
    except OSError as e:
        return f"unreadable ({e})"
    record = so.with_name(so.name + ".sha256")
    if record.exists():
        expected = record.read_text().strip()
        actual = f"{len(data)}:{hashlib.sha256(data).hexdigest()}"
        if expected != actual:
            return f"size/SHA-256 {actual[:20]}... differs from the build's record {expected[:20]}..."
    if data[:4] != b"\x7fELF":
        return "not an ELF shared library"
    if data[4] == 2 and len(data) >= 64:  # 64-bit: e_shoff (u64 at 40), e_shentsize, e_shnum (u16 at 58, 60)
        (shoff,), (shentsize, shnum) = struct.unpack_from("<Q", data, 40), struct.unpack_from("<HH", data, 58)
    elif data[4] == 1 and len(data) >= 52:
        (shoff,), (shentsize, shnum) = struct.unpack_from("<I", data, 32), struct.unpack_from("<HH", data, 46)
    else:
        return "truncated ELF header"
    if shoff + shentsize * shnum > len(data):
        return f"truncated ({len(data)} bytes; its section table ends at byte {shoff + shentsize * shnum})"
    return None


def _heal(directory: Path, name: str) -> None:
    """Remove a damaged build of ``name`` in ``directory`` (with a warning) so that ``load`` builds it again."""
    so = directory / f"{name}.so"
    if not so.exists():
        return
    why = damaged(so)
    if why is None:
        return
    warnings.warn(
        f"lightning_implicit: the cached build of the fused loops {so} is damaged ({why}); removing it and "
        f"building it again.",
        RuntimeWarning,
        stacklevel=4,
    )
    for f in (so, so.with_name(so.name + ".sha256")):  # ninja links it again from the objects (a few seconds)
        f.unlink(missing_ok=True)


def _record(directory: Path, name: str) -> None:
    so = directory / f"{name}.so"
    record = so.with_name(so.name + ".sha256")
    if so.exists() and not record.exists():
        record.write_text(_digest(so))


def _isa_flags() -> tuple[str, list[str]]:
    """The build's name and compiler flags for this CPU: AVX2 where torch runs AVX2 or AVX-512 kernels (the pass
    after each product then runs 8 floats wide: ~10% less time per solve at n = 20-36, measured), else the
    compiler's baseline. The name carries the instruction set, so a build cache shared by machines of different
    CPUs (a cluster's home directory) never hands an AVX2 build to a CPU without it. No FMA contraction: the
    results stay those of the baseline build, bit for bit."""
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        return f"{_NAME}_avx2", ["-mavx2", "-ffp-contract=off"]
    return _NAME, []


@contextmanager
def _build_lock(directory: Path):
    """An exclusive ``flock`` on ``directory/build.flock`` for the duration of a build (or a load).

    torch's own lock file (``directory/lock``) is left behind by a build that was killed (Ctrl-C, SIGTERM from
    torchrun, ``timeout`` or SLURM, a dead node), and every later ``load`` then waits on it forever, silently. The
    kernel releases a ``flock`` when its process dies, so while we hold ours no other process of this package is
    building here: a ``lock`` file found then is stale and is removed (with a warning). Ranks that start together
    queue on the ``flock`` and then load the build the first one made."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking beyond torch's own
        yield
        return
    with open(directory / "build.flock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            stale = directory / "lock"
            if stale.exists():
                warnings.warn(
                    f"lightning_implicit: removing the stale build lock {stale} (a build of the fused loops was "
                    f"interrupted); building again.",
                    RuntimeWarning,
                    stacklevel=4,
                )
                stale.unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def ninja_on_path():
    """PATH with the pip ``ninja`` binary (and this interpreter's bin) first, for a torch extension build; restored
    afterwards (torch runs ``ninja`` from PATH, which need not include the virtualenv)."""
    import ninja

    path = os.environ.get("PATH")
    os.environ["PATH"] = os.pathsep.join(
        p for p in [ninja.BIN_DIR, os.path.dirname(sys.executable), path] if p
    )
    try:
        yield
    finally:
        if path is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = path


@lru_cache(maxsize=1)
def _build():
    """Compile (or load the cached build of) the extension: ``(module, None)`` or ``(None, error message)``."""
    try:
        import ninja  # noqa: F401  (the pip package ships the binary)
        from torch.utils.cpp_extension import _get_build_directory, load
    except ImportError as e:  # pragma: no cover - ninja is a dependency
        return None, f"{e} (pip install ninja)"
    try:
        name, isa = _isa_flags()
        name = f"{name}_{build_key(isa)}"
        directory = Path(_get_build_directory(name, verbose=False))
        with ninja_on_path(), _build_lock(directory):
            _heal(directory, name)
            so = directory / f"{name}.so"
            compiling = not so.exists() or so.stat().st_mtime < _SOURCE.stat().st_mtime
            if compiling:  # (tens of seconds, once: said, so that the first run is not silent)
                print(
                    f"lightning_implicit: compiling the fused C++ loops into {directory} ...", file=sys.stderr
                )
                t0 = time.perf_counter()
            module = load(name=name, sources=[str(_SOURCE)], extra_cflags=[*_CFLAGS, *isa], verbose=False)
            if compiling:
                print(f"lightning_implicit: compiled in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            _record(directory, name)
        return module, None
    except Exception as e:  # compiler missing, headers missing, ...: reported, never silent
        lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [repr(e)]
        first_error = next((line for line in lines if "error:" in line.lower()), lines[-1])
        return None, f"{type(e).__name__}: {first_error[:300]}"


def _advice() -> str:
    """What to do about a failed build: a compiler only where none is found."""
    if not any(shutil.which(c) for c in (os.environ.get("CXX", "c++"), "c++", "g++", "clang++")):
        return "Install a C++ compiler (Debian/Ubuntu: apt-get install g++) and the Python headers"
    return (
        "A C++ compiler is installed, so the cause is the error above: if it names a file in the build cache, "
        "delete that folder ($TORCH_EXTENSIONS_DIR or ~/.cache/torch_extensions) and run again"
    )


def fused_module(required: bool = False):
    """The compiled module, or ``None`` (after one :class:`FusedUnavailableWarning`) if it cannot be built.

    ``required=True`` raises instead (``backend='fused'``)."""
    module, error = _build()
    if module is None:
        msg = (
            f"lightning_implicit: the fused C++ loops (fixed-point iterations, projection) could not be built "
            f"({error}). {_advice()}; until then the Python loops run (same results, slower at small sizes). Set the backend to 'python' (--model.init_args.solver.backend python, adjoint.backend likewise) to silence this."
        )
        if required:
            raise RuntimeError(msg)
        warnings.warn(msg, FusedUnavailableWarning, stacklevel=3)  # shown once per call site by default
    return module


def usable(like: torch.Tensor, backend: str):
    """The module if ``backend`` and the tensor (device, dtype) call for the fused loop, else ``None``."""
    if backend in ("python", "reference"):
        return None
    if not like.is_cpu or like.dtype not in _DTYPES:
        if backend == "fused":
            raise ValueError(
                f"backend='fused' runs on CPU float32/float64 tensors only, got {like.device.type} {like.dtype}; "
                f"use backend='auto' (or 'python') on other devices"
            )
        return None
    return fused_module(required=backend == "fused")


# The loops' layouts (csrc): (n, batch) columns; batch-first rows that drop finished samples every iteration;
# columns that drop finished samples once a quarter of them are done.
COLUMNS, ROWS, COLUMNS_DROPPING = 0, 1, 2


def picard(module, A, BU, x0, tol: float, tol_mode: str, max_iter: int, layout: int):
    """``x <- relu(BU + x A^T)`` per sample; ``x0 = None`` starts at zero. See :func:`.solvers.picard`.

    ``layout``: :data:`COLUMNS` (every sample runs until the last one stops; its result does not depend on the
    others, bit for bit), :data:`ROWS` or :data:`COLUMNS_DROPPING` (finished samples leave the batch), as
    :func:`.solvers.fused_layout` picks."""
    return module.picard(A, BU, x0, tol, tol_mode != "abs", max_iter, int(layout), _DIRECT_BLAS)[:4]


def adjoint(module, A, d, g, tol: float, tol_mode: str, max_iter: int, layout: int):
    """``w <- g + (d * w) A`` per sample, from ``w = g``. See :mod:`.adjoint`. Returns ``(w, iterations, residual,
    converged, number not converged)``."""
    return module.adjoint(A, d, g, tol, tol_mode != "abs", max_iter, int(layout), _DIRECT_BLAS)


def layer_forward(module, A, B, u, x0, C, D, cfg, layout: int):
    """The layer's forward in one call: ``BU = u B^T``, :func:`picard` from ``x0`` (``None``: zero) with ``cfg``
    (a :class:`~.config.SolverConfig`), and with ``C (q, n)``, ``D (q, p)`` the readout ``y = u D^T + x C^T``.
    ``layout``: as for :func:`picard`. Returns ``(y or None, x, iterations, residual, converged)``."""
    return module.layer_forward(
        A, B, u, x0, C, D, cfg.tol, cfg.tol_mode != "abs", cfg.max_iter, layout, _DIRECT_BLAS
    )[:5]


def layer_backward(module, A, B, u, x, C, D, g_out, need, cfg, layout: int):
    """The ReLU layer's implicit backward in one call (csrc ``layer_backward``): the adjoint :func:`adjoint` from
    ``g = g_out C`` (or ``g_out`` without ``C``) and ``d = sign(x)``, and the gradients ``need`` asks for (flags
    for A, B, u, C, D). Returns ``(dA, dB, du, dC, dD, w, d, g, iterations, residual, converged, number not
    converged)`` (``None`` for a gradient not asked for); ``layout``: as for :func:`adjoint`."""
    return module.layer_backward(
        A,
        B,
        u,
        x,
        C,
        D,
        g_out,
        list(need),
        cfg.tol,
        cfg.tol_mode != "abs",
        cfg.max_iter,
        layout,
        _DIRECT_BLAS,
    )


# Michelot passes over a row's candidates before Condat's loop takes over (csrc: typical rows need 2-6)
MICHELOT_PASSES = 12


def project_rows_l1(
    A: torch.Tensor, kappa: float, backend: str = "auto", inplace: bool = False
) -> torch.Tensor | None:
    """The fused projection of :func:`.projection.project_rows_l1` for a 2-d CPU float32/float64 ``A`` outside
    autograd (``inplace``: a contiguous ``A``, changed in place outside autograd, as an optimiser step changes a
    parameter, and returned), or ``None`` where it does not apply (then the caller's torch version runs)."""
    if A.dim() != 2 or (inplace and not A.is_contiguous()):
        return None
    if not inplace and A.requires_grad and torch.is_grad_enabled():
        return None
    module = usable(A, backend)
    return None if module is None else module.project_rows_l1(A, float(kappa), inplace, MICHELOT_PASSES)
