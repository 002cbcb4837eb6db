"""The activation ``phi`` of the state equation ``x = phi(A x + B u)``: a registry (the paper's is ReLU).

An activation is one argument of the solve (``ImplicitLayer(..., solver=SolverConfig(activation="tanh"))``, or
``--model.init_args.solver.activation tanh`` on the command line). Register a new one with
:func:`register_activation`; it must be 1-Lipschitz, so that ``||A||_inf <= kappa < 1`` keeps the state
equation a contraction (El Ghaoui et al. 2021), and must give its derivative for the implicit backward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Activation", "ACTIVATIONS", "register_activation", "get_activation"]

Fn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Activation:
    """A 1-Lipschitz, element-wise ``phi``.

    Attributes:
        name: its registry name.
        fn: ``phi(z)``, element-wise.
        derivative: ``phi'(z)`` (almost everywhere), element-wise.
        output_derivative: ``phi'(z)`` read from the output ``x = phi(z)`` when it determines it (ReLU:
            ``sign(x)``; tanh: ``1 - x^2``): the backward then needs no product to rebuild ``z``. ``None``: the
            backward computes ``z = A x + B u``.
        homogeneous: ``phi(c z) = c phi(z)`` for ``c >= 0`` (ReLU, leaky ReLU): the fixed point is then
            positively homogeneous in ``u``, which the implicitRNN's warm first step uses.
        nonneg: ``phi(z) >= 0`` (ReLU): the iterates' scale needs no ``abs``.
    """

    name: str
    fn: Fn
    derivative: Fn
    output_derivative: Fn | None = None
    homogeneous: bool = False
    nonneg: bool = False

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.fn(z)


ACTIVATIONS: dict[str, Activation] = {}


def register_activation(activation: Activation) -> Activation:
    """Add ``activation`` to :data:`ACTIVATIONS` under its name (replacing one of that name)."""
    ACTIVATIONS[activation.name] = activation
    return activation


def get_activation(name: str) -> Activation:
    """The registered activation ``name``; an unknown name lists the known ones."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)} "
            "(or add one with lightning_implicit.implicit.register_activation)"
        ) from None


LEAKY_SLOPE = 0.01  # torch's default negative slope

register_activation(
    Activation(
        "relu",
        torch.relu,
        lambda z: (z > 0).to(z.dtype),
        output_derivative=torch.sign,
        homogeneous=True,
        nonneg=True,
    )
)
register_activation(
    Activation(
        "leaky_relu",
        lambda z: F.leaky_relu(z, LEAKY_SLOPE),
        lambda z: torch.where(z > 0, 1.0, LEAKY_SLOPE).to(z.dtype),
        output_derivative=lambda x: torch.where(x > 0, 1.0, LEAKY_SLOPE).to(x.dtype),
        homogeneous=True,
    )
)
register_activation(
    Activation("tanh", torch.tanh, lambda z: 1 - torch.tanh(z) ** 2, output_derivative=lambda x: 1 - x * x)
)
