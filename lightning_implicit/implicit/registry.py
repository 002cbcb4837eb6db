"""The registries (as torchdeq's): solvers by name, ``SOLVERS[name] = fn(A, BU, x0, cfg) -> (x, iterations,
residual, converged)``, and Picard's backends, ``BACKENDS[name]`` (:class:`PicardBackend`). The solvers and
backends themselves live in :mod:`.solvers` (importing the package registers them); this module has no
dependencies, so that :class:`~.config.SolverConfig` can validate a name without importing them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "SOLVERS",
    "register_solver",
    "BACKENDS",
    "BUILTIN_BACKENDS",
    "PicardBackend",
    "register_backend",
    "backend_names",
]

SolverFn = Callable[..., tuple]
SOLVERS: dict[str, SolverFn] = {}


def register_solver(name: str) -> Callable[[SolverFn], SolverFn]:
    """Register ``fn(A, BU, x0, cfg) -> (x, iterations, residual, converged)`` under ``name``.

    ``x`` must be an image ``phi(A x' + B u)`` of the activation (as Picard's, Anderson's and Newton's are:
    each returns the map value of its last point): the implicit backward reads ``phi'(z)`` at the fixed point
    from it (``sign(x)`` for ReLU)."""

    def deco(fn: SolverFn) -> SolverFn:
        SOLVERS[name] = fn
        return fn

    return deco


BackendFn = Callable[..., tuple]


def _supports_all(BU, cfg) -> str | None:
    return None


@dataclass(frozen=True)
class PicardBackend:
    """Where Picard's loop runs: ``fn(A, BU, x0, cfg, hint) -> (x, iterations, residual, converged)`` with the rule
    of :func:`.reference.picard`; ``unsupported(BU, cfg)`` says why it cannot run a case (``None``: it can)."""

    fn: BackendFn
    unsupported: Callable = _supports_all


BACKENDS: dict[str, PicardBackend] = {}

# The backend names, in one place: ``auto`` (a choice among the built-in loops, not a loop), the loops that
# :mod:`.solvers` registers (``reference``: the paper's iteration as written; ``python``: the blocked loop;
# ``fused``: the C++ loop), then whatever :func:`register_backend` adds. A config checks its ``backend`` here
# when it is built, before :mod:`.solvers` need be imported.
AUTO = "auto"
BUILTIN_BACKENDS = ("reference", "python", "fused")


def backend_names() -> list[str]:
    """Every name a config's ``backend`` accepts: ``auto``, the built-in loops and the registered backends."""
    return list(dict.fromkeys([AUTO, *BUILTIN_BACKENDS, *BACKENDS]))


def register_backend(name: str, unsupported: Callable | None = None) -> Callable[[BackendFn], BackendFn]:
    """Register a Picard backend ``fn(A, BU, x0, cfg, hint)`` under ``name`` (then ``backend=name`` selects it;
    ``tests/test_reference_core.py`` shows how to check one against the reference)."""

    def deco(fn: BackendFn) -> BackendFn:
        BACKENDS[name] = PicardBackend(fn, unsupported or _supports_all)
        return fn

    return deco
