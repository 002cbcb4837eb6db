"""The structure of ``A`` in ``x = phi(A x + B u)``: which entries are free, and how well-posedness is kept.

``A`` is stored as a dense ``(n, n)`` parameter; a structure is a mask of its free entries (``None``: all).
The state equation uses ``A * mask`` (:meth:`ImplicitLayer.effective_A`), so every solver and backend, fused
loops included, works with any structure unchanged. After each optimiser step the layer restores
well-posedness: rows of the masked ``A`` onto the L1 ball of radius ``kappa`` (``||A||_inf <= kappa < 1``), or,
for a ``nilpotent`` structure (a strictly triangular mask: the state equation is then well posed for any
values), only the mask. Register a new one with :func:`register_structure`, e.g. a banded ``A``::

    register_structure(Structure("banded3", lambda n: (torch.arange(n)[:, None] - torch.arange(n)).abs() <= 1))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Structure", "STRUCTURES", "register_structure", "get_structure"]


@dataclass(frozen=True)
class Structure:
    """Attributes:
    name: its registry name.
    mask: ``mask(n) -> (n, n) bool``, the free entries of ``A`` (``None``: dense).
    nilpotent: the mask is strictly triangular, so ``A * mask`` is nilpotent and no projection is needed
        (the solve then ends in at most ``n`` Picard iterations).
    """

    name: str
    mask: Callable[[int], torch.Tensor] | None = None
    nilpotent: bool = False

    def free_entries(self, n: int) -> int:
        """How many entries of an ``(n, n)`` ``A`` are parameters (the paper's parameter count)."""
        return n * n if self.mask is None else int(self.mask(n).sum())


STRUCTURES: dict[str, Structure] = {}


def register_structure(structure: Structure) -> Structure:
    """Add ``structure`` to :data:`STRUCTURES` under its name (replacing one of that name)."""
    STRUCTURES[structure.name] = structure
    return structure


def get_structure(name: str) -> Structure:
    """The registered structure ``name``; an unknown name lists the known ones."""
    try:
        return STRUCTURES[name]
    except KeyError:
        raise ValueError(
            f"unknown structure of A {name!r}; choose one of {sorted(STRUCTURES)} "
            "(or add one with lightning_implicit.implicit.register_structure)"
        ) from None


register_structure(Structure("dense"))
# The paper's ablation of closed-loop feedback (section 4): the lower triangle and the diagonal removed.
register_structure(
    Structure("strictly_upper", lambda n: torch.ones(n, n, dtype=torch.bool).triu(diagonal=1), nilpotent=True)
)
