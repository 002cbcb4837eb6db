"""A cheaper "no profiler" for Lightning's per-step hook dispatch.

Lightning wraps every hook it calls (each callback's and the module's, about 40 a training step with five
callbacks) in ``trainer.profiler.profile(name)``. Without ``--trainer.profiler`` that is a
:class:`~lightning.pytorch.profilers.PassThroughProfiler`, whose ``profile`` is still a generator-based context
manager: a generator, a ``contextlib`` object and two no-op calls per hook, and for each callback the hook's name
built from its ``state_key``. :class:`NoOpProfiler` is the same profiler (it records nothing, writes nothing)
whose ``profile`` returns one shared, reusable no-op context instead.
"""

from __future__ import annotations

import contextlib

from lightning.pytorch.profilers import PassThroughProfiler

__all__ = ["NoOpProfiler", "cheap_default_profiler"]


class NoOpProfiler(PassThroughProfiler):
    """:class:`PassThroughProfiler` with a constant-cost ``profile``: ``with profiler.profile(name):`` enters a
    shared :class:`contextlib.nullcontext` (no generator per call). Records nothing, like its base."""

    _context = contextlib.nullcontext()

    def profile(self, action_name: str):  # type: ignore[override]
        return self._context


def cheap_default_profiler(trainer) -> None:
    """Give ``trainer`` a :class:`NoOpProfiler` where it has Lightning's default no-op profiler (no
    ``--trainer.profiler``); a profiler the user asked for (``simple``, ``advanced``, an instance) is kept."""
    if type(trainer.profiler) is PassThroughProfiler:
        trainer.profiler = NoOpProfiler()
