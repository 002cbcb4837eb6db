"""The fused CPU loops (``csrc/fused_fixed_point.cpp``): per-sample Picard and adjoint iterations in C++.

At the paper's small sizes (n = 20-36, batch 64) an iteration's product costs ~1 us of arithmetic but ~2 us of
Python and dispatcher overhead per operation, so the Python loop (:func:`.solvers.blocked_iteration`) spends
most of its time on dispatch and bookkeeping. The fused loop runs one BLAS product per iteration and a single
pass over its result (ReLU, residuals, recording and compaction of finished samples): same stopping rule, same
per-sample results (up to the rounding of the product), no per-iteration Python.

The extension is compiled on first use with :func:`torch.utils.cpp_extension.load` (a C++ compiler and ``ninja``,
a dependency of this package; ~1 min once, cached under ``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``).
Solvers choose it with ``backend`` (:class:`~.config.SolverConfig`): ``auto`` uses it for CPU float32/float64
tensors when it builds, and otherwise warns once (naming the build error and the fix) and runs the Python loop;
``fused`` requires it; ``python`` never builds it.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from functools import lru_cache
from pathlib import Path

import torch

__all__ = ["FusedUnavailableWarning", "fused_module", "usable", "picard", "adjoint", "project_rows_l1"]

_SOURCE = Path(__file__).with_name("csrc") / "fused_fixed_point.cpp"
_DTYPES = (torch.float32, torch.float64)


class FusedUnavailableWarning(RuntimeWarning):
    """The fused C++ loops could not be built; the (slower) Python loops run instead."""


_NAME = "lightning_implicit_fused"
# A build takes ~30 s; torch waits forever on the lock file of a build that was killed (Ctrl-C, OOM, a dead node).
STALE_LOCK_SECONDS = 600


def _remove_stale_lock() -> None:
    """Remove the build lock left by a killed build (older than ``STALE_LOCK_SECONDS``), saying so."""
    from torch.utils.cpp_extension import _get_build_directory

    lock = Path(_get_build_directory(_NAME, verbose=False)) / "lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return
    if age > STALE_LOCK_SECONDS:
        warnings.warn(
            f"lightning_implicit: removing the stale build lock {lock} ({age / 60:.0f} min old: a build of the fused "
            f"loops was interrupted); building again.",
            RuntimeWarning,
            stacklevel=4,
        )
        lock.unlink(missing_ok=True)


@lru_cache(maxsize=1)
def _build():
    """Compile (or load the cached build of) the extension: ``(module, None)`` or ``(None, error message)``."""
    try:
        import ninja  # the pip package ships the binary; torch looks for it on PATH
        from torch.utils.cpp_extension import load
    except ImportError as e:  # pragma: no cover - ninja is a dependency
        return None, f"{e} (pip install ninja)"
    _remove_stale_lock()
    path = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, os.path.dirname(sys.executable), path])
    try:
        module = load(
            name=_NAME,
            sources=[str(_SOURCE)],
            extra_cflags=["-O3", "-fopenmp-simd"],
            verbose=False,
        )
        return module, None
    except Exception as e:  # compiler missing, headers missing, ...: reported, never silent
        lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [repr(e)]
        first_error = next((line for line in lines if "error:" in line.lower()), lines[-1])
        return None, f"{type(e).__name__}: {first_error[:300]}"
    finally:
        os.environ["PATH"] = path


def fused_module(required: bool = False):
    """The compiled module, or ``None`` (after one :class:`FusedUnavailableWarning`) if it cannot be built.

    ``required=True`` raises instead (``backend='fused'``)."""
    module, error = _build()
    if module is None:
        msg = (
            f"lightning_implicit: the fused C++ loops (fixed-point iterations, projection) could not be built ({error}). Install a C++ "
            f"compiler (Debian/Ubuntu: apt-get install g++) and the Python headers; until then the Python loops "
            f"run (same results, slower at small sizes). Set backend='python' to silence this."
        )
        if required:
            raise RuntimeError(msg)
        warnings.warn(msg, FusedUnavailableWarning, stacklevel=3)  # shown once per call site by default
    return module


def usable(like: torch.Tensor, backend: str):
    """The module if ``backend`` and the tensor (device, dtype) call for the fused loop, else ``None``."""
    if backend == "python" or not like.is_cpu or like.dtype not in _DTYPES:
        if backend == "fused" and (not like.is_cpu or like.dtype not in _DTYPES):
            raise ValueError(
                f"backend='fused' runs on CPU float32/float64 tensors only, got {like.device.type} {like.dtype}; "
                f"use backend='auto' (or 'python') on other devices"
            )
        return None
    return fused_module(required=backend == "fused")


def picard(module, A, BU, x0, tol: float, tol_mode: str, max_iter: int, compact: bool):
    """``x <- relu(BU + x A^T)`` per sample; ``x0 = None`` starts at zero. See :func:`.solvers.picard`.

    ``compact``: finished samples leave the batch (worth it for large problems; otherwise every sample runs until
    the last one stops and its result does not depend on the others, bit for bit)."""
    return module.picard(A, BU, x0, tol, tol_mode != "abs", max_iter, compact)


def adjoint(module, A, d, g, tol: float, tol_mode: str, max_iter: int, compact: bool):
    """``w <- g + (d * w) A`` per sample, from ``w = g``. See :mod:`.adjoint`."""
    return module.adjoint(A, d, g, g, tol, tol_mode != "abs", max_iter, compact)


def project_rows_l1(A: torch.Tensor, kappa: float) -> torch.Tensor | None:
    """The fused projection of :func:`.projection.project_rows_l1` for a 2-d CPU float32/float64 ``A`` outside
    autograd, or ``None`` where it does not apply (then the caller's torch version runs)."""
    if A.dim() != 2 or (A.requires_grad and torch.is_grad_enabled()):
        return None
    module = usable(A, "auto")
    return None if module is None else module.project_rows_l1(A, float(kappa))
