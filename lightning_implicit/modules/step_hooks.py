"""One optimiser step's backward and update, with the hooks Lightning calls around them.

In manual optimisation Lightning runs ``manual_backward(loss)`` and ``LightningOptimizer.step()`` through the
strategy and the precision plugin, which call ``on_before_backward``, ``on_after_backward`` and
``on_before_optimizer_step`` on every callback and on the module, each inside a profiler context. With one
device, full precision and no profiler those layers do nothing else, yet they cost ~0.1-0.2 ms per optimiser
step on a CPU: a third of a small implicit model's step. :class:`StepHooks` then calls the same hooks itself, in
Lightning's order, on the callbacks (and the module) that define them; with any other strategy, precision or
profiler (DDP, mixed precision, ``--trainer.profiler simple``) it goes through Lightning unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import SingleDeviceStrategy

__all__ = ["StepHooks"]

_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


def _defined(obj: object, name: str, base: type) -> Callable | None:
    """``obj.name`` where it differs from ``base``'s (which does nothing), else ``None``."""
    fn = getattr(obj, name, None)
    if not callable(fn) or getattr(fn, "__func__", None) is getattr(base, name):
        return None
    return fn


class StepHooks:
    """``backward(loss)`` and ``step(optimizer)`` for one :class:`~lightning.pytorch.Trainer` fit.

    Direct (``direct`` is True) when the trainer runs a :class:`SingleDeviceStrategy` with the plain
    :class:`Precision` plugin and no profiler; the hooks are looked up once, when the module builds it at the
    first training step of a fit.
    """

    def __init__(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.trainer, self.module = trainer, module
        strategy = trainer.strategy
        self.direct = (
            type(strategy) is SingleDeviceStrategy
            and type(strategy.precision_plugin) is Precision
            and isinstance(trainer.profiler, PassThroughProfiler)
        )
        self._callbacks = {
            name: [fn for cb in trainer.callbacks if (fn := _defined(cb, name, L.Callback)) is not None]
            for name in _HOOKS
        }
        self._module_hooks = {name: _defined(module, name, L.LightningModule) for name in _HOOKS}

    def _call(self, name: str, *args) -> None:
        """The callbacks' hook, then the module's, as Lightning's ``_call_callback_hooks`` and
        ``_call_lightning_module_hook`` do (with ``_current_fx_name`` set, so that ``self.log`` works there)."""
        callbacks, own = self._callbacks[name], self._module_hooks[name]
        if not callbacks and own is None:
            return
        module = self.module
        names = module.__dict__  # (a plain attribute: nn.Module.__setattr__'s checks cost more than the hook)
        prev, names["_current_fx_name"] = names.get("_current_fx_name"), name
        try:
            for fn in callbacks:
                fn(self.trainer, module, *args)
            if own is not None:
                own(*args)
        finally:
            names["_current_fx_name"] = prev

    def backward(self, loss: torch.Tensor) -> None:
        """``manual_backward(loss)``: ``on_before_backward``, the module's ``backward``, ``on_after_backward``."""
        if not self.direct:
            self.module.manual_backward(loss)
            return
        self._call("on_before_backward", loss)
        self.module.backward(loss)
        self._call("on_after_backward")

    def step(self, optimizer) -> None:
        """``optimizer.step()`` of a :class:`~lightning.pytorch.core.optimizer.LightningOptimizer`:
        ``on_before_optimizer_step`` and the update, counted by the manual-optimisation loop (``global_step``)."""
        if not self.direct:
            optimizer.step()
            return
        optimizer._on_before_step()
        self._call("on_before_optimizer_step", optimizer.optimizer)
        optimizer.optimizer.step()
        optimizer._on_after_step()
